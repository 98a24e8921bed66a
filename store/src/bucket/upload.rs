//! A collector's uploads: every segment of its data directory, once durable, copied to the bucket under the
//! collector's id; the local copy removed only after the upload is confirmed, and only once its hour has
//! settled (older than `keep_local_hours`: compaction has had its turn, so no later merge can need it).
//!
//! ```text
//! flusher: segment written → CHECKPOINT ─wake─► uploader thread: sweep the data directory
//!            ▲                                   upload each checkpointed live segment not confirmed yet
//!            └── removes confirmed, settled ◄──── confirmed set; objects covered by a compaction deleted
//! ```
//! A segment is uploaded only once the checkpoint covers its flush: an interrupted flush's segment is
//! removed at the next start and its spans flushed again under the same number, so uploading it earlier
//! could leave a different file under that name. A failed upload is retried with backoff, counted, and
//! the segment stays local meanwhile; a restart lists what the bucket already holds and goes on.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use object_store::path::Path as Key;

use super::Bucket;
use crate::backend::embedded::StoreStats;
use crate::error::{Result, StoreError};
use crate::segment::{self, Checkpoint, Hour, Segment};

/// Where and as whom a collector uploads.
#[derive(Debug, Clone)]
pub struct UploadConfig {
    pub bucket: Bucket,
    /// The collector's id: its prefix in every partition. See [`collector_id`].
    pub collector: String,
    /// Local copies of the current hour and this many before it are kept (and compacted); older ones
    /// are removed once uploaded.
    pub keep_local_hours: u64,
    /// How long a stopping collector keeps trying to upload what is left (then it stays local, uploaded
    /// at the next start).
    pub shutdown_timeout: Duration,
    /// How long an object covered by a compaction stays in the bucket for readers that listed it.
    pub obsolete_grace: Duration,
}

impl UploadConfig {
    pub fn new(bucket: Bucket, collector: String) -> UploadConfig {
        UploadConfig {
            bucket,
            collector,
            keep_local_hours: 1,
            shutdown_timeout: Duration::from_secs(30),
            obsolete_grace: Duration::from_secs(60),
        }
    }

    /// Whether `hour` is past keeping locally.
    pub(crate) fn settled(&self, hour: Hour, now: Hour) -> bool {
        hour.0 + self.keep_local_hours < now.0
    }
}

const ID_FILE: &str = "COLLECTOR_ID";

/// The collector id of a data directory: the one it was first given (`asked`, else one made up from the
/// host name), kept in `COLLECTOR_ID`. Flush numbers are the data directory's, so the id stays with it: a
/// different id for an existing directory, or an id whose prefix the bucket already holds for a fresh
/// one, would let two histories share names, and is refused.
pub fn collector_id(data_dir: &Path, asked: Option<&str>, bucket: &Bucket) -> Result<String> {
    let file = data_dir.join(ID_FILE);
    let refuse = |reason: String| StoreError::Bucket { url: bucket.url().to_owned(), reason };
    match std::fs::read_to_string(&file) {
        Ok(kept) => {
            let kept = kept.trim().to_owned();
            match asked {
                Some(asked) if asked != kept => Err(refuse(format!(
                    "{} belongs to collector {kept:?}, not {asked:?}: a data directory keeps its id",
                    data_dir.display()
                ))),
                _ => Ok(kept),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = match asked {
                Some(asked) => asked.to_owned(),
                None => made_up_id(),
            };
            check_id(&id).map_err(refuse)?;
            for hour in bucket.partitions()? {
                if !bucket.segments(hour, Some(&id))?.is_empty() {
                    return Err(refuse(format!(
                        "collector {id:?} already has segments in the bucket, and {} is a new data directory: \
                         give it an id of its own",
                        data_dir.display()
                    )));
                }
            }
            std::fs::create_dir_all(data_dir).map_err(StoreError::io("create", data_dir))?;
            std::fs::write(&file, format!("{id}\n")).map_err(StoreError::io("write", &file))?;
            Ok(id)
        }
        Err(e) => Err(StoreError::io("read", &file)(e)),
    }
}

fn check_id(id: &str) -> std::result::Result<(), String> {
    let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if id.is_empty() || id.starts_with('.') || !id.chars().all(fine) {
        return Err(format!("collector id {id:?}: use letters, digits, '-', '_' and '.'"));
    }
    Ok(())
}

/// `HOST-xxxxxx`: readable in a bucket listing, unique without coordination.
fn made_up_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect::<String>())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "collector".to_owned());
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let salt = crc32fast::hash(&[nanos.to_le_bytes().as_slice(), &std::process::id().to_le_bytes()].concat());
    format!("{host}-{:06x}", salt & 0xff_ffff)
}

/// What the uploader and the flusher share.
pub(crate) struct Uploads {
    pub(crate) config: UploadConfig,
    /// (hour, lo, hi) of the local segments the bucket is known to hold.
    confirmed: Mutex<HashSet<(Hour, u64, u64)>>,
    signal: Mutex<Signal>,
    wake: Condvar,
}

#[derive(Default)]
struct Signal {
    dirty: bool,
    stop_by: Option<Instant>,
}

impl Uploads {
    pub(crate) fn is_confirmed(&self, segment: &Segment) -> bool {
        let confirmed = self.confirmed.lock().expect("the uploads lock is never poisoned");
        confirmed.contains(&(segment.hour, segment.lo, segment.hi))
    }

    /// New segments are there (a flush or a compaction).
    pub(crate) fn wake(&self) {
        self.signal.lock().expect("the uploads lock is never poisoned").dirty = true;
        self.wake.notify_one();
    }

    /// Asks the uploader to upload what is left and stop, giving up at the shutdown timeout.
    pub(crate) fn stop(&self) {
        let mut signal = self.signal.lock().expect("the uploads lock is never poisoned");
        signal.stop_by = Some(Instant::now() + self.config.shutdown_timeout);
        self.wake.notify_one();
    }

    /// Waits `timeout`, or less when woken (by new segments, if `early`; by a stop, always); the stop
    /// deadline once stopping.
    fn wait(&self, timeout: Duration, early: bool) -> Option<Instant> {
        let signal = self.signal.lock().expect("the uploads lock is never poisoned");
        let (mut signal, _) = self
            .wake
            .wait_timeout_while(signal, timeout, |s| !(early && s.dirty) && s.stop_by.is_none())
            .expect("the uploads lock is never poisoned");
        signal.dirty = false;
        signal.stop_by
    }
}

/// Starts the uploader thread for the store in `data_dir`.
pub(crate) fn start(
    config: UploadConfig,
    data_dir: PathBuf,
    stats: Arc<StoreStats>,
) -> Result<(Arc<Uploads>, std::thread::JoinHandle<()>)> {
    let uploads =
        Arc::new(Uploads { config, confirmed: Mutex::default(), signal: Mutex::default(), wake: Condvar::new() });
    let uploader = Uploader {
        uploads: Arc::clone(&uploads),
        data_dir: data_dir.clone(),
        stats,
        listed: HashSet::new(),
        deletions: Vec::new(),
        backoff: Duration::ZERO,
    };
    let thread = std::thread::Builder::new()
        .name("store-upload".into())
        .spawn(move || uploader.run())
        .map_err(StoreError::io("spawn", &data_dir))?;
    Ok((uploads, thread))
}

struct Uploader {
    uploads: Arc<Uploads>,
    data_dir: PathBuf,
    stats: Arc<StoreStats>,
    /// Partitions whose objects of this collector have been listed since the start.
    listed: HashSet<Hour>,
    /// Objects covered by an uploaded compaction, deleted once their grace is over.
    deletions: Vec<(Instant, Key)>,
    backoff: Duration,
}

const MAX_BACKOFF: Duration = Duration::from_secs(10);

impl Uploader {
    fn run(mut self) {
        let mut stop_by = None;
        loop {
            stop_by = match (stop_by, self.backoff) {
                // Stopping: retry at least every second until the deadline.
                (Some(deadline), backoff) => {
                    std::thread::sleep(backoff.min(Duration::from_secs(1)));
                    Some(deadline)
                }
                (None, Duration::ZERO) => self.uploads.wait(Duration::from_secs(1), true),
                // After a failure, new segments do not hurry the retry: the backoff holds.
                (None, backoff) => self.uploads.wait(backoff, false),
            };
            let result = self.sweep();
            match &result {
                Ok(_) => self.backoff = Duration::ZERO,
                Err(e) => {
                    self.stats.upload_errors.fetch_add(1, Relaxed);
                    self.backoff = (self.backoff * 2).clamp(Duration::from_millis(250), MAX_BACKOFF);
                    tracing::warn!(error = %e, retry_in = ?self.backoff, "upload failed; the segment stays local and is retried");
                }
            }
            self.delete_due(stop_by.is_some());
            if let Some(deadline) = stop_by {
                let left = self.stats.upload_backlog.load(Relaxed);
                if matches!(result, Ok(0)) {
                    return;
                }
                if Instant::now() >= deadline {
                    tracing::warn!(
                        segments = left,
                        "stopping with segments not uploaded; they stay local and are uploaded at the next start"
                    );
                    return;
                }
            }
        }
    }

    /// Uploads every checkpointed live segment not confirmed yet; returns how many are left.
    fn sweep(&mut self) -> Result<usize> {
        let uploads = Arc::clone(&self.uploads);
        let config = &uploads.config;
        let checkpoint = Checkpoint::load(&self.data_dir)?;
        let hours = segment::partitions(&self.data_dir)?;
        let mut waiting = Vec::new();
        for &hour in &hours {
            let live = segment::live_segments(&self.data_dir, hour)?;
            waiting.extend(live.into_iter().filter(|s| s.hi <= checkpoint.flush && !self.uploads.is_confirmed(s)));
        }
        self.stats.upload_backlog.store(waiting.len() as u64, Relaxed);
        {
            // Partitions gone from the data directory need no memory of their uploads.
            let mut confirmed = self.uploads.confirmed.lock().expect("the uploads lock is never poisoned");
            confirmed.retain(|(hour, _, _)| hours.binary_search(hour).is_ok());
            self.listed.retain(|hour| hours.binary_search(hour).is_ok());
        }
        // What the bucket already holds of a partition seen for the first time (after a restart: what
        // was uploaded before it) is not uploaded again.
        for &hour in &hours {
            if !self.listed.contains(&hour) {
                self.learn(hour)?;
                self.listed.insert(hour);
            }
        }
        waiting.retain(|s| !self.uploads.is_confirmed(s));
        let mut left = waiting.len();
        self.stats.upload_backlog.store(left as u64, Relaxed);
        for segment in waiting {
            let size = match config.bucket.upload(&config.collector, &segment) {
                Ok(size) => size,
                // Compacted away since the listing: the compacted segment is uploaded instead.
                Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                    left -= 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            self.confirm(&segment);
            self.stats.segments_uploaded.fetch_add(1, Relaxed);
            self.stats.upload_bytes.fetch_add(size, Relaxed);
            left -= 1;
            self.stats.upload_backlog.store(left as u64, Relaxed);
            tracing::debug!(segment = %segment.path.display(), bytes = size, "uploaded");
            if segment.lo != segment.hi {
                self.learn(segment.hour)?;
            }
        }
        Ok(left)
    }

    fn confirm(&self, segment: &Segment) {
        let mut confirmed = self.uploads.confirmed.lock().expect("the uploads lock is never poisoned");
        confirmed.insert((segment.hour, segment.lo, segment.hi));
    }

    /// Lists this collector's objects of `hour`: those the bucket holds are confirmed, those a compaction
    /// covers are queued for deletion.
    fn learn(&mut self, hour: Hour) -> Result<()> {
        let uploads = Arc::clone(&self.uploads);
        let config = &uploads.config;
        let (live, obsolete) = segment::split_obsolete(config.bucket.segments(hour, Some(&config.collector))?);
        {
            let mut confirmed = self.uploads.confirmed.lock().expect("the uploads lock is never poisoned");
            confirmed.extend(live.iter().chain(&obsolete).map(|s| (s.hour, s.lo, s.hi)));
        }
        let due = Instant::now() + config.obsolete_grace;
        for stale in obsolete {
            if !self.deletions.iter().any(|(_, key)| *key == stale.key) {
                self.deletions.push((due, stale.key));
            }
        }
        Ok(())
    }

    /// Deletes the covered objects whose grace is over (all of them when stopping: nobody is left to).
    fn delete_due(&mut self, stopping: bool) {
        let now = Instant::now();
        let bucket = &self.uploads.config.bucket;
        self.deletions.retain(|(due, key)| {
            if !stopping && *due > now {
                return true;
            }
            match bucket.delete(key) {
                Ok(()) => false,
                Err(e) => {
                    tracing::warn!(error = %e, "could not delete a compacted-away segment from the bucket; retried");
                    true
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_path_safe() {
        assert!(check_id("collector-a.eu_1").is_ok());
        for bad in ["", "a/b", "..", ".hidden", "a b", "é"] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
        let id = made_up_id();
        assert!(check_id(&id).is_ok(), "{id}");
    }

    #[test]
    fn hours_settle_after_the_kept_ones() {
        let config = UploadConfig::new(Bucket::parse("s3://b").unwrap(), "c".into());
        assert!(!config.settled(Hour(10), Hour(10)));
        assert!(!config.settled(Hour(9), Hour(10)), "the hour before the current one is kept");
        assert!(config.settled(Hour(8), Hour(10)));
    }
}
