//! The read side: a lazy, pruned scan over the live segments of a time range.

use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::error::{Result, StoreError};
use crate::schema;
use crate::segment::{self, Hour};

/// Unix nanoseconds fit in an i64 until the year 2262; polars literals need them to.
const MAX_NANOS: u64 = i64::MAX as u64;

/// A half-open range `[start, end)` of span start times, in Unix nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
}

impl TimeRange {
    pub fn all() -> Self {
        TimeRange { start_unix_nano: 0, end_unix_nano: MAX_NANOS }
    }

    /// The `duration` up to `now`.
    pub fn last(duration: std::time::Duration, now: std::time::SystemTime) -> Self {
        let end = now.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
        TimeRange {
            start_unix_nano: end.saturating_sub(duration.as_nanos() as u64),
            end_unix_nano: end.saturating_add(1),
        }
    }

    pub(crate) fn hours(&self) -> std::ops::RangeInclusive<Hour> {
        Hour::of_nanos(self.start_unix_nano)..=Hour::of_nanos(self.end_unix_nano.saturating_sub(1))
    }
}

/// The live segment files holding spans that start in `range`: only the partitions the range touches.
pub fn segment_paths(data_dir: &Path, range: TimeRange) -> Result<Vec<PathBuf>> {
    let hours = range.hours();
    let mut paths = Vec::new();
    for hour in segment::partitions(data_dir)?.into_iter().filter(|h| hours.contains(h)) {
        paths.extend(segment::live_segments(data_dir, hour)?.into_iter().map(|s| s.path));
    }
    Ok(paths)
}

/// A `LazyFrame` of the spans that start in `range`, in the schema of `docs/storage.md`. Partitions outside
/// the range are never opened; inside them, the start-time filter is pushed down to skip row groups by
/// their statistics.
pub fn scan(data_dir: &Path, range: TimeRange) -> Result<LazyFrame> {
    scan_listed(&segment_paths(data_dir, range)?, range, data_dir)
}

/// [`scan`] over segment files already listed (`origin` names the store in errors).
pub(crate) fn scan_listed(paths: &[PathBuf], range: TimeRange, origin: &Path) -> Result<LazyFrame> {
    if paths.is_empty() {
        return Ok(empty());
    }
    // Read against the current schema: segments written before a column was added give nulls for it.
    let lf = empty()
        .collect_schema()
        .and_then(|current| {
            let args = ScanArgsParquet { schema: Some(current), allow_missing_columns: true, ..scan_args() };
            scan_files(paths.iter().map(PathBuf::as_path), args)
        })
        .map_err(|source| StoreError::Parquet { path: origin.to_owned(), source })?;
    let (start, end) = (range.start_unix_nano.min(MAX_NANOS), range.end_unix_nano.min(MAX_NANOS));
    Ok(lf.filter(col(schema::START_TIME).gt_eq(lit(start)).and(col(schema::START_TIME).lt(lit(end)))))
}

/// The same spans as [`scan`], one `LazyFrame` per segment, so a reader can hold one segment's columns
/// in memory at a time.
pub fn scan_segments(data_dir: &Path, range: TimeRange) -> Result<Vec<LazyFrame>> {
    segments_listed(segment_paths(data_dir, range)?, range)
}

/// [`scan_segments`] over segment files already listed.
pub(crate) fn segments_listed(paths: Vec<PathBuf>, range: TimeRange) -> Result<Vec<LazyFrame>> {
    let (start, end) = (range.start_unix_nano.min(MAX_NANOS), range.end_unix_nano.min(MAX_NANOS));
    paths
        .into_iter()
        .map(|path| {
            let lf = scan_path(&path).map_err(|source| StoreError::Parquet { path, source })?;
            Ok(lf.filter(col(schema::START_TIME).gt_eq(lit(start)).and(col(schema::START_TIME).lt(lit(end)))))
        })
        .collect()
}

/// One segment, in the schema its writer wrote (see [`collect_columns`]).
pub(crate) fn scan_path(path: &Path) -> PolarsResult<LazyFrame> {
    scan_files(std::iter::once(path), scan_args())
}

fn scan_files<'a>(paths: impl Iterator<Item = &'a Path>, args: ScanArgsParquet) -> PolarsResult<LazyFrame> {
    LazyFrame::scan_parquet_files(paths.map(|p| PlRefPath::new(p.to_string_lossy().into_owned())).collect(), args)
}

fn scan_args() -> ScanArgsParquet {
    // The `hour=…` directories are ours, not hive columns: the hour is derivable from the start time.
    ScanArgsParquet { hive_options: HiveOptions::new_disabled(), ..Default::default() }
}

/// Reads `columns` of one segment from [`scan_segments`]. A column the segment's writer did not store yet
/// is derived from what it stored ([`crate::columns::upgrade`]), and only then are its sources read.
pub fn collect_columns(mut segment: LazyFrame, columns: &[&str]) -> PolarsResult<DataFrame> {
    let derive = columns.contains(&schema::LINK_SPAN_IDS) && !segment.collect_schema()?.contains(schema::LINK_SPAN_IDS);
    let mut read: Vec<&str> = columns.to_vec();
    if derive {
        read.retain(|&c| c != schema::LINK_SPAN_IDS);
        if !read.contains(&schema::LINKS) {
            read.push(schema::LINKS);
        }
    }
    let mut frame = segment.select(read.into_iter().map(col).collect::<Vec<_>>()).collect()?;
    if derive {
        crate::columns::upgrade(&mut frame)?;
    }
    frame.select(columns.iter().copied())
}

/// An empty frame with the span schema, so callers need no special case for an empty range.
pub fn empty() -> LazyFrame {
    crate::columns::to_frame(std::iter::empty()).expect("the empty frame has a valid schema").lazy()
}
