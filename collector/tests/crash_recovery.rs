//! Durability: spans acknowledged before a `kill -9` are all readable after a restart, and none twice.

mod common;

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

fn batch(n: u64) -> ExportTraceServiceRequest {
    let spans = (0..20u64)
        .map(|i| Span {
            trace_id: [(n % 250 + 1) as u8; 16].to_vec(),
            span_id: (n * 100 + i + 1).to_be_bytes().to_vec(),
            name: format!("batch-{n}"),
            // Spread over two hours so more than one partition is in play.
            start_time_unix_nano: 1_795_986_538_000_000_000 + (n % 2) * 3_600_000_000_000 + i,
            end_time_unix_nano: 1_795_986_538_000_000_000 + (n % 2) * 3_600_000_000_000 + i + 1_000,
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_spans_survive_kill_9_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("collector.toml");
    // Frequent flushes and eager compaction, so the kill lands with spans in segments, in compactions
    // and only in the WAL.
    std::fs::write(&config, "[storage]\nflush_interval = \"50ms\"\ncompaction_min_segments = 3\n").unwrap();

    let client = reqwest::Client::new();
    let mut acknowledged = Vec::new();
    let mut proc = common::spawn(&data, &config, &[], &[]);
    proc.wait_healthy().await;
    for round in 0..3u64 {
        // Send concurrently, then kill while requests are still in flight.
        let mut sends = Vec::new();
        for k in 0..60u64 {
            let n = round * 1_000 + k;
            let (client, url) = (client.clone(), proc.http.clone());
            sends.push(tokio::spawn(async move { (n, common::post(&client, &url, &batch(n)).await) }));
            if k == 40 {
                // Retry an acknowledged batch: the duplicate must not be stored twice.
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(120)).await;
        proc.kill();
        for s in sends {
            let (n, ok) = s.await.unwrap();
            if ok {
                acknowledged.push(n);
            }
        }
        proc = common::spawn(&data, &config, &[], &[]);
        proc.wait_healthy().await;
        // A retried batch after restart is also not stored twice.
        if let Some(&n) = acknowledged.first() {
            assert!(proc.send(&client, &batch(n)).await);
        }
    }
    assert!(acknowledged.len() > 20, "only {} batches were acknowledged", acknowledged.len());

    // A clean stop flushes everything.
    proc.terminate();

    let df = common::read_all(&data);
    let keys = common::keys(&df);
    let mut unique = keys.clone();
    unique.dedup();
    assert_eq!(keys.len(), unique.len(), "no span is readable twice");
    for n in acknowledged {
        for i in 0..20u64 {
            let key = (hex::encode([(n % 250 + 1) as u8; 16]), hex::encode((n * 100 + i + 1).to_be_bytes()));
            assert!(keys.binary_search(&key).is_ok(), "acknowledged span {key:?} of batch {n} is missing");
        }
    }
}
