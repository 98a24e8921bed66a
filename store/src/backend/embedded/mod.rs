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

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::{AppendError, Appending, Backend};
use crate::bucket::upload::{self, UploadConfig, Uploads};
use crate::error::{Result, StoreError};
use crate::segment::{self, Checkpoint};
use crate::wal;
use hoptrace_otlp::wire::{self, WireSpan};

mod commit;
mod compact;
mod dedup;
mod flush;

use commit::Committer;
use compact::merge;
use compact::newest_stored_keys;
use dedup::{without, KeySet, RecentKeys};
use flush::Flusher;

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
    /// Segments also go to object storage ([`crate::bucket::upload`]).
    pub upload: Option<UploadConfig>,
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
            upload: None,
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
    pub segments_uploaded: AtomicU64,
    pub upload_bytes: AtomicU64,
    /// Upload attempts that failed (each is retried).
    pub upload_errors: AtomicU64,
    /// Durable segments not uploaded yet.
    pub upload_backlog: AtomicU64,
    /// Local copies removed after their upload was confirmed.
    pub segments_removed_locally: AtomicU64,
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
    pub fn scan(request: Bytes) -> std::result::Result<(Batch, Vec<hoptrace_otlp::Rejection>), wire::WireError> {
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
    /// The uploader, stopped after the flusher so that the last flush is uploaded too.
    uploader: Mutex<Option<(Arc<Uploads>, JoinHandle<()>)>>,
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
        let uploader = match &config.upload {
            Some(upload) => Some(upload::start(upload.clone(), dir.clone(), Arc::clone(&stats))?),
            None => None,
        };
        let flusher = Flusher {
            config: config.clone(),
            stats: Arc::clone(&stats),
            obsolete: Vec::new(),
            uploads: uploader.as_ref().map(|(uploads, _)| Arc::clone(uploads)),
        };
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
        Ok((SpanStore { tx, stats, threads: Mutex::new(threads), uploader: Mutex::new(uploader) }, recovery))
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
        if let Some((uploads, thread)) = self.uploader.lock().unwrap().take() {
            uploads.stop();
            let _ = thread.join();
        }
        result
    }

    pub fn stats(&self) -> &Arc<StoreStats> {
        &self.stats
    }
}

impl Backend for SpanStore {
    fn append(&self, batch: Batch) -> Appending<'_> {
        let submitted = self.submit(batch);
        Box::pin(async move {
            let done = submitted.map_err(|e| match e {
                SubmitError::Full => AppendError::Busy,
                SubmitError::Closed => AppendError::Closed,
            })?;
            match done.await {
                Ok(Ok(appended)) => Ok(appended),
                Ok(Err(e)) => Err(AppendError::Failed(format!("spans could not be made durable: {e}"))),
                Err(_) => Err(AppendError::Closed),
            }
        })
    }

    fn shutdown(&self) -> Result<()> {
        SpanStore::shutdown(self)
    }

    fn stats(&self) -> Option<&Arc<StoreStats>> {
        Some(&self.stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema;
    use crate::segment::Hour;

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

    /// A store written before `link_span_ids` and the scope attributes existed stays readable: its segments
    /// give the column derived from `links` (and read `links` only then), a scan over old and new segments
    /// gives nulls for the old rows instead of failing, a lookup reads their scope attributes as empty, and
    /// compaction writes the old rows with both.
    #[test]
    fn segments_of_older_writers_are_read_and_compacted_with_the_columns_they_lack() {
        use hoptrace_otlp::SpanRow;
        use opentelemetry_proto::tonic::trace::v1::span::Link;
        use polars::prelude::*;
        let link = |span: u8| Link { trace_id: vec![1; 16], span_id: vec![span; 8], ..Default::default() };
        let mut rows: Vec<SpanRow> = (1..=3u8).map(|i| hoptrace_testkit::spans::row(1, i)).collect();
        rows[1].links = vec![link(1), link(9)];
        rows[2].links = vec![link(2)];
        let scope_attribute = hoptrace_testkit::spans::benchmark_attributes(0)[0].clone();
        rows[2].origin = std::sync::Arc::new(hoptrace_otlp::Origin {
            scope_attributes: vec![scope_attribute.clone()],
            ..(*rows[2].origin).clone()
        });
        let dir = tempfile::tempdir().unwrap();
        let hour = Hour::of_nanos(rows[0].start_time_unix_nano);
        let mut old = crate::to_frame(&rows[..2]).unwrap();
        old.drop_in_place(schema::LINK_SPAN_IDS).unwrap();
        let scope = schema::SCOPE_ATTRIBUTES;
        for column in [scope.keys, scope.types, scope.values] {
            old.drop_in_place(column).unwrap();
        }
        let old = segment::write(dir.path(), hour, 1, 1, &mut old, 1024).unwrap();
        let new = segment::write(dir.path(), hour, 2, 2, &mut crate::to_frame(&rows[2..]).unwrap(), 1024).unwrap();
        let link_ids = |frame: &DataFrame| -> Vec<Option<Vec<u8>>> {
            let lists = frame.column(schema::LINK_SPAN_IDS).unwrap().list().unwrap().clone();
            (0..lists.len())
                .map(|i| {
                    lists
                        .get_as_series(i)
                        .map(|ids| ids.binary().unwrap().iter().flatten().flatten().copied().collect())
                })
                .collect()
        };

        let read = crate::collect_columns(
            crate::read::scan_path(&old.path).unwrap(),
            &[schema::SPAN_ID, schema::LINK_SPAN_IDS],
        )
        .unwrap();
        assert_eq!(read.get_column_names(), [schema::SPAN_ID, schema::LINK_SPAN_IDS]);
        assert_eq!(link_ids(&read), [Some(vec![]), Some([[1u8; 8], [9; 8]].concat())]);
        let ids_only = crate::collect_columns(crate::read::scan_path(&old.path).unwrap(), &[schema::SPAN_ID]).unwrap();
        assert_eq!(ids_only.get_column_names(), [schema::SPAN_ID], "nothing derived that was not asked for");

        let scanned = crate::scan(dir.path(), crate::TimeRange::all())
            .unwrap()
            .sort([schema::SPAN_ID], Default::default())
            .collect()
            .unwrap();
        assert_eq!(scanned.height(), 3);
        assert_eq!(link_ids(&scanned), [None, None, Some(vec![2; 8])], "old rows null, new rows as stored");

        let scope_keys = |spans: &[crate::SpanRecord]| -> Vec<Vec<String>> {
            spans.iter().map(|s| s.scope_attributes.keys().cloned().collect()).collect()
        };
        let expected = [vec![], vec![], vec![scope_attribute.key.clone()]];
        let catalog = crate::read::Catalog::new(crate::Location::Dir(dir.path().to_owned()));
        let mut trace = crate::read::query::trace(&catalog, rows[0].trace_id, crate::TimeRange::all()).unwrap();
        trace.sort_by(|a, b| a.span_id.cmp(&b.span_id));
        assert_eq!(scope_keys(&trace), expected, "a lookup reads old segments' scope attributes as empty");

        let merged = merge(dir.path(), hour, &[old, new], 1024).unwrap();
        let merged = crate::read::scan_path(&merged.path).unwrap().collect().unwrap();
        assert_eq!(merged.get_column_names(), crate::to_frame(&rows).unwrap().get_column_names());
        assert_eq!(link_ids(&merged), [Some(vec![]), Some([[1u8; 8], [9; 8]].concat()), Some(vec![2; 8])]);
        assert_eq!(scope_keys(&crate::records(&merged).unwrap()), expected);
    }

    #[test]
    fn without_drops_listed_positions() {
        let rows: Vec<hoptrace_otlp::SpanRow> = (0..5u8).map(|i| hoptrace_testkit::spans::row(i, i)).collect();
        let kept = without(rows, &[0, 3]);
        assert_eq!(kept.iter().map(|r| r.span_id[0]).collect::<Vec<_>>(), vec![1, 2, 4]);
    }
}
