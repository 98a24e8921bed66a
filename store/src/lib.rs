//! hoptrace's span store: one columnar schema for every span, the backends that keep it, and the readers.
//!
//! The collector checks each OTLP request with `hoptrace_otlp::wire::scan` and hands the accepted spans,
//! still in the request's bytes, to a [`Backend`]: the embedded [`SpanStore`] makes them durable in a
//! write-ahead log before acknowledging, then writes them as zstd-compressed Parquet segments partitioned
//! by hour; [`PgStore`] commits them to PostgreSQL. The analyzer and the Jaeger query API read through
//! [`read`]: a polars `LazyFrame` pruned to the partitions and row groups of the requested time range.
//! The schema is described for users in `docs/storage.md`.
//!
//! ```text
//! backend/  embedded (WAL thread, flusher, compaction, dedup) and postgres, behind `Backend`
//! wal       the write-ahead log
//! segment/  hour partitions, segment files, their Parquet encoding, checkpoints
//! columns/  spans → the columns of the schema
//! bucket/   segments in S3-compatible object storage: uploads, and readers' local mirror
//! read/     locations, scans, records, lookups
//! ```

pub mod backend;
pub mod bucket;
mod columns;
pub mod error;
pub mod read;
pub mod schema;
pub mod segment;
pub mod wal;

pub use backend::embedded::{Appended, Batch, Recovery, SpanStore, StoreConfig, StoreStats, SubmitError};
pub use backend::postgres::PgStore;
pub use backend::{AppendError, Backend};
pub use bucket::upload::UploadConfig;
pub use bucket::Bucket;
pub use columns::to_frame;
pub use error::{Result, StoreError};
pub use read::{collect_columns, records, scan, scan_segments, Location, SpanRecord, TimeRange};
pub use read::{AttributeValue, Attributes, EventRecord, LinkRecord};
