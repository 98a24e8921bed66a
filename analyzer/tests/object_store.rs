//! Reports over the bucket collectors share (a SeaweedFS server of the test's own), when each trace's
//! spans landed in two collectors: the traces are gathered across the collectors' segments, so the report
//! and the validation say what they say over one directory holding every span — byte for byte, but for
//! the store's name.

use std::path::Path;
use std::process::Command;

use hoptrace_analyzer::synthetic::{self, Scenario};
use hoptrace_store::{segment, Bucket, Location, TimeRange};
use hoptrace_testkit::seaweed::Seaweed;

const ANALYZER: &str = env!("CARGO_BIN_EXE_analyzer");
const URL: &str = "s3://hops/prod";

/// Every second span of the generated traces, in three flushes, as a collector's data directory.
fn collector_dir(rows: &[hoptrace_otlp::SpanRow], half: usize, dir: &Path) -> Vec<segment::Segment> {
    let mine: Vec<_> = rows.iter().skip(half).step_by(2).collect();
    let mut written = Vec::new();
    for (flush, chunk) in mine.chunks(mine.len().div_ceil(3)).enumerate() {
        let flushed = segment::write_flush(dir, flush as u64 + 1, chunk.iter().copied(), 4_096).unwrap();
        written.extend(flushed.segments);
    }
    written
}

fn analyzer(store: &str, args: &[&str], env: &[(&str, String)]) -> String {
    let out = Command::new(ANALYZER)
        .args(args)
        .args(["--store", store, "--run", "synthetic"])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success() || args[0] == "validate", "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    stdout.replace(store, "STORE")
}

#[test]
fn traces_split_across_collectors_report_as_one_directory_would() {
    let seaweed = Seaweed::start();
    seaweed.create_bucket("hops");
    let scratch = tempfile::tempdir().unwrap();
    let scenario = Scenario { tasks: 300, ..Scenario::default() };
    let whole = scratch.path().join("whole");
    let (_, truth) = synthetic::generate(&scenario, Some(&whole)).unwrap();
    let (rows, _) = synthetic::generate(&scenario, None).unwrap();

    let mut env = seaweed.env();
    env.push(("HOPTRACE_CACHE", scratch.path().join("cache").to_str().unwrap().to_owned()));
    let bucket = Bucket::with_settings(URL, &env).unwrap();
    for (half, collector) in ["collector-a", "collector-b"].into_iter().enumerate() {
        for segment in collector_dir(&rows, half, &scratch.path().join(collector)) {
            bucket.upload(collector, &segment).unwrap();
        }
    }

    let config = hoptrace_analyzer::Config::built_in();
    let filters = hoptrace_analyzer::Filters::default();
    let report = hoptrace_analyzer::analyze(Location::Bucket(bucket), TimeRange::all(), &config, &filters).unwrap();
    assert_eq!((report.traces, report.spans), (truth.traces, truth.spans), "every trace whole, every span once");

    let whole = whole.to_str().unwrap();
    for command in [&["report"][..], &["report", "--format", "json"], &["validate"]] {
        let over_bucket = analyzer(URL, command, &env);
        assert_eq!(over_bucket, analyzer(whole, command, &[]), "{command:?}");
        if command.contains(&"json") {
            assert!(over_bucket.contains("\"store\": \"STORE\""), "the JSON report names its store");
        }
    }
}
