//! OTLP trace requests as hoptrace reads them, shared by the collector, the store and the analyzer.
//!
//! - [`wire`]: a request checked straight from its protobuf bytes, its spans kept as slices of it and read
//!   again, field by field, by whoever stores them ([`wire::Visitor`]).
//! - [`model`]: the decoded span ([`SpanRow`]), the id rules every path applies, and [`convert`] from
//!   prost's types, the reference the wire reader is tested against.
//! - [`json`]: the OTLP/JSON encoding of requests and responses.
//! - [`SpanKind`] and [`StatusCode`]: the numbers OTLP sends and the names people read.

pub mod json;
mod kind;
pub mod model;
pub mod wire;

pub use kind::{SpanKind, StatusCode};
pub use model::{convert, service_name, Conversion, Dropped, Origin, Rejection, SpanId, SpanKey, SpanRow, TraceId};
pub use wire::{WireError, WireSpan};

/// The gRPC path of OTLP trace export.
pub const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// The resource attribute that names a span's service.
pub const SERVICE_NAME: &str = "service.name";
/// The service name OTLP prescribes when a resource has none.
pub const UNKNOWN_SERVICE: &str = "unknown_service";
