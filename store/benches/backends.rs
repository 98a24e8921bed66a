//! The two backends side by side on the same spans: writing batches of 1,000 spans as the collector does
//! (the embedded store: write-ahead log with fsync, then one Parquet flush; PostgreSQL: COPY into staging and
//! INSERT … ON CONFLICT, one transaction per batch) and reading them all back as a frame. Prints spans per
//! second for each and PostgreSQL's figure as a ratio of the embedded store's, measured in the same run.
//!
//! `cargo bench --profile dev --workspace --bench backends` (needs PostgreSQL: DATABASE_URL, else the local
//! server);
//! under `cargo test` it runs once on a few batches.

use std::time::Instant;

use hoptrace_store::PgStore;
use hoptrace_store::{Batch, Location, SpanStore, StoreConfig, TimeRange};
use hoptrace_testkit::ScratchDb;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

const BATCH: u64 = 1_000;

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(Value::StringValue(value.into())) }),
        ..Default::default()
    }
}

/// Batch `b`: 1,000 spans of 125 traces, ten attributes each.
fn request(b: u64) -> ExportTraceServiceRequest {
    let spans = (b * BATCH..(b + 1) * BATCH)
        .map(|i| {
            let start = 1_795_986_538_000_000_000 + i * 1_000_000;
            let mut trace_id = [0u8; 16];
            trace_id[..8].copy_from_slice(&(i / 8 + 1).to_be_bytes());
            Span {
                trace_id: trace_id.to_vec(),
                span_id: (i + 1).to_be_bytes().to_vec(),
                parent_span_id: if i % 8 == 0 { Vec::new() } else { i.to_be_bytes().to_vec() },
                name: ["process step_queue", "send step_queue", "INSERT workflow_steps", "POST /v1/tasks"]
                    [(i % 4) as usize]
                    .into(),
                kind: (i % 5 + 1) as i32,
                start_time_unix_nano: start,
                end_time_unix_nano: start + 250_000,
                attributes: vec![
                    kv("messaging.system", "pgmq"),
                    kv("messaging.destination.name", "step_queue"),
                    kv("messaging.message.id", &(100_000 + i).to_string()),
                    kv("db.system.name", "postgresql"),
                    kv("task.uuid", &format!("0190c6d2-7a1b-7c3d-8e4f-{:012x}", i / 8)),
                    kv("task.template", "linear_3"),
                    kv("step.name", &format!("step_{}", i % 8)),
                    kv("step.handler", "noop"),
                    kv("benchmark.run_id", "bench-0001"),
                    kv("retry", "false"),
                ],
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource { attributes: vec![kv("service.name", "worker")], ..Default::default() }),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    }
}

fn rate(spans: u64, seconds: f64) -> f64 {
    spans as f64 / seconds
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let batches = if full { 100 } else { 3 };
    let spans = batches * BATCH;
    let requests: Vec<ExportTraceServiceRequest> = (0..batches).map(request).collect();

    // The embedded store: every batch acknowledged after its WAL fsync, then the flush to a segment.
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = SpanStore::open(StoreConfig::new(dir.path())).unwrap();
    let t0 = Instant::now();
    for request in &requests {
        let (batch, _) = Batch::scan(request.encode_to_vec().into()).unwrap();
        store.append(batch).await.unwrap();
    }
    store.shutdown().unwrap();
    let embedded_write = t0.elapsed().as_secs_f64();

    // PostgreSQL: one COPY + INSERT transaction per batch, acknowledged at commit.
    let scratch = ScratchDb::create().await;
    let db = PgStore::connect(&scratch.url).await.unwrap();
    let t0 = Instant::now();
    for request in &requests {
        db.write(&hoptrace_otlp::convert(request.clone()).rows).await.unwrap();
    }
    let postgres_write = t0.elapsed().as_secs_f64();
    db.close().await;

    let read = move |location: Location| {
        let t0 = Instant::now();
        let frame = location.scan(TimeRange::all()).unwrap().collect().unwrap();
        assert_eq!(frame.height() as u64, spans);
        t0.elapsed().as_secs_f64()
    };
    let (embedded_dir, url) = (dir.path().to_owned(), scratch.url.clone());
    let (embedded_read, postgres_read) =
        tokio::task::spawn_blocking(move || (read(Location::Dir(embedded_dir)), read(Location::Postgres(url))))
            .await
            .unwrap();

    println!("{spans} spans in batches of {BATCH}, 10 attributes each");
    println!("{:<10} {:>18} {:>18} {:>14}", "", "embedded spans/s", "postgres spans/s", "postgres/emb.");
    for (what, e, p) in [("write", embedded_write, postgres_write), ("read", embedded_read, postgres_read)] {
        println!("{what:<10} {:>18.0} {:>18.0} {:>13.2}x", rate(spans, e), rate(spans, p), e / p);
    }
}
