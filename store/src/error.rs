use std::path::PathBuf;

/// Errors the store can return. I/O errors carry the path they happened on, so a log line is actionable.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parquet {path}: {source}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: polars::error::PolarsError,
    },
    #[error("write-ahead log record {seq} in {path} is not a valid OTLP request: {reason}")]
    CorruptRecord { path: PathBuf, seq: u64, reason: String },
    #[error("checkpoint {path} is unreadable: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
    #[error("the store is shutting down")]
    Closed,
    #[error("object store: {op} {key}: {source}")]
    ObjectStore {
        op: &'static str,
        key: String,
        #[source]
        source: object_store::Error,
    },
    /// An `s3://` URL or the `AWS_*` settings it is opened with are not usable.
    #[error("object store {url}: {reason}")]
    Bucket { url: String, reason: String },
    #[error("PostgreSQL store: {0}")]
    Postgres(String),
}

impl StoreError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { op, path, source }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
