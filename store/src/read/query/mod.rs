//! The lookups a trace viewer makes (the collector's Jaeger query API): service and operation names, trace
//! search, whole traces and the service dependency graph. Blocking (polars scans); an async caller runs
//! them off its runtime.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use hoptrace_otlp::SpanKind;
use polars::prelude::*;

use super::{records, Catalog, Location, SpanRecord, TimeRange};
use crate::schema;

mod search;

pub(crate) use search::{attribute_values, ATTRIBUTE_COLUMNS};
pub use search::{find_traces, Search};

pub type Result<T> = std::result::Result<T, String>;

/// Every service name, sorted.
pub fn services(store: &Catalog) -> Result<Vec<String>> {
    if let Some(segments) = store.segments(TimeRange::all()).map_err(|e| e.to_string())? {
        let mut names = BTreeSet::new();
        for segment in segments {
            names.extend(segment.names()?.iter().map(|(service, _, _)| service.clone()));
        }
        return Ok(names.into_iter().collect());
    }
    let frame = collect(
        scan(store.location(), TimeRange::all())?
            .select([col(schema::SERVICE_NAME)])
            .unique(None, UniqueKeepStrategy::Any),
    )?;
    let names = text_column(&frame, schema::SERVICE_NAME)?;
    Ok(names.iter().flatten().map(str::to_owned).collect::<BTreeSet<_>>().into_iter().collect())
}

/// The (operation, span kind) pairs of one service, sorted; only those of `kind` when given.
pub fn operations(store: &Catalog, service: &str, kind: Option<SpanKind>) -> Result<Vec<(String, SpanKind)>> {
    let wanted = |k: u8| kind.is_none_or(|kind| kind.code() == k);
    if let Some(segments) = store.segments(TimeRange::all()).map_err(|e| e.to_string())? {
        let mut set = BTreeSet::new();
        for segment in segments {
            let names = segment.names()?;
            let of_service = names.range((service.to_owned(), String::new(), 0)..).take_while(|(s, _, _)| s == service);
            set.extend(of_service.filter(|(_, _, k)| wanted(*k)).map(|(_, n, k)| (n.clone(), SpanKind::from_code(*k))));
        }
        return Ok(set.into_iter().collect());
    }
    let lf = scan(store.location(), TimeRange::all())?
        .filter(col(schema::SERVICE_NAME).eq(lit(service)))
        .select([col(schema::NAME), col(schema::KIND)])
        .unique(None, UniqueKeepStrategy::Any);
    let frame = collect(lf)?;
    let names = text_column(&frame, schema::NAME)?;
    let kinds = frame.column(schema::KIND).and_then(|c| c.u8().cloned()).map_err(|e| e.to_string())?;
    let set: BTreeSet<(String, SpanKind)> = names
        .iter()
        .zip(kinds.iter())
        .filter(|(_, k)| wanted(k.unwrap_or_default()))
        .filter_map(|(n, k)| Some((n?.to_owned(), SpanKind::from_code(k.unwrap_or_default()))))
        .collect();
    Ok(set.into_iter().collect())
}

/// All spans of one trace (empty when the store has none); `range` narrows where to look.
pub fn trace(store: &Catalog, trace_id: [u8; 16], range: TimeRange) -> Result<Vec<SpanRecord>> {
    let wanted = HashSet::from([trace_id.to_vec()]);
    Ok(load(store, &wanted, range)?.into_values().next().unwrap_or_default())
}

/// Calls between services: for every span whose parent is in another service, one call from the parent's
/// service to the span's. Sorted by (parent, child).
pub fn dependencies(store: &Catalog, range: TimeRange) -> Result<Vec<(String, String, u64)>> {
    let lf = scan(store.location(), range)?.select([
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

/// The spans of the `wanted` traces that start in `range`, by hex trace id. In the embedded store only the
/// row groups whose trace-id and start-time statistics allow a wanted trace are read.
pub(super) fn load(
    store: &Catalog,
    wanted: &HashSet<Vec<u8>>,
    range: TimeRange,
) -> Result<HashMap<String, Vec<SpanRecord>>> {
    let mut traces: HashMap<String, Vec<SpanRecord>> = HashMap::new();
    if wanted.is_empty() {
        return Ok(traces);
    }
    let mut add = |rows: &DataFrame| -> Result<()> {
        for span in records(rows).map_err(|e| e.to_string())? {
            traces.entry(span.trace_id.clone()).or_default().push(span);
        }
        Ok(())
    };
    match store.segments(range).map_err(|e| e.to_string())? {
        Some(segments) => {
            for segment in segments {
                let rows =
                    segment.read_traces(wanted, range).map_err(|e| format!("{}: {e}", segment.path.display()))?;
                if let Some(rows) = rows {
                    add(&rows)?;
                }
            }
        }
        None => {
            let frame = collect(scan(store.location(), range)?)?;
            let ids = frame.column(schema::TRACE_ID).and_then(|c| c.binary().cloned()).map_err(|e| e.to_string())?;
            let mask: BooleanChunked = ids.iter().map(|id| id.is_some_and(|id| wanted.contains(id))).collect();
            add(&frame.filter(&mask).map_err(|e| e.to_string())?)?;
        }
    }
    Ok(traces)
}

fn scan(store: &Location, range: TimeRange) -> Result<LazyFrame> {
    store.scan(range).map_err(|e| e.to_string())
}

pub(super) fn collect(lf: LazyFrame) -> Result<DataFrame> {
    lf.collect().map_err(|e| e.to_string())
}

fn text_column(frame: &DataFrame, name: &str) -> Result<StringChunked> {
    frame.column(name).and_then(|c| c.str().cloned()).map_err(|e| e.to_string())
}
