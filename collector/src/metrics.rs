//! Counters for `GET /metrics`, in the Prometheus text exposition format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use hoptrace_store::StoreStats;

use crate::forward::ForwardStats;

#[derive(Debug, Clone, Copy)]
pub enum Transport {
    Grpc = 0,
    Http = 1,
}

const TRANSPORTS: [&str; 2] = ["grpc", "http"];

/// Per-transport counters of what the receivers saw.
#[derive(Debug, Default)]
pub struct Metrics {
    pub spans_received: [AtomicU64; 2],
    pub spans_accepted: [AtomicU64; 2],
    pub spans_rejected: [AtomicU64; 2],
    pub spans_refused: [AtomicU64; 2],
    pub requests_invalid: [AtomicU64; 2],
    pub requests_too_large: [AtomicU64; 2],
    pub requests_refused: [AtomicU64; 2],
    pub requests_unauthenticated: [AtomicU64; 2],
    pub inflight_bytes: AtomicU64,
}

impl Metrics {
    pub fn add(counter: &[AtomicU64; 2], transport: Transport, n: u64) {
        counter[transport as usize].fetch_add(n, Relaxed);
    }

    pub fn render(&self, store: Option<&StoreStats>, forward: Option<&ForwardStats>) -> String {
        let mut out = String::new();
        let per_transport = [
            ("spans_received_total", "Spans in requests that decoded.", &self.spans_received),
            ("spans_accepted_total", "Spans acknowledged as durable (duplicates included).", &self.spans_accepted),
            ("spans_rejected_total", "Spans rejected as invalid (partial success).", &self.spans_rejected),
            ("spans_refused_total", "Spans refused for backpressure; the client retries them.", &self.spans_refused),
            ("requests_invalid_total", "Requests answered 400 / INVALID_ARGUMENT.", &self.requests_invalid),
            ("requests_too_large_total", "Requests over the size limit.", &self.requests_too_large),
            ("requests_refused_total", "Requests refused for backpressure or while starting.", &self.requests_refused),
            (
                "requests_unauthenticated_total",
                "Requests without an accepted bearer token (401 / UNAUTHENTICATED).",
                &self.requests_unauthenticated,
            ),
        ];
        for (name, help, counter) in per_transport {
            let _ = writeln!(out, "# HELP hoptrace_collector_{name} {help}\n# TYPE hoptrace_collector_{name} counter");
            for (i, t) in TRANSPORTS.iter().enumerate() {
                let _ = writeln!(out, "hoptrace_collector_{name}{{transport=\"{t}\"}} {}", counter[i].load(Relaxed));
            }
        }
        let mut single = |name: &str, kind: &str, help: &str, value: u64| {
            let _ =
                writeln!(out, "# HELP hoptrace_{name} {help}\n# TYPE hoptrace_{name} {kind}\nhoptrace_{name} {value}");
        };
        single(
            "collector_inflight_bytes",
            "gauge",
            "Request bytes admitted and not yet acknowledged.",
            self.inflight_bytes.load(Relaxed),
        );
        if let Some(s) = store {
            let v = |a: &AtomicU64| a.load(Relaxed);
            single(
                "store_spans_duplicate_total",
                "counter",
                "Spans dropped as duplicates of a recent (trace id, span id).",
                v(&s.spans_duplicate),
            );
            single("store_spans_stored_total", "counter", "Spans written to Parquet segments.", v(&s.spans_stored));
            single("store_wal_bytes_total", "counter", "Bytes appended to the write-ahead log.", v(&s.wal_bytes));
            single(
                "store_wal_syncs_total",
                "counter",
                "fsyncs of the write-ahead log (one per commit group).",
                v(&s.wal_syncs),
            );
            single(
                "store_segments_written_total",
                "counter",
                "Parquet segments written by flushes.",
                v(&s.segments_written),
            );
            single(
                "store_segment_bytes_written_total",
                "counter",
                "Bytes of Parquet written by flushes and compactions.",
                v(&s.segment_bytes_written),
            );
            single("store_compactions_total", "counter", "Compactions of small segments.", v(&s.compactions));
            single(
                "store_flush_errors_total",
                "counter",
                "Flushes that failed (their spans stay in the WAL).",
                v(&s.flush_errors),
            );
            single("store_queue_depth", "gauge", "Batches waiting for the write-ahead log.", v(&s.queue_depth));
            single("store_memtable_spans", "gauge", "Acknowledged spans not yet in a segment.", v(&s.memtable_spans));
            single(
                "store_segments_uploaded_total",
                "counter",
                "Segments uploaded to the object store.",
                v(&s.segments_uploaded),
            );
            single("store_upload_bytes_total", "counter", "Bytes uploaded to the object store.", v(&s.upload_bytes));
            single(
                "store_upload_errors_total",
                "counter",
                "Uploads that failed and were retried.",
                v(&s.upload_errors),
            );
            single(
                "store_upload_backlog_segments",
                "gauge",
                "Durable segments waiting for upload.",
                v(&s.upload_backlog),
            );
            single(
                "store_segments_removed_locally_total",
                "counter",
                "Local copies removed after their upload was confirmed.",
                v(&s.segments_removed_locally),
            );
        }
        if let Some(f) = forward {
            let v = |a: &AtomicU64| a.load(Relaxed);
            single(
                "forward_spans_forwarded_total",
                "counter",
                "Accepted spans the forward endpoint acknowledged.",
                v(&f.spans_forwarded),
            );
            single(
                "forward_spans_dropped_total",
                "counter",
                "Accepted spans not forwarded because the queue was full.",
                v(&f.spans_dropped),
            );
            single(
                "forward_spans_failed_total",
                "counter",
                "Spans the forward endpoint refused for good, or left queued at shutdown.",
                v(&f.spans_failed),
            );
            single(
                "forward_retries_total",
                "counter",
                "Sends retried after a retryable answer or a transport error.",
                v(&f.retries),
            );
            single("forward_queue_bytes", "gauge", "Request bytes waiting to be forwarded.", v(&f.queue_bytes));
        }
        out
    }
}
