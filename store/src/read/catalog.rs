//! What a long-running reader (the collector's query API) knows about each segment without reading it
//! again. A segment never changes once written — compaction writes new ones and retires the old — so its
//! footer is read once per process and the names it holds once per process, and lookups then read only the
//! row groups that can hold what they look for.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use polars::prelude::*;
use polars_parquet::parquet::metadata::FileMetadata;
use polars_parquet::parquet::statistics::Statistics;

use super::{Location, TimeRange};
use crate::error::{Result, StoreError};
use crate::schema;

/// A store as a lookup reads it: its [`Location`], and for the embedded store what is known of each
/// segment read so far.
pub struct Catalog {
    location: Location,
    segments: Mutex<HashMap<PathBuf, Arc<SegmentFacts>>>,
}

/// The (service, span name, kind) triples of a segment.
pub(crate) type Names = Arc<BTreeSet<(String, String, u8)>>;

/// One segment's footer, digested: where each row group starts and which trace ids and start times it
/// holds (the writer keeps statistics of the flat columns, and rows are sorted by hour then trace id, so a
/// row group holds a narrow band of ids).
pub(crate) struct SegmentFacts {
    pub(crate) path: PathBuf,
    metadata: Arc<FileMetadata>,
    row_groups: Vec<RowGroupFacts>,
    /// The (service, span name, kind) triples the segment holds, read when first asked for.
    names: OnceLock<std::result::Result<Names, String>>,
}

#[derive(Debug, Clone, Copy)]
struct RowGroupFacts {
    offset: usize,
    rows: usize,
    trace_ids: Option<([u8; 16], [u8; 16])>,
    starts: Option<(u64, u64)>,
}

impl RowGroupFacts {
    fn may_hold(&self, trace_id: &[u8], range: TimeRange) -> bool {
        let ids = self.trace_ids.is_none_or(|(lo, hi)| lo.as_slice() <= trace_id && trace_id <= hi.as_slice());
        ids && self.overlaps(range)
    }

    fn overlaps(&self, range: TimeRange) -> bool {
        self.starts.is_none_or(|(lo, hi)| lo < range.end_unix_nano && hi >= range.start_unix_nano)
    }
}

impl Catalog {
    pub fn new(location: Location) -> Catalog {
        Catalog { location, segments: Mutex::default() }
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The live segments holding spans of `range`, each with its facts; `None` for a store without segment
    /// files (PostgreSQL). Segments gone from a whole-store listing are forgotten.
    pub(crate) fn segments(&self, range: TimeRange) -> Result<Option<Vec<Arc<SegmentFacts>>>> {
        let Location::Dir(dir) = &self.location else { return Ok(None) };
        let paths = super::segment_paths(dir, range)?;
        let known: Vec<Option<Arc<SegmentFacts>>> = {
            let segments = self.segments.lock().expect("the catalog lock is never poisoned");
            paths.iter().map(|p| segments.get(p).cloned()).collect()
        };
        let mut out = Vec::with_capacity(paths.len());
        let mut read = Vec::new();
        for (path, facts) in paths.iter().zip(known) {
            match facts {
                Some(facts) => out.push(facts),
                None => {
                    // A segment listed a moment ago may have been retired by compaction since: its
                    // replacement is listed next time.
                    match SegmentFacts::read(path) {
                        Ok(facts) => {
                            let facts = Arc::new(facts);
                            read.push(Arc::clone(&facts));
                            out.push(facts);
                        }
                        Err(_) if !path.exists() => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        let mut segments = self.segments.lock().expect("the catalog lock is never poisoned");
        if range == TimeRange::all() {
            let live: HashSet<&PathBuf> = paths.iter().collect();
            segments.retain(|path, _| live.contains(path));
        }
        for facts in read {
            segments.insert(facts.path.clone(), facts);
        }
        Ok(Some(out))
    }
}

impl SegmentFacts {
    fn read(path: &Path) -> Result<SegmentFacts> {
        let parquet = |e: polars_parquet::parquet::error::ParquetError| StoreError::Parquet {
            path: path.to_owned(),
            source: PolarsError::ComputeError(e.to_string().into()),
        };
        let mut file = File::open(path).map_err(StoreError::io("open", path))?;
        let metadata = polars_parquet::parquet::read::read_metadata(&mut file).map_err(parquet)?;
        let mut offset = 0;
        let row_groups = metadata
            .row_groups
            .iter()
            .map(|rg| {
                let stats = |column: &str| {
                    let chunk = rg.columns_under_root_iter(column)?.next()?;
                    chunk.statistics(&metadata.footer_buf)?.ok()
                };
                let trace_ids = match stats(schema::TRACE_ID) {
                    Some(Statistics::Binary(s)) => {
                        let id = |v: Option<Vec<u8>>| v.and_then(|v| <[u8; 16]>::try_from(v).ok());
                        id(s.min_value).zip(id(s.max_value))
                    }
                    _ => None,
                };
                let starts = match stats(schema::START_TIME) {
                    Some(Statistics::Int64(s)) => s.min_value.zip(s.max_value).map(|(lo, hi)| (lo as u64, hi as u64)),
                    _ => None,
                };
                let facts = RowGroupFacts { offset, rows: rg.num_rows(), trace_ids, starts };
                offset += rg.num_rows();
                facts
            })
            .collect();
        Ok(SegmentFacts { path: path.to_owned(), metadata: Arc::new(metadata), row_groups, names: OnceLock::new() })
    }

    /// The (service, span name, kind) triples of the segment.
    pub(crate) fn names(&self) -> std::result::Result<Names, String> {
        self.names
            .get_or_init(|| {
                let frame = self
                    .read_rows(&[schema::SERVICE_NAME, schema::NAME, schema::KIND], None)
                    .and_then(|f| f.unique_stable(None, UniqueKeepStrategy::Any, None))
                    .map_err(|e| e.to_string())?;
                let text = |name: &str| frame.column(name).and_then(|c| c.str().cloned()).map_err(|e| e.to_string());
                let (services, names) = (text(schema::SERVICE_NAME)?, text(schema::NAME)?);
                let kinds = frame.column(schema::KIND).and_then(|c| c.u8().cloned()).map_err(|e| e.to_string())?;
                let set = services
                    .iter()
                    .zip(names.iter())
                    .zip(kinds.iter())
                    .filter_map(|((s, n), k)| Some((s?.to_owned(), n?.to_owned(), k.unwrap_or_default())))
                    .collect();
                Ok(Arc::new(set))
            })
            .clone()
    }

    /// The rows of the wanted traces that start in `range`, all columns, from only the row groups whose
    /// statistics allow one of them.
    pub(crate) fn read_traces(&self, wanted: &HashSet<Vec<u8>>, range: TimeRange) -> PolarsResult<Option<DataFrame>> {
        let mut parts = Vec::new();
        for rg in &self.row_groups {
            if !wanted.iter().any(|id| rg.may_hold(id, range)) {
                continue;
            }
            let slice = Some((rg.offset, rg.rows));
            let ids = self.read_rows(&[schema::TRACE_ID, schema::START_TIME], slice)?;
            let trace_ids = ids.column(schema::TRACE_ID)?.binary()?;
            let starts = ids.column(schema::START_TIME)?.u64()?;
            let mask: BooleanChunked = trace_ids
                .iter()
                .zip(starts.iter())
                .map(|(id, at)| {
                    id.is_some_and(|id| wanted.contains(id))
                        && at.is_some_and(|at| at >= range.start_unix_nano && at < range.end_unix_nano)
                })
                .collect();
            if mask.any() {
                parts.push(self.read_rows(&[], slice)?.filter(&mask)?);
            }
        }
        let Some(mut frame) = parts.pop() else { return Ok(None) };
        for part in parts {
            frame.vstack_mut(&part)?;
        }
        crate::columns::upgrade(&mut frame)?;
        Ok(Some(frame))
    }

    /// `columns` (all when empty) of the rows in `slice` (offset, length), or of every row.
    fn read_rows(&self, columns: &[&str], slice: Option<(usize, usize)>) -> PolarsResult<DataFrame> {
        let file = File::open(&self.path)?;
        let mut reader = ParquetReader::new(file).with_slice(slice);
        if !columns.is_empty() {
            reader = reader.with_columns(Some(columns.iter().map(|c| c.to_string()).collect()));
        }
        reader.set_metadata(Arc::clone(&self.metadata));
        reader.finish()
    }
}
