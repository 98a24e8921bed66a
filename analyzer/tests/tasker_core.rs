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
