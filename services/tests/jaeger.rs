//! The collector's Jaeger query API over traces of the real services: a linear_3 task runs through the
//! orchestrator and a worker, and Grafana's calls find it — its services and operations, the trace by tag
//! and by id, whole, with every reference resolving, and the calls between the services. Every endpoint's
//! JSON is compared with a golden file in `tests/golden/` (`UPDATE_GOLDEN=1` rewrites them) after what
//! differs from run to run is normalised: ids become their span's place in the tree, times become zero,
//! uuids and process ids become placeholders.

mod harness;

use std::collections::{BTreeMap, HashMap};

use harness::*;
use serde_json::{json, Value};

fn golden(name: &str, actual: &str) {
    hoptrace_testkit::golden(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden"), name, actual);
}

async fn get(client: &reqwest::Client, url: &str) -> Value {
    let resp = client.get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{url}");
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_finds_a_task_trace_of_the_real_services() {
    let db = TestDb::create().await;
    let sink = SpanSink::start().await;
    let api = Service::start(ORCHESTRATION, &[], &db, &sink.grpc_endpoint, "orchestration-1");
    let worker = Service::start(WORKER, &[], &db, &sink.grpc_endpoint, "worker-1");
    let client = reqwest::Client::new();
    let task = create_task(&client, &api, "jaeger", "linear_3", json!({"n": 2})).await;
    wait_finished(&client, &api, &task).await;
    // The services flush their spans on SIGTERM; the collector makes them readable at its next flush.
    worker.stop();
    api.stop();
    sink.settle().await;

    // Found by its task.uuid tag.
    let query = &sink.query_url;
    let search = format!("{query}/api/traces?service=orchestration&lookback=1h&tags={{\"task.uuid\":\"{task}\"}}");
    let found = get(&client, &search).await;
    assert_eq!(found["total"], 1, "the task's trace is found by its tag: {found}");
    let trace = &found["data"][0];
    let trace_id = trace["traceID"].as_str().unwrap();

    // The same trace by id, and whole: every span the store holds for it.
    let by_id = get(&client, &format!("{query}/api/traces/{trace_id}")).await;
    assert_eq!(&by_id["data"][0], trace);
    let spans = trace["spans"].as_array().unwrap();
    let stored = read(sink.dir()).into_iter().filter(|s| s.trace_id == trace_id).count();
    assert_eq!(spans.len(), stored);

    // Every reference resolves inside the trace; one root, the API call; each step's process span is a
    // child of its send and follows from it.
    let by_id: HashMap<&str, &Value> = spans.iter().map(|s| (s["spanID"].as_str().unwrap(), s)).collect();
    let op = |id: &str| by_id[id]["operationName"].as_str().unwrap().to_owned();
    let service = |span: &Value| {
        trace["processes"][span["processID"].as_str().unwrap()]["serviceName"].as_str().unwrap().to_owned()
    };
    let mut roots = Vec::new();
    let mut edges: BTreeMap<String, usize> = BTreeMap::new();
    for span in spans {
        let refs = span["references"].as_array().unwrap();
        for r in refs {
            assert_eq!(r["traceID"], trace_id);
            assert!(by_id.contains_key(r["spanID"].as_str().unwrap()), "dangling reference {r}");
        }
        let parent = refs.iter().find(|r| r["refType"] == "CHILD_OF");
        let links: Vec<String> =
            refs.iter().filter(|r| r["refType"] == "FOLLOWS_FROM").map(|r| op(r["spanID"].as_str().unwrap())).collect();
        match parent {
            None => roots.push(span["operationName"].as_str().unwrap().to_owned()),
            Some(p) => {
                let edge = format!(
                    "{} -> {} ({}){}",
                    op(p["spanID"].as_str().unwrap()),
                    span["operationName"].as_str().unwrap(),
                    service(span),
                    if links.is_empty() { String::new() } else { format!(" follows {}", links.join(", ")) }
                );
                *edges.entry(edge).or_default() += 1;
            }
        }
    }
    assert_eq!(roots, ["POST /v1/tasks"]);
    // The shape of a linear_3 trace, span by span: parent -> child (service), how many.
    let shape: String = edges.iter().map(|(edge, n)| format!("{n} × {edge}\n")).collect();
    golden("jaeger_linear_3_shape.txt", &shape);

    // What Grafana lists: the services, and each one's operations with their kinds.
    let services = get(&client, &format!("{query}/api/services")).await;
    assert_eq!(services["data"], json!(["orchestration", "worker"]));
    let mut operations = String::new();
    for name in ["orchestration", "worker"] {
        let ops = get(&client, &format!("{query}/api/operations?service={name}")).await;
        for o in ops["data"].as_array().unwrap() {
            operations += &format!("{name}\t{}\t{}\n", o["spanKind"].as_str().unwrap(), o["name"].as_str().unwrap());
        }
    }
    golden("jaeger_operations.txt", &operations);

    // Every endpoint's JSON, normalised, against its golden file.
    let endpoints = [
        ("services", format!("{query}/api/services")),
        ("orchestration_operations", format!("{query}/api/services/orchestration/operations")),
        ("worker_consumer_operations", format!("{query}/api/operations?service=worker&spanKind=consumer")),
        ("search_by_task", search.clone()),
        ("trace_by_id", format!("{query}/api/traces/{trace_id}")),
        ("dependencies", format!("{query}/api/dependencies?lookback=3600000")),
    ];
    for (name, url) in endpoints {
        let body = normalise(get(&client, &url).await);
        golden(&format!("jaeger_{name}.json"), &(serde_json::to_string_pretty(&body).unwrap() + "\n"));
    }

    // The dependency graph: results flow back, so the calls go both ways.
    let deps = get(&client, &format!("{query}/api/dependencies?lookback=3600000")).await;
    let pairs: Vec<(&str, &str)> = deps["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["parent"].as_str().unwrap(), d["child"].as_str().unwrap()))
        .collect();
    assert_eq!(pairs, [("orchestration", "worker"), ("worker", "orchestration")]);
    sink.stop().await;
}

/// The JSON with what differs between runs replaced: in each trace, span ids by the span's path of
/// operation names from the root (spans sorted by it), trace ids by `trace`, times by 0; uuids and what
/// describes the host or the SDK build by placeholders.
fn normalise(mut body: Value) -> Value {
    if let Some(traces) = body["data"].as_array_mut().filter(|d| d.first().is_some_and(|t| t.get("spans").is_some())) {
        for trace in traces {
            normalise_trace(trace);
        }
    }
    body
}

fn normalise_trace(trace: &mut Value) {
    let spans = trace["spans"].as_array().unwrap().clone();
    let by_id: HashMap<String, &Value> = spans.iter().map(|s| (s["spanID"].as_str().unwrap().to_owned(), s)).collect();
    let path = |span: &Value| -> String {
        let mut names = vec![span["operationName"].as_str().unwrap().to_owned()];
        let mut current = span;
        while let Some(parent) = current["references"].as_array().unwrap().iter().find(|r| r["refType"] == "CHILD_OF") {
            current = by_id[parent["spanID"].as_str().unwrap()];
            names.push(current["operationName"].as_str().unwrap().to_owned());
        }
        names.reverse();
        names.join(" > ")
    };
    let mut order: Vec<(String, u64, String)> = spans
        .iter()
        .map(|s| (path(s), s["startTime"].as_u64().unwrap(), s["spanID"].as_str().unwrap().to_owned()))
        .collect();
    order.sort();
    let placeholder: HashMap<String, String> = order.iter().map(|(path, _, id)| (id.clone(), path.clone())).collect();
    let mut normalised: Vec<Value> = spans
        .into_iter()
        .map(|mut span| {
            span["spanID"] = json!(placeholder[span["spanID"].as_str().unwrap()]);
            span["traceID"] = json!("trace");
            span["startTime"] = json!(0);
            span["duration"] = json!(0);
            for reference in span["references"].as_array_mut().unwrap() {
                let id = reference["spanID"].as_str().unwrap().to_owned();
                reference["spanID"] = json!(placeholder.get(&id).cloned().unwrap_or(id));
                reference["traceID"] = json!("trace");
            }
            for log in span["logs"].as_array_mut().unwrap() {
                log["timestamp"] = json!(0);
            }
            for tag in span["tags"].as_array_mut().unwrap() {
                normalise_tag(tag);
            }
            span
        })
        .collect();
    normalised.sort_by(|a, b| a["spanID"].as_str().cmp(&b["spanID"].as_str()));
    // Processes numbered in that order too, not by which span happened to start first.
    let mut renumbered: Vec<String> = Vec::new();
    for span in &mut normalised {
        let old = span["processID"].as_str().unwrap().to_owned();
        let index = renumbered.iter().position(|p| *p == old).unwrap_or_else(|| {
            renumbered.push(old.clone());
            renumbered.len() - 1
        });
        span["processID"] = json!(format!("p{}", index + 1));
    }
    let processes = trace["processes"].as_object().unwrap().clone();
    trace["processes"] =
        renumbered.iter().enumerate().map(|(i, old)| (format!("p{}", i + 1), processes[old].clone())).collect();
    trace["spans"] = json!(normalised);
    trace["traceID"] = json!("trace");
    for process in trace["processes"].as_object_mut().unwrap().values_mut() {
        for tag in process["tags"].as_array_mut().unwrap() {
            normalise_tag(tag);
        }
    }
}

fn normalise_tag(tag: &mut Value) {
    let key = tag["key"].as_str().unwrap();
    let varies = matches!(
        key,
        "process.pid" | "host.name" | "host.arch" | "os.type" | "telemetry.sdk.version" | "service.version"
    );
    if varies {
        tag["value"] = json!(format!("<{key}>"));
    } else if let Some(text) = tag["value"].as_str() {
        tag["value"] = json!(mask_uuids(text));
    }
}

/// Every uuid (8-4-4-4-12 hex digits) in `text` replaced by `<uuid>`.
fn mask_uuids(text: &str) -> String {
    let is_uuid = |s: &[u8]| {
        s.len() == 36
            && s.iter()
                .enumerate()
                .all(|(i, &c)| if [8, 13, 18, 23].contains(&i) { c == b'-' } else { c.is_ascii_hexdigit() })
    };
    let bytes = text.as_bytes();
    let (mut out, mut i) = (String::new(), 0);
    while i < bytes.len() {
        if i + 36 <= bytes.len() && is_uuid(&bytes[i..i + 36]) {
            out.push_str("<uuid>");
            i += 36;
        } else {
            let c = text[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}
