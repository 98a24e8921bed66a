//! Forwarding: collector A exports everything it accepts to collector B. B ends up holding exactly what A
//! accepted, once each, even when B restarts in the middle; when B cannot keep up, A keeps acknowledging
//! its clients and counts what it could not forward.

mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use common::*;
use hoptrace_collector::{Collector, Config};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

async fn export(client: &reqwest::Client, collector: &Collector, request: &ExportTraceServiceRequest) -> String {
    let resp = client
        .post(format!("http://{}/v1/traces", collector.http_addr))
        .header("content-type", "application/x-protobuf")
        .body(request.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "A acknowledges whatever B is doing");
    let body = resp.bytes().await.unwrap();
    let response = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse::decode(body).unwrap();
    response.partial_success.map(|p| p.error_message).unwrap_or_default()
}

/// A request of `n` valid spans of trace `trace` plus one with an invalid (empty) trace id.
fn with_invalid_span(trace: u8, first: u64, n: u64) -> ExportTraceServiceRequest {
    let mut request = spans(trace, first, n);
    let mut bad = request.resource_spans[0].scope_spans[0].spans[0].clone();
    bad.trace_id.clear();
    request.resource_spans[0].scope_spans[0].spans.push(bad);
    request
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..600 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_holds_exactly_what_a_accepted_across_a_restart_of_b() {
    let b_dir = tempfile::tempdir().unwrap();
    let b_config = Config::ephemeral(b_dir.path());
    let b = Collector::start(b_config.clone()).await.unwrap();
    let b_http = b.http_addr;
    let a = start_with(|c| c.forward.endpoint = Some(format!("http://{b_http}"))).await;
    let client = reqwest::Client::new();

    for i in 0..5u64 {
        let rejected = export(&client, &a.collector, &with_invalid_span(1, i * 40, 40)).await;
        assert!(!rejected.is_empty(), "the invalid span is rejected by A");
    }
    // B goes away; A keeps accepting, and retries what it cannot forward.
    b.stop().await.unwrap();
    for i in 5..10u64 {
        export(&client, &a.collector, &spans(2, i * 40, 40)).await;
    }
    let stats = std::sync::Arc::clone(&a.collector.pipeline.forwarder().unwrap().stats);
    wait_for("A has retried while B was down", || stats.retries.load(Relaxed) > 0).await;
    // B comes back on the same address and store.
    let mut b_config = b_config;
    b_config.listen.http = b_http;
    let b = Collector::start(b_config).await.unwrap();
    wait_for("A has forwarded all 400 accepted spans", || stats.spans_forwarded.load(Relaxed) == 400).await;
    assert_eq!(stats.spans_dropped.load(Relaxed) + stats.spans_failed.load(Relaxed), 0);

    let (a_spans, _a_dir) = a.stop_and_read().await;
    b.stop().await.unwrap();
    let b_spans = read_all(b_dir.path());
    assert_eq!(a_spans.height(), 400);
    assert_eq!(keys(&b_spans), keys(&a_spans), "B holds what A accepted, each span once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_queue_is_full_a_drops_counts_and_keeps_acknowledging() {
    // An address where nothing listens: every send fails and is retried, so the queue fills.
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let a = start_with(|c| {
        c.forward.endpoint = Some(format!("http://{nowhere}"));
        c.forward.max_queue_bytes = 8 * 1024;
        c.forward.drain_timeout = Duration::from_millis(200);
    })
    .await;
    let client = reqwest::Client::new();
    for i in 0..20u64 {
        export(&client, &a.collector, &spans(3, i * 40, 40)).await;
    }
    let metrics = client.get(a.http_url("/metrics")).send().await.unwrap().text().await.unwrap();
    let value = |name: &str| -> u64 {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {metrics}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let dropped = value("hoptrace_forward_spans_dropped_total");
    assert!(dropped > 0, "a full queue drops: {metrics}");
    assert!(value("hoptrace_forward_queue_bytes") <= 8 * 1024);
    assert_eq!(value("hoptrace_forward_spans_forwarded_total"), 0);

    let stats = std::sync::Arc::clone(&a.collector.pipeline.forwarder().unwrap().stats);
    let (stored, _dir) = a.stop_and_read().await;
    assert_eq!(stored.height(), 800, "A stored everything it acknowledged");
    assert_eq!(
        stats.spans_dropped.load(Relaxed) + stats.spans_failed.load(Relaxed),
        800,
        "every span not forwarded is counted, as dropped or as still queued at shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_refusal_is_counted_not_retried() {
    let b = start().await;
    // B answers 404 on this path: not a retryable status.
    let endpoint = format!("http://{}/v1/elsewhere", b.collector.http_addr);
    let a = start_with(|c| c.forward.endpoint = Some(endpoint)).await;
    let client = reqwest::Client::new();
    export(&client, &a.collector, &spans(4, 0, 10)).await;
    let stats = std::sync::Arc::clone(&a.collector.pipeline.forwarder().unwrap().stats);
    wait_for("the refusal is counted", || stats.spans_failed.load(Relaxed) == 10).await;
    assert_eq!(stats.retries.load(Relaxed), 0);
    a.stop_and_read().await;
    let (b_spans, _) = b.stop_and_read().await;
    assert_eq!(b_spans.height(), 0);
}
