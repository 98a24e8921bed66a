//! Compaction (a run of flush segments merged into one, duplicates dropped) and the newest stored keys
//! that seed the dedup window at start-up.

use std::path::Path;

use crate::error::{Result, StoreError};
use crate::schema;
use crate::segment::{self, Hour, Segment};
use hoptrace_otlp::SpanKey;

use super::*;

/// The (trace id, span id) of up to `limit` spans from the newest segments; reads only the two id columns.
pub(super) fn newest_stored_keys(data_dir: &Path, limit: usize) -> Result<Vec<SpanKey>> {
    let mut keys = Vec::new();
    for hour in segment::partitions(data_dir)?.into_iter().rev() {
        for seg in segment::live_segments(data_dir, hour)?.into_iter().rev() {
            if keys.len() >= limit {
                return Ok(keys);
            }
            let frame = crate::read::scan_path(&seg.path)
                .and_then(|lf| {
                    lf.select([polars::prelude::col(schema::TRACE_ID), polars::prelude::col(schema::SPAN_ID)]).collect()
                })
                .map_err(|source| StoreError::Parquet { path: seg.path.clone(), source })?;
            let parquet = |source| StoreError::Parquet { path: seg.path.clone(), source };
            let traces = frame.column(schema::TRACE_ID).and_then(|c| c.binary().cloned()).map_err(parquet)?;
            let spans = frame.column(schema::SPAN_ID).and_then(|c| c.binary().cloned()).map_err(parquet)?;
            for (t, s) in traces.iter().zip(spans.iter()) {
                if let (Some(Ok(t)), Some(Ok(s))) = (t.map(<[u8; 16]>::try_from), s.map(<[u8; 8]>::try_from)) {
                    keys.push((t, s));
                }
            }
        }
    }
    Ok(keys)
}

/// Concatenates the run's segments in flush order, dropping any span whose key an earlier one holds.
/// Only the id columns are hashed and rows are only gathered when there are duplicates: sorting or
/// gathering the nested attribute columns costs many times the data's size in polars.
pub(super) fn merge(data_dir: &Path, hour: Hour, run: &[Segment], row_group_rows: usize) -> Result<Segment> {
    let mut seen = KeySet::default();
    let mut merged: Option<polars::prelude::DataFrame> = None;
    for seg in run {
        let parquet = |source| StoreError::Parquet { path: seg.path.clone(), source };
        let mut frame = crate::read::scan_path(&seg.path).and_then(|lf| lf.collect()).map_err(parquet)?;
        // Segments of an older writer may lack a column: the merged one has them all.
        crate::columns::upgrade(&mut frame).map_err(parquet)?;
        let traces = frame.column(schema::TRACE_ID).and_then(|c| c.binary().cloned()).map_err(parquet)?;
        let spans = frame.column(schema::SPAN_ID).and_then(|c| c.binary().cloned()).map_err(parquet)?;
        let keep: Vec<bool> = traces
            .iter()
            .zip(spans.iter())
            .map(|(t, s)| match (t.and_then(|t| t.try_into().ok()), s.and_then(|s| s.try_into().ok())) {
                (Some(t), Some(s)) => seen.insert((t, s)),
                _ => true,
            })
            .collect();
        if keep.iter().any(|k| !k) {
            let mask: polars::prelude::BooleanChunked = keep.iter().copied().map(Some).collect();
            frame = frame.filter(&mask).map_err(parquet)?;
        }
        merged = Some(match merged {
            None => frame,
            Some(mut all) => {
                all.vstack_mut_owned(frame).map_err(parquet)?;
                all
            }
        });
    }
    let mut frame = merged.expect("a run has at least one segment");
    segment::write(data_dir, hour, run[0].lo, run[run.len() - 1].hi, &mut frame, row_group_rows)
}
