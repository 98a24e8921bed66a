//! OTLP/gRPC: `opentelemetry.proto.collector.trace.v1.TraceService/Export`.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::metrics::{Metrics, Transport};
use crate::pipeline::{Pipeline, Refusal};

pub struct GrpcReceiver {
    pipeline: Arc<Pipeline>,
}

/// The tonic service, with gzip both ways and the message size limit (applied after decompression).
pub fn service(pipeline: Arc<Pipeline>, max_message_bytes: usize) -> TraceServiceServer<GrpcReceiver> {
    TraceServiceServer::new(GrpcReceiver { pipeline })
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(max_message_bytes)
}

#[tonic::async_trait]
impl TraceService for GrpcReceiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let request = request.into_inner();
        // tonic hands us the decoded message; the WAL keeps its protobuf encoding.
        let protobuf = request.encode_to_vec();
        let _admission = self.pipeline.admit(protobuf.len(), Transport::Grpc).map_err(|r| self.status(r))?;
        self.pipeline.export(request, protobuf, Transport::Grpc).await.map(Response::new).map_err(|r| self.status(r))
    }
}

impl GrpcReceiver {
    fn status(&self, refusal: Refusal) -> Status {
        let m = &self.pipeline.metrics;
        match refusal {
            Refusal::Invalid(msg) => {
                Metrics::add(&m.requests_invalid, Transport::Grpc, 1);
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

/// Rewrites the two statuses tonic produces before our handler runs into the ones OTLP prescribes, and
/// counts them: an over-limit uncompressed message (tonic: OUT_OF_RANGE; a compressed one already gets
/// RESOURCE_EXHAUSTED) and an undecodable one (tonic: INTERNAL, which clients would retry; OTLP:
/// INVALID_ARGUMENT, which they must not).
pub fn otlp_status<B>(metrics: &Metrics, mut response: http::Response<B>) -> http::Response<B> {
    let status = response.headers().get("grpc-status").and_then(|v| v.to_str().ok()).unwrap_or("0");
    let message = response.headers().get("grpc-message").and_then(|v| v.to_str().ok()).unwrap_or("");
    let message = message.replace("%20", " ");
    let rewrite = match status {
        "11" if message.contains("message length too large") => Some("8"),
        "8" if message.contains("size limit") => None,
        "13" if message.contains("failed to decode Protobuf message") => Some("3"),
        _ => return response,
    };
    match rewrite.unwrap_or(status) {
        "8" => Metrics::add(&metrics.requests_too_large, Transport::Grpc, 1),
        _ => Metrics::add(&metrics.requests_invalid, Transport::Grpc, 1),
    }
    if let Some(code) = rewrite {
        response.headers_mut().insert("grpc-status", http::HeaderValue::from_static(code));
    }
    response
}
