//! OTLP's JSON encoding: requests as OTLP/HTTP receives them, responses, and the JSON form of values,
//! events and links that the store keeps nested values and PostgreSQL rows in.

mod request;
pub mod value;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;

pub use request::decode;

/// The OTLP/JSON encoding of a response: `{}` on full success, otherwise the partial success.
pub fn encode_response(response: &ExportTraceServiceResponse) -> String {
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
