//! Jaeger's own storage-integration search suite, run against the query API: its 32 fixture traces are sent
//! as OTLP/JSON, and each of its 25 queries must return exactly the fixtures it names — through v1
//! (`/api/traces`), v3 (`/api/v3/traces`) and v3's trace summaries alike. The data is read from
//! `../shared/jaeger-fixtures` (Apache-2.0, not copied here); without it the test says so and passes.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

struct Fixtures {
    /// Each fixture's OTLP/JSON body, by name.
    bodies: BTreeMap<String, Value>,
    queries: Vec<Value>,
}

fn load(dir: &Path) -> Fixtures {
    let read = |path: &Path| -> Value { serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap() };
    let mut bodies = BTreeMap::new();
    for entry in std::fs::read_dir(dir.join("traces")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        bodies.insert(name, read(&path));
    }
    let queries = read(&dir.join("queries.json")).as_array().unwrap().clone();
    Fixtures { bodies, queries }
}

/// Every span of an OTLP/JSON body (a fixture, or a v3 answer's `result`), with its service.
fn spans(body: &Value) -> Vec<(String, &Value)> {
    let mut out = Vec::new();
    for resource in body["resourceSpans"].as_array().unwrap() {
        let service = resource["resource"]["attributes"]
            .as_array()
            .and_then(|a| a.iter().find(|kv| kv["key"] == "service.name"))
            .and_then(|kv| kv["value"]["stringValue"].as_str())
            .unwrap_or_default()
            .to_owned();
        for scope in resource["scopeSpans"].as_array().unwrap() {
            for span in scope["spans"].as_array().unwrap() {
                out.push((service.clone(), span));
            }
        }
    }
    out
}

fn trace_ids(body: &Value) -> BTreeSet<String> {
    spans(body).iter().map(|(_, s)| s["traceId"].as_str().unwrap().to_ascii_lowercase()).collect()
}

/// A query's tags as text, the way a client sends them: `123`, `72.5`, `true`.
fn tags(query: &Value) -> BTreeMap<String, String> {
    query["Tags"]
        .as_object()
        .map(|tags| {
            tags.iter().map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned))).collect()
        })
        .unwrap_or_default()
}

fn micros(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339).unwrap().timestamp_micros()
}

/// One dialect's names for a query's parameters, and how it writes a time.
struct Dialect {
    service: &'static str,
    start: &'static str,
    end: &'static str,
    limit: &'static str,
    operation: &'static str,
    tags: &'static str,
    durations: [&'static str; 2],
    time: fn(&str) -> String,
}

/// v1: microseconds since the epoch.
const V1: Dialect = Dialect {
    service: "service",
    start: "start",
    end: "end",
    limit: "limit",
    operation: "operation",
    tags: "tags",
    durations: ["minDuration", "maxDuration"],
    time: |t| micros(t).to_string(),
};

/// v3: RFC 3339, as the suite gives them.
const V3: Dialect = Dialect {
    service: "query.serviceName",
    start: "query.startTimeMin",
    end: "query.startTimeMax",
    limit: "query.searchDepth",
    operation: "query.operationName",
    tags: "query.attributes",
    durations: ["query.durationMin", "query.durationMax"],
    time: |t| t.to_owned(),
};

/// The suite's query `q` as `dialect`'s query string.
fn query_string(q: &Value, dialect: &Dialect) -> String {
    let mut params = vec![
        (dialect.service, q["ServiceName"].as_str().unwrap().to_owned()),
        (dialect.start, (dialect.time)(q["StartTimeMin"].as_str().unwrap())),
        (dialect.end, (dialect.time)(q["StartTimeMax"].as_str().unwrap())),
        (dialect.limit, q["NumTraces"].to_string()),
    ];
    if let Some(op) = q["OperationName"].as_str().filter(|o| !o.is_empty()) {
        params.push((dialect.operation, op.to_owned()));
    }
    let tags = tags(q);
    if !tags.is_empty() {
        params.push((dialect.tags, serde_json::to_string(&tags).unwrap()));
    }
    for (name, key) in dialect.durations.into_iter().zip(["DurationMin", "DurationMax"]) {
        if let Some(ns) = q[key].as_u64().filter(|ns| *ns > 0) {
            params.push((name, format!("{ns}ns")));
        }
    }
    serde_urlencoded::to_string(params).unwrap()
}

async fn get(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let resp = client.get(url).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jaegers_search_suite_passes_through_v1_and_v3() {
    let Some(dir) = hoptrace_testkit::shared("jaeger-fixtures") else { return };
    let fixtures = load(&dir);
    assert_eq!((fixtures.bodies.len(), fixtures.queries.len()), (32, 25), "the suite as recorded");

    let running = common::start_with(|c| c.storage.flush_interval = Duration::from_millis(20)).await;
    let client = reqwest::Client::new();
    for (name, body) in &fixtures.bodies {
        let resp = client
            .post(running.http_url("/v1/traces"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{name}: {}", resp.text().await.unwrap());
    }
    let api = format!("http://{}", running.collector.query_addr);
    let services: BTreeSet<String> =
        fixtures.bodies.values().flat_map(|b| spans(b).into_iter().map(|(s, _)| s)).collect();
    let mut visible = 0;
    for _ in 0..500 {
        visible = get(&client, &format!("{api}/api/v3/services")).await.1["services"].as_array().unwrap().len();
        if visible == services.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(visible, services.len(), "every fixture's service is listed");

    let mut failures = Vec::new();
    for q in &fixtures.queries {
        let caption = q["Caption"].as_str().unwrap();
        let expected: BTreeSet<String> = q["ExpectedFixtures"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|f| trace_ids(&fixtures.bodies[f.as_str().unwrap()]))
            .collect();
        let query = &q["Query"];

        let (status, v1) = get(&client, &format!("{api}/api/traces?{}", query_string(query, &V1))).await;
        assert_eq!(status, 200, "{caption}: {v1}");
        let got: BTreeSet<String> =
            v1["data"].as_array().unwrap().iter().map(|t| t["traceID"].as_str().unwrap().to_owned()).collect();
        if got != expected {
            failures.push(format!("v1 {caption}: expected {expected:?}, got {got:?}"));
        }

        let (status, v3) = get(&client, &format!("{api}/api/v3/traces?{}", query_string(query, &V3))).await;
        let got = if status == 404 { BTreeSet::new() } else { trace_ids(&v3["result"]) };
        assert!(status == 200 || (status == 404 && v3["error"]["message"] == "No traces found"), "{caption}: {v3}");
        if got != expected {
            failures.push(format!("v3 {caption}: expected {expected:?}, got {got:?}"));
        }

        let (status, summaries) =
            get(&client, &format!("{api}/api/v3/trace-summaries?{}", query_string(query, &V3))).await;
        assert_eq!(status, 200, "{caption}: {summaries}");
        let got: BTreeSet<String> = summaries["summaries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["traceId"].as_str().unwrap().to_owned())
            .collect();
        if got != expected {
            failures.push(format!("summaries {caption}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{} of 75 answers differ from Jaeger's:\n{}", failures.len(), failures.join("\n"));

    // Each fixture comes back whole by id through v3, span for span.
    for (name, body) in &fixtures.bodies {
        for trace_id in trace_ids(body) {
            let (status, answer) = get(&client, &format!("{api}/api/v3/traces/{trace_id}")).await;
            assert_eq!(status, 200, "{name}: {answer}");
            let summary = |spans: Vec<(String, &Value)>| -> BTreeSet<String> {
                spans
                    .into_iter()
                    .filter(|(_, s)| s["traceId"].as_str().unwrap().eq_ignore_ascii_case(&trace_id))
                    .map(|(service, s)| {
                        let attributes: BTreeSet<&str> = s["attributes"]
                            .as_array()
                            .map(|a| a.iter().map(|kv| kv["key"].as_str().unwrap()).collect())
                            .unwrap_or_default();
                        let count = |field: &str| s[field].as_array().map_or(0, Vec::len);
                        format!(
                            "{service} {} {} {} {} {} {attributes:?} events={} links={}",
                            s["spanId"].as_str().unwrap().to_ascii_lowercase(),
                            s["name"],
                            s["startTimeUnixNano"],
                            s["endTimeUnixNano"],
                            s["kind"].as_u64().unwrap_or(0),
                            count("events"),
                            count("links"),
                        )
                    })
                    .collect()
            };
            assert_eq!(summary(spans(&answer["result"])), summary(spans(body)), "{name}");
        }
    }
    running.collector.stop().await.unwrap();
}
