//! The write path: group commit into the WAL, an in-memory table of acknowledged spans, and a flusher that
//! turns it into hourly segments, checkpoints, trims the WAL and compacts.
//!
//! ```text
//! submit ─► bounded queue ─► WAL thread: dedup, append, one fsync per group, ack ─► memtable
//!                                       └─ every flush_interval / flush_max_spans ─► flusher thread:
//!                                          segments (tmp, fsync, rename) → CHECKPOINT → trim WAL → compact
//! ```
//! Memory is bounded at every step: the queue holds `queue_capacity` batches, the memtable is handed off at
//! `flush_max_spans`, and the hand-off channel holds one memtable, so a slow disk backs up into `submit`
//! returning [`SubmitError::Full`] rather than into memory.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::error::{Result, StoreError};
use crate::model::SpanKey;
use crate::segment::{self, Checkpoint, Hour, Segment};
use crate::wire::{self, WireSpan};
use crate::{schema, wal};

/// How the store writes. Every field has a default that suits a single collector.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
    /// Acknowledged spans are written to a segment at least this often.
    pub flush_interval: Duration,
    /// …or as soon as this many are waiting…
    pub flush_max_spans: usize,
    /// …or as soon as they came in this many request bytes (what bounds the memtable's memory).
    pub flush_max_bytes: usize,
    /// Batches waiting for the WAL; beyond it `submit` answers `Full`.
    pub queue_capacity: usize,
    /// How many recent (trace id, span id) keys are remembered to drop retried duplicates at ingest.
    pub dedup_window: usize,
    pub row_group_rows: usize,
    /// A partition with this many consecutive flush segments gets them merged into one.
    pub compaction_min_segments: usize,
    /// How long a compacted-away segment stays on disk for readers that listed it just before.
    pub obsolete_grace: Duration,
}

impl StoreConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            data_dir: data_dir.into(),
            flush_interval: Duration::from_secs(2),
            flush_max_spans: 100_000,
            flush_max_bytes: 16 << 20,
            queue_capacity: 64,
            dedup_window: 1_000_000,
            row_group_rows: 128 * 1024,
            compaction_min_segments: 8,
            obsolete_grace: Duration::from_secs(60),
        }
    }
}

/// Counters for `/metrics`, updated by the store's threads.
#[derive(Debug, Default)]
pub struct StoreStats {
    pub wal_bytes: AtomicU64,
    pub wal_syncs: AtomicU64,
    pub spans_acknowledged: AtomicU64,
    pub spans_duplicate: AtomicU64,
    pub spans_stored: AtomicU64,
    pub segments_written: AtomicU64,
    pub segment_bytes_written: AtomicU64,
    pub compactions: AtomicU64,
    pub queue_depth: AtomicU64,
    pub memtable_spans: AtomicU64,
    pub flush_errors: AtomicU64,
}

/// Accepted spans with the request bytes they came in, which the WAL records as they are.
pub struct Batch {
    /// What [`wire::scan`] accepted of `request`.
    pub spans: Vec<WireSpan>,
    /// The OTLP protobuf `ExportTraceServiceRequest`, which `spans` point into.
    pub request: Bytes,
}

impl Batch {
    /// Scans `request` and keeps what it accepts; the rejections are returned beside the batch.
    pub fn scan(request: Bytes) -> std::result::Result<(Batch, Vec<crate::Rejection>), wire::WireError> {
        let conversion = wire::scan(&request)?;
        Ok((Batch { spans: conversion.rows, request }, conversion.rejected))
    }
}

/// What happened to a batch once it is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub stored: usize,
    pub duplicates: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the store's write queue is full")]
    Full,
    #[error("the store is shutting down")]
    Closed,
}

/// What start-up found.
#[derive(Debug, Clone, Copy, Default)]
pub struct Recovery {
    pub replayed_records: usize,
    pub replayed_spans: usize,
}

type Ack = oneshot::Sender<Result<Appended>>;

enum Command {
    Append(Batch, Ack),
    Flush(SyncSender<Result<()>>),
    Shutdown(SyncSender<Result<()>>),
}

struct FlushJob {
    flush: u64,
    wal_seq: u64,
    rows: Vec<WireSpan>,
    waiters: Vec<SyncSender<Result<()>>>,
}

/// The embedded span store's write side. Cheap to share behind an `Arc`.
pub struct SpanStore {
    tx: SyncSender<Command>,
    stats: Arc<StoreStats>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl SpanStore {
    /// Opens (or creates) the store in `config.data_dir`, cleans up after a crash and replays the WAL.
    /// When it returns, every span acknowledged before the last stop is readable or waiting in memory.
    pub fn open(config: StoreConfig) -> Result<(SpanStore, Recovery)> {
        let dir = config.data_dir.clone();
        std::fs::create_dir_all(&dir).map_err(StoreError::io("create", &dir))?;
        let checkpoint = Checkpoint::load(&dir)?;
        segment::recover(&dir, checkpoint)?;
        let wal_dir = dir.join("wal");
        let (wal, records) = wal::Wal::open(&wal_dir, checkpoint.wal_seq)?;

        let stats = Arc::new(StoreStats::default());
        let mut recent = RecentKeys::new(config.dedup_window);
        // Retries can straddle a restart: remember the newest stored spans, not only the replayed ones.
        recent.preload(newest_stored_keys(&dir, config.dedup_window)?);
        let mut memtable = Vec::new();
        let mut recovery = Recovery::default();
        for record in records {
            let request = Bytes::from(record.request);
            let scanned = wire::scan(&request).map_err(|e| StoreError::CorruptRecord {
                path: wal_dir.clone(),
                seq: record.seq,
                reason: e.to_string(),
            })?;
            let rows = without(scanned.rows, &record.skip);
            recovery.replayed_records += 1;
            recovery.replayed_spans += rows.len();
            for row in &rows {
                recent.insert(row.key());
            }
            memtable.extend(rows);
        }
        stats.memtable_spans.store(memtable.len() as u64, Relaxed);

        let (tx, rx) = mpsc::sync_channel(config.queue_capacity);
        let (flush_tx, flush_rx) = mpsc::sync_channel(1);
        let flusher = Flusher { config: config.clone(), stats: Arc::clone(&stats), obsolete: Vec::new() };
        let committer = Committer {
            config,
            stats: Arc::clone(&stats),
            wal,
            wal_dir,
            recent,
            memtable,
            memtable_bytes: 0,
            next_flush: checkpoint.flush + 1,
            flush_tx,
        };
        let threads = vec![
            std::thread::Builder::new()
                .name("store-wal".into())
                .spawn(move || committer.run(rx))
                .map_err(StoreError::io("spawn", &dir))?,
            std::thread::Builder::new()
                .name("store-flush".into())
                .spawn(move || flusher.run(flush_rx))
                .map_err(StoreError::io("spawn", &dir))?,
        ];
        Ok((SpanStore { tx, stats, threads: Mutex::new(threads) }, recovery))
    }

    /// Queues a batch for the WAL without waiting. The receiver resolves once the batch is durable.
    pub fn submit(&self, batch: Batch) -> std::result::Result<oneshot::Receiver<Result<Appended>>, SubmitError> {
        let (ack, done) = oneshot::channel();
        match self.tx.try_send(Command::Append(batch, ack)) {
            Ok(()) => {
                self.stats.queue_depth.fetch_add(1, Relaxed);
                Ok(done)
            }
            Err(TrySendError::Full(_)) => Err(SubmitError::Full),
            Err(TrySendError::Disconnected(_)) => Err(SubmitError::Closed),
        }
    }

    /// Queues a batch and waits until it is durable.
    pub async fn append(&self, batch: Batch) -> Result<Appended> {
        let done = self.submit(batch).map_err(|_| StoreError::Closed)?;
        done.await.map_err(|_| StoreError::Closed)?
    }

    /// Writes everything acknowledged so far into segments (blocking).
    pub fn flush(&self) -> Result<()> {
        let (reply, done) = mpsc::sync_channel(1);
        self.tx.send(Command::Flush(reply)).map_err(|_| StoreError::Closed)?;
        done.recv().map_err(|_| StoreError::Closed)?
    }

    /// Flushes and stops the store's threads (blocking). Later submits answer `Closed`.
    pub fn shutdown(&self) -> Result<()> {
        let (reply, done) = mpsc::sync_channel(1);
        let result = match self.tx.send(Command::Shutdown(reply)) {
            Ok(()) => done.recv().unwrap_or(Err(StoreError::Closed)),
            Err(_) => Ok(()),
        };
        for thread in self.threads.lock().unwrap().drain(..) {
            let _ = thread.join();
        }
        result
    }

    pub fn stats(&self) -> &Arc<StoreStats> {
        &self.stats
    }
}

/// Rows minus the positions listed in `skip` (sorted ascending).
fn without<R>(rows: Vec<R>, skip: &[u32]) -> Vec<R> {
    if skip.is_empty() {
        return rows;
    }
    let mut skip = skip.iter().peekable();
    rows.into_iter()
        .enumerate()
        .filter(|(i, _)| {
            if skip.peek().is_some_and(|&&s| s as usize == *i) {
                skip.next();
                false
            } else {
                true
            }
        })
        .map(|(_, r)| r)
        .collect()
}

/// A fast hash for (trace id, span id) that stays well spread even when ids are sequential rather than
/// random (some SDKs and test tools make them so): multiply-rotate per word, murmur3's finaliser at the end.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0 ^ u64::from_le_bytes(word)).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
        }
    }
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

type KeySet = HashSet<SpanKey, BuildHasherDefault<IdHasher>>;

/// The last `window`..`2 × window` keys seen, in two generations so forgetting is O(1).
struct RecentKeys {
    current: KeySet,
    previous: KeySet,
    window: usize,
}

impl RecentKeys {
    fn new(window: usize) -> Self {
        RecentKeys { current: KeySet::default(), previous: KeySet::default(), window: window.max(1) }
    }

    /// True if the key was not seen recently (and remembers it).
    fn insert(&mut self, key: SpanKey) -> bool {
        if self.previous.contains(&key) || !self.current.insert(key) {
            return false;
        }
        if self.current.len() >= self.window {
            // The older generation's table is emptied and reused: a fresh one grew (and faulted in its
            // pages) all over again in every window.
            std::mem::swap(&mut self.previous, &mut self.current);
            self.current.clear();
        }
        true
    }

    /// Seeds the older generation with keys already stored.
    fn preload(&mut self, keys: Vec<SpanKey>) {
        self.previous.extend(keys);
    }

    fn forget(&mut self, key: &SpanKey) {
        self.current.remove(key);
        self.previous.remove(key);
    }
}

/// Owns the WAL and the memtable.
struct Committer {
    config: StoreConfig,
    stats: Arc<StoreStats>,
    wal: wal::Wal,
    wal_dir: PathBuf,
    recent: RecentKeys,
    memtable: Vec<WireSpan>,
    memtable_bytes: usize,
    next_flush: u64,
    flush_tx: SyncSender<FlushJob>,
}

/// At most this many batches share one fsync, so the first waiter's latency stays bounded.
const MAX_GROUP: usize = 256;

impl Committer {
    fn run(mut self, rx: Receiver<Command>) {
        let mut last_flush = Instant::now();
        loop {
            let wait = self.config.flush_interval.saturating_sub(last_flush.elapsed());
            let mut waiters = Vec::new();
            let mut stop = None;
            match rx.recv_timeout(wait) {
                Ok(first) => {
                    let mut group = Vec::new();
                    let mut next = Some(first);
                    while let Some(cmd) = next.take() {
                        match cmd {
                            Command::Append(batch, ack) => group.push((batch, ack)),
                            Command::Flush(reply) => waiters.push(reply),
                            Command::Shutdown(reply) => {
                                stop = Some(reply);
                                break;
                            }
                        }
                        if group.len() < MAX_GROUP {
                            next = rx.try_recv().ok();
                        }
                    }
                    self.stats.queue_depth.fetch_sub(group.len() as u64, Relaxed);
                    self.commit(group);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let due = last_flush.elapsed() >= self.config.flush_interval && !self.memtable.is_empty();
            let full = self.memtable.len() >= self.config.flush_max_spans
                || self.memtable_bytes >= self.config.flush_max_bytes;
            if due || full || !waiters.is_empty() || stop.is_some() {
                self.hand_off(waiters);
                last_flush = Instant::now();
            }
            if let Some(reply) = stop {
                // Dropping the hand-off sender lets the flusher finish its queue and exit; its reply
                // to the final job tells the caller everything is on disk.
                let (done_tx, done_rx) = mpsc::sync_channel(1);
                let _ = self.flush_tx.send(FlushJob { flush: 0, wal_seq: 0, rows: Vec::new(), waiters: vec![done_tx] });
                let _ = reply.send(done_rx.recv().unwrap_or(Err(StoreError::Closed)));
                return;
            }
        }
    }

    fn commit(&mut self, group: Vec<(Batch, Ack)>) {
        if group.is_empty() {
            return;
        }
        let mut staged = Vec::with_capacity(group.len());
        let mut failure = None;
        for (batch, ack) in group {
            let mut skip = Vec::new();
            for (i, row) in batch.spans.iter().enumerate() {
                if !self.recent.insert(row.key()) {
                    skip.push(i as u32);
                }
            }
            if failure.is_none() {
                match self.wal.append(&skip, &batch.request) {
                    Ok((_, bytes)) => {
                        self.stats.wal_bytes.fetch_add(bytes as u64, Relaxed);
                    }
                    Err(e) => failure = Some(e.to_string()),
                }
            }
            self.memtable_bytes += batch.request.len();
            staged.push((batch.spans, skip, ack));
        }
        if failure.is_none() {
            if let Err(e) = self.wal.sync() {
                failure = Some(e.to_string());
            }
            self.stats.wal_syncs.fetch_add(1, Relaxed);
        }
        for (rows, skip, ack) in staged {
            if let Some(reason) = &failure {
                // Not durable: forget the keys so the client's retry is not taken for a duplicate.
                for row in &rows {
                    self.recent.forget(&row.key());
                }
                tracing::error!(%reason, "write-ahead log append failed; the batch is refused");
                let _ = ack.send(Err(StoreError::Io {
                    op: "append",
                    path: self.wal_dir.clone(),
                    source: std::io::Error::other(reason.clone()),
                }));
                continue;
            }
            let outcome = Appended { stored: rows.len() - skip.len(), duplicates: skip.len() };
            self.memtable.extend(without(rows, &skip));
            self.stats.spans_acknowledged.fetch_add(outcome.stored as u64, Relaxed);
            self.stats.spans_duplicate.fetch_add(outcome.duplicates as u64, Relaxed);
            let _ = ack.send(Ok(outcome));
        }
        self.stats.memtable_spans.store(self.memtable.len() as u64, Relaxed);
    }

    fn hand_off(&mut self, waiters: Vec<SyncSender<Result<()>>>) {
        let rows = std::mem::take(&mut self.memtable);
        self.memtable_bytes = 0;
        let job = if rows.is_empty() {
            FlushJob { flush: 0, wal_seq: 0, rows, waiters }
        } else {
            if let Err(e) = self.wal.rotate() {
                tracing::error!(error = %e, "could not start a new write-ahead log file");
            }
            let flush = self.next_flush;
            self.next_flush += 1;
            FlushJob { flush, wal_seq: self.wal.last_seq(), rows, waiters }
        };
        self.stats.memtable_spans.store(0, Relaxed);
        // Blocks while the flusher is still busy with the previous memtable: that is the backpressure.
        let _ = self.flush_tx.send(job);
    }
}

/// Writes memtables into segments and keeps partitions compact.
struct Flusher {
    config: StoreConfig,
    stats: Arc<StoreStats>,
    obsolete: Vec<(PathBuf, Instant)>,
}

impl Flusher {
    fn run(mut self, rx: Receiver<FlushJob>) {
        loop {
            match rx.recv_timeout(self.config.obsolete_grace) {
                Ok(job) => {
                    let result = if job.rows.is_empty() { Ok(()) } else { self.flush(job.flush, job.wal_seq, job.rows) };
                    if let Err(e) = &result {
                        self.stats.flush_errors.fetch_add(1, Relaxed);
                        tracing::error!(error = %e, "flush failed; the spans stay in the write-ahead log and are replayed at the next start");
                    }
                    for w in job.waiters {
                        let _ = w.send(result.as_ref().map(|_| ()).map_err(|e| StoreError::Io {
                            op: "flush",
                            path: self.config.data_dir.clone(),
                            source: std::io::Error::other(e.to_string()),
                        }));
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            self.remove_obsolete();
        }
    }

    fn flush(&mut self, flush: u64, wal_seq: u64, rows: Vec<WireSpan>) -> Result<()> {
        let dir = self.config.data_dir.clone();
        // Sort references, not the rows: moving a reference is cheaper.
        let mut order: Vec<&WireSpan> = rows.iter().collect();
        order.sort_unstable_by_key(|r| r.segment_order());
        order.dedup_by_key(|r| r.key());
        let mut touched = Vec::new();
        for chunk in order.chunk_by(|a, b| Hour::of_nanos(a.start_time_unix_nano) == Hour::of_nanos(b.start_time_unix_nano)) {
            let hour = Hour::of_nanos(chunk[0].start_time_unix_nano);
            let mut frame = wire::to_frame(chunk)
                .map_err(|source| StoreError::Parquet { path: dir.clone(), source })?;
            let seg = segment::write(&dir, hour, flush, flush, &mut frame, self.config.row_group_rows)?;
            self.stats.segments_written.fetch_add(1, Relaxed);
            self.stats.segment_bytes_written.fetch_add(seg.bytes, Relaxed);
            touched.push(hour);
        }
        let stored = order.len();
        Checkpoint { flush, wal_seq }.store(&dir)?;
        self.stats.spans_stored.fetch_add(stored as u64, Relaxed);
        wal::remove_through(&dir.join("wal"), wal_seq)?;
        tracing::debug!(flush, spans = stored, partitions = touched.len(), "flushed");
        for hour in touched {
            if let Err(e) = self.compact(hour) {
                tracing::warn!(error = %e, partition = %hour.dir_name(), "compaction failed; segments stay as they are");
            }
        }
        Ok(())
    }

    /// Merges each run of at least `compaction_min_segments` consecutive flush segments (`seg-n-n`) into
    /// one, dropping duplicate spans on the way. Compacted segments are never merged again, so every span
    /// is written at most twice and compaction's memory is bounded by that of a few flushes.
    ///
    /// The hour that is still being written is left alone: compacting it would rewrite the same spans
    /// again and again and take CPU from ingest exactly when it is busiest.
    fn compact(&mut self, hour: Hour) -> Result<()> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
        if hour >= Hour::of_nanos(now) {
            return Ok(());
        }
        let live = segment::live_segments(&self.config.data_dir, hour)?;
        for run in live.split(|s| s.lo != s.hi) {
            if run.len() < self.config.compaction_min_segments {
                continue;
            }
            let merged = merge(&self.config.data_dir, hour, run, self.config.row_group_rows)?;
            self.stats.compactions.fetch_add(1, Relaxed);
            self.stats.segment_bytes_written.fetch_add(merged.bytes, Relaxed);
            tracing::debug!(partition = %hour.dir_name(), inputs = run.len(), bytes = merged.bytes, "compacted");
            let now = Instant::now();
            self.obsolete.extend(run.iter().map(|s| (s.path.clone(), now)));
        }
        Ok(())
    }

    fn remove_obsolete(&mut self) {
        let grace = self.config.obsolete_grace;
        self.obsolete.retain(|(path, since)| {
            if since.elapsed() >= grace {
                if let Err(e) = std::fs::remove_file(path) {
                    tracing::warn!(path = %path.display(), error = %e, "could not remove a compacted segment");
                }
                false
            } else {
                true
            }
        });
    }
}

/// The (trace id, span id) of up to `limit` spans from the newest segments; reads only the two id columns.
fn newest_stored_keys(data_dir: &Path, limit: usize) -> Result<Vec<SpanKey>> {
    let mut keys = Vec::new();
    for hour in segment::partitions(data_dir)?.into_iter().rev() {
        for seg in segment::live_segments(data_dir, hour)?.into_iter().rev() {
            if keys.len() >= limit {
                return Ok(keys);
            }
            let frame = crate::reader::scan_path(&seg.path)
                .and_then(|lf| lf.select([polars::prelude::col(schema::TRACE_ID), polars::prelude::col(schema::SPAN_ID)]).collect())
                .map_err(|source| StoreError::Parquet { path: seg.path.clone(), source })?;
            let parquet = |source| StoreError::Parquet { path: seg.path.clone(), source };
            let traces = frame.column(schema::TRACE_ID).and_then(|c| c.binary().cloned()).map_err(parquet)?;
            let spans = frame.column(schema::SPAN_ID).and_then(|c| c.binary().cloned()).map_err(parquet)?;
            for (t, s) in traces.iter().zip(spans.iter()) {
                if let (Some(Ok(t)), Some(Ok(s))) = (t.map(<[u8; 16]>::try_from), s.map(<[u8; 8]>::try_from)) {
                    keys.push((t, s));
                }
            }
        }
    }
    Ok(keys)
}

/// Concatenates the run's segments in flush order, dropping any span whose key an earlier one holds.
/// Only the id columns are hashed and rows are only gathered when there are duplicates: sorting or
/// gathering the nested attribute columns costs many times the data's size in polars.
fn merge(data_dir: &Path, hour: Hour, run: &[Segment], row_group_rows: usize) -> Result<Segment> {
    let mut seen = KeySet::default();
    let mut merged: Option<polars::prelude::DataFrame> = None;
    for seg in run {
        let parquet = |source| StoreError::Parquet { path: seg.path.clone(), source };
        let mut frame = crate::reader::scan_path(&seg.path).and_then(|lf| lf.collect()).map_err(parquet)?;
        // Segments of an older writer may lack a column: the merged one has them all.
        crate::columns::upgrade(&mut frame).map_err(parquet)?;
        let traces = frame.column(schema::TRACE_ID).and_then(|c| c.binary().cloned()).map_err(parquet)?;
        let spans = frame.column(schema::SPAN_ID).and_then(|c| c.binary().cloned()).map_err(parquet)?;
        let keep: Vec<bool> = traces
            .iter()
            .zip(spans.iter())
            .map(|(t, s)| match (t.and_then(|t| t.try_into().ok()), s.and_then(|s| s.try_into().ok())) {
                (Some(t), Some(s)) => seen.insert((t, s)),
                _ => true,
            })
            .collect();
        if keep.iter().any(|k| !k) {
            let mask: polars::prelude::BooleanChunked = keep.iter().copied().map(Some).collect();
            frame = frame.filter(&mask).map_err(parquet)?;
        }
        merged = Some(match merged {
            None => frame,
            Some(mut all) => {
                all.vstack_mut_owned(frame).map_err(parquet)?;
                all
            }
        });
    }
    let mut frame = merged.expect("a run has at least one segment");
    segment::write(data_dir, hour, run[0].lo, run[run.len() - 1].hi, &mut frame, row_group_rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_keys_forget_after_two_windows() {
        let key = |n: u8| ([n; 16], [n; 8]);
        let mut recent = RecentKeys::new(2);
        assert!(recent.insert(key(1)));
        assert!(!recent.insert(key(1)));
        assert!(recent.insert(key(2))); // rotates: {1,2} become the previous generation
        assert!(!recent.insert(key(1)));
        assert!(recent.insert(key(3)));
        assert!(recent.insert(key(4))); // rotates again: 1 and 2 are forgotten
        assert!(recent.insert(key(1)));
    }

    /// A store written before `link_span_ids` existed stays readable: its segments give the column derived
    /// from `links` (and read `links` only then), a scan over old and new segments gives nulls for the old
    /// rows instead of failing, and compaction writes the old rows with the column.
    #[test]
    fn segments_without_link_span_ids_are_read_and_compacted_with_the_column_derived() {
        use crate::SpanRow;
        use opentelemetry_proto::tonic::trace::v1::span::Link;
        use polars::prelude::*;
        let link = |span: u8| Link { trace_id: vec![1; 16], span_id: vec![span; 8], ..Default::default() };
        let mut rows: Vec<SpanRow> = (1..=3u8).map(|i| crate::testdata::row(1, i)).collect();
        rows[1].links = vec![link(1), link(9)];
        rows[2].links = vec![link(2)];
        let dir = tempfile::tempdir().unwrap();
        let hour = Hour::of_nanos(rows[0].start_time_unix_nano);
        let mut old = crate::to_frame(&rows[..2]).unwrap();
        old.drop_in_place(schema::LINK_SPAN_IDS).unwrap();
        let old = segment::write(dir.path(), hour, 1, 1, &mut old, 1024).unwrap();
        let new = segment::write(dir.path(), hour, 2, 2, &mut crate::to_frame(&rows[2..]).unwrap(), 1024).unwrap();
        let link_ids = |frame: &DataFrame| -> Vec<Option<Vec<u8>>> {
            let lists = frame.column(schema::LINK_SPAN_IDS).unwrap().list().unwrap().clone();
            (0..lists.len()).map(|i| lists.get_as_series(i).map(|ids| ids.binary().unwrap().iter().flatten().flatten().copied().collect())).collect()
        };

        let read = crate::collect_columns(crate::reader::scan_path(&old.path).unwrap(), &[schema::SPAN_ID, schema::LINK_SPAN_IDS]).unwrap();
        assert_eq!(read.get_column_names(), [schema::SPAN_ID, schema::LINK_SPAN_IDS]);
        assert_eq!(link_ids(&read), [Some(vec![]), Some([[1u8; 8], [9; 8]].concat())]);
        let ids_only = crate::collect_columns(crate::reader::scan_path(&old.path).unwrap(), &[schema::SPAN_ID]).unwrap();
        assert_eq!(ids_only.get_column_names(), [schema::SPAN_ID], "nothing derived that was not asked for");

        let scanned = crate::scan(dir.path(), crate::TimeRange::all()).unwrap().sort([schema::SPAN_ID], Default::default()).collect().unwrap();
        assert_eq!(scanned.height(), 3);
        assert_eq!(link_ids(&scanned), [None, None, Some(vec![2; 8])], "old rows null, new rows as stored");

        let merged = merge(dir.path(), hour, &[old, new], 1024).unwrap();
        let merged = crate::reader::scan_path(&merged.path).unwrap().collect().unwrap();
        assert_eq!(merged.get_column_names(), crate::to_frame(&rows).unwrap().get_column_names());
        assert_eq!(link_ids(&merged), [Some(vec![]), Some([[1u8; 8], [9; 8]].concat()), Some(vec![2; 8])]);
    }

    #[test]
    fn without_drops_listed_positions() {
        let rows: Vec<crate::SpanRow> = (0..5u8).map(|i| crate::testdata::row(i, i)).collect();
        let kept = without(rows, &[0, 3]);
        assert_eq!(kept.iter().map(|r| r.span_id[0]).collect::<Vec<_>>(), vec![1, 2, 4]);
    }
}

