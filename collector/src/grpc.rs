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

/// tonic answers an over-limit uncompressed message with OUT_OF_RANGE (and a compressed one with
/// RESOURCE_EXHAUSTED); OTLP clients expect RESOURCE_EXHAUSTED for both.
pub fn oversize_as_resource_exhausted<B>(mut response: http::Response<B>) -> http::Response<B> {
    let out_of_range = response.headers().get("grpc-status").is_some_and(|v| v == "11");
    let too_large = response
        .headers()
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|m| m.contains("message%20length%20too%20large") || m.contains("message length too large"));
    if out_of_range && too_large {
        response.headers_mut().insert("grpc-status", http::HeaderValue::from_static("8"));
    }
    response
}
