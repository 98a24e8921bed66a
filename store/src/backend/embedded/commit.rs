//! The WAL thread: group commit of batches into the write-ahead log, dedup, and the memtable it hands to
//! the flusher.

use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::Instant;

use crate::error::{Result, StoreError};
use crate::wal;
use hoptrace_otlp::wire::WireSpan;

use super::*;

/// Owns the WAL and the memtable.
pub(super) struct Committer {
    pub(super) config: StoreConfig,
    pub(super) stats: Arc<StoreStats>,
    pub(super) wal: wal::Wal,
    pub(super) wal_dir: PathBuf,
    pub(super) recent: RecentKeys,
    pub(super) memtable: Vec<WireSpan>,
    pub(super) memtable_bytes: usize,
    pub(super) next_flush: u64,
    pub(super) flush_tx: SyncSender<FlushJob>,
}

/// At most this many batches share one fsync, so the first waiter's latency stays bounded.
pub(super) const MAX_GROUP: usize = 256;

impl Committer {
    pub(super) fn run(mut self, rx: Receiver<Command>) {
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

    pub(super) fn commit(&mut self, group: Vec<(Batch, Ack)>) {
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

    pub(super) fn hand_off(&mut self, waiters: Vec<SyncSender<Result<()>>>) {
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
