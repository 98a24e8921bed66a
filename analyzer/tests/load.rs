//! A long run's drift and an unfair worker, planted in generated traces and found by the report: the
//! claim hop's latency grows over the run, and one of three workers takes most of the steps.

use hoptrace_analyzer::drift::{DriftVerdict, Settings};
use hoptrace_analyzer::synthetic::{self, Scenario};
use hoptrace_analyzer::{analyze_with, report, Config, Extras, Filters, Report};
use hoptrace_store::TimeRange;

/// Ten minutes of tasks, one every 20 ms, over three workers.
fn run(claim_growth: f64, busy_worker: Option<(usize, f64)>) -> Report {
    let scenario = Scenario {
        tasks: 30_000,
        task_interval_ns: 20_000_000,
        worker_clock_skew_ns: vec![0, 0, 0],
        segment_spans: 200_000,
        claim_growth,
        busy_worker,
        ..Scenario::default()
    };
    let dir = tempfile::tempdir().unwrap();
    synthetic::generate(&scenario, Some(dir.path())).unwrap();
    let extras =
        Extras { over_time: Some(Settings { bucket_ns: 60_000_000_000, threshold: 0.2 }), ..Extras::default() };
    analyze_with(dir.path(), TimeRange::all(), &Config::built_in(), &Filters::default(), extras).unwrap()
}

#[test]
fn a_planted_drift_and_an_unfair_worker_are_found_and_named() {
    let report = run(0.8, Some((2, 0.6)));
    let over_time = report.over_time.as_ref().unwrap();
    let drifting: Vec<String> = over_time
        .hops
        .iter()
        .filter(|h| h.trend.verdict == DriftVerdict::Drift)
        .map(|h| format!("{}/{}/{}", h.category, h.variant.as_deref().unwrap_or(""), h.hop))
        .collect();
    // The claim itself, per handler; nothing else drifts enough (the end-to-end interval grows by the
    // claims of its steps, under a tenth).
    assert_eq!(
        drifting,
        ["worker_execution/noop/claim", "worker_execution/simple_calculation/claim"],
        "{over_time:#?}"
    );
    let claim = over_time.hops.iter().find(|h| h.hop == "claim").unwrap();
    assert_eq!(claim.buckets.len(), 10, "ten minutes in 1m buckets");
    assert!(claim.trend.growth_pct.unwrap() > 50.0, "{:?}", claim.trend);
    let workers = &report.fairness[0];
    assert_eq!((workers.service.as_str(), workers.uneven.as_deref()), ("worker", Some("worker-3")));
    assert!((workers.instances[2].share - 0.6).abs() < 0.02, "{workers:?}");
    hoptrace_testkit::golden(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden"),
        "report-drift.txt",
        &report::table(&report, false),
    );
}

#[test]
fn a_steady_fair_run_flags_nothing() {
    let report = run(0.0, None);
    let over_time = report.over_time.as_ref().unwrap();
    assert_eq!(over_time.drifting, 0, "{over_time:#?}");
    assert!(over_time.hops.iter().any(|h| h.trend.verdict == DriftVerdict::Stable));
    assert_eq!(report.fairness[0].uneven, None, "{:?}", report.fairness);
}
