//! What both receivers share: admission under a memory budget, validation, and the hand-off to the store.
//! A request is answered OK only once its spans are in the write-ahead log.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hoptrace_otlp::Rejection;
use hoptrace_store::{AppendError, Backend};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTracePartialSuccess, ExportTraceServiceResponse};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::forward::Forwarder;
use crate::metrics::{Metrics, Transport};
use crate::receiver::body::Decoded;

/// Why a request was not accepted; each maps to the status the OTLP specification prescribes.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// 400 / INVALID_ARGUMENT: not retryable.
    #[error("{0}")]
    Invalid(String),
    /// 503 / UNAVAILABLE with a retry delay: the pipeline is full.
    #[error("the collector is at capacity; retry later")]
    Busy,
    /// 503 / UNAVAILABLE with a retry delay: starting, stopping, or the disk failed.
    #[error("{0}")]
    Unavailable(String),
}

/// Memory admitted to the pipeline; released when the request is answered.
pub struct Admission {
    _permit: OwnedSemaphorePermit,
    bytes: u64,
    metrics: Arc<Metrics>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.metrics.inflight_bytes.fetch_sub(self.bytes, Relaxed);
    }
}

pub struct Pipeline {
    backend: OnceLock<Arc<dyn Backend>>,
    budget: Arc<Semaphore>,
    budget_kib: usize,
    pub metrics: Arc<Metrics>,
    pub retry_after: Duration,
    forwarder: OnceLock<Forwarder>,
}

/// What a request may hold while it is checked and stored, as a multiple of its protobuf size: the bytes
/// themselves, the index of its spans and, for OTLP/JSON, the decoded objects it was encoded from.
const DECODED_OVERHEAD: usize = 3;

impl Pipeline {
    pub fn new(max_inflight_bytes: usize, retry_after: Duration) -> Self {
        let budget_kib = (max_inflight_bytes / 1024).max(1);
        Pipeline {
            backend: OnceLock::new(),
            budget: Arc::new(Semaphore::new(budget_kib)),
            budget_kib,
            metrics: Arc::new(Metrics::default()),
            retry_after,
            forwarder: OnceLock::new(),
        }
    }

    /// Called once the store has replayed its log (or the database is connected): from then on `/health`
    /// is ready and requests are taken.
    pub fn set_ready(&self, backend: Arc<dyn Backend>) {
        let _ = self.backend.set(backend);
    }

    pub fn is_ready(&self) -> bool {
        self.backend.get().is_some()
    }

    /// The store, once it is open.
    pub fn backend(&self) -> Option<&Arc<dyn Backend>> {
        self.backend.get()
    }

    /// From now on every accepted request is also forwarded.
    pub fn set_forwarder(&self, forwarder: Forwarder) {
        let _ = self.forwarder.set(forwarder);
    }

    pub fn forwarder(&self) -> Option<&Forwarder> {
        self.forwarder.get()
    }

    /// Reserves memory for a request of `wire_bytes`, or refuses at once: never an unbounded queue.
    pub fn admit(&self, wire_bytes: usize, transport: Transport) -> Result<Admission, Refusal> {
        let kib = self.kib(wire_bytes);
        let permit = self.reserve(kib, transport)?;
        let bytes = (kib * 1024) as u64;
        self.metrics.inflight_bytes.fetch_add(bytes, Relaxed);
        Ok(Admission { _permit: permit, bytes, metrics: Arc::clone(&self.metrics) })
    }

    /// Grows `admission` to cover a request of `wire_bytes` (a body that decompressed to more than it
    /// arrived as), reserving only the difference: a request never holds one reservation while it waits
    /// for a second, which let concurrent requests each hold part of the budget and all be refused.
    pub fn grow(&self, admission: &mut Admission, wire_bytes: usize, transport: Transport) -> Result<(), Refusal> {
        let extra = self.kib(wire_bytes).saturating_sub((admission.bytes / 1024) as usize);
        if extra == 0 {
            return Ok(());
        }
        admission._permit.merge(self.reserve(extra, transport)?);
        let bytes = (extra * 1024) as u64;
        admission.bytes += bytes;
        self.metrics.inflight_bytes.fetch_add(bytes, Relaxed);
        Ok(())
    }

    fn reserve(&self, kib: usize, transport: Transport) -> Result<OwnedSemaphorePermit, Refusal> {
        Arc::clone(&self.budget).try_acquire_many_owned(kib as u32).map_err(|_| {
            Metrics::add(&self.metrics.requests_refused, transport, 1);
            Refusal::Busy
        })
    }

    fn kib(&self, wire_bytes: usize) -> usize {
        (wire_bytes.saturating_mul(DECODED_OVERHEAD) / 1024).clamp(1, self.budget_kib)
    }

    /// Validates and stores one request. Invalid spans are rejected through `partial_success`; the valid
    /// ones of the same request are stored.
    pub async fn export(&self, request: Decoded, transport: Transport) -> Result<ExportTraceServiceResponse, Refusal> {
        let m = &self.metrics;
        let Some(backend) = self.backend.get() else {
            Metrics::add(&m.requests_refused, transport, 1);
            return Err(Refusal::Unavailable("the collector is starting (replaying its write-ahead log)".into()));
        };
        let Decoded { batch, rejected } = request;
        let partial_success = Rejection::message(&rejected)
            .map(|error_message| ExportTracePartialSuccess { rejected_spans: rejected.len() as i64, error_message });
        let accepted = batch.spans.len() as u64;
        let rejected = rejected.len() as u64;
        Metrics::add(&m.spans_received, transport, accepted + rejected);
        if accepted > 0 {
            // The forward endpoint validates as this collector does, so it keeps the same spans.
            let forward = self.forwarder.get().map(|f| (f, batch.request.clone()));
            if let Err(e) = backend.append(batch).await {
                Metrics::add(&m.spans_refused, transport, accepted + rejected);
                return Err(match e {
                    AppendError::Busy => {
                        Metrics::add(&m.requests_refused, transport, 1);
                        Refusal::Busy
                    }
                    AppendError::Closed => {
                        Metrics::add(&m.requests_refused, transport, 1);
                        Refusal::Unavailable("the collector is shutting down".into())
                    }
                    AppendError::Failed(reason) => Refusal::Unavailable(reason),
                });
            }
            if let Some((forwarder, body)) = forward {
                forwarder.offer(body, accepted);
            }
        }
        Metrics::add(&m.spans_accepted, transport, accepted);
        Metrics::add(&m.spans_rejected, transport, rejected);
        Ok(ExportTraceServiceResponse { partial_success })
    }
}
