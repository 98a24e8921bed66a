//! OTLP/gRPC: `opentelemetry.proto.collector.trace.v1.TraceService/Export`.
//!
//! Served by hand rather than through the generated `TraceServiceServer`, so the handler receives the
//! request's protobuf bytes: they are decoded by the same code as OTLP/HTTP's and written to the WAL as
//! they came, instead of being decoded by tonic and encoded again for the WAL.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use tonic::body::Body;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EnabledCompressionEncodings, EncodeBuf, Encoder};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::body::{self, BodyError, Format};
use crate::auth::Tokens;
use crate::metrics::{Metrics, Transport};
use crate::pipeline::{Pipeline, Refusal};
use hoptrace_otlp::EXPORT_PATH;

/// The trace service, with gzip both ways and the message size limit (applied after decompression).
#[derive(Clone)]
pub struct TraceService {
    pipeline: Arc<Pipeline>,
    max_message_bytes: usize,
    tokens: Option<Tokens>,
}

/// `tokens`: when set, only requests bearing one are served; the others are answered UNAUTHENTICATED.
pub fn service(pipeline: Arc<Pipeline>, max_message_bytes: usize, tokens: Option<Tokens>) -> TraceService {
    TraceService { pipeline, max_message_bytes, tokens }
}

impl NamedService for TraceService {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

impl<B> tower::Service<http::Request<B>> for TraceService
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            if request.uri().path() != EXPORT_PATH {
                return Ok(Status::unimplemented(format!("no method {}", request.uri().path())).into_http());
            }
            if let Some(Err(denied)) = this.tokens.as_ref().map(|tokens| tokens.admit(request.headers())) {
                Metrics::add(&this.pipeline.metrics.requests_unauthenticated, Transport::Grpc, 1);
                return Ok(Status::unauthenticated(denied.to_string()).into_http());
            }
            let mut gzip = EnabledCompressionEncodings::default();
            gzip.enable(CompressionEncoding::Gzip);
            let mut grpc = Grpc::new(ExportCodec)
                .apply_compression_config(gzip, gzip)
                .apply_max_message_size_config(Some(this.max_message_bytes), None);
            Ok(grpc.unary(Export(this), request).await)
        })
    }
}

struct Export(TraceService);

impl UnaryService<Bytes> for Export {
    type Response = ExportTraceServiceResponse;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response<Self::Response>, Status>> + Send>>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(
            async move { service.export(request.into_inner()).await.map(Response::new).map_err(|r| service.status(r)) },
        )
    }
}

impl TraceService {
    async fn export(&self, protobuf: Bytes) -> Result<ExportTraceServiceResponse, Refusal> {
        let t = Transport::Grpc;
        let _admission = self.pipeline.admit(protobuf.len(), t)?;
        // Copied out of tonic's receive buffer, which the memtable would otherwise keep alive until the flush.
        let decoded = body::decode(Format::Protobuf, protobuf.to_vec()).map_err(|e| match e {
            BodyError::Invalid(msg) => Refusal::Invalid(msg),
            other => Refusal::Invalid(other.to_string()),
        })?;
        self.pipeline.export(decoded, t).await
    }

    fn status(&self, refusal: Refusal) -> Status {
        match refusal {
            Refusal::Invalid(msg) => {
                Metrics::add(&self.pipeline.metrics.requests_invalid, Transport::Grpc, 1);
                Status::invalid_argument(msg)
            }
            Refusal::Busy | Refusal::Unavailable(_) => Status::with_error_details(
                Code::Unavailable,
                refusal.to_string(),
                ErrorDetails::with_retry_info(Some(self.pipeline.retry_after)),
            ),
        }
    }
}

/// Requests are taken as bytes; responses are protobuf-encoded.
#[derive(Clone, Copy, Default)]
struct ExportCodec;

impl Codec for ExportCodec {
    type Encode = ExportTraceServiceResponse;
    type Decode = Bytes;
    type Encoder = ExportCodec;
    type Decoder = ExportCodec;
    fn encoder(&mut self) -> ExportCodec {
        ExportCodec
    }
    fn decoder(&mut self) -> ExportCodec {
        ExportCodec
    }
}

impl Encoder for ExportCodec {
    type Item = ExportTraceServiceResponse;
    type Error = Status;
    fn encode(&mut self, item: ExportTraceServiceResponse, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst).map_err(|e| Status::internal(e.to_string()))
    }
}

impl Decoder for ExportCodec {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// tonic refuses an over-limit message before our handler runs: OUT_OF_RANGE when it is uncompressed,
/// RESOURCE_EXHAUSTED when decompression exceeds the limit. OTLP clients expect RESOURCE_EXHAUSTED for
/// both; this rewrites the first and counts both.
pub fn otlp_status<B>(metrics: &Metrics, mut response: http::Response<B>) -> http::Response<B> {
    let status = response.headers().get("grpc-status").and_then(|v| v.to_str().ok()).unwrap_or("0");
    let message = response.headers().get("grpc-message").and_then(|v| v.to_str().ok()).unwrap_or("");
    let message = message.replace("%20", " ");
    let rewrite = match status {
        "11" if message.contains("message length too large") => Some("8"),
        "8" if message.contains("size limit") => None,
        _ => return response,
    };
    Metrics::add(&metrics.requests_too_large, Transport::Grpc, 1);
    if let Some(code) = rewrite {
        response.headers_mut().insert("grpc-status", http::HeaderValue::from_static(code));
    }
    response
}
