//! One suite, both backends: the embedded store (WAL + Parquet) and PostgreSQL keep the same spans the same
//! way — every field of a rich span round-trips, time ranges select by span start (and hour partitions),
//! retried duplicates are dropped, also after a restart, and an empty range reads as an empty frame with
//! the schema. The PostgreSQL half runs in a database of its own (`DATABASE_URL`, else the local server).

use std::time::Duration;

use hoptrace_store::PgStore;
use hoptrace_store::{records, schema, Batch, Location, SpanRecord, SpanStore, StoreConfig, TimeRange};
use hoptrace_testkit::ScratchDb;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, ArrayValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

const HOUR: u64 = 3_600_000_000_000;
const BASE: u64 = 490_000 * HOUR;

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

/// `n` spans of trace `trace` starting at `start`; the first carries every kind of field.
fn request(trace: u8, first: u64, n: u64, start: u64) -> ExportTraceServiceRequest {
    let spans = (first..first + n)
        .map(|i| {
            let mut span = Span {
                trace_id: vec![trace; 16],
                span_id: (i + 1).to_be_bytes().to_vec(),
                name: format!("span {i}"),
                kind: 1 + (i % 5) as i32,
                start_time_unix_nano: start + i * 1_000,
                end_time_unix_nano: start + i * 1_000 + 500,
                ..Default::default()
            };
            if i == first {
                span.parent_span_id = vec![9; 8];
                span.trace_state = "vendor=abc".into();
                span.flags = 257;
                span.status = Some(Status { code: 2, message: "it \"failed\", badly".into() });
                span.attributes = vec![
                    kv("text", Value::StringValue("a,b\nc".into())),
                    kv("flag", Value::BoolValue(true)),
                    kv("count", Value::IntValue(-42)),
                    kv("ratio", Value::DoubleValue(0.25)),
                    kv("raw", Value::BytesValue(vec![0, 255, 7])),
                    kv(
                        "list",
                        Value::ArrayValue(ArrayValue {
                            values: vec![AnyValue { value: Some(Value::StringValue("x".into())) }],
                        }),
                    ),
                ];
                span.events = vec![Event {
                    time_unix_nano: start + 100,
                    name: "retry".into(),
                    attributes: vec![kv("attempt", Value::IntValue(2))],
                    dropped_attributes_count: 0,
                }];
                span.links = vec![Link {
                    trace_id: vec![0x77; 16],
                    span_id: vec![0x88; 8],
                    trace_state: String::new(),
                    attributes: vec![kv("messaging.message.id", Value::StringValue("17".into()))],
                    dropped_attributes_count: 0,
                    flags: 1,
                }];
            }
            span
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", Value::StringValue("worker".into())),
                    kv("host.name", Value::StringValue("node-1".into())),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope { name: "suite".into(), version: "1.0".into(), ..Default::default() }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// A backend under test, driven the same way.
enum Backend {
    Embedded { config: Box<StoreConfig>, store: Option<SpanStore> },
    Postgres { url: String, store: Option<PgStore> },
}

impl Backend {
    async fn write(&mut self, request: ExportTraceServiceRequest) -> u64 {
        match self {
            Backend::Embedded { store, .. } => {
                let (batch, _) = Batch::scan(request.encode_to_vec().into()).unwrap();
                store.as_ref().unwrap().append(batch).await.unwrap().stored as u64
            }
            Backend::Postgres { store, .. } => {
                store.as_ref().unwrap().write(&hoptrace_otlp::convert(request).rows).await.unwrap()
            }
        }
    }

    async fn restart(&mut self) {
        match self {
            Backend::Embedded { config, store } => {
                store.take().unwrap().shutdown().unwrap();
                *store = Some(SpanStore::open((**config).clone()).unwrap().0);
            }
            Backend::Postgres { url, store } => {
                store.take().unwrap().close().await;
                *store = Some(PgStore::connect(url).await.unwrap());
            }
        }
    }

    /// Makes everything written readable (the embedded store flushes its memtable to a segment).
    fn settle(&mut self) {
        if let Backend::Embedded { store, .. } = self {
            store.as_ref().unwrap().flush().unwrap();
        }
    }

    fn location(&self) -> Location {
        match self {
            Backend::Embedded { config, .. } => Location::Dir(config.data_dir.clone()),
            Backend::Postgres { url, .. } => Location::Postgres(url.clone()),
        }
    }

    fn read(&self, range: TimeRange) -> Vec<SpanRecord> {
        let frame = self.location().scan(range).unwrap().collect().unwrap();
        let mut spans = records(&frame).unwrap();
        spans.sort_by(|a, b| (&a.trace_id, &a.span_id).cmp(&(&b.trace_id, &b.span_id)));
        spans
    }
}

/// The suite: returns every stored span, for the backends to be compared with each other.
async fn suite(backend: &mut Backend) -> Vec<SpanRecord> {
    assert_eq!(backend.write(request(1, 0, 10, BASE)).await, 10);
    assert_eq!(backend.write(request(1, 10, 10, BASE + 20_000)).await, 10);
    assert_eq!(backend.write(request(2, 0, 5, BASE + HOUR)).await, 5);
    // A client's retry of the first request stores nothing new…
    assert_eq!(backend.write(request(1, 0, 10, BASE)).await, 0, "duplicates are dropped");
    // …also after a restart.
    backend.restart().await;
    assert_eq!(backend.write(request(1, 10, 10, BASE + 20_000)).await, 0, "duplicates are dropped after a restart");
    backend.settle();

    let all = backend.read(TimeRange::all());
    assert_eq!(all.len(), 25, "every span once");
    let hour = |h: u64| TimeRange { start_unix_nano: BASE + h * HOUR, end_unix_nano: BASE + (h + 1) * HOUR };
    assert_eq!(backend.read(hour(0)).len(), 20);
    assert_eq!(backend.read(hour(1)).len(), 5);
    assert_eq!(
        backend.read(TimeRange { start_unix_nano: BASE + 5_000, end_unix_nano: BASE + 15_000 }).len(),
        5,
        "spans 5..9 start in it"
    );
    let empty = backend.location().scan(hour(2)).unwrap().collect().unwrap();
    assert_eq!(empty.height(), 0);
    assert!(empty.column(schema::ATTRIBUTES.values).is_ok(), "an empty range still has the schema");

    // The rich span, field by field.
    let rich = all.iter().find(|s| s.name == "span 0" && s.trace_id == hex::encode([1u8; 16])).unwrap();
    assert_eq!(rich.parent_span_id.as_deref(), Some("0909090909090909"));
    assert_eq!((rich.trace_state.as_deref(), rich.flags), (Some("vendor=abc"), 257));
    assert_eq!((rich.status_code, rich.status_message.as_deref()), (2, Some("it \"failed\", badly")));
    assert_eq!(rich.attribute("text"), Some("a,b\nc"));
    assert_eq!(rich.attribute("count"), Some("-42"));
    assert_eq!(rich.attribute("raw"), Some("AP8H"));
    assert_eq!(rich.events[0].name, "retry");
    assert_eq!(rich.links[0].attribute_text("messaging.message.id"), Some("17"));
    assert_eq!(rich.resource_attribute("host.name"), Some("node-1"));
    assert_eq!((rich.scope_name.as_deref(), rich.service_name.as_str()), (Some("suite"), "worker"));
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_backends_keep_the_same_spans_the_same_way() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StoreConfig::new(dir.path());
    config.flush_interval = Duration::from_secs(3600);
    let store = SpanStore::open(config.clone()).unwrap().0;
    let mut embedded = Backend::Embedded { config: Box::new(config), store: Some(store) };
    let embedded_spans = suite(&mut embedded).await;
    if let Backend::Embedded { store, .. } = &mut embedded {
        store.take().unwrap().shutdown().unwrap();
    }

    let db = ScratchDb::create().await;
    let mut postgres = Backend::Postgres { url: db.url.clone(), store: Some(PgStore::connect(&db.url).await.unwrap()) };
    let postgres_spans = suite(&mut postgres).await;
    if let Backend::Postgres { store, .. } = &mut postgres {
        store.take().unwrap().close().await;
    }

    assert_eq!(postgres_spans, embedded_spans, "the two backends return the same spans");
}
