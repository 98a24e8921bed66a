//! Jaeger's JSON shapes, built from stored spans: the `data/total/limit/offset/errors` envelope, traces with
//! their `processes`, spans with `references` (CHILD_OF the parent, FOLLOWS_FROM each link), times in
//! microseconds and typed tags, the way Jaeger's own OTLP translation writes them.

use std::collections::BTreeMap;

use hoptrace_otlp::{SpanKind, StatusCode};
use hoptrace_store::schema::AttrType;
use hoptrace_store::{AttributeValue, Attributes, SpanRecord};
use serde_json::{json, Value};

/// The envelope of every Jaeger query response.
pub fn envelope(data: Value, total: usize) -> Value {
    json!({ "data": data, "total": total, "limit": 0, "offset": 0, "errors": null })
}

/// The envelope of an error: `data` null and the error with its HTTP code.
pub fn error(code: u16, msg: &str) -> Value {
    json!({ "data": null, "total": 0, "limit": 0, "offset": 0, "errors": [{ "code": code, "msg": msg }] })
}

/// One trace in Jaeger's shape. `spans` are the trace's spans, in any order; they are listed by start time.
pub fn trace(mut spans: Vec<SpanRecord>) -> Value {
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
