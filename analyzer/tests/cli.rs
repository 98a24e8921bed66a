//! `analyzer report` as a user runs it: every output format against a golden file (regenerate with
//! `UPDATE_GOLDEN=1 cargo test -p hoptrace-analyzer --test cli` and review the diff), and the errors a
//! user can make, each answered with a clear message.

use std::path::Path;
use std::process::{Command, Output};

use hoptrace_analyzer::synthetic::{self, Scenario};

const ANALYZER: &str = env!("CARGO_BIN_EXE_analyzer");

fn golden(name: &str, actual: &str) {
    hoptrace_testkit::golden(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden"), name, actual);
}

/// A small store: 60 tasks of linear_3 and diamond-free linear_10, noop and simple_calculation handlers.
fn store() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let scenario = Scenario { tasks: 60, segment_spans: 2_000, ..Scenario::default() };
    synthetic::generate(&scenario, Some(&dir.path().join("data"))).unwrap();
    dir
}

fn analyzer(dir: &Path, args: &[&str]) -> Output {
    Command::new(ANALYZER).current_dir(dir).args(args).env_remove("HOPTRACE_DATA").output().unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "exit {}: {}", output.status, String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn every_format_matches_its_golden_file() {
    let dir = store();
    for (format, file) in
        [("table", "report.txt"), ("json", "report.json"), ("csv", "report.csv"), ("markdown", "report.md")]
    {
        let out = analyzer(dir.path(), &["report", "--store", "data", "--run", "synthetic", "--format", format]);
        golden(file, &stdout(&out));
    }
    let out = analyzer(
        dir.path(),
        &[
            "report",
            "--store",
            "data",
            "--run",
            "synthetic",
            "--category",
            "e2e_latency",
            "--category",
            "handler_overhead",
        ],
    );
    golden("report-two-categories.txt", &stdout(&out));
}

#[test]
fn the_json_report_is_versioned_and_self_describing() {
    let dir = store();
    let out = analyzer(dir.path(), &["report", "--store", "data", "--run", "synthetic", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["schema"], "hoptrace.report/v1");
    assert_eq!(report["traces"], 60);
    let hop = &report["categories"][0]["variants"][0]["hops"][0];
    assert_eq!(hop["too_few_samples"][0]["percentile"], "p99");
    assert_eq!(hop["too_few_samples"][0]["needs"], 100);
    assert_eq!(hop["p99_ns"], serde_json::Value::Null);
    assert_eq!(hop["verdict"], "few_samples");
}

#[test]
fn an_empty_range_says_so_and_is_not_an_error() {
    let dir = store();
    let out = analyzer(
        dir.path(),
        &["report", "--store", "data", "--from", "2020-01-01T00:00:00Z", "--to", "2020-01-02T00:00:00Z"],
    );
    let table = stdout(&out);
    assert!(table.contains("0 traces, 0 spans"), "{table}");
    assert!(table.contains("no hop of any category matched a span in this range"), "{table}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no spans in data for this range"));
    let out = analyzer(dir.path(), &["report", "--store", "data", "--run", "nope", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!((report["traces"].as_u64(), report["categories"].as_array().map(Vec::len)), (Some(0), Some(0)));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no traces of run \"nope\""));
}

#[test]
fn usage_and_config_errors_exit_1_with_the_reason() {
    let dir = store();
    std::fs::write(dir.path().join("bad.toml"), "[[category]]\nname = \"c\"\n[[category.hop]]\nname = \"h\"\nmeasure = \"duration\"\nspan = { name = \"x\" }\ntarget = \"p99 < soon\"\n").unwrap();
    let cases: [(&[&str], &str); 5] = [
        (&["report", "--store", "missing"], "no store at missing"),
        (&["report", "--store", "data", "--config", "bad.toml"], "category \"c\" hop \"h\": target: \"p99 < soon\""),
        (&["report", "--store", "data", "--config", "absent.toml"], "reading absent.toml"),
        (&["report", "--store", "data", "--category", "e2e"], "no category \"e2e\"; categories: task_initialization"),
        (
            &["report", "--store", "data", "--from", "2026-11-30T00:00:00Z", "--to", "2026-11-29T00:00:00Z"],
            "--from must be before --to",
        ),
    ];
    for (args, says) in cases {
        let out = analyzer(dir.path(), args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    let out = analyzer(dir.path(), &["report", "--since", "yesterday"]);
    assert_eq!(out.status.code(), Some(2), "clap's usage errors");
}
