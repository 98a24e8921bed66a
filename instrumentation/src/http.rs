//! The HTTP server hop: a tower layer for axum that opens a SERVER span per request.
//!
//! The span is named `{method} {route}` from axum's matched route (`POST /v1/tasks`), continues a
//! `traceparent` the client sent, and carries the semantic-convention attributes. Handlers run inside
//! it, so `Context::current()` in a handler is the server span.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use axum::extract::MatchedPath;
use http::{HeaderMap, Request, Response};
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::{FutureExt as _, SpanKind, Status, TraceContextExt as _};
use opentelemetry::{global, Context, KeyValue};
use tower::{Layer, Service};

use crate::hop::HopSpan;

/// Wrap an axum router (`Router::layer`) or single routes (`route_layer`) with it.
#[derive(Clone, Copy, Debug, Default)]
pub struct HttpServerLayer;

impl<S> Layer<S> for HttpServerLayer {
    type Service = HttpServerSpan<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpServerSpan { inner }
    }
}

#[derive(Clone, Debug)]
pub struct HttpServerSpan<S> {
    inner: S,
}

impl<S, B, R> Service<Request<B>> for HttpServerSpan<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let method = request.method().as_str().to_owned();
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map(|path| path.as_str().to_owned())
            .unwrap_or_else(|| request.uri().path().to_owned());
        let parent = global::get_text_map_propagator(|propagator| {
            propagator.extract_with_context(&Context::new(), &Headers(request.headers()))
        });
        let span = HopSpan::start_server(
            &parent,
            format!("{method} {route}"),
            vec![
                KeyValue::new("http.request.method", method),
                KeyValue::new("http.route", route),
                KeyValue::new("url.path", request.uri().path().to_owned()),
            ],
        );
        let response = self.inner.call(request).with_context(span.context().clone());
        Box::pin(async move {
            let result = response.await;
            if let Ok(response) = &result {
                let code = response.status().as_u16();
                span.set_attribute(KeyValue::new("http.response.status_code", i64::from(code)));
                if code >= 500 {
                    span.context().span().set_status(Status::error(format!("HTTP {code}")));
                }
            }
            result
        })
    }
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

impl HopSpan {
    fn start_server(parent: &Context, name: String, attributes: Vec<KeyValue>) -> HopSpan {
        HopSpan::start(parent, name, SpanKind::Server, attributes, None, Vec::new())
    }
}
