//! Parquet segments: `spans/hour=YYYY-MM-DDTHH/seg-{lo:012}-{hi:012}.parquet`, partitioned by the hour of
//! the span's start. `lo..=hi` is the range of flushes whose spans the segment holds: a flush writes
//! `seg-{n}-{n}`, a compaction of `seg-a-b … seg-c-d` writes `seg-a-d`. A segment whose range lies inside
//! another's in the same partition is obsolete (its rows are in the larger one); readers skip it and it is
//! deleted after a grace period, so a reader that listed it a moment ago can still open it.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use polars::prelude::{DataFrame, PolarsResult};

use hoptrace_otlp::{SpanId, SpanKey, SpanRow, TraceId, WireSpan};

use crate::error::{Result, StoreError};

mod checkpoint;
mod encode;
mod hour;

pub use checkpoint::{recover, Checkpoint};
use encode::encode;
pub use hour::Hour;

pub const SPANS_DIR: &str = "spans";

/// The order of rows in a segment: by hour, then trace, so a trace's spans are neighbours (readers group
/// them by trace), then start time and span id.
pub fn row_order(trace_id: TraceId, span_id: SpanId, start_unix_nano: u64) -> (Hour, TraceId, u64, SpanId) {
    (Hour::of_nanos(start_unix_nano), trace_id, start_unix_nano, span_id)
}

/// One segment file on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub hour: Hour,
    pub lo: u64,
    pub hi: u64,
    pub path: PathBuf,
    pub bytes: u64,
}

impl Segment {
    pub fn file_name(lo: u64, hi: u64) -> String {
        format!("seg-{lo:012}-{hi:012}.parquet")
    }

    pub(crate) fn parse_file_name(name: &str) -> Option<(u64, u64)> {
        let (lo, hi) = name.strip_prefix("seg-")?.strip_suffix(".parquet")?.split_once('-')?;
        Some((lo.parse().ok()?, hi.parse().ok()?))
    }
}

/// Which flushes a segment holds: those of one writer (a collector, in a shared bucket) starting in one
/// hour, `lo..=hi`. Local segments and those in object storage are judged live or obsolete alike.
pub trait Flushes {
    fn hour(&self) -> Hour;
    fn flushes(&self) -> (u64, u64);
    /// Whose flush numbers these are: flush numbers are per data directory.
    fn writer(&self) -> &str {
        ""
    }

    fn covers(&self, other: &Self) -> bool {
        let ((lo, hi), (other_lo, other_hi)) = (self.flushes(), other.flushes());
        self.hour() == other.hour()
            && self.writer() == other.writer()
            && lo <= other_lo
            && other_hi <= hi
            && (lo, hi) != (other_lo, other_hi)
    }
}

impl Flushes for Segment {
    fn hour(&self) -> Hour {
        self.hour
    }
    fn flushes(&self) -> (u64, u64) {
        (self.lo, self.hi)
    }
}

pub fn partition_dir(data_dir: &Path, hour: Hour) -> PathBuf {
    data_dir.join(SPANS_DIR).join(hour.dir_name())
}

/// The partitions on disk, oldest first.
pub fn partitions(data_dir: &Path) -> Result<Vec<Hour>> {
    let root = data_dir.join(SPANS_DIR);
    let mut hours = Vec::new();
    let entries = match fs::read_dir(&root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(hours),
        Err(e) => return Err(StoreError::io("list", &root)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(StoreError::io("list", &root))?;
        if let Some(hour) = entry.file_name().to_str().and_then(Hour::parse_dir_name) {
            hours.push(hour);
        }
    }
    hours.sort();
    Ok(hours)
}

/// Every segment file of a partition, live and obsolete, ordered by flush range.
pub fn all_segments(data_dir: &Path, hour: Hour) -> Result<Vec<Segment>> {
    let dir = partition_dir(data_dir, hour);
    let mut out = Vec::new();
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(StoreError::io("list", &dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(StoreError::io("list", &dir))?;
        let name = entry.file_name();
        if let Some((lo, hi)) = name.to_str().and_then(Segment::parse_file_name) {
            let bytes = entry.metadata().map(|m| m.len()).unwrap_or(0);
            out.push(Segment { hour, lo, hi, path: entry.path(), bytes });
        }
    }
    out.sort_by_key(|s| (s.lo, std::cmp::Reverse(s.hi)));
    Ok(out)
}

/// Splits segments into (live, obsolete): obsolete ones are covered by a compacted segment.
pub fn split_obsolete<S: Flushes + Clone>(segments: Vec<S>) -> (Vec<S>, Vec<S>) {
    let (obsolete, live): (Vec<_>, Vec<_>) =
        segments.iter().cloned().partition(|s| segments.iter().any(|o| o.covers(s)));
    (live, obsolete)
}

/// The live segments of a partition.
pub fn live_segments(data_dir: &Path, hour: Hour) -> Result<Vec<Segment>> {
    Ok(split_obsolete(all_segments(data_dir, hour)?).0)
}

/// A span as a flush writes it: its key and start time place it in a segment, [`FlushRow::frame`] builds
/// the columns. Spans still in their request's bytes (the collector) and decoded rows (imports, the
/// synthetic generator) are written the same way.
pub trait FlushRow: Sized {
    fn key(&self) -> SpanKey;
    fn start_unix_nano(&self) -> u64;
    fn frame(rows: &[&Self]) -> PolarsResult<DataFrame>;
}

impl FlushRow for WireSpan {
    fn key(&self) -> SpanKey {
        WireSpan::key(self)
    }
    fn start_unix_nano(&self) -> u64 {
        self.start_time_unix_nano
    }
    fn frame(rows: &[&Self]) -> PolarsResult<DataFrame> {
        crate::columns::from_wire(rows)
    }
}

impl FlushRow for SpanRow {
    fn key(&self) -> SpanKey {
        SpanRow::key(self)
    }
    fn start_unix_nano(&self) -> u64 {
        self.start_time_unix_nano
    }
    fn frame(rows: &[&Self]) -> PolarsResult<DataFrame> {
        crate::columns::to_frame(rows.iter().copied())
    }
}

/// What one flush wrote.
#[derive(Debug, Default)]
pub struct Flushed {
    pub segments: Vec<Segment>,
    /// Spans written: the rows given, a repeated key counted once.
    pub spans: usize,
}

/// Writes one flush: `rows` in segment order ([`row_order`]; a repeated key kept once), as one segment
/// `seg-{flush}-{flush}` in each hour partition they start in.
pub fn write_flush<'a, R: FlushRow + 'a>(
    data_dir: &Path,
    flush: u64,
    rows: impl IntoIterator<Item = &'a R>,
    row_group_rows: usize,
) -> Result<Flushed> {
    // Sort references, not the rows: moving a reference is cheaper.
    let mut order: Vec<&R> = rows.into_iter().collect();
    order.sort_unstable_by_key(|r| {
        let (trace_id, span_id) = r.key();
        row_order(trace_id, span_id, r.start_unix_nano())
    });
    order.dedup_by_key(|r| r.key());
    let mut flushed = Flushed { segments: Vec::new(), spans: order.len() };
    let hour = |r: &&R| Hour::of_nanos(r.start_unix_nano());
    for chunk in order.chunk_by(|a, b| hour(a) == hour(b)) {
        let mut frame = R::frame(chunk).map_err(|source| StoreError::Parquet { path: data_dir.to_owned(), source })?;
        flushed.segments.push(write(data_dir, hour(&chunk[0]), flush, flush, &mut frame, row_group_rows)?);
    }
    Ok(flushed)
}

/// Writes `frame` as a segment: to a temporary name, fsynced, renamed, and the directory fsynced, so a
/// segment is either wholly there or not at all.
pub fn write(
    data_dir: &Path,
    hour: Hour,
    lo: u64,
    hi: u64,
    frame: &mut DataFrame,
    row_group_rows: usize,
) -> Result<Segment> {
    let dir = partition_dir(data_dir, hour);
    fs::create_dir_all(&dir).map_err(StoreError::io("create", &dir))?;
    let path = dir.join(Segment::file_name(lo, hi));
    let tmp = path.with_extension("parquet.tmp");
    let mut file = File::create(&tmp).map_err(StoreError::io("create", &tmp))?;
    if let Err(source) = encode(&mut file, frame, row_group_rows) {
        let _ = fs::remove_file(&tmp);
        return Err(StoreError::Parquet { path: tmp, source });
    }
    file.sync_all().map_err(StoreError::io("fsync", &tmp))?;
    let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    drop(file);
    fs::rename(&tmp, &path).map_err(StoreError::io("rename", &tmp))?;
    sync_dir(&dir)?;
    Ok(Segment { hour, lo, hi, path, bytes })
}

/// fsync on a directory makes a rename or a new file in it durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(StoreError::io("fsync", dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema;
    use polars_arrow::array::Utf8ViewArray;

    #[test]
    fn hour_names_round_trip() {
        // 2026-11-29T21:08:58Z
        let nanos = 1_795_986_538u64 * 1_000_000_000;
        let hour = Hour::of_nanos(nanos);
        assert_eq!(hour.dir_name(), "hour=2026-11-29T21");
        assert_eq!(Hour::parse_dir_name("hour=2026-11-29T21"), Some(hour));
        assert_eq!(Hour(0).dir_name(), "hour=1970-01-01T00");
        for h in (0..200_000u64).step_by(997) {
            assert_eq!(Hour::parse_dir_name(&Hour(h).dir_name()), Some(Hour(h)));
        }
        assert_eq!(Hour::parse_dir_name("hour=2026-11-29T24"), None);
        assert_eq!(Hour::parse_dir_name("hour=junk"), None);
    }

    #[test]
    fn compacted_segment_makes_its_inputs_obsolete() {
        let seg = |lo, hi| Segment { hour: Hour(1), lo, hi, path: PathBuf::new(), bytes: 0 };
        let (live, obsolete) = split_obsolete(vec![seg(1, 1), seg(1, 3), seg(2, 2), seg(3, 3), seg(4, 4)]);
        assert_eq!(live.iter().map(|s| (s.lo, s.hi)).collect::<Vec<_>>(), vec![(1, 3), (4, 4)]);
        assert_eq!(obsolete.len(), 3);
    }

    #[test]
    fn segments_store_never_null_fields_as_required_and_statistics_of_flat_columns() {
        use polars_parquet::parquet::read::read_metadata;
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<_> = (1..=4u8).map(|i| hoptrace_testkit::spans::row(i, i)).collect();
        let mut frame = crate::to_frame(rows.iter()).unwrap();
        let segment = write(dir.path(), Hour(0), 1, 1, &mut frame, 2).unwrap();
        let meta = read_metadata(&mut File::open(&segment.path).unwrap()).unwrap();
        assert_eq!(meta.row_groups.len(), 2, "row groups of the requested size");
        let columns = meta.row_groups[0].parquet_columns();
        let column = |path: &str| {
            columns
                .iter()
                .find(|c| {
                    c.descriptor().path_in_schema.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(".") == path
                })
                .unwrap_or_else(|| panic!("no column {path}"))
        };
        // The maximum definition level counts the optional and repeated fields on a column's path.
        let def_level = |path: &str| column(path).descriptor().descriptor.max_def_level;
        assert_eq!(def_level("span_id"), 0);
        assert_eq!(def_level("start_time_unix_nano"), 0);
        assert_eq!(def_level("parent_span_id"), 1);
        assert_eq!(def_level("attribute_keys.list.element"), 1, "a required list of required keys");
        assert_eq!(def_level("attribute_values.list.element"), 2, "a value may be empty (null)");
        assert_eq!(def_level("links.list.element.span_id"), 1);
        assert_eq!(def_level("links.list.element.trace_state"), 2);
        let has_statistics = |path: &str| column(path).statistics(&meta.footer_buf).is_some();
        for flat in ["trace_id", "span_id", "start_time_unix_nano", "end_time_unix_nano", "service_name", "name"] {
            assert!(has_statistics(flat), "{flat} has statistics for pruning");
        }
        for nested in ["attribute_keys.list.element", "attribute_values.list.element", "links.list.element.trace_id"] {
            assert!(!has_statistics(nested), "{nested} has no statistics");
        }
        // And every field reads back as written.
        let read = crate::scan(dir.path(), crate::TimeRange::all()).unwrap().collect().unwrap();
        assert!(read.equals_missing(&frame));
    }

    #[test]
    fn row_groups_without_any_link_or_event_read_back_beside_ones_with_them() {
        use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
        let dir = tempfile::tempdir().unwrap();
        let mut rows: Vec<_> = (1..=6u8).map(|i| hoptrace_testkit::spans::row(i, i)).collect();
        // Row groups of two rows: the first and the last have neither links nor events.
        rows[2].links = vec![Link { trace_id: vec![7; 16], span_id: vec![8; 8], flags: 1, ..Default::default() }];
        rows[3].events = vec![Event { time_unix_nano: 1_500, name: "retry".into(), ..Default::default() }];
        let mut frame = crate::to_frame(rows.iter()).unwrap();
        write(dir.path(), Hour(0), 1, 1, &mut frame, 2).unwrap();
        let read = crate::scan(dir.path(), crate::TimeRange::all()).unwrap().collect().unwrap();
        assert!(read.equals_missing(&frame));
        let records = crate::records(&read).unwrap();
        assert_eq!(
            records.iter().map(|r| (r.links.len(), r.events.len())).collect::<Vec<_>>(),
            [(0, 0), (0, 0), (1, 0), (0, 1), (0, 0), (0, 0)]
        );
        assert_eq!(records[2].links[0].span_id, "0808080808080808");
        assert_eq!(records[3].events[0].name, "retry");
    }

    #[test]
    fn attribute_text_that_repeats_is_dictionary_encoded_and_reads_back_with_its_empty_values() {
        use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
        use polars_parquet::parquet::read::read_metadata;
        let kv = |key: &str, value: Option<Value>| KeyValue {
            key: key.into(),
            value: Some(AnyValue { value }),
            ..Default::default()
        };
        let dir = tempfile::tempdir().unwrap();
        // Row groups of 36,000 rows: the first over two pages of list items, the second a slice of the frame.
        let rows: Vec<_> = (1..=40_000u32)
            .map(|i| {
                let mut row = hoptrace_testkit::spans::row((i % 200) as u8, (i % 250) as u8);
                row.span_id = (i as u64).to_be_bytes();
                row.attributes = vec![
                    kv("task.template", Some(Value::StringValue("linear_3".into()))),
                    kv("messaging.message.id", Some(Value::StringValue(format!("message number {}", i % 4)))),
                    // Every third value is empty: a null among the dictionary's keys.
                    kv("step.handler", (i % 3 != 0).then(|| Value::StringValue("simple_calculation".into()))),
                ];
                row
            })
            .collect();
        let mut frame = crate::to_frame(rows.iter()).unwrap();
        let segment = write(dir.path(), Hour(0), 1, 1, &mut frame, 36_000).unwrap();
        let meta = read_metadata(&mut File::open(&segment.path).unwrap()).unwrap();
        assert_eq!(meta.row_groups.len(), 2);
        let has_dictionary = |path: &str| {
            let columns = meta.row_groups[0].parquet_columns();
            let column = columns.iter().find(|c| c.descriptor().path_in_schema.join(".") == path).unwrap();
            column.dictionary_page_offset().is_some()
        };
        assert!(has_dictionary("attribute_keys.list.element"));
        assert!(has_dictionary("attribute_values.list.element"), "six distinct values in 108,000");
        assert!(!has_dictionary("attribute_types.list.element"), "not text");
        assert!(encode::text_dictionary(&Utf8ViewArray::from_slice_values(["a", "b", "a", "a", "a", "a", "a", "a"]))
            .is_some());
        assert!(
            encode::text_dictionary(&Utf8ViewArray::from_slice_values(["a", "b", "c", "a", "a", "a", "a", "a"]))
                .is_none(),
            "3 of 8 distinct"
        );
        let read = crate::scan(dir.path(), crate::TimeRange::all()).unwrap().collect().unwrap();
        assert!(read.equals_missing(&frame));
        let records = crate::records(&read).unwrap();
        assert_eq!(records[2].attribute("step.handler"), Some(""), "an empty value reads as empty text");
        assert_eq!(records[3].attribute("step.handler"), Some("simple_calculation"));
        assert_eq!(records[4].attribute("messaging.message.id"), Some("message number 1"));
        assert_eq!(records[35_998].attribute("messaging.message.id"), Some("message number 3"), "the second page");
        assert_eq!(records[39_999].attribute("step.handler"), Some("simple_calculation"), "the second row group");
    }

    #[test]
    fn a_null_in_a_required_column_is_refused_not_written() {
        use polars::prelude::{IntoColumn, NamedFrom, Series};
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<_> = (1..=2u8).map(|i| hoptrace_testkit::spans::row(i, i)).collect();
        let mut frame = crate::to_frame(rows.iter()).unwrap();
        let names = Series::new(schema::NAME.into(), [Some("a"), None]).into_column();
        frame.replace(schema::NAME, names).unwrap();
        let err = write(dir.path(), Hour(0), 1, 1, &mut frame, 8).unwrap_err().to_string();
        assert!(err.contains("column name holds nulls"), "{err}");
        let dir_entries = fs::read_dir(partition_dir(dir.path(), Hour(0))).unwrap().count();
        assert_eq!(dir_entries, 0, "neither a segment nor its temporary file left behind");
    }

    #[test]
    fn checkpoint_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Checkpoint::load(dir.path()).unwrap(), Checkpoint::default());
        let cp = Checkpoint { flush: 7, wal_seq: 42 };
        cp.store(dir.path()).unwrap();
        assert_eq!(Checkpoint::load(dir.path()).unwrap(), cp);
        fs::write(dir.path().join(checkpoint::CHECKPOINT), "flush=x\n").unwrap();
        assert!(Checkpoint::load(dir.path()).unwrap_err().to_string().contains("flush is not a number"));
    }
}
