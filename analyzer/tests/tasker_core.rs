//! The analyzer on a real system it did not design: tasker-core's recorded traces
//! (`../shared/tasker-core-traces`, gzipped OTLP/JSON request bodies as its exporter sent them) posted
//! through the collector's OTLP/HTTP endpoint with `Content-Encoding: gzip` into a temporary store, then
//! `analyzer inspect` over it against a golden file (regenerate with `UPDATE_GOLDEN=1`). Without `../shared`
//! the test says so and passes.

use std::path::Path;
use std::process::Command;

const ANALYZER: &str = env!("CARGO_BIN_EXE_analyzer");

/// The recording's window (2026-12-01, 22:04:25 to 22:06:17 UTC), widened to the hour.
const WINDOW: [&str; 4] = ["--from", "2026-12-01T22:00:00Z", "--to", "2026-12-01T23:00:00Z"];

/// A store holding every recorded request, as the collector accepted it.
async fn recorded_store(traces: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let collector =
        hoptrace_collector::Collector::start(hoptrace_collector::Config::ephemeral(dir.path().join("data")))
            .await
            .unwrap();
    let url = format!("http://{}/v1/traces", collector.http_addr);
    let client = reqwest::Client::new();
    let mut files: Vec<_> = std::fs::read_dir(traces)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".json.gz"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 79, "the recording's request bodies");
    for file in files {
        let resp = client
            .post(&url)
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(std::fs::read(&file).unwrap())
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body = resp.text().await.unwrap();
        assert_eq!(status, 200, "{}: {body}", file.display());
        assert!(!body.contains("rejected"), "{}: {body}", file.display());
    }
    collector.stop().await.unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_shows_what_tasker_core_emits() {
    let Some(traces) = hoptrace_testkit::shared("tasker-core-traces") else { return };
    let dir = recorded_store(&traces).await;
    let run = |format: &str| {
        let out = Command::new(ANALYZER)
            .current_dir(dir.path())
            .args(["inspect", "--store", "data", "--format", format])
            .args(WINDOW)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let table = run("table");
    hoptrace_testkit::golden(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden"), "tasker_core_inspect.txt", &table);
    assert!(table.starts_with("133140 spans in 7289 traces"), "the recording's README counts");

    let json: serde_json::Value = serde_json::from_str(&run("json")).unwrap();
    let keys: Vec<(&str, &str)> = json["correlation_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["set"].as_str().unwrap(), k["key"].as_str().unwrap()))
        .collect();
    // What joins tasker-core's split lifecycles: the PGMQ message id (on `archive_message` in both services),
    // the id in the orchestration's send event, the step and task ids in its events and spans.
    for key in [("span", "message_id"), ("event", "msg_id"), ("event", "step_uuid"), ("span", "task_uuid")] {
        assert!(keys.contains(&key), "{key:?} in {keys:?}");
    }
    // Look-alikes are not: `correlation_id` on `publish_event` is a publisher's id.
    assert!(!keys.contains(&("span", "correlation_id")), "{keys:?}");
}

/// The shipped configuration over the recording: every category it defines has samples, split by task
/// name; the queue wait is paired for every step message; validate fails (the lifecycles are split), counts
/// the background apart and names the breaks at the queues.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_config_measures_and_validates_tasker_core() {
    let Some(traces) = hoptrace_testkit::shared("tasker-core-traces") else { return };
    let dir = recorded_store(&traces).await;
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/tasker-core.toml");
    let run = |args: &[&str]| {
        let out = Command::new(ANALYZER)
            .current_dir(dir.path())
            .args(args)
            .args(["--store", "data", "--config", config])
            .args(WINDOW)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8(out.stdout).unwrap(), String::from_utf8_lossy(&out.stderr).into_owned())
    };

    let (code, report, stderr) = run(&["report", "--format", "json"]);
    assert_eq!(code, Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    let assembly = &report["assembly"];
    assert_eq!(assembly["excluded_spans"], 119_009, "the h2 spans, as the recording's README counts them");
    assert_eq!(
        report["traces"].as_u64().unwrap() as usize,
        7289 - assembly["excluded_traces"].as_u64().unwrap() as usize
            - assembly["stitched_traces"].as_u64().unwrap() as usize
            + assembly["stitched_lifecycles"].as_u64().unwrap() as usize
    );
    let templates = ["complex_dag", "diamond_pattern", "hierarchical_tree", "mathematical_sequence"];
    let samples = |category: &str, hop: &str| -> Vec<(String, u64)> {
        let category = report["categories"].as_array().unwrap().iter().find(|c| c["name"] == category).unwrap();
        category["variants"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| {
                let hop = v["hops"].as_array().unwrap().iter().find(|h| h["hop"] == hop)?;
                Some((v["variant"].as_str().unwrap_or("(all)").to_owned(), hop["count"].as_u64().unwrap()))
            })
            .collect()
    };
    let categories = report["categories"].as_array().unwrap();
    assert_eq!(categories.len(), 6);
    for category in categories {
        let variants: Vec<&str> =
            category["variants"].as_array().unwrap().iter().filter_map(|v| v["variant"].as_str()).collect();
        for template in templates {
            assert!(variants.contains(&template), "{}: {variants:?}", category["name"]);
        }
    }
    let total = |pairs: Vec<(String, u64)>| pairs.iter().map(|(_, n)| n).sum::<u64>();
    // Every step message sent by the orchestration met its worker's archive: 805 of 805.
    assert_eq!(total(samples("event_propagation", "step queue wait")), 805);
    // Every result met the orchestration's archive once (its 18 second archives are duplicates, not waits).
    assert_eq!(total(samples("event_propagation", "result sent → archived")), 805);
    assert_eq!(total(samples("e2e_latency", "task")), 140);
    assert_eq!(samples("e2e_latency", "task").len(), 4, "one variant per template, all stitched");
    assert_eq!(total(samples("task_initialization", "request")), 140);
    // Across the joins no causal bound ties the two processes' clocks: counted, not corrected.
    assert_eq!(report["clock_skew"]["corrected"], 0);
    assert_eq!(report["clock_skew"]["uncorrectable"], 805 + 805, "both queue crossings of every step");

    let (code, validation, stderr) = run(&["validate", "--format", "json"]);
    assert_eq!(code, Some(2), "{stderr}");
    let validation: serde_json::Value = serde_json::from_str(&validation).unwrap();
    assert!(validation["background"]["traces"].as_u64().unwrap() > 0);
    assert_eq!(validation["background"]["by_root"]["request"], 438, "434 polls and 4 health checks");
    let breaks = validation["breaks"].as_array().unwrap();
    let found = |before: &str, after: &str| {
        breaks
            .iter()
            .find(|b| b["before"] == before && b["after"] == after)
            .unwrap_or_else(|| panic!("{before} → {after} in {breaks:#?}"))
    };
    let to_worker = found("tasker-orchestration send_json_message", "tasker-rust-worker archive_message");
    assert_eq!(
        (to_worker["count"].as_u64(), to_worker["lifecycles"].as_u64(), to_worker["lifecycles_total"].as_u64()),
        (Some(805), Some(140), Some(140))
    );
    let back = found("tasker-rust-worker send_json_message", "tasker-orchestration archive_message");
    assert_eq!(back["count"], 823, "805 results and the 18 archived twice");
    let duplicates = validation["duplicates"].as_array().unwrap();
    let twice = |key: &str, span: &str| {
        duplicates.iter().find(|d| d["key"] == key && d["span"] == span).map(|d| d["values"].as_u64().unwrap())
    };
    assert_eq!(twice("message", "tasker-orchestration archive_message"), Some(18));
    assert_eq!(twice("step", "tasker-orchestration handle_step_execution_result"), Some(18));

    let (_, text, _) = run(&["validate"]);
    hoptrace_testkit::golden(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden"), "tasker_core_validate.txt", &text);
}
