//! Flush cost per span: building the columns and writing the Parquet segment, for the whole schema and
//! with each nested column left out, so the cost of each part of the schema is visible. Figures are
//! ratios against the full schema measured in the same run.
//!
//! `cargo bench --profile dev --workspace --bench flush`; under `cargo test` it runs once on a few rows.

use std::sync::Arc;
use std::time::Instant;

use hoptrace_otlp::{Origin, SpanRow};
use hoptrace_store::{schema, segment, to_frame};
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

fn rows(n: usize) -> Vec<SpanRow> {
    let origin = Arc::new(Origin {
        service_name: "worker".into(),
        resource_attributes: vec![
            kv("service.name", Value::StringValue("worker".into())),
            kv("host.name", Value::StringValue("bench-host".into())),
        ],
        scope_name: "hoptrace-bench".into(),
        scope_version: String::new(),
        scope_attributes: Vec::new(),
    });
    (0..n)
        .map(|i| {
            let mix = |x: u64| x.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(31) ^ 0xBF58_476D_1CE4_E5B9;
            let mut trace_id = [0u8; 16];
            trace_id[..8].copy_from_slice(&mix((i / 8) as u64).to_le_bytes());
            trace_id[8..].copy_from_slice(&mix(!(i / 8) as u64).to_le_bytes());
            let start = 1_795_986_538_000_000_000 + i as u64 * 1_000_000;
            SpanRow {
                trace_id,
                span_id: mix(i as u64 + 1).to_le_bytes(),
                parent_span_id: (i % 8 != 0).then(|| mix(i as u64).to_le_bytes()),
                trace_state: String::new(),
                flags: 1,
                name: ["process step_queue", "send step_queue", "INSERT workflow_steps", "POST /v1/tasks"][i % 4]
                    .into(),
                kind: (i % 5 + 1) as u8,
                start_time_unix_nano: start,
                end_time_unix_nano: start + 250_000 + (i as u64 * 7919) % 100_000,
                status_code: 1,
                status_message: String::new(),
                attributes: hoptrace_testkit::spans::benchmark_attributes(i),
                events: Vec::new(),
                links: Vec::new(),
                dropped: Default::default(),
                origin: Arc::clone(&origin),
            }
        })
        .collect()
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (n, rounds) = if full { (50_000, 5) } else { (1_000, 1) };
    let rows = rows(n);
    let dir = tempfile::tempdir().unwrap();
    let set = |a: schema::AttributeColumns| [a.keys, a.types, a.values];
    let (span_attrs, resource_attrs) = (set(schema::ATTRIBUTES), set(schema::RESOURCE_ATTRIBUTES));
    let nested: Vec<&str> =
        span_attrs.iter().chain(&resource_attrs).chain(&[schema::EVENTS, schema::LINKS]).copied().collect();
    let variants: [(&str, &[&str]); 5] = [
        ("full schema", &[]),
        ("without span attributes", &span_attrs),
        ("without resource attributes", &resource_attrs),
        ("without events, links", &[schema::EVENTS, schema::LINKS]),
        ("without any nested column", &nested),
    ];
    println!("{n} spans with 10 attributes, best of {rounds}");
    println!("{:<30} {:>14} {:>14} {:>10}", "variant", "build µs/span", "write µs/span", "vs full");
    let mut full_total = 0.0;
    for (k, (name, dropped)) in variants.iter().enumerate() {
        let (mut build, mut write) = (f64::MAX, f64::MAX);
        for r in 0..rounds {
            let t0 = Instant::now();
            let mut frame = to_frame(rows.iter()).unwrap();
            let t1 = Instant::now();
            for c in *dropped {
                frame = frame.drop(c).unwrap();
            }
            let t2 = Instant::now();
            segment::write(dir.path(), segment::Hour(k as u64), r as u64, r as u64, &mut frame, 128 * 1024).unwrap();
            build = build.min((t1 - t0).as_secs_f64());
            write = write.min(t2.elapsed().as_secs_f64());
        }
        let total = build + write;
        if k == 0 {
            full_total = total;
        }
        println!(
            "{:<30} {:>14.2} {:>14.2} {:>9.2}x",
            name,
            build * 1e6 / n as f64,
            write * 1e6 / n as f64,
            total / full_total
        );
    }
}
