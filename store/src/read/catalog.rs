//! What a long-running reader (the collector's query API) knows about each segment without reading it
//! again. A segment never changes once written — compaction writes new ones and retires the old — so its
//! footer, the names it holds, where each trace's rows are and which attribute values each row group holds
//! are learnt once per process, and lookups then read only the row groups, and rows, that can hold what
//! they look for.

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

#[derive(Debug)]
struct RowGroupFacts {
    /// Its place among the segment's row groups.
    index: usize,
    rows: usize,
    trace_ids: Option<([u8; 16], [u8; 16])>,
    starts: Option<(u64, u64)>,
    /// Where each trace's rows are, once the row group's ids have been read for a lookup.
    traces: OnceLock<TraceRuns>,
    /// Which attribute key/values its spans carry ([`value_fingerprint`]), once a tagged search (or the
    /// warm-up) has read the row group.
    values: OnceLock<Bloom>,
    /// The segment's footer with this row group alone. Given the whole footer and a slice, polars decodes
    /// every column of each row group before the slice too (empty, but their dictionaries and first pages
    /// decompressed); given this one, it reads only this row group.
    alone: OnceLock<Arc<FileMetadata>>,
}

/// The runs of one trace's rows in a row group, by a 32-bit fingerprint of the trace id, sorted: a lookup
/// finds its rows without reading the ids again (a fingerprint shared by two traces only costs a read,
/// the rows read are checked). About 12 bytes per trace and row group.
#[derive(Debug, Default)]
struct TraceRuns(Vec<(u32, u32, u32)>);

impl TraceRuns {
    fn of(ids: &BinaryChunked) -> TraceRuns {
        let mut runs: Vec<(u32, u32, u32)> = Vec::new();
        let mut previous: Option<&[u8]> = None;
        for (row, id) in ids.iter().enumerate() {
            let id = id.unwrap_or_default();
            match runs.last_mut() {
                Some(run) if previous == Some(id) => run.2 += 1,
                _ => runs.push((fingerprint(id), row as u32, 1)),
            }
            previous = Some(id);
        }
        runs.sort_unstable();
        TraceRuns(runs)
    }

    /// The row ranges that may hold `trace_id`.
    fn rows(&self, trace_id: &[u8]) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
        let fp = fingerprint(trace_id);
        let from = self.0.partition_point(|run| run.0 < fp);
        self.0[from..].iter().take_while(move |run| run.0 == fp).map(|&(_, first, rows)| {
            let first = first as usize;
            first..first + rows as usize
        })
    }
}

/// A well-mixed 64 bits of an attribute's key and value (as stored text), which a search for that value
/// looks for in a row group's [`RowGroupFacts::values`].
pub(crate) fn value_fingerprint(key: &str, value: &str) -> u64 {
    mix(&[key.as_bytes(), &[0xff], value.as_bytes()].concat())
}

/// A Bloom filter of value fingerprints: 8 bits and 3 probes per distinct value, so about 3 % of the row
/// groups without a searched value are read anyway, at a byte per distinct key/value (on the benchmark's
/// traces the whole catalog, trace runs included, takes 8.5 MB for 10M spans).
#[derive(Debug)]
struct Bloom {
    bits: Vec<u64>,
}

impl Bloom {
    const PROBES: u64 = 3;

    fn of(values: &[u64]) -> Bloom {
        let bits = (values.len() * 8).next_power_of_two().max(64);
        let mut bloom = Bloom { bits: vec![0; bits / 64] };
        for &v in values {
            for bit in bloom.probes(v) {
                bloom.bits[bit / 64] |= 1 << (bit % 64);
            }
        }
        bloom
    }

    fn may_hold(&self, value: u64) -> bool {
        self.probes(value).all(|bit| self.bits[bit / 64] & (1 << (bit % 64)) != 0)
    }

    /// The bits of `value`: double hashing over the fingerprint's two halves.
    fn probes(&self, value: u64) -> impl Iterator<Item = usize> {
        let mask = (self.bits.len() * 64 - 1) as u64;
        let (h1, h2) = (value, (value >> 32) | 1);
        (0..Self::PROBES).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) & mask) as usize)
    }
}

/// One row group of a segment, as a search reads it.
pub(crate) struct RowGroup<'a> {
    segment: &'a SegmentFacts,
    facts: &'a RowGroupFacts,
}

impl RowGroup<'_> {
    pub(crate) fn overlaps(&self, range: TimeRange) -> bool {
        self.facts.overlaps(range)
    }

    /// The latest span start it holds (unknown: the latest possible).
    pub(crate) fn max_start(&self) -> u64 {
        self.facts.starts.map_or(u64::MAX, |(_, hi)| hi)
    }

    /// Whether it may hold every one of `wanted` (value fingerprints): true until its values are known.
    pub(crate) fn may_hold_values(&self, wanted: &[u64]) -> bool {
        self.facts.values.get().is_none_or(|values| wanted.iter().all(|&w| values.may_hold(w)))
    }

    /// Keeps which values it holds (`values`: the distinct fingerprints).
    pub(crate) fn learn_values(&self, values: &[u64]) {
        self.facts.values.get_or_init(|| Bloom::of(values));
    }

    pub(crate) fn has_column(&self, name: &str) -> bool {
        self.segment.metadata.schema().fields().iter().any(|f| f.name() == name)
    }

    /// `columns` of all its rows, in one chunk each.
    pub(crate) fn read(&self, columns: &[&str]) -> PolarsResult<DataFrame> {
        let mut frame = self.segment.read_group(self.facts, columns, 0..self.facts.rows)?;
        frame.rechunk_mut();
        Ok(frame)
    }
}

/// A well-mixed 32 bits of a trace id: ids are random in W3C tracing but not everywhere (`…0001`).
fn fingerprint(id: &[u8]) -> u32 {
    (mix(id) >> 32) as u32
}

/// Bytes mixed into 64 bits, eight at a time (SplitMix64's finaliser after each word).
fn mix(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0x9E37_79B9_7F4A_7C15 ^ bytes.len() as u64;
    for chunk in bytes.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        h = (h ^ u64::from_le_bytes(word)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h ^= h >> 31;
        h = h.wrapping_mul(0x94D0_49BB_1331_11EB);
        h ^= h >> 29;
    }
    h
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
        let Some(paths) = self.location.segment_paths(range)? else { return Ok(None) };
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

impl Catalog {
    /// Learns what lookups would learn on first use, for every live segment: its names, where each trace's
    /// rows are and which attribute values it holds. A query server runs this in the background when it
    /// starts, so the first lookups after a restart are as fast as the rest; segments written later are
    /// learnt by the lookups that first read them. Returns how many segments it read.
    pub fn warm(&self) -> Result<usize> {
        let Some(segments) = self.segments(TimeRange::all())? else { return Ok(0) };
        let parquet = |path: &Path| {
            let path = path.to_owned();
            move |source| StoreError::Parquet { path, source }
        };
        // Names first, for every segment: a user's first call (the services list) is then soon answered.
        for segment in &segments {
            segment.names().map_err(|e| StoreError::Parquet {
                path: segment.path.clone(),
                source: PolarsError::ComputeError(e.into()),
            })?;
        }
        for segment in &segments {
            for rg in &segment.row_groups {
                if rg.traces.get().is_none() {
                    let ids =
                        segment.read_group(rg, &[schema::TRACE_ID], 0..rg.rows).map_err(parquet(&segment.path))?;
                    let ids = ids
                        .column(schema::TRACE_ID)
                        .and_then(|c| c.binary().cloned())
                        .map_err(parquet(&segment.path))?;
                    rg.traces.get_or_init(|| TraceRuns::of(&ids));
                }
            }
        }
        for segment in &segments {
            for rg in segment.row_groups() {
                if rg.facts.values.get().is_none() {
                    let columns: Vec<&str> =
                        crate::read::query::ATTRIBUTE_COLUMNS.iter().copied().filter(|c| rg.has_column(c)).collect();
                    let frame = rg.read(&columns).map_err(parquet(&segment.path))?;
                    let values = crate::read::query::attribute_values(&frame).map_err(parquet(&segment.path))?;
                    rg.learn_values(&values);
                }
            }
        }
        Ok(segments.len())
    }

    /// About how many bytes of memory what the catalog has learnt takes (footers not counted).
    pub fn learnt_bytes(&self) -> usize {
        let segments = self.segments.lock().expect("the catalog lock is never poisoned");
        segments
            .values()
            .flat_map(|s| &s.row_groups)
            .map(|rg| {
                rg.traces.get().map_or(0, |t| t.0.capacity() * 12)
                    + rg.values.get().map_or(0, |v| v.bits.capacity() * 8)
            })
            .sum()
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
        let row_groups = metadata
            .row_groups
            .iter()
            .enumerate()
            .map(|(index, rg)| {
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
                RowGroupFacts {
                    index,
                    rows: rg.num_rows(),
                    trace_ids,
                    starts,
                    traces: OnceLock::new(),
                    values: OnceLock::new(),
                    alone: OnceLock::new(),
                }
            })
            .collect();
        Ok(SegmentFacts { path: path.to_owned(), metadata: Arc::new(metadata), row_groups, names: OnceLock::new() })
    }

    pub(crate) fn row_groups(&self) -> impl Iterator<Item = RowGroup<'_>> {
        self.row_groups.iter().map(move |facts| RowGroup { segment: self, facts })
    }

    /// The (service, span name, kind) triples of the segment.
    pub(crate) fn names(&self) -> std::result::Result<Names, String> {
        self.names
            .get_or_init(|| {
                let frame = self
                    .read_rows(&[schema::SERVICE_NAME, schema::NAME, schema::KIND])
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
    /// statistics allow one of them and, of those, only the rows where a wanted trace is (the first lookup
    /// in a row group reads its ids to learn where each trace is).
    pub(crate) fn read_traces(&self, wanted: &HashSet<Vec<u8>>, range: TimeRange) -> PolarsResult<Option<DataFrame>> {
        let mut parts = Vec::new();
        for rg in &self.row_groups {
            if !wanted.iter().any(|id| rg.may_hold(id, range)) {
                continue;
            }
            let traces = match rg.traces.get() {
                Some(traces) => traces,
                None => {
                    let ids = self.read_group(rg, &[schema::TRACE_ID], 0..rg.rows)?;
                    rg.traces.get_or_init(|| TraceRuns::of(ids.column(schema::TRACE_ID).unwrap().binary().unwrap()))
                }
            };
            let mut runs: Vec<std::ops::Range<usize>> = wanted.iter().flat_map(|id| traces.rows(id)).collect();
            runs.sort_by_key(|r| r.start);
            // Every column but the link span ids, a copy of what `links` holds that no span record reads.
            let columns: Vec<&str> = (self.metadata.schema().fields().iter())
                .map(|field| field.name())
                .filter(|&name| name != schema::LINK_SPAN_IDS)
                .collect();
            for run in runs {
                let rows = self.read_group(rg, &columns, run)?;
                // A fingerprint shared with another trace, or rows outside the range, are dropped here.
                let ids = rows.column(schema::TRACE_ID)?.binary()?;
                let starts = rows.column(schema::START_TIME)?.u64()?;
                let keep: BooleanChunked = ids
                    .iter()
                    .zip(starts.iter())
                    .map(|(id, at)| {
                        id.is_some_and(|id| wanted.contains(id))
                            && at.is_some_and(|at| at >= range.start_unix_nano && at < range.end_unix_nano)
                    })
                    .collect();
                parts.push(rows.filter(&keep)?);
            }
        }
        let Some(mut frame) = parts.pop() else { return Ok(None) };
        for part in parts {
            frame.vstack_mut(&part)?;
        }
        crate::columns::upgrade(&mut frame)?;
        Ok(Some(frame))
    }

    /// `columns` (all when empty) of every row.
    fn read_rows(&self, columns: &[&str]) -> PolarsResult<DataFrame> {
        read(&self.path, Arc::clone(&self.metadata), columns, None)
    }

    /// `columns` (all when empty) of `rows` of one row group.
    fn read_group(
        &self,
        rg: &RowGroupFacts,
        columns: &[&str],
        rows: std::ops::Range<usize>,
    ) -> PolarsResult<DataFrame> {
        let alone = rg.alone.get_or_init(|| {
            let group = self.metadata.row_groups[rg.index].clone();
            Arc::new(FileMetadata {
                num_rows: group.num_rows(),
                max_row_group_height: group.num_rows(),
                row_groups: vec![group],
                ..FileMetadata::clone(&self.metadata)
            })
        });
        read(&self.path, Arc::clone(alone), columns, Some((rows.start, rows.len())))
    }
}

/// `columns` (all when empty) of the rows in `slice` (offset, length) of the file at `path`, or of every row.
fn read(
    path: &Path,
    metadata: Arc<FileMetadata>,
    columns: &[&str],
    slice: Option<(usize, usize)>,
) -> PolarsResult<DataFrame> {
    let file = File::open(path)?;
    // Over the columns: a lookup reads few rows of many columns, each its own pages to decompress.
    let mut reader = ParquetReader::new(file).with_slice(slice).read_parallel(ParallelStrategy::Columns);
    if !columns.is_empty() {
        reader = reader.with_columns(Some(columns.iter().map(|c| c.to_string()).collect()));
    }
    reader.set_metadata(metadata);
    reader.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bloom_holds_what_it_was_given_and_little_else() {
        let given: Vec<u64> = (0..10_000u32).map(|i| value_fingerprint("task.uuid", &i.to_string())).collect();
        let bloom = Bloom::of(&given);
        assert!(given.iter().all(|&v| bloom.may_hold(v)), "no false negatives");
        let others = (10_000..20_000u32).filter(|i| bloom.may_hold(value_fingerprint("task.uuid", &i.to_string())));
        let rate = others.count() as f64 / 10_000.0;
        assert!(rate < 0.06, "false positives {rate}");
        assert!(!Bloom::of(&[]).may_hold(value_fingerprint("k", "v")));
    }

    #[test]
    fn trace_runs_find_each_traces_rows() {
        let ids: Vec<[u8; 16]> = [1u8, 1, 2, 3, 3, 3, 2].iter().map(|&i| [i; 16]).collect();
        let column = BinaryChunked::from_iter_values("ids".into(), ids.iter().map(|id| id.as_slice()));
        let runs = TraceRuns::of(&column);
        let rows = |i: u8| runs.rows(&[i; 16]).map(|r| (r.start, r.end)).collect::<Vec<_>>();
        assert_eq!(rows(1), [(0, 2)]);
        assert_eq!(rows(3), [(3, 6)]);
        let mut two = rows(2);
        two.sort();
        assert_eq!(two, [(2, 3), (6, 7)], "a trace in two runs (two hours of one segment)");
        assert_eq!(rows(9), []);
    }
}
