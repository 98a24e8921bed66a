//! A reader's view of a bucket: the live segments of a range, each downloaded once into a local cache and
//! then read like a data directory's segment (footers, row-group pruning, the query API's catalog).
//!
//! ```text
//! $HOPTRACE_CACHE (default ~/.cache/hoptrace)/segments/BUCKET/PREFIX/spans/hour=…/COLLECTOR/seg-….parquet
//! ```
//! A cached segment is used when its size matches the object's: keys are never rewritten, so that is
//! only a check against a download that was cut short, which is written under a temporary name anyway.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use object_store::ObjectStoreExt;

use super::{Bucket, StoredSegment};
use crate::error::{Result, StoreError};
use crate::TimeRange;

/// Downloads in flight at once.
const AT_ONCE: usize = 4;

/// Where readers cache downloaded segments: `$HOPTRACE_CACHE`, else `$XDG_CACHE_HOME/hoptrace`, else
/// `~/.cache/hoptrace`.
pub fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("HOPTRACE_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("hoptrace")
}

impl Bucket {
    /// The local copies of the live segments holding spans of `range`, oldest partition first, downloading
    /// those not cached yet. A segment compacted away between the listing and its download is gone from
    /// the bucket: the range is listed again, and the compacted segment read instead.
    pub fn mirror(&self, range: TimeRange) -> Result<Vec<PathBuf>> {
        let mut attempts = 0;
        loop {
            let live = self.live_segments(range)?;
            match self.fetch(&live) {
                Err(StoreError::ObjectStore { source: object_store::Error::NotFound { .. }, .. }) if attempts < 3 => {
                    attempts += 1;
                }
                done => return done,
            }
        }
    }

    fn cache_dir(&self) -> PathBuf {
        let mut dir = self.0.cache.join("segments").join(&self.0.bucket);
        for part in self.0.prefix.split('/').filter(|p| !p.is_empty()) {
            dir.push(part);
        }
        dir
    }

    fn fetch(&self, live: &[StoredSegment]) -> Result<Vec<PathBuf>> {
        let root = self.cache_dir();
        let local = |s: &StoredSegment| -> PathBuf {
            let relative = s.key.as_ref().strip_prefix(self.0.prefix.as_str()).unwrap_or(s.key.as_ref());
            root.join(relative.trim_start_matches('/'))
        };
        let cached = |s: &StoredSegment, path: &Path| std::fs::metadata(path).is_ok_and(|m| m.len() == s.bytes);
        let missing: Vec<(&StoredSegment, PathBuf)> =
            live.iter().map(|s| (s, local(s))).filter(|(s, path)| !cached(s, path)).collect();
        if !missing.is_empty() {
            let store = self.store()?;
            let downloads = missing.iter().map(|(s, path)| {
                let store = std::sync::Arc::clone(&store);
                async move {
                    let fail = |source| StoreError::ObjectStore { op: "download", key: s.key.to_string(), source };
                    let bytes = store.get(&s.key).await.map_err(fail)?.bytes().await.map_err(fail)?;
                    write_atomically(path, &bytes)
                }
            });
            self.run_all(downloads.collect(), AT_ONCE)?;
        }
        Ok(live.iter().map(local).collect())
    }
}

/// Writes a downloaded segment under a name no other reader uses, then renames it into place, so a reader
/// never opens half a file (and two readers filling one cache do not trip over each other).
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().expect("a cached segment has a directory");
    std::fs::create_dir_all(dir).map_err(StoreError::io("create", dir))?;
    let tmp = path.with_extension(format!("parquet.{}-{}.tmp", std::process::id(), NEXT.fetch_add(1, Relaxed)));
    std::fs::write(&tmp, bytes).map_err(StoreError::io("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(StoreError::io("rename", &tmp))
}
