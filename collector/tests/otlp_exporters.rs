//! The real `opentelemetry-otlp` exporter, over gRPC and HTTP/protobuf, into the collector and back out of
//! the store: every field a user relies on survives the trip.

mod common;

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use hoptrace_store::schema;
use opentelemetry::trace::{Event, Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter, SpanLinks};
use opentelemetry_sdk::Resource;

fn at(nanos: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(nanos)
}

const T0: u64 = 1_795_986_538_123_456_789; // 2026-11-29T21:08:58.123456789Z

/// A server span and its client child, with every attribute type, an event and a cross-trace link.
fn trace(trace_byte: u8) -> Vec<SpanData> {
    let trace_id = TraceId::from_bytes([trace_byte; 16]);
    let state = TraceState::from_key_value([("vendor", "abc")]).unwrap();
    let root_ctx = SpanContext::new(trace_id, SpanId::from_bytes([0xa1; 8]), TraceFlags::SAMPLED, false, state);
    let child_ctx =
        SpanContext::new(trace_id, SpanId::from_bytes([0xb2; 8]), TraceFlags::SAMPLED, false, TraceState::default());
    let linked = SpanContext::new(
        TraceId::from_bytes([0x77; 16]),
        SpanId::from_bytes([0x88; 8]),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    let scope = InstrumentationScope::builder("hoptrace-test").with_version("1.2.3").build();
    let mut events = SpanEvents::default();
    events.events.push(Event::new(
        "retry",
        at(T0 + 1_500),
        vec![KeyValue::new("attempt", 2), KeyValue::new("reason", "timeout")],
        0,
    ));
    let mut links = SpanLinks::default();
    links.links.push(Link::new(linked, vec![KeyValue::new("messaging.message.id", "42")], 0));
    let root = SpanData {
        span_context: root_ctx.clone(),
        parent_span_id: SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: SpanKind::Server,
        name: Cow::Borrowed("POST /v1/tasks"),
        start_time: at(T0),
        end_time: at(T0 + 5_000_001),
        attributes: vec![
            KeyValue::new("http.request.method", "POST"),
            KeyValue::new("http.response.status_code", 201i64),
            KeyValue::new("sampled", true),
            KeyValue::new("load", 0.75),
            KeyValue::new("tags", Value::Array(Array::String(vec![StringValue::from("a"), StringValue::from("b")]))),
        ],
        dropped_attributes_count: 0,
        events,
        links,
        status: Status::error("handler failed"),
        instrumentation_scope: scope.clone(),
    };
    let child = SpanData {
        span_context: child_ctx,
        parent_span_id: root_ctx.span_id(),
        parent_span_is_remote: false,
        span_kind: SpanKind::Client,
        name: Cow::Borrowed("INSERT tasks"),
        start_time: at(T0 + 1_000),
        end_time: at(T0 + 2_000_000),
        attributes: vec![KeyValue::new("db.system.name", "postgresql")],
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Ok,
        instrumentation_scope: scope,
    };
    vec![root, child]
}

fn resource() -> Resource {
    Resource::builder_empty()
        .with_attributes([KeyValue::new("service.name", "orchestration"), KeyValue::new("host.name", "node-1")])
        .build()
}

fn check(df: &polars::prelude::DataFrame, trace_byte: u8) {
    let trace_hex = hex::encode([trace_byte; 16]);
    let rows: Vec<usize> =
        (0..df.height()).filter(|&i| hex::encode(bin_at(df, schema::TRACE_ID, i).unwrap()) == trace_hex).collect();
    assert_eq!(rows.len(), 2, "both spans of trace {trace_hex} stored once");
    let root =
        rows.iter().copied().find(|&i| str_at(df, schema::NAME, i).as_deref() == Some("POST /v1/tasks")).unwrap();
    let child = rows.iter().copied().find(|&i| i != root).unwrap();

    assert_eq!(bin_at(df, schema::SPAN_ID, root).unwrap(), vec![0xa1; 8]);
    assert_eq!(bin_at(df, schema::PARENT_SPAN_ID, root), None);
    assert_eq!(str_at(df, schema::TRACE_STATE, root).as_deref(), Some("vendor=abc"));
    assert_eq!(u8_at(df, schema::KIND, root), 2, "SPAN_KIND_SERVER");
    assert_eq!(str_at(df, schema::SERVICE_NAME, root).as_deref(), Some("orchestration"));
    assert_eq!(u64_at(df, schema::START_TIME, root), T0);
    assert_eq!(u64_at(df, schema::END_TIME, root), T0 + 5_000_001);
    assert_eq!(u8_at(df, schema::STATUS_CODE, root), 2, "STATUS_CODE_ERROR");
    assert_eq!(str_at(df, schema::STATUS_MESSAGE, root).as_deref(), Some("handler failed"));
    assert_eq!(str_at(df, schema::SCOPE_NAME, root).as_deref(), Some("hoptrace-test"));
    assert_eq!(str_at(df, schema::SCOPE_VERSION, root).as_deref(), Some("1.2.3"));
    assert_eq!(
        attrs(df, schema::ATTRIBUTES, root),
        vec![
            ("http.request.method".into(), Attr::Str("POST".into())),
            ("http.response.status_code".into(), Attr::Int(201)),
            ("sampled".into(), Attr::Bool(true)),
            ("load".into(), Attr::Double(0.75)),
            (
                "tags".into(),
                Attr::Json(serde_json::json!({"arrayValue": {"values": [{"stringValue": "a"}, {"stringValue": "b"}]}}))
            ),
        ]
    );
    let resource = attrs(df, schema::RESOURCE_ATTRIBUTES, root);
    assert!(resource.contains(&("service.name".into(), Attr::Str("orchestration".into()))), "{resource:?}");
    assert!(resource.contains(&("host.name".into(), Attr::Str("node-1".into()))), "{resource:?}");

    let events = list_at(df, schema::EVENTS, root);
    assert_eq!(events.len(), 1);
    let ev = events.struct_().unwrap();
    assert_eq!(ev.field_by_name("time_unix_nano").unwrap().u64().unwrap().get(0), Some(T0 + 1_500));
    assert_eq!(ev.field_by_name("name").unwrap().str().unwrap().get(0), Some("retry"));
    let ev_attrs = attrs_in(ev, 0);
    assert_eq!(ev_attrs, vec![("attempt".into(), Attr::Int(2)), ("reason".into(), Attr::Str("timeout".into()))]);

    let links = list_at(df, schema::LINKS, root);
    assert_eq!(links.len(), 1);
    let link = links.struct_().unwrap();
    assert_eq!(link.field_by_name("trace_id").unwrap().binary().unwrap().get(0), Some(&[0x77u8; 16][..]));
    assert_eq!(link.field_by_name("span_id").unwrap().binary().unwrap().get(0), Some(&[0x88u8; 8][..]));
    let link_attrs = attrs_in(link, 0);
    assert_eq!(link_attrs, vec![("messaging.message.id".into(), Attr::Str("42".into()))]);

    assert_eq!(bin_at(df, schema::PARENT_SPAN_ID, child).unwrap(), vec![0xa1; 8]);
    assert_eq!(u8_at(df, schema::KIND, child), 3, "SPAN_KIND_CLIENT");
    assert_eq!(u8_at(df, schema::STATUS_CODE, child), 1, "STATUS_CODE_OK");
    assert_eq!(str_at(df, schema::STATUS_MESSAGE, child), None);
    assert_eq!(u64_at(df, schema::START_TIME, child), T0 + 1_000);
    assert_eq!(list_at(df, schema::EVENTS, child).len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_and_http_exporters_round_trip_every_field() {
    let running = start().await;

    let mut grpc =
        opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(running.grpc_url()).build().unwrap();
    grpc.set_resource(&resource());
    grpc.export(trace(0x11)).await.expect("gRPC export acknowledged");

    let mut http = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(running.http_url("/v1/traces"))
        .build()
        .unwrap();
    http.set_resource(&resource());
    http.export(trace(0x22)).await.expect("HTTP export acknowledged");

    let (df, _dir) = running.stop_and_read().await;
    assert_eq!(df.height(), 4);
    check(&df, 0x11);
    check(&df, 0x22);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_compressed_exports_are_accepted() {
    let running = start().await;
    let mut grpc = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_compression(opentelemetry_otlp::Compression::Gzip)
        .with_endpoint(running.grpc_url())
        .build()
        .unwrap();
    grpc.set_resource(&resource());
    grpc.export(trace(0x33)).await.expect("gzip gRPC export acknowledged");
    let mut http = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_compression(opentelemetry_otlp::Compression::Gzip)
        .with_endpoint(running.http_url("/v1/traces"))
        .build()
        .unwrap();
    http.set_resource(&resource());
    http.export(trace(0x44)).await.expect("gzip HTTP export acknowledged");
    let (df, _dir) = running.stop_and_read().await;
    check(&df, 0x33);
    check(&df, 0x44);
}
