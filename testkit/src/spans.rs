//! Small hand-made spans.

use std::sync::Arc;

use hoptrace_otlp::{Origin, SpanKind, SpanRow};
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};

/// A server span `span {span}` of service `svc`, its ids made of `trace` and `span` (at least 1).
pub fn row(trace: u8, span: u8) -> SpanRow {
    SpanRow {
        trace_id: [trace.max(1); 16],
        span_id: [span.max(1); 8],
        parent_span_id: None,
        trace_state: String::new(),
        flags: 1,
        name: format!("span {span}"),
        kind: SpanKind::Server.code(),
        start_time_unix_nano: 1_000 + span as u64,
        end_time_unix_nano: 2_000 + span as u64,
        status_code: 0,
        status_message: String::new(),
        attributes: Vec::new(),
        events: Vec::new(),
        links: Vec::new(),
        dropped: Default::default(),
        origin: Arc::new(Origin { service_name: "svc".into(), ..Default::default() }),
    }
}

/// A string attribute.
pub fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(Value::StringValue(value.into())) }),
        ..Default::default()
    }
}

/// The attributes of span `i` of the benchmarks' payload: those of a step's queue hop in the reference
/// system (eight spans to a task), ids and names varying as they do there.
pub fn benchmark_attributes(i: usize) -> Vec<KeyValue> {
    let kv = |key: &str, value: Value| KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    };
    vec![
        kv("messaging.system", Value::StringValue("pgmq".into())),
        kv("messaging.destination.name", Value::StringValue("step_queue".into())),
        kv("messaging.message.id", Value::IntValue(100_000 + i as i64)),
        kv("db.system.name", Value::StringValue("postgresql".into())),
        kv("task.uuid", Value::StringValue(format!("0190c6d2-7a1b-7c3d-8e4f-{:012x}", i / 8))),
        kv("task.template", Value::StringValue("linear_3".into())),
        kv("step.name", Value::StringValue(format!("step_{}", i % 8))),
        kv("step.handler", Value::StringValue("noop".into())),
        kv("benchmark.run_id", Value::StringValue("bench-0001".into())),
        kv("retry", Value::BoolValue(false)),
    ]
}
