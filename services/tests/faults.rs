//! `analyzer validate` against the real system with broken trace propagation: each fault the services can
//! inject is caught by the rule it breaks, with the trace named, and exit status 2; without faults the
//! same run validates intact with status 0.

mod harness;

use std::process::Command;

use harness::*;
use serde_json::{json, Value};

const RUN: &str = "fault-test";

/// Runs two linear_3 tasks with `faults` switched on in every service; returns validate's exit status,
/// its JSON, and the trace ids rooted at `POST /v1/tasks`.
async fn run_with(faults: &str) -> (i32, Value, Vec<String>) {
    let db = TestDb::create().await;
    let sink = SpanSink::start().await;
    let env = [("HOPTRACE_FAULTS", faults)];
    let api = Service::start_with(ORCHESTRATION, &[], &db, &sink.grpc_endpoint, "orchestration-1", &env);
    let worker = Service::start_with(WORKER, &[], &db, &sink.grpc_endpoint, "worker-1", &env);
    let client = reqwest::Client::new();
    // Faults break traces, not the work: every task still completes.
    for _ in 0..2 {
        let task = create_task(&client, &api, RUN, "linear_3", json!({"value": 3})).await;
        wait_finished(&client, &api, &task).await;
    }
    worker.stop();
    api.stop();
    let store = sink.stop().await;
    let roots: Vec<String> =
        read(store.path()).into_iter().filter(|s| s.name == "POST /v1/tasks").map(|s| s.trace_id).collect();
    let junit = store.path().join("validate.xml");
    let output = Command::new(workspace_binary("analyzer"))
        .args(["validate", "--run", RUN, "--settle", "0s", "--format", "json", "--store"])
        .arg(store.path())
        .arg("--junit")
        .arg(&junit)
        .output()
        .unwrap();
    let result: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("validate printed no JSON: {}", String::from_utf8_lossy(&output.stderr)));
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.starts_with("<?xml") && xml.contains("<testsuite name=\"trace correlation\""));
    (output.status.code().unwrap(), result, roots)
}

/// The trace ids that fail `rule`.
fn failing(result: &Value, rule: &str) -> Vec<String> {
    let mut traces: Vec<String> = result["failures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == rule)
        .map(|f| f["trace_id"].as_str().unwrap().to_owned())
        .collect();
    traces.dedup();
    traces
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_faults_every_trace_is_intact() {
    let (status, result, roots) = run_with("").await;
    assert_eq!(status, 0, "{result}");
    assert_eq!(result["broken"], 0);
    assert_eq!(result["traces_checked"], 2);
    assert_eq!(roots.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_drops_the_context_splits_each_task_into_several_traces() {
    let (status, result, roots) = run_with("worker_drops_context").await;
    assert_eq!(status, 2, "{result}");
    let split = failing(&result, "one_trace_per_key");
    for root in &roots {
        assert!(split.contains(root), "the task's own trace {root} is named: {split:?}");
    }
    // Each step's processing now starts a trace no lifecycle begins with.
    let unexpected = result["failures"].as_array().unwrap().iter().filter(|f| f["rule"] == "expected_root").count();
    assert_eq!(unexpected, 6, "{result}");
    assert!(!failing(&result, "expected_structure").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_payloads_without_context_leave_receptions_unpaired() {
    let (status, result, _) = run_with("notify_drops_context").await;
    assert_eq!(status, 2, "{result}");
    let receptions: Vec<&Value> =
        result["failures"].as_array().unwrap().iter().filter(|f| f["rule"] == "consumer_paired").collect();
    assert!(!receptions.is_empty(), "{result}");
    assert!(receptions.iter().all(|f| f["span"].as_str().unwrap().starts_with("receive ")));
    assert!(!failing(&result, "expected_root").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_span_whose_parent_is_never_sent_is_an_orphan() {
    let (status, result, roots) = run_with("orphan_span").await;
    assert_eq!(status, 2, "{result}");
    let orphans: Vec<&Value> =
        result["failures"].as_array().unwrap().iter().filter(|f| f["rule"] == "no_orphans").collect();
    assert_eq!(orphans.len(), 6, "one per step: {result}");
    assert!(orphans.iter().all(|f| f["span"].as_str().unwrap().starts_with("execute simple_calculation")));
    let mut traces = failing(&result, "no_orphans");
    traces.sort();
    let mut roots = roots;
    roots.sort();
    assert_eq!(traces, roots, "the tasks' traces are the broken ones");
    assert_eq!(result["by_rule"].as_object().unwrap().keys().collect::<Vec<_>>(), ["no_orphans"]);
}
