//! The collector's Jaeger query API over traces of the real services: a linear_3 task runs through the
//! orchestrator and a worker, and Grafana's calls find it — its services and operations (golden files in
//! `tests/golden/`; `UPDATE_GOLDEN=1` rewrites them), the trace by tag and by id, whole, with every reference
//! resolving, and the calls between the services.

mod harness;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use harness::*;
use serde_json::{json, Value};

fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("missing golden file {}", path.display()));
    assert!(actual == expected, "{name} differs from its golden file:\n--- expected\n{expected}\n--- actual\n{actual}");
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
    worker.stop();
    api.stop();

    // Found by its task.uuid tag, once the collector has flushed it into a segment.
    let query = &sink.query_url;
    let search = format!("{query}/api/traces?service=orchestration&lookback=1h&tags={{\"task.uuid\":\"{task}\"}}");
    let mut found = Value::Null;
    for _ in 0..100 {
        found = get(&client, &search).await;
        if found["total"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
    let service = |span: &Value| trace["processes"][span["processID"].as_str().unwrap()]["serviceName"].as_str().unwrap().to_owned();
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

