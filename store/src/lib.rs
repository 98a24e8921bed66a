//! hoptrace's span store: one columnar schema for every span, and the embedded store that keeps it.
//!
//! The collector checks each OTLP request with [`wire::scan`] and hands the accepted spans, still in the
//! request's bytes, to [`SpanStore`], which makes them durable in a write-ahead log before acknowledging, then writes them as
//! zstd-compressed Parquet segments partitioned by hour. The analyzer reads with [`reader::scan`], which
//! returns a polars `LazyFrame` pruned to the partitions and row groups of the requested time range.
//! The schema is described for users in `docs/storage.md`.

mod columns;
pub mod error;
pub mod fxhash;
pub mod location;
pub mod model;
pub mod postgres;
pub mod reader;
pub mod records;
pub mod schema;
pub mod scratch;
pub mod segment;
mod testdata;
pub mod wal;
pub mod wire;
pub mod writer;

pub use columns::to_frame;
pub use error::{Result, StoreError};
pub use location::Location;
pub use model::{convert, Conversion, Rejection, SpanRow};
pub use reader::{collect_columns, scan, scan_segments, TimeRange};
pub use records::{records, AttributeValue, Attributes, EventRecord, LinkRecord, SpanRecord};
pub use wire::{WireError, WireSpan};
pub use writer::{Appended, Batch, Recovery, SpanStore, StoreConfig, StoreStats, SubmitError};
