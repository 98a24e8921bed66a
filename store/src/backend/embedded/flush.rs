//! The flusher thread: memtables into hourly segments, the checkpoint, the WAL trimmed, compaction started.

use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Instant;

use crate::bucket::upload::Uploads;
use crate::error::{Result, StoreError};
use crate::segment::{self, Checkpoint, Hour};
use crate::wal;
use hoptrace_otlp::wire::WireSpan;

use super::*;

/// Writes memtables into segments and keeps partitions compact.
pub(super) struct Flusher {
    pub(super) config: StoreConfig,
    pub(super) stats: Arc<StoreStats>,
    pub(super) obsolete: Vec<(PathBuf, Instant)>,
    /// Set when segments also go to object storage.
    pub(super) uploads: Option<Arc<Uploads>>,
}

impl Flusher {
    pub(super) fn run(mut self, rx: Receiver<FlushJob>) {
        loop {
            match rx.recv_timeout(self.config.obsolete_grace) {
                Ok(job) => {
                    let result =
                        if job.rows.is_empty() { Ok(()) } else { self.flush(job.flush, job.wal_seq, job.rows) };
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
            self.remove_uploaded();
        }
    }

    pub(super) fn flush(&mut self, flush: u64, wal_seq: u64, rows: Vec<WireSpan>) -> Result<()> {
        let dir = self.config.data_dir.clone();
        let flushed = segment::write_flush(&dir, flush, &rows, self.config.row_group_rows)?;
        for seg in &flushed.segments {
            self.stats.segments_written.fetch_add(1, Relaxed);
            self.stats.segment_bytes_written.fetch_add(seg.bytes, Relaxed);
        }
        let touched: Vec<Hour> = flushed.segments.iter().map(|s| s.hour).collect();
        let stored = flushed.spans;
        Checkpoint { flush, wal_seq }.store(&dir)?;
        self.stats.spans_stored.fetch_add(stored as u64, Relaxed);
        wal::remove_through(&dir.join("wal"), wal_seq)?;
        tracing::debug!(flush, spans = stored, partitions = touched.len(), "flushed");
        for hour in touched {
            if let Err(e) = self.compact(hour) {
                tracing::warn!(error = %e, partition = %hour.dir_name(), "compaction failed; segments stay as they are");
            }
        }
        if let Some(uploads) = &self.uploads {
            uploads.wake();
        }
        Ok(())
    }

    /// Merges each run of at least `compaction_min_segments` consecutive flush segments (`seg-n-n`) into
    /// one, dropping duplicate spans on the way. Compacted segments are never merged again, so every span
    /// is written at most twice and compaction's memory is bounded by that of a few flushes.
    ///
    /// The hour that is still being written is left alone: compacting it would rewrite the same spans
    /// again and again and take CPU from ingest exactly when it is busiest.
    pub(super) fn compact(&mut self, hour: Hour) -> Result<()> {
        let now = Hour::now();
        if hour >= now {
            return Ok(());
        }
        // A settled hour's local copies are being removed once uploaded: a merge must not cover a segment
        // that is only in the bucket.
        if self.uploads.as_ref().is_some_and(|u| u.config.settled(hour, now)) {
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

    /// Removes the local copies the bucket holds, in settled hours, and partitions left empty.
    fn remove_uploaded(&mut self) {
        let Some(uploads) = &self.uploads else { return };
        let dir = &self.config.data_dir;
        let now = Hour::now();
        let hours = match segment::partitions(dir) {
            Ok(hours) => hours,
            Err(e) => return tracing::warn!(error = %e, "cannot list partitions to remove uploaded segments"),
        };
        for hour in hours.into_iter().filter(|&h| uploads.config.settled(h, now)) {
            let Ok(live) = segment::live_segments(dir, hour) else { continue };
            for seg in live.iter().filter(|s| uploads.is_confirmed(s)) {
                match std::fs::remove_file(&seg.path) {
                    Ok(()) => {
                        self.stats.segments_removed_locally.fetch_add(1, Relaxed);
                    }
                    Err(e) => {
                        tracing::warn!(path = %seg.path.display(), error = %e, "could not remove an uploaded segment")
                    }
                }
            }
            // Fails while anything is left in it, as it should.
            let _ = std::fs::remove_dir(segment::partition_dir(dir, hour));
        }
    }

    pub(super) fn remove_obsolete(&mut self) {
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
