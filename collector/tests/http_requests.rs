//! OTLP/HTTP against hand-checked request files and bad input at the boundary: each mistake gets the
//! status the OTLP specification prescribes, and nothing already accepted is lost.

mod common;

use std::io::Write;

use common::*;
use hoptrace_store::schema;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

fn request_file(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/requests/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

struct Reply {
    status: u16,
    content_type: String,
    retry_after: Option<String>,
    body: Vec<u8>,
}

async fn post(url: &str, content_type: &str, encoding: Option<&str>, body: Vec<u8>) -> Reply {
    let client = reqwest::Client::new();
    let mut req = client.post(url).header("content-type", content_type).body(body);
    if let Some(e) = encoding {
        req = req.header("content-encoding", e);
    }
    let resp = req.send().await.unwrap();
    let header = |name: &str| resp.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
    let content_type = header("content-type").unwrap_or_default();
    let retry_after = header("retry-after");
    let status = resp.status().as_u16();
    Reply { status, content_type, retry_after, body: resp.bytes().await.unwrap().to_vec() }
}

fn status_message(reply: &Reply) -> String {
    if reply.content_type == JSON {
        let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        v["message"].as_str().unwrap().to_owned()
    } else {
        tonic_types::pb::Status::decode(reply.body.as_slice()).unwrap().message
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_request_file_is_stored_field_by_field() {
    let running = start().await;
    let reply = post(&running.http_url("/v1/traces"), JSON, None, request_file("full.json")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.content_type, JSON, "the response uses the request's content type");
    assert_eq!(reply.body, b"{}");

    let (df, _dir) = running.stop_and_read().await;
    assert_eq!(df.height(), 1);
    assert_eq!(hex::encode(bin_at(&df, schema::TRACE_ID, 0).unwrap()), "5b8efff798038103d269b633813fc60c");
    assert_eq!(hex::encode(bin_at(&df, schema::SPAN_ID, 0).unwrap()), "eee19b7ec3c1b174");
    assert_eq!(hex::encode(bin_at(&df, schema::PARENT_SPAN_ID, 0).unwrap()), "eee19b7ec3c1b173");
    assert_eq!(u8_at(&df, schema::KIND, 0), 5);
    assert_eq!(u64_at(&df, schema::START_TIME, 0), 1_795_986_538_000_000_001);
    assert_eq!(u64_at(&df, schema::END_TIME, 0), 1_795_986_538_000_500_000);
    assert_eq!(u8_at(&df, schema::STATUS_CODE, 0), 1);
    assert_eq!(str_at(&df, schema::SERVICE_NAME, 0).as_deref(), Some("worker"));
    assert_eq!(str_at(&df, schema::SCOPE_NAME, 0).as_deref(), Some("hoptrace-json"));
    assert_eq!(
        attrs(&df, schema::ATTRIBUTES, 0),
        vec![
            ("messaging.system".into(), Attr::Str("pgmq".into())),
            ("messaging.message.id".into(), Attr::Int(9_007_199_254_740_993)),
            ("retry".into(), Attr::Bool(false)),
            ("ratio".into(), Attr::Double(0.5)),
            ("payload".into(), Attr::Bytes(b"hoptrace".to_vec())),
            (
                "nested".into(),
                Attr::Json(serde_json::json!({"kvlistValue": {"values": [{"key": "k", "value": {"intValue": "7"}}]}}))
            ),
            ("nothing".into(), Attr::Empty),
        ]
    );
    assert_eq!(
        attrs(&df, schema::RESOURCE_ATTRIBUTES, 0),
        vec![("service.name".into(), Attr::Str("worker".into())), ("worker.slot".into(), Attr::Int(3))]
    );
    assert_eq!(list_at(&df, schema::EVENTS, 0).len(), 1);
    assert_eq!(list_at(&df, schema::LINKS, 0).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_ids_are_rejected_by_partial_success_and_the_rest_stored() {
    let running = start().await;
    let reply = post(&running.http_url("/v1/traces"), JSON, None, request_file("invalid_ids.json")).await;
    assert_eq!(reply.status, 200);
    let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body["partialSuccess"]["rejectedSpans"], "2");
    assert!(body["partialSuccess"]["errorMessage"].as_str().unwrap().contains("trace_id"));

    // The same over protobuf: the response is protobuf too.
    let mut req = spans(9, 0, 2);
    req.resource_spans[0].scope_spans[0].spans[1].span_id = vec![0; 8];
    let reply = post(&running.http_url("/v1/traces"), PROTOBUF, None, req.encode_to_vec()).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.content_type, PROTOBUF);
    let resp = ExportTraceServiceResponse::decode(reply.body.as_slice()).unwrap();
    assert_eq!(resp.partial_success.unwrap().rejected_spans, 1);

    let (df, _dir) = running.stop_and_read().await;
    let mut names: Vec<_> = (0..df.height()).map(|i| str_at(&df, schema::NAME, i).unwrap()).collect();
    names.sort();
    assert_eq!(names, vec!["kept", "span-0"]);
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_its_status_and_loses_nothing_accepted() {
    let running = start().await;
    let url = running.http_url("/v1/traces");

    // Accepted first: everything after must leave it intact.
    let first = post(&url, PROTOBUF, None, spans(1, 0, 10).encode_to_vec()).await;
    assert_eq!(first.status, 200);

    let garbage = post(&url, PROTOBUF, None, vec![0xff, 0xff, 0xff, 0x0f, 0x01]).await;
    assert_eq!(garbage.status, 400);
    assert_eq!(garbage.content_type, PROTOBUF);
    assert!(status_message(&garbage).contains("invalid OTLP protobuf"), "{}", status_message(&garbage));

    let malformed = post(&url, JSON, None, br#"{"resourceSpans": [ {"#.to_vec()).await;
    assert_eq!(malformed.status, 400);
    assert_eq!(malformed.content_type, JSON);
    assert!(status_message(&malformed).contains("invalid OTLP/JSON"), "{}", status_message(&malformed));

    let bad_id =
        post(&url, JSON, None, br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"xyz"}]}]}]}"#.to_vec()).await;
    assert_eq!(bad_id.status, 400);
    assert!(status_message(&bad_id).contains("not a hex string"), "{}", status_message(&bad_id));

    let wrong_type = post(&url, "text/plain", None, b"hello".to_vec()).await;
    assert_eq!(wrong_type.status, 415);

    let empty_protobuf = post(&url, PROTOBUF, None, Vec::new()).await;
    assert_eq!(empty_protobuf.status, 200, "an empty request is a valid request with no spans");
    let empty_json = post(&url, JSON, None, Vec::new()).await;
    assert_eq!(empty_json.status, 400);

    let oversize = post(&url, PROTOBUF, None, vec![0u8; 21 << 20]).await;
    assert_eq!(oversize.status, 413);

    let bomb = post(&url, PROTOBUF, Some("gzip"), gzip(&vec![0u8; 200 << 20])).await;
    assert_eq!(bomb.status, 413, "a gzip bomb is refused after 20 MiB of output");

    let unknown_encoding = post(&url, PROTOBUF, Some("br"), b"x".to_vec()).await;
    assert_eq!(unknown_encoding.status, 415);

    let duplicate = post(&url, PROTOBUF, None, spans(1, 0, 10).encode_to_vec()).await;
    assert_eq!(duplicate.status, 200, "a retried batch is acknowledged");

    let gzipped = post(&url, PROTOBUF, Some("gzip"), gzip(&spans(2, 0, 5).encode_to_vec())).await;
    assert_eq!(gzipped.status, 200, "still serving after all of the above");

    let health = reqwest::get(running.http_url("/health")).await.unwrap();
    assert_eq!(health.status(), 200);
    let metrics = reqwest::get(running.http_url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("hoptrace_collector_requests_invalid_total{transport=\"http\"} 6"), "{metrics}");
    assert!(metrics.contains("hoptrace_collector_requests_too_large_total{transport=\"http\"} 2"), "{metrics}");
    assert!(metrics.contains("hoptrace_store_spans_duplicate_total 10"), "{metrics}");

    let (df, _dir) = running.stop_and_read().await;
    assert_eq!(df.height(), 15, "10 + 5 spans, the retried 10 stored once");
    assert_eq!(keys(&df).len(), 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_refused_with_retry_after_and_accepted_spans_are_kept() {
    // A tiny budget: a few concurrent 1 MiB requests exceed it.
    let running = start_with(|c| {
        c.limits.max_http_body_bytes = 2 << 20;
        c.limits.max_inflight_bytes = 2 << 20;
    })
    .await;
    let url = running.http_url("/v1/traces");
    let mut tasks = Vec::new();
    for t in 0..24u8 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let body = spans(t + 1, 0, 4_000).encode_to_vec();
            (t, post(&url, PROTOBUF, None, body).await)
        }));
    }
    let mut accepted = Vec::new();
    let mut refused = 0;
    for task in tasks {
        let (t, reply) = task.await.unwrap();
        match reply.status {
            200 => accepted.push(t + 1),
            503 => {
                refused += 1;
                assert_eq!(reply.retry_after.as_deref(), Some("1"));
            }
            s => panic!("unexpected status {s}"),
        }
    }
    assert!(refused > 0, "the budget must refuse some of 24 concurrent ~800 KiB requests");
    assert!(!accepted.is_empty());
    let (df, _dir) = running.stop_and_read().await;
    assert_eq!(df.height(), accepted.len() * 4_000);
}
