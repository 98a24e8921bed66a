//! Where the collector's accepted spans go, behind one interface: the embedded store (a write-ahead log,
//! then hourly Parquet segments) or a PostgreSQL database.

pub mod embedded;
pub mod postgres;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::error::Result;
use embedded::{Appended, Batch, StoreStats};

/// Why a backend did not store a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// Too much is waiting to be written: the client should retry later.
    #[error("the store's write queue is full")]
    Busy,
    #[error("the store is shutting down")]
    Closed,
    /// The spans could not be made durable.
    #[error("{0}")]
    Failed(String),
}

pub type Appending<'a> = Pin<Box<dyn Future<Output = std::result::Result<Appended, AppendError>> + Send + 'a>>;

/// A store the collector writes checked batches into. A batch is acknowledged to its client only once
/// [`Backend::append`] has resolved, so every implementation resolves only when the spans are durable.
pub trait Backend: Send + Sync {
    /// Stores a batch; resolves once its spans are durable (or refused: nothing of it is stored).
    fn append(&self, batch: Batch) -> Appending<'_>;

    /// Makes everything taken so far durable in its final form and stops taking batches (blocking).
    fn shutdown(&self) -> Result<()>;

    /// The embedded store's counters, for `/metrics`; a database keeps its own.
    fn stats(&self) -> Option<&Arc<StoreStats>> {
        None
    }
}
