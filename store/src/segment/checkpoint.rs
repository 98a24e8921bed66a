//! The checkpoint of the last completed flush, and the start-up clean-up it allows.

use std::fs::{self, File};
use std::path::Path;

use super::*;
use crate::error::{Result, StoreError};

/// The last completed flush and the last WAL record it covers; written atomically after a flush.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checkpoint {
    pub flush: u64,
    pub wal_seq: u64,
}

pub(super) const CHECKPOINT: &str = "CHECKPOINT";

impl Checkpoint {
    pub fn load(data_dir: &Path) -> Result<Checkpoint> {
        let path = data_dir.join(CHECKPOINT);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Checkpoint::default()),
            Err(e) => return Err(StoreError::io("read", &path)(e)),
        };
        let bad = |reason: &str| StoreError::Checkpoint { path: path.clone(), reason: reason.to_owned() };
        let mut flush = None;
        let mut wal_seq = None;
        for line in text.lines() {
            match line.split_once('=') {
                Some(("flush", v)) => flush = Some(v.trim().parse().map_err(|_| bad("flush is not a number"))?),
                Some(("wal_seq", v)) => wal_seq = Some(v.trim().parse().map_err(|_| bad("wal_seq is not a number"))?),
                _ => {}
            }
        }
        Ok(Checkpoint {
            flush: flush.ok_or_else(|| bad("no flush="))?,
            wal_seq: wal_seq.ok_or_else(|| bad("no wal_seq="))?,
        })
    }

    pub fn store(&self, data_dir: &Path) -> Result<()> {
        let path = data_dir.join(CHECKPOINT);
        let tmp = data_dir.join("CHECKPOINT.tmp");
        fs::write(&tmp, format!("flush={}\nwal_seq={}\n", self.flush, self.wal_seq))
            .and_then(|_| File::open(&tmp)?.sync_all())
            .map_err(StoreError::io("write", &tmp))?;
        fs::rename(&tmp, &path).map_err(StoreError::io("rename", &tmp))?;
        sync_dir(data_dir)
    }
}

/// Start-up clean-up: segments of a flush that never reached its checkpoint (their spans are still in the
/// WAL and will be replayed), obsolete segments, and temporary files.
pub fn recover(data_dir: &Path, checkpoint: Checkpoint) -> Result<()> {
    for hour in partitions(data_dir)? {
        let dir = partition_dir(data_dir, hour);
        for entry in fs::read_dir(&dir).map_err(StoreError::io("list", &dir))? {
            let path = entry.map_err(StoreError::io("list", &dir))?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                fs::remove_file(&path).map_err(StoreError::io("remove", &path))?;
            }
        }
        let (live, obsolete) = split_obsolete(all_segments(data_dir, hour)?);
        for s in obsolete.iter().chain(live.iter().filter(|s| s.hi > checkpoint.flush)) {
            tracing::info!(path = %s.path.display(), "removing segment left by an interrupted flush or compaction");
            fs::remove_file(&s.path).map_err(StoreError::io("remove", &s.path))?;
        }
    }
    Ok(())
}
