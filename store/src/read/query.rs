//! The lookups a trace viewer makes (the collector's Jaeger query API): service and operation names, trace
//! search, whole traces and the service dependency graph. Blocking (polars scans); an async caller runs
//! them off its runtime.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use hoptrace_otlp::{SpanKind, StatusCode};
use polars::prelude::*;

use super::{records, Location, SpanRecord, TimeRange};
use crate::schema;

pub type Result<T> = std::result::Result<T, String>;

/// Spans of one trace may start up to this long before or after the span a search matched; whole traces
/// are read from the matched range widened by it.
const TRACE_SPREAD_NANOS: u64 = 3_600_000_000_000;

/// A trace search: traces holding at least one span that matches every given condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Search {
    pub service: String,
    pub operation: Option<String>,
    /// Tags the same span must carry (its attributes, its resource's, or `span.kind`/`error`/`otel.status_code`).
    pub tags: Vec<(String, String)>,
    pub min_duration_nanos: Option<u64>,
    pub max_duration_nanos: Option<u64>,
    pub range: TimeRange,
    pub limit: usize,
}

/// Every service name, sorted.
pub fn services(store: &Location) -> Result<Vec<String>> {
    let frame = collect(
        scan(store, TimeRange::all())?.select([col(schema::SERVICE_NAME)]).unique(None, UniqueKeepStrategy::Any),
    )?;
    let names = text_column(&frame, schema::SERVICE_NAME)?;
    Ok(names.iter().flatten().map(str::to_owned).collect::<BTreeSet<_>>().into_iter().collect())
}

/// The (operation, span kind) pairs of one service, sorted; only those of `kind` when given.
pub fn operations(store: &Location, service: &str, kind: Option<SpanKind>) -> Result<Vec<(String, SpanKind)>> {
    let mut filter = col(schema::SERVICE_NAME).eq(lit(service));
    if let Some(kind) = kind {
        filter = filter.and(col(schema::KIND).eq(lit(kind.code())));
    }
    let lf = scan(store, TimeRange::all())?
        .filter(filter)
        .select([col(schema::NAME), col(schema::KIND)])
        .unique(None, UniqueKeepStrategy::Any);
    let frame = collect(lf)?;
    let names = text_column(&frame, schema::NAME)?;
    let kinds = frame.column(schema::KIND).and_then(|c| c.u8().cloned()).map_err(|e| e.to_string())?;
    let set: BTreeSet<(String, SpanKind)> = names
        .iter()
        .zip(kinds.iter())
        .filter_map(|(n, k)| Some((n?.to_owned(), SpanKind::from_code(k.unwrap_or_default()))))
        .collect();
    Ok(set.into_iter().collect())
}

/// The tags Jaeger derives from a span's kind and status (`span.kind`, `error`, `otel.status_code`), as a
/// search's tags match them.
pub fn derived_tag(key: &str, kind: SpanKind, status: StatusCode) -> Option<&'static str> {
    match key {
        "span.kind" => kind.name(),
        "error" => (status == StatusCode::Error).then_some("true"),
        "otel.status_code" => status.name(),
        _ => None,
    }
}

/// The traces matching `search`, most recent match first, each with all its spans.
pub fn find_traces(store: &Location, search: &Search) -> Result<Vec<Vec<SpanRecord>>> {
    let (start, end) = (col(schema::START_TIME), col(schema::END_TIME));
    let mut filter = col(schema::SERVICE_NAME).eq(lit(search.service.as_str()));
    if let Some(op) = &search.operation {
        filter = filter.and(col(schema::NAME).eq(lit(op.as_str())));
    }
    if let Some(min) = search.min_duration_nanos {
        filter = filter.and(end.clone().gt_eq(start.clone() + lit(min)));
    }
    if let Some(max) = search.max_duration_nanos {
        filter = filter.and(end.lt_eq(start + lit(max)));
    }
    let matched = scan(store, search.range)?.filter(filter);
    // Latest matching span start per trace.
    let mut latest: HashMap<Vec<u8>, u64> = HashMap::new();
    let mut note = |trace: &[u8], at: u64| {
        let t = latest.entry(trace.to_vec()).or_insert(at);
        *t = (*t).max(at);
    };
    if search.tags.is_empty() {
        let frame = collect(matched.select([col(schema::TRACE_ID), col(schema::START_TIME)]))?;
        let ids = frame.column(schema::TRACE_ID).and_then(|c| c.binary().cloned()).map_err(|e| e.to_string())?;
        let starts = frame.column(schema::START_TIME).and_then(|c| c.u64().cloned()).map_err(|e| e.to_string())?;
        for (id, at) in ids.iter().zip(starts.iter()) {
            if let (Some(id), Some(at)) = (id, at) {
                note(id, at);
            }
        }
    } else {
        // Only the columns tags are matched on: the span's and its resource's attributes, kind and status.
        let (attrs, resource) = (schema::ATTRIBUTES, schema::RESOURCE_ATTRIBUTES);
        let columns = [
            schema::TRACE_ID,
            schema::START_TIME,
            schema::KIND,
            schema::STATUS_CODE,
            attrs.keys,
            attrs.values,
            resource.keys,
            resource.values,
        ];
        let frame = collect(matched.select(columns.map(col)))?;
        let err = |e: PolarsError| e.to_string();
        let ids = frame.column(schema::TRACE_ID).and_then(|c| c.binary().cloned()).map_err(err)?;
        let starts = frame.column(schema::START_TIME).and_then(|c| c.u64().cloned()).map_err(err)?;
        let kinds = frame.column(schema::KIND).and_then(|c| c.u8().cloned()).map_err(err)?;
        let statuses = frame.column(schema::STATUS_CODE).and_then(|c| c.u8().cloned()).map_err(err)?;
        let list = |name: &str| frame.column(name).and_then(|c| c.list().cloned()).map_err(err);
        let sets = [(list(attrs.keys)?, list(attrs.values)?), (list(resource.keys)?, list(resource.values)?)];
        for row in 0..frame.height() {
            let kind = SpanKind::from_code(kinds.get(row).unwrap_or_default());
            let status = StatusCode::from_code(statuses.get(row).unwrap_or_default());
            let values: Vec<(StringChunked, StringChunked)> = sets
                .iter()
                .filter_map(|(keys, values)| {
                    let (k, v) = (keys.get_as_series(row)?, values.get_as_series(row)?);
                    Some((k.str().ok()?.clone(), v.str().ok()?.clone()))
                })
                .collect();
            let tag = |key: &str| -> Option<String> {
                values
                    .iter()
                    .find_map(|(k, v)| {
                        (0..k.len()).find(|&i| k.get(i) == Some(key)).map(|i| v.get(i).unwrap_or_default().to_owned())
                    })
                    .or_else(|| derived_tag(key, kind, status).map(str::to_owned))
            };
            if search.tags.iter().all(|(k, v)| tag(k).as_deref() == Some(v.as_str())) {
                if let (Some(id), Some(at)) = (ids.get(row), starts.get(row)) {
                    note(id, at);
                }
            }
        }
    }
    let mut ranked: Vec<(u64, Vec<u8>)> = latest.into_iter().map(|(id, at)| (at, id)).collect();
    ranked.sort_by(|a, b| b.cmp(a));
    ranked.truncate(search.limit);
    let wanted: HashSet<Vec<u8>> = ranked.iter().map(|(_, id)| id.clone()).collect();
    let widened = TimeRange {
        start_unix_nano: search.range.start_unix_nano.saturating_sub(TRACE_SPREAD_NANOS),
        end_unix_nano: search.range.end_unix_nano.saturating_add(TRACE_SPREAD_NANOS),
    };
    let mut traces = load(store, &wanted, widened)?;
    Ok(ranked.iter().filter_map(|(_, id)| traces.remove(&hex::encode(id))).collect())
}

/// All spans of one trace (empty when the store has none); `range` narrows where to look.
pub fn trace(store: &Location, trace_id: [u8; 16], range: TimeRange) -> Result<Vec<SpanRecord>> {
    let wanted = HashSet::from([trace_id.to_vec()]);
    Ok(load(store, &wanted, range)?.into_values().next().unwrap_or_default())
}

/// Calls between services: for every span whose parent is in another service, one call from the parent's
/// service to the span's. Sorted by (parent, child).
pub fn dependencies(store: &Location, range: TimeRange) -> Result<Vec<(String, String, u64)>> {
    let lf = scan(store, range)?.select([
        col(schema::TRACE_ID),
        col(schema::SPAN_ID),
        col(schema::PARENT_SPAN_ID),
        col(schema::SERVICE_NAME),
    ]);
    let frame = collect(lf)?;
    let binary = |name: &str| frame.column(name).and_then(|c| c.binary().cloned()).map_err(|e| e.to_string());
    let (traces, spans, parents) =
        (binary(schema::TRACE_ID)?, binary(schema::SPAN_ID)?, binary(schema::PARENT_SPAN_ID)?);
    let services = text_column(&frame, schema::SERVICE_NAME)?;
    let service_of: HashMap<(&[u8], &[u8]), &str> = traces
        .iter()
        .zip(spans.iter())
        .zip(services.iter())
        .filter_map(|((t, s), svc)| Some(((t?, s?), svc.unwrap_or_default())))
        .collect();
    let mut calls: BTreeMap<(String, String), u64> = BTreeMap::new();
    for ((trace, parent), service) in traces.iter().zip(parents.iter()).zip(services.iter()) {
        let (Some(trace), Some(parent), Some(service)) = (trace, parent, service) else { continue };
        match service_of.get(&(trace, parent)) {
            Some(&caller) if caller != service => {
                *calls.entry((caller.to_owned(), service.to_owned())).or_default() += 1
            }
            _ => {}
        }
    }
    Ok(calls.into_iter().map(|((parent, child), n)| (parent, child, n)).collect())
}

/// The spans of the `wanted` traces that start in `range`, by hex trace id. Each segment's trace ids are read
/// first; the segment's other columns only when it holds a wanted trace.
fn load(store: &Location, wanted: &HashSet<Vec<u8>>, range: TimeRange) -> Result<HashMap<String, Vec<SpanRecord>>> {
    let mut traces: HashMap<String, Vec<SpanRecord>> = HashMap::new();
    if wanted.is_empty() {
        return Ok(traces);
    }
    for segment in store.segments(range).map_err(|e| e.to_string())? {
        let ids = collect(segment.clone().select([col(schema::TRACE_ID)]))?;
        let ids = ids.column(schema::TRACE_ID).and_then(|c| c.binary().cloned()).map_err(|e| e.to_string())?;
        let mask: BooleanChunked = ids.iter().map(|id| id.is_some_and(|id| wanted.contains(id))).collect();
        if !mask.any() {
            continue;
        }
        let rows = collect(segment)?.filter(&mask).map_err(|e| e.to_string())?;
        for span in records(&rows).map_err(|e| e.to_string())? {
            traces.entry(span.trace_id.clone()).or_default().push(span);
        }
    }
    Ok(traces)
}

fn scan(store: &Location, range: TimeRange) -> Result<LazyFrame> {
    store.scan(range).map_err(|e| e.to_string())
}

fn collect(lf: LazyFrame) -> Result<DataFrame> {
    lf.collect().map_err(|e| e.to_string())
}

fn text_column(frame: &DataFrame, name: &str) -> Result<StringChunked> {
    frame.column(name).and_then(|c| c.str().cloned()).map_err(|e| e.to_string())
}
