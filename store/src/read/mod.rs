//! The read side: where spans are kept as a reader names it ([`Location`]), the lazy scan of a time range
//! pruned to its partitions and row groups, spans as records, and the lookups a trace viewer makes (over a
//! [`Catalog`] of what each segment holds).

mod catalog;
mod location;
pub mod query;
mod records;
mod scan;

pub use catalog::Catalog;
pub use location::{redact, Location};
pub use records::{records, AttributeValue, Attributes, EventRecord, LinkRecord, SpanRecord};
pub(crate) use scan::scan_path;
pub use scan::{collect_columns, scan, scan_segments, segment_paths, TimeRange};
