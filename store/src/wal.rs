//! The write-ahead log: every accepted OTLP request is appended here and fsynced before the client hears OK.
//!
//! Files `wal/{first_seq:020}.wal` hold records
//! `[len: u32 LE][crc32: u32 LE][seq: u64 LE][skip_count: u32 LE][skip: u32 LE × skip_count][request]`,
//! where `len` counts everything after the crc, the crc covers the same bytes, `request` is the OTLP
//! protobuf `ExportTraceServiceRequest` as received, and `skip` lists the indices (among the request's
//! accepted spans) that were duplicates and must not be stored again. A record whose length or checksum
//! does not hold is a torn write: it and everything after it in that file are dropped on replay.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Result, StoreError};

const HEADER: usize = 8; // len + crc
const MAX_RECORD: u32 = 256 << 20;

/// A record read back on replay.
#[derive(Debug, Clone, PartialEq)]
pub struct WalRecord {
    pub seq: u64,
    pub skip: Vec<u32>,
    pub request: Vec<u8>,
}

pub struct Wal {
    dir: PathBuf,
    file: BufWriter<File>,
    path: PathBuf,
    next_seq: u64,
    scratch: Vec<u8>,
}

fn file_name(first_seq: u64) -> String {
    format!("{first_seq:020}.wal")
}

/// The WAL files in `dir`, oldest first, with the first sequence number each holds.
fn files(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(StoreError::io("list", dir))? {
        let path = entry.map_err(StoreError::io("list", dir))?.path();
        let seq = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(seq) = seq {
            out.push((seq, path));
        }
    }
    out.sort();
    Ok(out)
}

impl Wal {
    /// Opens the log in `dir`: returns the records after `checkpoint_seq` (those not yet in a segment),
    /// truncates any torn tail, and starts a fresh file for new appends.
    pub fn open(dir: &Path, checkpoint_seq: u64) -> Result<(Wal, Vec<WalRecord>)> {
        fs::create_dir_all(dir).map_err(StoreError::io("create", dir))?;
        let mut records = Vec::new();
        let mut last_seq = checkpoint_seq;
        for (_, path) in files(dir)? {
            let (file_records, valid_len, total_len) = read_file(&path)?;
            if valid_len < total_len {
                tracing::warn!(
                    path = %path.display(),
                    valid_bytes = valid_len,
                    dropped_bytes = total_len - valid_len,
                    "write-ahead log has a torn tail (a write cut short by a crash); dropping it"
                );
                let f = OpenOptions::new().write(true).open(&path).map_err(StoreError::io("open", &path))?;
                f.set_len(valid_len).map_err(StoreError::io("truncate", &path))?;
                f.sync_all().map_err(StoreError::io("fsync", &path))?;
            }
            for record in file_records {
                last_seq = last_seq.max(record.seq);
                if record.seq > checkpoint_seq {
                    records.push(record);
                }
            }
        }
        let next_seq = last_seq + 1;
        let (file, path) = create(dir, next_seq)?;
        Ok((Wal { dir: dir.to_owned(), file, path, next_seq, scratch: Vec::new() }, records))
    }

    /// Appends one record (buffered; durable only after [`Wal::sync`]) and returns its sequence number and size.
    pub fn append(&mut self, skip: &[u32], request: &[u8]) -> Result<(u64, usize)> {
        let seq = self.next_seq;
        let body_len = 8 + 4 + 4 * skip.len() + request.len();
        self.scratch.clear();
        self.scratch.extend_from_slice(&seq.to_le_bytes());
        self.scratch.extend_from_slice(&(skip.len() as u32).to_le_bytes());
        for s in skip {
            self.scratch.extend_from_slice(&s.to_le_bytes());
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(&self.scratch);
        crc.update(request);
        let crc = crc.finalize();
        let write = |file: &mut BufWriter<File>, scratch: &[u8]| -> std::io::Result<()> {
            file.write_all(&(body_len as u32).to_le_bytes())?;
            file.write_all(&crc.to_le_bytes())?;
            file.write_all(scratch)?;
            file.write_all(request)
        };
        write(&mut self.file, &self.scratch).map_err(StoreError::io("append", &self.path))?;
        self.next_seq += 1;
        Ok((seq, HEADER + body_len))
    }

    /// Makes every appended record durable: one fsync for however many records were appended (group commit).
    pub fn sync(&mut self) -> Result<()> {
        self.file.flush().map_err(StoreError::io("write", &self.path))?;
        self.file.get_ref().sync_data().map_err(StoreError::io("fsync", &self.path))
    }

    /// The sequence number of the last appended record (0 if none ever was).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Starts a new file, so the old ones can be deleted once their records are in segments.
    pub fn rotate(&mut self) -> Result<()> {
        self.sync()?;
        let (file, path) = create(&self.dir, self.next_seq)?;
        self.file = file;
        self.path = path;
        Ok(())
    }
}

fn create(dir: &Path, first_seq: u64) -> Result<(BufWriter<File>, PathBuf)> {
    let path = dir.join(file_name(first_seq));
    let file = OpenOptions::new().create(true).append(true).open(&path).map_err(StoreError::io("create", &path))?;
    crate::segment::sync_dir(dir)?;
    Ok((BufWriter::with_capacity(1 << 20, file), path))
}

/// Deletes the files all of whose records have sequence numbers ≤ `seq`. The newest file is always kept.
pub fn remove_through(dir: &Path, seq: u64) -> Result<()> {
    let files = files(dir)?;
    for pair in files.windows(2) {
        let (_, path) = &pair[0];
        let (next_first, _) = pair[1];
        if next_first <= seq + 1 {
            fs::remove_file(path).map_err(StoreError::io("remove", path))?;
        }
    }
    Ok(())
}

/// Reads every intact record of one file; returns them with the length of the intact prefix and the file size.
fn read_file(path: &Path) -> Result<(Vec<WalRecord>, u64, u64)> {
    let mut bytes = Vec::new();
    File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(StoreError::io("read", path))?;
    let (records, valid) = parse(&bytes);
    Ok((records, valid as u64, bytes.len() as u64))
}

/// Parses records from the start of `bytes` until the end or the first record that does not check out.
pub fn parse(bytes: &[u8]) -> (Vec<WalRecord>, usize) {
    let mut records = Vec::new();
    let mut at = 0;
    while let Some(record) = parse_one(&bytes[at..]) {
        at += record.1;
        records.push(record.0);
    }
    (records, at)
}

fn parse_one(bytes: &[u8]) -> Option<(WalRecord, usize)> {
    let len = u32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?);
    if !(12..=MAX_RECORD).contains(&len) {
        return None;
    }
    let crc = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
    let body = bytes.get(HEADER..HEADER + len as usize)?;
    if crc32fast::hash(body) != crc {
        return None;
    }
    let seq = u64::from_le_bytes(body[0..8].try_into().ok()?);
    let skip_count = u32::from_le_bytes(body[8..12].try_into().ok()?) as usize;
    let skip_end = 12usize.checked_add(skip_count.checked_mul(4)?)?;
    let skip = body.get(12..skip_end)?.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect();
    let request = body[skip_end..].to_vec();
    Some((WalRecord { seq, skip, request }, HEADER + len as usize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn write_records(dir: &Path, records: &[(Vec<u32>, Vec<u8>)]) -> PathBuf {
        let (mut wal, replayed) = Wal::open(dir, 0).unwrap();
        assert!(replayed.is_empty());
        for (skip, req) in records {
            wal.append(skip, req).unwrap();
        }
        wal.sync().unwrap();
        wal.path.clone()
    }

    #[test]
    fn records_round_trip_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_records(dir.path(), &[(vec![], b"one".to_vec()), (vec![0, 2], b"two".to_vec())]);
        let (wal, replayed) = Wal::open(dir.path(), 0).unwrap();
        assert_eq!(
            replayed,
            vec![
                WalRecord { seq: 1, skip: vec![], request: b"one".to_vec() },
                WalRecord { seq: 2, skip: vec![0, 2], request: b"two".to_vec() },
            ]
        );
        assert_eq!(wal.last_seq(), 2);
        assert_ne!(wal.path, path, "appends after a restart go to a new file");
    }

    #[test]
    fn checkpointed_records_are_not_replayed() {
        let dir = tempfile::tempdir().unwrap();
        write_records(dir.path(), &[(vec![], b"a".to_vec()), (vec![], b"b".to_vec())]);
        let (_, replayed) = Wal::open(dir.path(), 1).unwrap();
        assert_eq!(replayed.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn torn_tail_is_dropped_and_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_records(dir.path(), &[(vec![], b"kept".to_vec()), (vec![], b"torn-record".to_vec())]);
        let full = fs::metadata(&path).unwrap().len();
        OpenOptions::new().write(true).open(&path).unwrap().set_len(full - 3).unwrap();
        let (_, replayed) = Wal::open(dir.path(), 0).unwrap();
        assert_eq!(replayed.len(), 1);
        assert_eq!(replayed[0].request, b"kept");
        assert_eq!(fs::metadata(&path).unwrap().len(), (HEADER + 12 + 4) as u64);
    }

    #[test]
    fn flipped_bit_fails_the_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_records(dir.path(), &[(vec![], b"payload".to_vec())]);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, bytes).unwrap();
        let (_, replayed) = Wal::open(dir.path(), 0).unwrap();
        assert!(replayed.is_empty());
    }

    #[test]
    fn remove_through_keeps_unflushed_files() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), 0).unwrap();
        wal.append(&[], b"1").unwrap();
        wal.rotate().unwrap();
        wal.append(&[], b"2").unwrap();
        wal.rotate().unwrap();
        wal.sync().unwrap();
        remove_through(dir.path(), 1).unwrap();
        let left: Vec<u64> = files(dir.path()).unwrap().into_iter().map(|(s, _)| s).collect();
        assert_eq!(left, vec![2, 3]);
        let (_, replayed) = Wal::open(dir.path(), 1).unwrap();
        assert_eq!(replayed.iter().map(|r| r.request.clone()).collect::<Vec<_>>(), vec![b"2".to_vec()]);
    }

    proptest! {
        /// Whatever prefix of a log survives a crash, replay returns exactly the records wholly inside it.
        #[test]
        fn any_cut_replays_a_prefix(reqs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..8), cut in any::<prop::sample::Index>()) {
            let mut bytes = Vec::new();
            let mut ends = Vec::new();
            for (i, r) in reqs.iter().enumerate() {
                let mut body = (i as u64 + 1).to_le_bytes().to_vec();
                body.extend_from_slice(&0u32.to_le_bytes());
                body.extend_from_slice(r);
                bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
                bytes.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
                bytes.extend_from_slice(&body);
                ends.push(bytes.len());
            }
            let cut = cut.index(bytes.len() + 1);
            let (records, valid) = parse(&bytes[..cut]);
            let whole = ends.iter().filter(|&&e| e <= cut).count();
            prop_assert_eq!(records.len(), whole);
            prop_assert_eq!(valid, if whole == 0 { 0 } else { ends[whole - 1] });
            for (r, req) in records.iter().zip(&reqs) {
                prop_assert_eq!(&r.request, req);
            }
        }
    }
}
