//! OpenTelemetry for a workflow service: set-up from the standard `OTEL_*` variables ([`Telemetry`]), W3C
//! trace context carried across a PGMQ message's `headers` and a `pg_notify` payload ([`propagation`]), and
//! the spans of each hop with semantic-convention names and attributes ([`hop`], [`http`]).
//!
//! The span shapes are what hoptrace's analyzer measures: a `process` span is a child of the producer's
//! context and links to it, so the queue wait between them is a gap the analyzer can see; the notify publish
//! and reception are spans of their own, so event propagation is measurable too.

mod error;
pub mod hop;
pub mod http;
pub mod propagation;
mod setup;

pub use error::SetupError;
pub use hop::{Hop, HopSpan};
pub use setup::Telemetry;
