//! OTLP/HTTP `POST /v1/traces`, plus `GET /health` and `GET /metrics`.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use prost::Message;

use super::body::{self, BodyError, Format};
use crate::auth::Tokens;
use crate::metrics::{Metrics, Transport};
use crate::pipeline::{Pipeline, Refusal};
use hoptrace_otlp::json::encode_response;

#[derive(Clone)]
struct HttpState {
    pipeline: Arc<Pipeline>,
    max_body_bytes: usize,
    tokens: Option<Tokens>,
}

/// `tokens`: when set, `/v1/traces` admits only requests bearing one (`/health` and `/metrics` stay open).
pub fn router(pipeline: Arc<Pipeline>, max_body_bytes: usize, tokens: Option<Tokens>) -> Router {
    Router::new()
        .route("/v1/traces", post(export))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        // The limit is enforced by `read_wire_body` on the wire and by `body::decompress` after it.
        .layer(DefaultBodyLimit::disable())
        .with_state(HttpState { pipeline, max_body_bytes, tokens })
}

async fn export(State(state): State<HttpState>, headers: HeaderMap, body: Body) -> Response {
    let t = Transport::Http;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    // Before anything of the body is read: an unauthenticated client costs no memory.
    if let Some(Err(denied)) = state.tokens.as_ref().map(|tokens| tokens.admit(&headers)) {
        Metrics::add(&state.pipeline.metrics.requests_unauthenticated, t, 1);
        let format = Format::from_content_type(content_type).unwrap_or(Format::Protobuf);
        return error(format, StatusCode::UNAUTHORIZED, &denied.to_string(), &state);
    }
    let Some(format) = Format::from_content_type(content_type) else {
        Metrics::add(&state.pipeline.metrics.requests_invalid, t, 1);
        let msg = format!("unsupported Content-Type {content_type:?}; use application/x-protobuf or application/json");
        return error(Format::Protobuf, StatusCode::UNSUPPORTED_MEDIA_TYPE, &msg, &state);
    };
    let wire = match read_wire_body(body, state.max_body_bytes).await {
        Ok(b) => b,
        Err(WireError::TooLarge) => {
            Metrics::add(&state.pipeline.metrics.requests_too_large, t, 1);
            let msg = format!("request body exceeds {} bytes", state.max_body_bytes);
            return error(format, StatusCode::PAYLOAD_TOO_LARGE, &msg, &state);
        }
        Err(WireError::Broken) => {
            Metrics::add(&state.pipeline.metrics.requests_invalid, t, 1);
            return error(format, StatusCode::BAD_REQUEST, "request body could not be read", &state);
        }
    };
    let mut admission = match state.pipeline.admit(wire.len(), t) {
        Ok(a) => a,
        Err(r) => return refusal(format, r, &state),
    };
    let encoding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok());
    let decoded = body::decompress(encoding, &wire, state.max_body_bytes).and_then(|raw| body::decode(format, raw));
    drop(wire);
    let decoded = match decoded {
        Ok(d) => d,
        Err(BodyError::TooLarge { limit }) => {
            Metrics::add(&state.pipeline.metrics.requests_too_large, t, 1);
            let msg = format!("request body exceeds {limit} bytes after decompression");
            return error(format, StatusCode::PAYLOAD_TOO_LARGE, &msg, &state);
        }
        Err(BodyError::UnsupportedEncoding(e)) => {
            Metrics::add(&state.pipeline.metrics.requests_invalid, t, 1);
            let msg = format!("unsupported Content-Encoding {e:?}; use gzip or none");
            return error(format, StatusCode::UNSUPPORTED_MEDIA_TYPE, &msg, &state);
        }
        Err(BodyError::Invalid(msg)) => return refusal(format, Refusal::Invalid(msg), &state),
    };
    if let Err(r) = state.pipeline.grow(&mut admission, decoded.batch.request.len(), t) {
        return refusal(format, r, &state);
    }
    match state.pipeline.export(decoded, t).await {
        Ok(response) => {
            let body = match format {
                Format::Protobuf => Bytes::from(response.encode_to_vec()),
                Format::Json => Bytes::from(encode_response(&response)),
            };
            ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
        }
        Err(r) => refusal(format, r, &state),
    }
}

enum WireError {
    TooLarge,
    Broken,
}

/// How much of an oversize body is read and thrown away before answering 413: a client still sending when
/// the connection closed would see a broken pipe instead of the answer. Beyond it, the connection closes.
const DRAIN_FACTOR: usize = 4;

/// Reads a request body of at most `limit` bytes. An oversize body is read on (and discarded, so memory
/// stays bounded) up to `DRAIN_FACTOR` times the limit, so the client hears 413 rather than a reset.
async fn read_wire_body(body: Body, limit: usize) -> Result<Bytes, WireError> {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let mut kept = Vec::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| WireError::Broken)?;
        total += chunk.len();
        if total <= limit {
            kept.extend_from_slice(&chunk);
        } else if total > limit.saturating_mul(DRAIN_FACTOR) {
            return Err(WireError::TooLarge);
        }
    }
    if total > limit {
        return Err(WireError::TooLarge);
    }
    Ok(Bytes::from(kept))
}

fn refusal(format: Format, refusal: Refusal, state: &HttpState) -> Response {
    let m = &state.pipeline.metrics;
    match &refusal {
        Refusal::Invalid(msg) => {
            Metrics::add(&m.requests_invalid, Transport::Http, 1);
            error(format, StatusCode::BAD_REQUEST, msg, state)
        }
        Refusal::Busy | Refusal::Unavailable(_) => {
            error(format, StatusCode::SERVICE_UNAVAILABLE, &refusal.to_string(), state)
        }
    }
}

/// An error response: a `google.rpc.Status` in the request's encoding, with `Retry-After` on 503 and
/// `WWW-Authenticate` on 401.
fn error(format: Format, status: StatusCode, message: &str, state: &HttpState) -> Response {
    let code = match status {
        StatusCode::BAD_REQUEST | StatusCode::UNSUPPORTED_MEDIA_TYPE => tonic::Code::InvalidArgument,
        StatusCode::PAYLOAD_TOO_LARGE => tonic::Code::ResourceExhausted,
        StatusCode::UNAUTHORIZED => tonic::Code::Unauthenticated,
        _ => tonic::Code::Unavailable,
    } as i32;
    let body = match format {
        Format::Protobuf => Bytes::from(
            tonic_types::pb::Status { code, message: message.to_owned(), details: Vec::new() }.encode_to_vec(),
        ),
        Format::Json => Bytes::from(serde_json::json!({ "code": code, "message": message }).to_string()),
    };
    let mut response = (status, [(header::CONTENT_TYPE, format.content_type())], body).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        let secs = state.pipeline.retry_after.as_secs().max(1);
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

async fn health(State(state): State<HttpState>) -> Response {
    let json = [(header::CONTENT_TYPE, "application/json")];
    match state.pipeline.is_ready() {
        true => (StatusCode::OK, json, r#"{"status":"ready"}"#).into_response(),
        false => {
            (StatusCode::SERVICE_UNAVAILABLE, json, r#"{"status":"starting","reason":"replaying the write-ahead log"}"#)
                .into_response()
        }
    }
}

async fn metrics(State(state): State<HttpState>) -> Response {
    let store = state.pipeline.backend().and_then(|b| b.stats()).map(|s| s.as_ref());
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.pipeline.metrics.render(store, state.pipeline.forwarder().map(|f| f.stats.as_ref())),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;
    use tower::ServiceExt;

    /// Until the store has replayed its WAL, the collector says so and asks clients to retry.
    #[tokio::test]
    async fn before_replay_health_is_503_and_exports_are_retryable() {
        let pipeline = Arc::new(Pipeline::new(1 << 20, std::time::Duration::from_secs(2)));
        let app = router(pipeline, 1 << 20, None);
        let health = app.clone().oneshot(Request::get("/health").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(health.status(), StatusCode::SERVICE_UNAVAILABLE);
        let export = Request::post("/v1/traces")
            .header(header::CONTENT_TYPE, "application/x-protobuf")
            .body(Body::empty())
            .unwrap();
        let export = app.oneshot(export).await.unwrap();
        assert_eq!(export.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(export.headers().get(header::RETRY_AFTER).unwrap(), "2");
    }
}
