//! Bearer-token authentication: with a token file, the real OTLP exporters get in only with a listed token
//! (gRPC: UNAUTHENTICATED, HTTP: 401 otherwise), the Jaeger query API answers 401 in each dialect's
//! envelope, `/health` and `/metrics` stay open, and nothing a denied request carried is stored.

mod common;

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use common::*;
use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::InstrumentationScope;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter, SpanLinks};

fn span(trace_byte: u8) -> Vec<SpanData> {
    let context = SpanContext::new(
        TraceId::from_bytes([trace_byte; 16]),
        SpanId::from_bytes([0xa1; 8]),
        TraceFlags::SAMPLED,
        false,
        TraceState::default(),
    );
    let now = SystemTime::now();
    vec![SpanData {
        span_context: context,
        parent_span_id: SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: SpanKind::Server,
        name: Cow::Borrowed("POST /v1/tasks"),
        start_time: now,
        end_time: now + Duration::from_millis(3),
        attributes: Vec::new(),
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: InstrumentationScope::builder("auth-test").build(),
    }]
}

fn grpc_exporter(url: String, token: Option<&str>) -> opentelemetry_otlp::SpanExporter {
    let mut metadata = tonic::metadata::MetadataMap::new();
    if let Some(token) = token {
        metadata.insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(url).with_metadata(metadata).build().unwrap()
}

fn http_exporter(url: String, token: Option<&str>) -> opentelemetry_otlp::SpanExporter {
    let headers: HashMap<String, String> =
        token.map(|t| ("authorization".to_owned(), format!("Bearer {t}"))).into_iter().collect();
    opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url)
        .with_headers(headers)
        .build()
        .unwrap()
}

async fn get(url: &str, token: Option<&str>) -> (u16, Option<String>, serde_json::Value) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(t) = token {
        request = request.header("authorization", format!("Bearer {t}"));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let challenge = response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    (status, challenge, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_requests_with_a_listed_token_get_in() {
    let tokens = token_file("# rotating: both accepted for now\nold-secret\nnew-secret\n");
    let running = start_with(|c| c.auth.token_file = Some(tokens.path().to_owned())).await;
    let (grpc, http) = (running.grpc_url(), running.http_url("/v1/traces"));

    // gRPC: UNAUTHENTICATED without a token or with a wrong one; either listed token gets in.
    for (token, byte) in [(None, 0x01), (Some("guess"), 0x02)] {
        let exporter = grpc_exporter(grpc.clone(), token);
        let error = exporter.export(span(byte)).await.unwrap_err().to_string();
        assert!(error.contains("Unauthenticated") || error.contains("UNAUTHENTICATED"), "{token:?}: {error}");
    }
    grpc_exporter(grpc.clone(), Some("old-secret")).export(span(0x03)).await.expect("listed token accepted");
    grpc_exporter(grpc.clone(), Some("new-secret")).export(span(0x04)).await.expect("listed token accepted");

    // HTTP: 401 with the challenge and an OTLP status; a listed token gets in.
    for (token, byte) in [(None, 0x05), (Some("old-secret-but-longer"), 0x06)] {
        let error = http_exporter(http.clone(), token).export(span(byte)).await.unwrap_err().to_string();
        assert!(error.contains("401"), "{token:?}: {error}");
    }
    let raw =
        reqwest::Client::new().post(&http).header("content-type", "application/json").body("{}").send().await.unwrap();
    assert_eq!(raw.status().as_u16(), 401);
    assert_eq!(raw.headers().get("www-authenticate").unwrap(), "Bearer");
    let status: serde_json::Value = raw.json().await.unwrap();
    assert_eq!(status["code"], 16, "google.rpc.Code UNAUTHENTICATED: {status}");
    assert!(status["message"].as_str().unwrap().contains("Authorization: Bearer"), "{status}");
    http_exporter(http.clone(), Some("new-secret")).export(span(0x07)).await.expect("listed token accepted");

    // The query API: 401 in each dialect's envelope, the trace with a token.
    let query = |path: &str| format!("http://{}{path}", running.collector.query_addr);
    let (status, challenge, v1) = get(&query("/api/services"), None).await;
    assert_eq!((status, challenge.as_deref()), (401, Some("Bearer")));
    assert_eq!(v1["errors"][0]["code"], 401, "{v1}");
    let (status, _, v3) = get(&query("/api/v3/services"), Some("guess")).await;
    assert_eq!(status, 401);
    assert_eq!(v3["error"]["httpCode"], 401, "{v3}");
    assert!(v3["error"]["message"].as_str().unwrap().contains("not one this collector accepts"), "{v3}");

    // Health and metrics stay open; the denied requests are counted per transport.
    assert_eq!(get(&running.http_url("/health"), None).await.0, 200);
    let metrics = reqwest::get(running.http_url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("hoptrace_collector_requests_unauthenticated_total{transport=\"grpc\"} 2"), "{metrics}");
    assert!(metrics.contains("hoptrace_collector_requests_unauthenticated_total{transport=\"http\"} 3"), "{metrics}");

    // Only the three admitted spans were stored.
    let (frame, _dir) = running.stop_and_read().await;
    let traces: Vec<u8> = (0..frame.height())
        .map(|i| bin_at(&frame, hoptrace_store::schema::TRACE_ID, i).unwrap()[0])
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(traces, [0x03, 0x04, 0x07]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_api_serves_a_token_holder() {
    let tokens = token_file("secret\n");
    let running = start_with(|c| c.auth.token_file = Some(tokens.path().to_owned())).await;
    let query = |path: &str| format!("http://{}{path}", running.collector.query_addr);
    let (status, _, services) = get(&query("/api/v3/services"), Some("secret")).await;
    assert_eq!(status, 200, "{services}");
    assert_eq!(services, serde_json::json!({ "services": [] }));
    running.collector.stop().await.unwrap();
}

#[tokio::test]
async fn a_missing_or_empty_token_file_stops_the_start_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.auth.token_file = Some(dir.path().join("no-such-file"));
    let error = hoptrace_collector::Collector::start(config.clone()).await.err().unwrap().to_string();
    assert!(error.contains("no-such-file"), "{error}");
    std::fs::write(dir.path().join("empty"), "\n# nothing\n").unwrap();
    config.auth.token_file = Some(dir.path().join("empty"));
    let error = hoptrace_collector::Collector::start(config).await.err().unwrap().to_string();
    assert!(error.contains("empty") && error.contains("no token"), "{error}");
}
