//! The Jaeger query API over a known store: two traces across two services, sent as OTLP/JSON. Every
//! endpoint's JSON is compared with a golden file in `tests/golden/` (after a deliberate change, rerun with
//! `UPDATE_GOLDEN=1 cargo test -p hoptrace-collector --test jaeger_query` and review the diff); every search
//! filter is checked by which traces it returns.

mod common;

use std::time::Duration;

use serde_json::Value;

const TRACE_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa01";
const TRACE_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb02";
/// The spans' window in microseconds: trace A starts at T0, trace B 100 ms later.
const T0_US: u64 = 1_795_986_538_000_000;
const END_US: u64 = T0_US + 1_000_000;

fn golden(name: &str, actual: &Value) {
    let actual = serde_json::to_string_pretty(actual).unwrap() + "\n";
    hoptrace_testkit::golden(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden"), name, &actual);
}

struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    async fn get(&self, path_and_query: &str) -> (u16, Value) {
        let resp = self.client.get(format!("{}{path_and_query}", self.base)).send().await.unwrap();
        let status = resp.status().as_u16();
        let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert_eq!(content_type, "application/json", "{path_and_query}");
        (status, serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap())
    }

    async fn ok(&self, path_and_query: &str) -> Value {
        let (status, body) = self.get(path_and_query).await;
        assert_eq!(status, 200, "{path_and_query}: {body}");
        assert_eq!(body["errors"], Value::Null);
        body
    }

    /// The trace ids a search returns, in order.
    async fn found(&self, query: &str) -> Vec<String> {
        let body = self.ok(&format!("/api/traces?start={T0_US}&end={END_US}&{query}")).await;
        let ids: Vec<String> =
            body["data"].as_array().unwrap().iter().map(|t| t["traceID"].as_str().unwrap().to_owned()).collect();
        assert_eq!(body["total"], ids.len());
        ids
    }
}

/// A collector holding the two traces of `requests/two_traces.json`, its query API ready to read them.
async fn serve() -> (common::Running, Api) {
    let running = common::start_with(|c| c.storage.flush_interval = Duration::from_millis(20)).await;
    let body = std::fs::read(format!("{}/tests/requests/two_traces.json", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let client = reqwest::Client::new();
    let resp = client
        .post(running.http_url("/v1/traces"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let api = Api { base: format!("http://{}", running.collector.query_addr), client };
    // Spans are queryable once flushed into a segment.
    for _ in 0..200 {
        if api.ok("/api/services").await["total"] == 2 {
            return (running, api);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the spans never became queryable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_in_jaegers_shape() {
    let (running, api) = serve().await;
    golden("services.json", &api.ok("/api/services").await);
    golden("service_operations.json", &api.ok("/api/services/orchestration/operations").await);
    golden("operations.json", &api.ok("/api/operations?service=orchestration").await);
    golden("operations_server.json", &api.ok("/api/operations?service=orchestration&spanKind=server").await);
    golden("trace.json", &api.ok(&format!("/api/traces/{TRACE_A}")).await);
    golden("search.json", &api.ok(&format!("/api/traces?service=orchestration&start={T0_US}&end={END_US}")).await);
    golden("dependencies.json", &api.ok(&format!("/api/dependencies?endTs={}&lookback=60000", END_US / 1000)).await);
    running.collector.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_filters_select_traces() {
    let (running, api) = serve().await;
    assert_eq!(api.found("service=orchestration").await, [TRACE_B, TRACE_A], "most recent first");
    assert_eq!(api.found("service=worker").await, [TRACE_A]);
    assert_eq!(api.found("service=orchestration&limit=1").await, [TRACE_B]);
    assert_eq!(api.found("service=orchestration&operation=INSERT%20tasks").await, [TRACE_B]);
    assert_eq!(api.found("service=orchestration&operation=all").await, [TRACE_B, TRACE_A]);
    // Tags: span attributes (typed values compare as text), resource attributes, and derived tags.
    let tags = |json: &str| format!("service=orchestration&tags={}", urlencode(json));
    assert_eq!(api.found(&tags(r#"{"task.template":"linear_3"}"#)).await, [TRACE_A]);
    assert_eq!(api.found(&tags(r#"{"http.response.status_code":"201"}"#)).await, [TRACE_A]);
    assert_eq!(api.found(&tags(r#"{"error":"true"}"#)).await, [TRACE_B]);
    assert_eq!(api.found(&tags(r#"{"span.kind":"client"}"#)).await, [TRACE_B]);
    assert_eq!(api.found(&tags(r#"{"host.name":"node-1","task.template":"diamond_4"}"#)).await, [TRACE_B]);
    assert_eq!(api.found(&tags(r#"{"task.template":"linear_3","error":"true"}"#)).await, Vec::<String>::new());
    assert_eq!(api.found("service=worker&tag=step.handler:noop").await, [TRACE_A]);
    // Durations are those of the matching span: A's root takes 10 ms and its send 1 ms; B's root 50 ms
    // and its INSERT 3 ms.
    let root = "service=orchestration&operation=POST%20%2Fv1%2Ftasks";
    assert_eq!(api.found(&format!("{root}&minDuration=20ms")).await, [TRACE_B]);
    assert_eq!(api.found(&format!("{root}&maxDuration=20ms")).await, [TRACE_A]);
    assert_eq!(api.found(&format!("{root}&minDuration=10ms&maxDuration=10ms")).await, [TRACE_A]);
    assert_eq!(api.found("service=orchestration&maxDuration=2ms").await, [TRACE_A]);
    assert_eq!(api.found("service=orchestration&minDuration=2ms&maxDuration=5ms").await, [TRACE_B]);
    // The time window: A's spans start before T0 + 50 ms, B's after.
    let window = |start: u64, end: u64| format!("/api/traces?service=orchestration&start={start}&end={end}");
    let only_a = api.ok(&window(T0_US, T0_US + 50_000)).await;
    assert_eq!(only_a["data"][0]["traceID"], TRACE_A);
    assert_eq!(only_a["total"], 1);
    assert_eq!(api.ok(&window(END_US, END_US + 1_000)).await["total"], 0, "an empty window is an empty list");
    // A found trace is whole, even the spans of other services.
    assert_eq!(only_a["data"][0]["spans"].as_array().unwrap().len(), 3);
    running.collector.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_queries_get_jaeger_errors() {
    let (running, api) = serve().await;
    let cases = [
        ("/api/traces/0123456789abcdef0123456789abcdef", 404, "trace not found"),
        ("/api/traces/not-hex", 400, "is not a trace id"),
        ("/api/traces?start=0", 400, "parameter 'service' is required"),
        ("/api/traces?service=worker&minDuration=fast", 400, "minDuration"),
        ("/api/traces?service=worker&minDuration=2s&maxDuration=1s", 400, "minDuration must not exceed maxDuration"),
        ("/api/traces?service=worker&tags=%5B1%5D", 400, "tags must be a JSON object"),
        ("/api/traces?service=worker&tag=novalue", 400, "must be key:value"),
        ("/api/traces?service=worker&limit=many", 400, "limit must be a number"),
        ("/api/traces?service=worker&start=10&end=5", 400, "start must not be after end"),
        ("/api/operations", 400, "parameter 'service' is required"),
        ("/api/operations?service=worker&spanKind=sideways", 400, "unknown spanKind"),
        ("/api/dependencies?endTs=yesterday", 400, "endTs must be milliseconds"),
    ];
    for (query, status, message) in cases {
        let (got, body) = api.get(query).await;
        assert_eq!(got, status, "{query}: {body}");
        assert_eq!(body["data"], Value::Null, "{query}");
        assert_eq!(body["errors"][0]["code"], status, "{query}");
        let msg = body["errors"][0]["msg"].as_str().unwrap();
        assert!(msg.contains(message), "{query}: {msg:?} should say {message:?}");
    }
    // An unknown service has no operations and no traces: empty lists, not errors.
    assert_eq!(api.ok("/api/services/nobody/operations").await["data"], serde_json::json!([]));
    assert_eq!(api.found("service=nobody").await, Vec::<String>::new());
    // Grafana sends a trace's time bounds in milliseconds, Jaeger in microseconds: both find it, and a
    // range of either unit that misses it does not.
    let (t0_ms, end_ms) = (T0_US / 1_000, END_US / 1_000 + 1);
    for (start, end) in [(T0_US, END_US + 1), (t0_ms, end_ms)] {
        let one = api.ok(&format!("/api/traces/{TRACE_A}?start={start}&end={end}")).await;
        assert_eq!(one["data"][0]["traceID"], TRACE_A, "start={start}&end={end}");
    }
    let later = (end_ms + 60_000, end_ms + 120_000);
    let (status, _) = api.get(&format!("/api/traces/{TRACE_A}?start={}&end={}", later.0, later.1)).await;
    assert_eq!(status, 404, "a millisecond range after the trace");
    // After all that, the API still serves.
    assert_eq!(api.ok(&format!("/api/traces/{TRACE_B}")).await["data"][0]["spans"].as_array().unwrap().len(), 2);
    running.collector.stop().await.unwrap();
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
