//! Jaeger's v1 query API (`/api/services`, `/api/traces`, …), which Grafana's Jaeger data source and the
//! Jaeger UI's trace page use, and its JSON: the `data/total/limit/offset/errors` envelope, traces with their
//! `processes`, spans with `references` (CHILD_OF the parent, FOLLOWS_FROM each link), times in
//! microseconds and typed tags, the way Jaeger's own OTLP translation writes them.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hoptrace_otlp::{SpanKind, StatusCode};
use hoptrace_store::read::query::{self as lookup, Search};
use hoptrace_store::read::Catalog;
use hoptrace_store::schema::AttrType;
use hoptrace_store::{AttributeValue, Attributes, SpanRecord, TimeRange};
use serde_json::{json, Value};

use super::{
    bad_request, not_found, now_nanos, parse_go_duration, parse_trace_id, read, since_epoch_nanos, tags_from_json,
    Params, QueryError, Store, DEFAULT_LIMIT,
};

/// Without `start`, a search looks this far back from `end`.
const DEFAULT_LOOKBACK: Duration = Duration::from_secs(3600);
/// Without `lookback`, the dependency graph covers this much time before `endTs`.
const DEFAULT_DEPENDENCY_LOOKBACK: Duration = Duration::from_secs(24 * 3600);

pub(super) fn routes() -> Router<std::sync::Arc<Catalog>> {
    Router::new()
        .route("/api/services", get(services))
        .route("/api/services/{service}/operations", get(service_operations))
        .route("/api/operations", get(operations))
        .route("/api/traces", get(find_traces))
        .route("/api/traces/{trace_id}", get(trace))
        .route("/api/dependencies", get(dependencies))
}

/// A failed query in v1's envelope.
pub(super) struct V1Error(pub(super) QueryError);

impl From<QueryError> for V1Error {
    fn from(e: QueryError) -> Self {
        V1Error(e)
    }
}

impl IntoResponse for V1Error {
    fn into_response(self) -> Response {
        let QueryError { status, message } = self.0;
        (status, Json(error(status.as_u16(), &message))).into_response()
    }
}

type Answer = Result<Json<Value>, V1Error>;

fn list(values: Vec<Value>) -> Json<Value> {
    let total = values.len();
    Json(envelope(Value::Array(values), total))
}

async fn services(State(store): Store) -> Answer {
    let names = read(store, lookup::services).await?;
    Ok(list(names.into_iter().map(Value::from).collect()))
}

async fn service_operations(State(store): Store, Path(service): Path<String>) -> Answer {
    let ops = read(store, move |dir| lookup::operations(dir, &service, None)).await?;
    let mut names: Vec<String> = ops.into_iter().map(|(name, _)| name).collect();
    names.dedup();
    Ok(list(names.into_iter().map(Value::from).collect()))
}

async fn operations(State(store): Store, RawQuery(query): RawQuery) -> Answer {
    let params = Params::parse(query)?;
    let service = params.required("service")?.to_owned();
    let kind = super::span_kind(&params, &["spanKind"])?;
    let ops = read(store, move |dir| lookup::operations(dir, &service, kind)).await?;
    Ok(list(
        ops.into_iter().map(|(name, kind)| json!({ "name": name, "spanKind": kind.name().unwrap_or("") })).collect(),
    ))
}

async fn find_traces(State(store): Store, RawQuery(query): RawQuery) -> Answer {
    let search = search(&Params::parse(query)?)?;
    let traces = read(store, move |dir| lookup::find_traces(dir, &search)).await?;
    Ok(list(traces.into_iter().map(trace_json).collect()))
}

async fn trace(State(store): Store, Path(trace_id): Path<String>, RawQuery(query): RawQuery) -> Answer {
    let id = parse_trace_id(&trace_id)?;
    let params = Params::parse(query)?;
    let range = TimeRange {
        start_unix_nano: micros_param(&params, "start")?.unwrap_or(0),
        end_unix_nano: micros_param(&params, "end")?.map_or(TimeRange::all().end_unix_nano, |e| e + 1),
    };
    let spans = read(store, move |dir| lookup::trace(dir, id, range)).await?;
    if spans.is_empty() {
        return Err(not_found("trace not found").into());
    }
    Ok(list(vec![trace_json(spans)]))
}

async fn dependencies(State(store): Store, RawQuery(query): RawQuery) -> Answer {
    let params = Params::parse(query)?;
    let millis = |name: &str| -> Result<Option<u64>, QueryError> {
        params
            .get(name)
            .map(|v| v.parse().map_err(|_| bad_request(format!("{name} must be milliseconds, not {v:?}"))))
            .transpose()
    };
    let end = millis("endTs")?.map_or_else(now_nanos, |ms| ms * 1_000_000);
    let lookback = millis("lookback")?.map_or(DEFAULT_DEPENDENCY_LOOKBACK.as_nanos() as u64, |ms| ms * 1_000_000);
    let range = TimeRange { start_unix_nano: end.saturating_sub(lookback), end_unix_nano: end + 1 };
    let calls = read(store, move |dir| lookup::dependencies(dir, range)).await?;
    Ok(list(
        calls
            .into_iter()
            .map(|(parent, child, n)| json!({ "parent": parent, "child": child, "callCount": n }))
            .collect(),
    ))
}

/// A time since the epoch (Jaeger's `start`/`end`), as nanoseconds: microseconds, as Jaeger defines them,
/// or milliseconds, which Grafana's Jaeger data source sends for a trace by id with its "trace ID time
/// params" option on (see [`since_epoch_nanos`]).
fn micros_param(params: &Params, key: &str) -> Result<Option<u64>, QueryError> {
    params
        .get(key)
        .map(|v| v.parse::<u64>().map(since_epoch_nanos))
        .transpose()
        .map_err(|_| bad_request(format!("{key} must be microseconds (or milliseconds) since the epoch")))
}

fn duration_param(params: &Params, key: &str) -> Result<Option<u64>, QueryError> {
    params.get(key).map(|v| parse_go_duration(v).map_err(|e| bad_request(format!("{key}: {e}")))).transpose()
}

/// A v1 search: `service` (required), `operation`, `tags` (a JSON object) and `tag=key:value`, `start`/`end`
/// (or `lookback` before `end`), `minDuration`/`maxDuration` (Go durations) and `limit`.
fn search(params: &Params) -> Result<Search, QueryError> {
    let service = params.required("service")?.to_owned();
    let operation = params.get("operation").filter(|o| *o != "all").map(str::to_owned);
    let mut tags = match params.get("tags") {
        Some(json) => tags_from_json("tags", json)?,
        None => Vec::new(),
    };
    for tag in params.all("tag") {
        let (k, v) = tag.split_once(':').ok_or_else(|| bad_request(format!("tag {tag:?} must be key:value")))?;
        tags.push((k.to_owned(), v.to_owned()));
    }
    let end = micros_param(params, "end")?.unwrap_or_else(now_nanos);
    let start = match micros_param(params, "start")? {
        Some(start) => start,
        None => {
            let lookback = duration_param(params, "lookback").ok().flatten();
            end.saturating_sub(lookback.unwrap_or(DEFAULT_LOOKBACK.as_nanos() as u64))
        }
    };
    if start > end {
        return Err(bad_request("start must not be after end"));
    }
    let limit = match params.get("limit") {
        None => DEFAULT_LIMIT,
        Some(l) => l.parse().map_err(|_| bad_request(format!("limit must be a number, not {l:?}")))?,
    };
    let (min, max) = (duration_param(params, "minDuration")?, duration_param(params, "maxDuration")?);
    if let (Some(min), Some(max)) = (min, max) {
        if min > max {
            return Err(bad_request("minDuration must not exceed maxDuration"));
        }
    }
    Ok(Search {
        service: Some(service),
        operation,
        tags,
        min_duration_nanos: min,
        max_duration_nanos: max,
        range: TimeRange { start_unix_nano: start, end_unix_nano: end + 1 },
        limit: if limit == 0 { DEFAULT_LIMIT } else { limit },
    })
}

/// The envelope of every Jaeger query response.
fn envelope(data: Value, total: usize) -> Value {
    json!({ "data": data, "total": total, "limit": 0, "offset": 0, "errors": null })
}

/// The envelope of an error: `data` null and the error with its HTTP code.
fn error(code: u16, msg: &str) -> Value {
    json!({ "data": null, "total": 0, "limit": 0, "offset": 0, "errors": [{ "code": code, "msg": msg }] })
}

/// One trace in Jaeger's shape. `spans` are the trace's spans, in any order; they are listed by start time.
fn trace_json(mut spans: Vec<SpanRecord>) -> Value {
    spans.sort_by(|a, b| (a.start_time_unix_nano, &a.span_id).cmp(&(b.start_time_unix_nano, &b.span_id)));
    let trace_id = spans.first().map(|s| s.trace_id.clone()).unwrap_or_default();
    // One process per distinct (service, resource): p1, p2, … in order of first appearance.
    let mut processes: Vec<(&str, &Attributes)> = Vec::new();
    let mut process_ids = Vec::with_capacity(spans.len());
    for span in &spans {
        let key = (span.service_name.as_str(), &span.resource_attributes);
        let index = match processes.iter().position(|p| *p == key) {
            Some(i) => i,
            None => {
                processes.push(key);
                processes.len() - 1
            }
        };
        process_ids.push(format!("p{}", index + 1));
    }
    let process_json: BTreeMap<String, Value> = processes
        .iter()
        .enumerate()
        .map(|(i, (service, resource))| {
            let tags: Vec<Value> =
                resource.iter().filter(|(k, _)| k.as_str() != "service.name").map(|(k, v)| tag(k, v)).collect();
            (format!("p{}", i + 1), json!({ "serviceName": service, "tags": tags }))
        })
        .collect();
    let span_json: Vec<Value> = spans.iter().zip(&process_ids).map(|(s, p)| span(s, p)).collect();
    json!({ "traceID": trace_id, "spans": span_json, "processes": process_json, "warnings": null })
}

fn span(s: &SpanRecord, process_id: &str) -> Value {
    let mut references = Vec::new();
    if let Some(parent) = &s.parent_span_id {
        references.push(json!({ "refType": "CHILD_OF", "traceID": s.trace_id, "spanID": parent }));
    }
    for link in &s.links {
        references.push(json!({ "refType": "FOLLOWS_FROM", "traceID": link.trace_id, "spanID": link.span_id }));
    }
    let mut tags: Vec<Value> = s.attributes.iter().map(|(k, v)| tag(k, v)).collect();
    let status = StatusCode::from_code(s.status_code);
    if let Some(kind) = SpanKind::from_code(s.kind).name() {
        tags.push(string_tag("span.kind", kind));
    }
    if let Some(status) = status.name() {
        tags.push(string_tag("otel.status_code", status));
    }
    if status == StatusCode::Error {
        tags.push(json!({ "key": "error", "type": "bool", "value": true }));
    }
    let optional = [
        ("otel.status_description", &s.status_message),
        ("otel.scope.name", &s.scope_name),
        ("otel.scope.version", &s.scope_version),
        ("w3c.tracestate", &s.trace_state),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            tags.push(string_tag(key, value));
        }
    }
    let logs: Vec<Value> = s
        .events
        .iter()
        .map(|e| {
            let mut fields = vec![string_tag("event", &e.name)];
            fields.extend(e.attributes.iter().map(|(k, v)| tag(k, v)));
            json!({ "timestamp": micros(e.time_unix_nano), "fields": fields })
        })
        .collect();
    json!({
        "traceID": s.trace_id,
        "spanID": s.span_id,
        "flags": s.flags & 0xff,
        "operationName": s.name,
        "references": references,
        "startTime": micros(s.start_time_unix_nano),
        "duration": micros(s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano)),
        "tags": tags,
        "logs": logs,
        "processID": process_id,
        "warnings": null,
    })
}

fn micros(nanos: u64) -> u64 {
    nanos / 1_000
}

fn string_tag(key: &str, value: &str) -> Value {
    json!({ "key": key, "type": "string", "value": value })
}

/// A typed tag from a stored attribute; a value that does not parse as its type stays a string.
fn tag(key: &str, value: &AttributeValue) -> Value {
    let text = value.text.as_str();
    let typed = match value.kind {
        AttrType::Bool => text.parse::<bool>().ok().map(|b| ("bool", json!(b))),
        AttrType::Int => text.parse::<i64>().ok().map(|i| ("int64", json!(i))),
        AttrType::Double => text.parse::<f64>().ok().filter(|f| f.is_finite()).map(|f| ("float64", json!(f))),
        AttrType::Bytes => Some(("binary", json!(text))),
        _ => None,
    };
    let (ty, value) = typed.unwrap_or(("string", json!(text)));
    json!({ "key": key, "type": ty, "value": value })
}
