//! The OTLP wire formats the collector speaks: protobuf (via prost) and JSON, and the HTTP body rules.

pub mod body;
pub mod json;
pub mod raw;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;

/// The OTLP/JSON encoding of a response: `{}` on full success, otherwise the partial success.
pub fn response_json(response: &ExportTraceServiceResponse) -> String {
    match &response.partial_success {
        Some(p) if p.rejected_spans > 0 || !p.error_message.is_empty() => serde_json::json!({
            "partialSuccess": {
                "rejectedSpans": p.rejected_spans.to_string(),
                "errorMessage": p.error_message,
            }
        })
        .to_string(),
        _ => "{}".to_owned(),
    }
}
