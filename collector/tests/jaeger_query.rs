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

/// The v3 window of the two traces, as RFC 3339 times.
const V3_WINDOW: &str = "query.startTimeMin=2026-11-29T21:08:58Z&query.startTimeMax=2026-11-29T21:08:59.000000001Z";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_v3_endpoint_answers_as_jaegers_gateway() {
    let (running, api) = serve().await;
    let ok = |path: String| {
        let api = &api;
        async move {
            let (status, body) = api.get(&path).await;
            assert_eq!(status, 200, "{path}: {body}");
            body
        }
    };
    golden("v3_services.json", &ok("/api/v3/services".into()).await);
    golden("v3_operations.json", &ok("/api/v3/operations?service=orchestration".into()).await);
    golden("v3_operations_server.json", &ok("/api/v3/operations?service=orchestration&spanKind=server".into()).await);
    golden("v3_trace.json", &ok(format!("/api/v3/traces/{TRACE_A}")).await);
    golden("v3_search.json", &ok(format!("/api/v3/traces?query.serviceName=orchestration&{V3_WINDOW}")).await);
    golden(
        "v3_summaries.json",
        &ok(format!("/api/v3/trace-summaries?query.serviceName=orchestration&{V3_WINDOW}")).await,
    );
    // The snake_case aliases older clients send, and a trace id in base64 (protobuf's JSON form of bytes).
    let snake = "query.service_name=orchestration&query.start_time_min=2026-11-29T21:08:58Z\
        &query.start_time_max=2026-11-29T21:08:59.000000001Z&query.num_traces=1";
    let found = ok(format!("/api/v3/traces?{snake}")).await;
    assert_eq!(found["result"]["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"], TRACE_B);
    let base64 = "u7u7u7u7u7u7u7u7u7u7Ag==";
    assert_eq!(ok(format!("/api/v3/traces/{base64}")).await, ok(format!("/api/v3/traces/{TRACE_B}")).await);
    // Times may carry an offset and nanoseconds; the window excludes B (it starts 100 ms after A).
    let offset = "query.startTimeMin=2026-11-29T22:08:58%2B01:00&query.startTimeMax=2026-11-29T21:08:58.050000000Z";
    let only_a = ok(format!("/api/v3/trace-summaries?query.serviceName=orchestration&{offset}")).await;
    assert_eq!(only_a["summaries"].as_array().unwrap().len(), 1);
    assert_eq!(only_a["summaries"][0]["traceId"], TRACE_A);
    // Attributes: any span of a trace, its events or resource; `resource.` looks at the resource only.
    let attributes = |json: &str| format!("/api/v3/trace-summaries?{V3_WINDOW}&query.attributes={}", urlencode(json));
    let ids = |body: Value| -> Vec<String> {
        body["summaries"].as_array().unwrap().iter().map(|s| s["traceId"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(ids(ok(attributes(r#"{"task.template":"linear_3"}"#)).await), [TRACE_A]);
    assert_eq!(ids(ok(attributes(r#"{"resource.service.instance.id":"worker-1"}"#)).await), [TRACE_A]);
    assert_eq!(ids(ok(attributes(r#"{"host.name":"node-1"}"#)).await), [TRACE_B, TRACE_A], "most recent first");
    assert_eq!(ids(ok(attributes(r#"{"attempt":"1","step.handler":"noop"}"#)).await), [TRACE_A], "an event's");
    assert_eq!(ids(ok(attributes(r#"{"scope.name":"hoptrace-services","span.kind":"client"}"#)).await), [TRACE_B]);
    assert_eq!(ids(ok(attributes(r#"{"resource.task.template":"linear_3"}"#)).await), Vec::<String>::new());
    assert_eq!(ids(ok(attributes(r#"{"span.status":"error"}"#)).await), [TRACE_B]);
    assert_eq!(ids(ok(attributes(r#"{"error":"false","span.kind":"server"}"#)).await), [TRACE_A]);
    running.collector.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_v3_queries_get_the_gateways_errors() {
    let (running, api) = serve().await;
    let cases = [
        ("/api/v3/traces/0123456789abcdef0123456789abcdef".to_owned(), 404, "No traces found"),
        (format!("/api/v3/traces?query.serviceName=nobody&{V3_WINDOW}"), 404, "No traces found"),
        ("/api/v3/traces/not-an-id".into(), 400, "is not a trace id"),
        (
            "/api/v3/traces?query.serviceName=worker".into(),
            400,
            "query.startTimeMin and query.startTimeMax are required",
        ),
        (
            "/api/v3/traces?query.startTimeMin=2026-11-29T21:09:00Z&query.startTimeMax=2026-11-29T21:08:00Z".into(),
            400,
            "query.startTimeMin must be before query.startTimeMax",
        ),
        (
            "/api/v3/traces?query.startTimeMin=yesterday&query.startTimeMax=2026-11-29T21:08:00Z".into(),
            400,
            "malformed parameter query.startTimeMin",
        ),
        (format!("/api/v3/traces?{V3_WINDOW}&query.duration_min=fast"), 400, "malformed parameter query.duration_min"),
        (format!("/api/v3/traces?{V3_WINDOW}&query.searchDepth=-1"), 400, "malformed parameter query.searchDepth"),
        (format!("/api/v3/traces?{V3_WINDOW}&query.attributes=%5B1%5D"), 400, "malformed parameter query.attributes"),
        (format!("/api/v3/traces?{V3_WINDOW}&query.rawTraces=maybe"), 400, "malformed parameter query.rawTraces"),
        ("/api/v3/trace-summaries?query.startTimeMin=2026-11-29T21:08:00Z".into(), 400, "are required"),
        ("/api/v3/operations".into(), 400, "parameter 'service' is required"),
        ("/api/v3/operations?service=worker&span_kind=sideways".into(), 400, "malformed parameter span_kind"),
    ];
    for (query, status, message) in cases {
        let (got, body) = api.get(&query).await;
        assert_eq!(got, status, "{query}: {body}");
        assert_eq!(body["error"]["httpCode"], status, "{query}");
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(msg.contains(message), "{query}: {msg:?} should say {message:?}");
    }
    // No match for a summary search is an empty list, not an error.
    let (status, body) = api.get(&format!("/api/v3/trace-summaries?query.serviceName=nobody&{V3_WINDOW}")).await;
    assert_eq!((status, body), (200, serde_json::json!({ "summaries": [] })));
    running.collector.stop().await.unwrap();
}

/// The v1 answers as Grafana's Jaeger data source decodes them (`pkg/jaeger/types` in
/// grafana/grafana-jaeger-datasource): these structs have its fields and Go types, so a value of another
/// type (a float for an int64, a string for an int) fails here as it fails there. Every field is decoded,
/// not every one is read.
#[allow(dead_code)]
mod grafana {
    use std::collections::HashMap;

    use serde::Deserialize;

    #[derive(Deserialize)]
    pub struct KeyValueType {
        pub key: String,
        #[serde(rename = "type")]
        pub kind: String,
        pub value: serde_json::Value,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct TraceProcess {
        pub service_name: String,
        pub tags: Option<Vec<KeyValueType>>,
    }

    #[derive(Deserialize)]
    pub struct TraceSpanReference {
        #[serde(rename = "refType")]
        pub ref_type: String,
        #[serde(rename = "spanID")]
        pub span_id: String,
        #[serde(rename = "traceID")]
        pub trace_id: String,
    }

    #[derive(Deserialize)]
    pub struct TraceLog {
        pub timestamp: i64,
        pub fields: Option<Vec<KeyValueType>>,
        pub name: Option<String>,
    }

    #[derive(Deserialize)]
    pub struct Span {
        #[serde(rename = "traceID")]
        pub trace_id: String,
        #[serde(rename = "spanID")]
        pub span_id: String,
        #[serde(rename = "processID")]
        pub process_id: String,
        #[serde(rename = "operationName")]
        pub operation_name: String,
        #[serde(rename = "startTime")]
        pub start_time: i64,
        pub duration: i64,
        pub logs: Option<Vec<TraceLog>>,
        pub references: Option<Vec<TraceSpanReference>>,
        pub tags: Option<Vec<KeyValueType>>,
        pub warnings: Option<Vec<String>>,
        pub flags: i64,
        #[serde(rename = "stackTraces")]
        pub stack_traces: Option<Vec<String>>,
    }

    #[derive(Deserialize)]
    pub struct TraceResponse {
        pub processes: HashMap<String, TraceProcess>,
        #[serde(rename = "traceID")]
        pub trace_id: String,
        pub warnings: Option<Vec<String>>,
        pub spans: Vec<Span>,
    }

    #[derive(Deserialize)]
    pub struct Envelope<T> {
        pub data: Option<Vec<T>>,
        pub errors: serde_json::Value,
        pub limit: i64,
        pub offset: i64,
        pub total: i64,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct ServiceDependency {
        pub parent: String,
        pub child: String,
        pub call_count: i64,
    }

    #[derive(Deserialize)]
    pub struct DependencyError {
        pub code: i64,
        pub msg: String,
    }

    #[derive(Deserialize)]
    pub struct DependenciesResponse {
        pub data: Option<Vec<ServiceDependency>>,
        pub errors: Option<Vec<DependencyError>>,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_decode_with_grafanas_types_and_gzip_on_request() {
    let (running, api) = serve().await;
    let decode = |body: Value| body.to_string();
    // What Grafana calls, with the parameters it sends (client.go): search with start/end in µs, the
    // trace by id with its time params in ms, dependencies with endTs/lookback in ms.
    let services: grafana::Envelope<String> =
        serde_json::from_str(&decode(api.ok("/api/services").await)).expect("services as Grafana reads them");
    assert_eq!(services.data.unwrap(), ["orchestration", "worker"]);
    let operations: grafana::Envelope<String> =
        serde_json::from_str(&decode(api.ok("/api/services/orchestration/operations").await)).unwrap();
    assert_eq!(operations.total, operations.data.unwrap().len() as i64);
    let search = api.ok(&format!("/api/traces?service=orchestration&start={T0_US}&end={END_US}&limit=20")).await;
    let traces: grafana::Envelope<grafana::TraceResponse> =
        serde_json::from_str(&decode(search)).expect("a search as Grafana reads it");
    let traces = traces.data.unwrap();
    assert_eq!(traces.len(), 2);
    let (t0_ms, end_ms) = (T0_US / 1_000, END_US / 1_000 + 1);
    let one = api.ok(&format!("/api/traces/{TRACE_A}?start={t0_ms}&end={end_ms}")).await;
    let one: grafana::Envelope<grafana::TraceResponse> = serde_json::from_str(&decode(one)).unwrap();
    let trace = &one.data.unwrap()[0];
    assert_eq!(trace.trace_id, TRACE_A);
    for span in &trace.spans {
        assert!(trace.processes.contains_key(&span.process_id), "every span's process is listed");
        assert!(span.start_time >= T0_US as i64 && span.duration >= 0);
        assert!((0..=255).contains(&span.flags));
        for log in span.logs.iter().flatten() {
            assert!(log.timestamp >= span.start_time, "log timestamps are µs like the span's");
        }
        for reference in span.references.iter().flatten() {
            assert!(["CHILD_OF", "FOLLOWS_FROM"].contains(&reference.ref_type.as_str()));
            assert_eq!(reference.span_id.len(), 16);
            assert_eq!(reference.trace_id.len(), 32);
        }
        for tag in span.tags.iter().flatten() {
            let ok = match tag.kind.as_str() {
                "string" | "binary" => tag.value.is_string(),
                "bool" => tag.value.is_boolean(),
                "int64" => tag.value.is_i64(),
                "float64" => tag.value.is_number(),
                _ => false,
            };
            assert!(ok, "tag {} of type {} holds {}", tag.key, tag.kind, tag.value);
        }
    }
    let deps = api.ok(&format!("/api/dependencies?endTs={end_ms}&lookback=60000")).await;
    let deps: grafana::DependenciesResponse = serde_json::from_str(&decode(deps)).unwrap();
    assert!(deps.errors.is_none());
    assert_eq!(deps.data.unwrap()[0].call_count, 1);

    // Compressed when asked: the same JSON, gzipped.
    let url = format!("{}/api/traces?service=orchestration&start={T0_US}&end={END_US}", api.base);
    let plain = api.client.get(&url).send().await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    let plain = plain.bytes().await.unwrap();
    let gzipped = api.client.get(&url).header("accept-encoding", "gzip").send().await.unwrap();
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    let body = gzipped.bytes().await.unwrap();
    assert!(body.len() < plain.len() / 2, "{} bytes gzipped from {}", body.len(), plain.len());
    let mut unzipped = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut unzipped).unwrap();
    assert_eq!(unzipped, plain);
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
        ("/api/traces?service=worker&tags=%5B1%5D", 400, "malformed parameter tags"),
        ("/api/traces?service=worker&tag=novalue", 400, "must be key:value"),
        ("/api/traces?service=worker&limit=many", 400, "limit must be a number"),
        ("/api/traces?service=worker&start=10&end=5", 400, "start must not be after end"),
        ("/api/operations", 400, "parameter 'service' is required"),
        ("/api/operations?service=worker&spanKind=sideways", 400, "unknown span kind"),
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
