//! Jaeger's v3 query API as Jaeger's HTTP gateway serves it (`/api/v3/…`, the reference is
//! `cmd/jaeger/internal/extension/jaegerquery/internal/apiv3/` in jaegertracing/jaeger): services, operations,
//! trace search and trace by id in OTLP/JSON, and the trace summaries the Jaeger UI (v2.19 on) lists as
//! search results. Parameters go by their camelCase names or the snake_case aliases older clients send.

use std::collections::{BTreeMap, HashSet};

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hoptrace_otlp::StatusCode;
use hoptrace_store::read::query::{self as lookup, Search};
use hoptrace_store::read::Catalog;
use hoptrace_store::schema::AttrType;
use hoptrace_store::{AttributeValue, Attributes, LinkRecord, SpanRecord, TimeRange};
use serde_json::{json, Map, Value};

use super::{
    bad_request, not_found, parse_go_duration, parse_trace_id, read, span_kind, tags_from_json, Params, QueryError,
    Store, DEFAULT_LIMIT,
};

pub(super) fn routes() -> Router<std::sync::Arc<Catalog>> {
    Router::new()
        .route("/api/v3/services", get(services))
        .route("/api/v3/operations", get(operations))
        .route("/api/v3/traces", get(find_traces))
        .route("/api/v3/traces/{trace_id}", get(trace))
        .route("/api/v3/trace-summaries", get(trace_summaries))
}

/// A failed query in the gateway's envelope: `{"error": {"httpCode", "message"}}`.
pub(super) struct V3Error(pub(super) QueryError);

impl From<QueryError> for V3Error {
    fn from(e: QueryError) -> Self {
        V3Error(e)
    }
}

impl IntoResponse for V3Error {
    fn into_response(self) -> Response {
        let QueryError { status, message } = self.0;
        (status, Json(json!({ "error": { "httpCode": status.as_u16(), "message": message } }))).into_response()
    }
}

type Answer = Result<Json<Value>, V3Error>;

async fn services(State(store): Store) -> Answer {
    let names = read(store, lookup::services).await?;
    Ok(Json(json!({ "services": names })))
}

async fn operations(State(store): Store, RawQuery(query): RawQuery) -> Answer {
    let params = Params::parse(query)?;
    let service = params.required("service")?.to_owned();
    let kind = span_kind(&params, &["spanKind", "span_kind"])?;
    let ops = read(store, move |dir| lookup::operations(dir, &service, kind)).await?;
    let ops: Vec<Value> =
        ops.into_iter().map(|(name, kind)| json!({ "name": name, "spanKind": kind.name().unwrap_or("") })).collect();
    Ok(Json(json!({ "operations": ops })))
}

async fn find_traces(State(store): Store, RawQuery(query): RawQuery) -> Answer {
    let search = search(&Params::parse(query)?)?;
    let traces = read(store, move |dir| lookup::find_traces(dir, &search)).await?;
    traces_answer(traces)
}

async fn trace(State(store): Store, Path(trace_id): Path<String>, RawQuery(query): RawQuery) -> Answer {
    let id = parse_trace_id(&trace_id)?;
    let params = Params::parse(query)?;
    raw_traces(&params, &["rawTraces", "raw_traces"])?;
    let range = TimeRange {
        start_unix_nano: time(&params, &["startTime", "start_time"])?.unwrap_or(0),
        end_unix_nano: time(&params, &["endTime", "end_time"])?.map_or(TimeRange::all().end_unix_nano, |e| e + 1),
    };
    let spans = read(store, move |dir| lookup::trace(dir, id, range)).await?;
    traces_answer(if spans.is_empty() { Vec::new() } else { vec![spans] })
}

async fn trace_summaries(State(store): Store, RawQuery(query): RawQuery) -> Answer {
    let search = search(&Params::parse(query)?)?;
    let traces = read(store, move |dir| lookup::find_traces(dir, &search)).await?;
    let summaries: Vec<Value> = traces.iter().map(|spans| summary(spans)).collect();
    Ok(Json(json!({ "summaries": summaries })))
}

/// Found traces as `{"result": {"resourceSpans": […]}}`, all traces in one list as the gateway merges
/// them; none is a 404.
fn traces_answer(traces: Vec<Vec<SpanRecord>>) -> Answer {
    if traces.is_empty() {
        return Err(not_found("No traces found").into());
    }
    let resource_spans: Vec<Value> = traces.into_iter().flat_map(resource_spans).collect();
    Ok(Json(json!({ "result": { "resourceSpans": resource_spans } })))
}

/// A v3 search (`query.*` parameters): the start-time window is required, the rest optional.
fn search(params: &Params) -> Result<Search, QueryError> {
    let text = |names: &[&str]| params.any_of(names).map(|(_, v)| v.to_owned());
    let (min_name, max_name) = ("query.startTimeMin", "query.startTimeMax");
    let start = time(params, &[min_name, "query.start_time_min"])?;
    let end = time(params, &[max_name, "query.start_time_max"])?;
    let (Some(start), Some(end)) = (start, end) else {
        return Err(bad_request(format!("{min_name} and {max_name} are required")));
    };
    if start > end {
        return Err(bad_request(format!("{min_name} must be before {max_name}")));
    }
    let duration = |names: &[&str]| -> Result<Option<u64>, QueryError> {
        params
            .any_of(names)
            .map(|(name, v)| parse_go_duration(v).map_err(|e| bad_request(format!("malformed parameter {name}: {e}"))))
            .transpose()
    };
    let min = duration(&["query.durationMin", "query.duration_min"])?;
    let max = duration(&["query.durationMax", "query.duration_max"])?;
    if let (Some(min), Some(max)) = (min, max) {
        if min > max {
            return Err(bad_request("query.durationMin must not exceed query.durationMax"));
        }
    }
    let limit = match params.any_of(&["query.searchDepth", "query.search_depth", "query.num_traces"]) {
        None => DEFAULT_LIMIT,
        Some((name, v)) => match v.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => return Err(bad_request(format!("malformed parameter {name}: {v:?} is not a positive number"))),
        },
    };
    let tags = match params.any_of(&["query.attributes"]) {
        Some((name, json)) => tags_from_json(name, json)?,
        None => Vec::new(),
    };
    raw_traces(params, &["query.rawTraces", "query.raw_traces"])?;
    Ok(Search {
        service: text(&["query.serviceName", "query.service_name"]),
        operation: text(&["query.operationName", "query.operation_name"]),
        tags,
        min_duration_nanos: min,
        max_duration_nanos: max,
        range: TimeRange { start_unix_nano: start, end_unix_nano: end.saturating_add(1) },
        limit,
    })
}

/// An RFC 3339 time (`2017-01-26T16:46:31.639875Z`, nanoseconds allowed) as nanoseconds since the epoch.
fn time(params: &Params, names: &[&str]) -> Result<Option<u64>, QueryError> {
    let Some((name, value)) = params.any_of(names) else { return Ok(None) };
    let malformed = |why: &str| bad_request(format!("malformed parameter {name}: {value:?} {why}"));
    let at = chrono::DateTime::parse_from_rfc3339(value).map_err(|_| malformed("is not an RFC 3339 time"))?;
    let nanos = at.timestamp_nanos_opt().filter(|n| *n >= 0).ok_or_else(|| malformed("is out of range"))?;
    Ok(Some(nanos as u64))
}

/// `rawTraces` asks Jaeger not to adjust traces (clock skew, span ids); hoptrace never does, so any valid
/// value gives the stored spans.
fn raw_traces(params: &Params, names: &[&str]) -> Result<(), QueryError> {
    match params.any_of(names) {
        Some((name, v)) if v.parse::<bool>().is_err() => {
            Err(bad_request(format!("malformed parameter {name}: {v:?} is not true or false")))
        }
        _ => Ok(()),
    }
}

/// One trace's spans as OTLP/JSON `resourceSpans`: one per resource, one `scopeSpans` per scope under it,
/// spans by start time. Ids in hex, as Jaeger's gateway writes them; zero values left out.
fn resource_spans(mut spans: Vec<SpanRecord>) -> Vec<Value> {
    spans.sort_by(|a, b| (a.start_time_unix_nano, &a.span_id).cmp(&(b.start_time_unix_nano, &b.span_id)));
    type Scope<'a> = (&'a Option<String>, &'a Option<String>, &'a Attributes);
    type Scopes<'a> = Vec<(Scope<'a>, Vec<Value>)>;
    let mut resources: Vec<(&Attributes, Scopes<'_>)> = Vec::new();
    for s in &spans {
        let scopes = group(&mut resources, &s.resource_attributes);
        group(scopes, (&s.scope_name, &s.scope_version, &s.scope_attributes)).push(span(s));
    }
    resources
        .into_iter()
        .map(|(resource, scopes)| {
            let scope_spans: Vec<Value> = scopes
                .into_iter()
                .map(|((name, version, attributes), spans)| {
                    let mut scope = Map::new();
                    insert_text(&mut scope, "name", name.as_deref());
                    insert_text(&mut scope, "version", version.as_deref());
                    insert_attributes(&mut scope, attributes);
                    json!({ "scope": scope, "spans": spans })
                })
                .collect();
            let mut resource_json = Map::new();
            insert_attributes(&mut resource_json, resource);
            json!({ "resource": resource_json, "scopeSpans": scope_spans })
        })
        .collect()
}

/// The members of `key`'s group, a new group at the end when `key` has none yet.
fn group<K: PartialEq, V: Default>(groups: &mut Vec<(K, V)>, key: K) -> &mut V {
    let at = match groups.iter().position(|(k, _)| *k == key) {
        Some(at) => at,
        None => {
            groups.push((key, V::default()));
            groups.len() - 1
        }
    };
    &mut groups[at].1
}

fn span(s: &SpanRecord) -> Value {
    let mut out = Map::new();
    out.insert("traceId".into(), json!(s.trace_id));
    out.insert("spanId".into(), json!(s.span_id));
    insert_text(&mut out, "parentSpanId", s.parent_span_id.as_deref());
    insert_text(&mut out, "traceState", s.trace_state.as_deref());
    if s.flags != 0 {
        out.insert("flags".into(), json!(s.flags));
    }
    out.insert("name".into(), json!(s.name));
    if s.kind != 0 {
        out.insert("kind".into(), json!(s.kind));
    }
    out.insert("startTimeUnixNano".into(), json!(s.start_time_unix_nano.to_string()));
    out.insert("endTimeUnixNano".into(), json!(s.end_time_unix_nano.to_string()));
    insert_attributes(&mut out, &s.attributes);
    if !s.events.is_empty() {
        let events: Vec<Value> = s
            .events
            .iter()
            .map(|e| {
                let mut event = Map::new();
                event.insert("timeUnixNano".into(), json!(e.time_unix_nano.to_string()));
                insert_text(&mut event, "name", Some(&e.name));
                insert_attributes(&mut event, &e.attributes);
                Value::Object(event)
            })
            .collect();
        out.insert("events".into(), Value::Array(events));
    }
    if !s.links.is_empty() {
        out.insert("links".into(), Value::Array(s.links.iter().map(link).collect()));
    }
    let mut status = Map::new();
    if s.status_code != 0 {
        status.insert("code".into(), json!(s.status_code));
    }
    insert_text(&mut status, "message", s.status_message.as_deref());
    out.insert("status".into(), Value::Object(status));
    Value::Object(out)
}

fn link(l: &LinkRecord) -> Value {
    let mut out = Map::new();
    out.insert("traceId".into(), json!(l.trace_id));
    out.insert("spanId".into(), json!(l.span_id));
    insert_attributes(&mut out, &l.attributes);
    Value::Object(out)
}

fn insert_text(map: &mut Map<String, Value>, key: &str, value: Option<&str>) {
    if let Some(value) = value.filter(|v| !v.is_empty()) {
        map.insert(key.into(), json!(value));
    }
}

fn insert_attributes(map: &mut Map<String, Value>, attributes: &Attributes) {
    if !attributes.is_empty() {
        let list: Vec<Value> = attributes.iter().map(|(k, v)| json!({ "key": k, "value": any_value(v) })).collect();
        map.insert("attributes".into(), Value::Array(list));
    }
}

/// A stored value as an OTLP/JSON `AnyValue`: int64 as a decimal string, bytes in base64 (as stored), the
/// non-finite doubles as protobuf's JSON names them, arrays and key-value lists as stored (OTLP/JSON).
fn any_value(value: &AttributeValue) -> Value {
    let text = value.text.as_str();
    match value.kind {
        AttrType::Empty => json!({}),
        AttrType::String => json!({ "stringValue": text }),
        AttrType::Bool => json!({ "boolValue": text == "true" }),
        AttrType::Int => json!({ "intValue": text }),
        AttrType::Double => match text.parse::<f64>() {
            Ok(d) if d.is_finite() => json!({ "doubleValue": d }),
            Ok(d) if d.is_nan() => json!({ "doubleValue": "NaN" }),
            Ok(d) if d > 0.0 => json!({ "doubleValue": "Infinity" }),
            Ok(_) => json!({ "doubleValue": "-Infinity" }),
            Err(_) => json!({ "stringValue": text }),
        },
        AttrType::Bytes => json!({ "bytesValue": text }),
        AttrType::Array | AttrType::KvList => {
            serde_json::from_str(text).unwrap_or_else(|_| json!({ "stringValue": text }))
        }
    }
}

/// What the Jaeger UI lists for a found trace: its root (the earliest span without a parent), time
/// bounds (decimal strings, as protobuf's JSON writes 64-bit numbers), span, error and orphan counts (an
/// orphan's parent is not in the trace), and per service (by name) its span and error counts.
fn summary(spans: &[SpanRecord]) -> Value {
    let ids: HashSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    let is_error = |s: &SpanRecord| StatusCode::from_code(s.status_code) == StatusCode::Error;
    let root = spans.iter().filter(|s| s.parent_span_id.is_none()).min_by_key(|s| (s.start_time_unix_nano, &s.span_id));
    let mut services: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for s in spans {
        let counts = services.entry(&s.service_name).or_default();
        counts.0 += 1;
        counts.1 += usize::from(is_error(s));
    }
    let orphans = spans.iter().filter(|s| s.parent_span_id.as_deref().is_some_and(|p| !ids.contains(p))).count();
    let min_start = spans.iter().map(|s| s.start_time_unix_nano).min().unwrap_or(0);
    let max_end = spans.iter().map(|s| s.end_time_unix_nano).max().unwrap_or(0);
    json!({
        "traceId": spans.first().map(|s| s.trace_id.as_str()).unwrap_or_default(),
        "rootServiceName": root.map(|s| s.service_name.as_str()).unwrap_or_default(),
        "rootOperationName": root.map(|s| s.name.as_str()).unwrap_or_default(),
        "minStartTimeUnixNano": min_start.to_string(),
        "maxEndTimeUnixNano": max_end.to_string(),
        "spanCount": spans.len(),
        "errorSpanCount": spans.iter().filter(|s| is_error(s)).count(),
        "orphanSpanCount": orphans,
        "services": services
            .into_iter()
            .map(|(name, (spans, errors))| json!({ "name": name, "spanCount": spans, "errorSpanCount": errors }))
            .collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hoptrace_otlp::SpanKind;

    #[test]
    fn stored_values_read_as_otlp_json() {
        let value = |kind, text: &str| any_value(&AttributeValue { kind, text: text.into() });
        assert_eq!(value(AttrType::Int, "123"), json!({ "intValue": "123" }));
        assert_eq!(value(AttrType::Double, "72.5"), json!({ "doubleValue": 72.5 }));
        assert_eq!(value(AttrType::Double, "NaN"), json!({ "doubleValue": "NaN" }));
        assert_eq!(value(AttrType::Double, "-inf"), json!({ "doubleValue": "-Infinity" }));
        assert_eq!(value(AttrType::Bool, "true"), json!({ "boolValue": true }));
        assert_eq!(value(AttrType::Bytes, "AAAwOQ=="), json!({ "bytesValue": "AAAwOQ==" }));
        assert_eq!(
            value(AttrType::Array, r#"{"arrayValue":{"values":[{"stringValue":"a"}]}}"#),
            json!({ "arrayValue": { "values": [{ "stringValue": "a" }] } })
        );
        assert_eq!(value(AttrType::Empty, ""), json!({}));
    }

    #[test]
    fn span_kind_names_any_case() {
        let params = Params(vec![("spanKind".into(), "SERVER".into())]);
        assert_eq!(span_kind(&params, &["spanKind"]).unwrap(), Some(SpanKind::Server));
        let params = Params(vec![("span_kind".into(), "sideways".into())]);
        assert!(span_kind(&params, &["spanKind", "span_kind"]).unwrap_err().message.contains("span_kind"));
    }
}
