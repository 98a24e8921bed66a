//! A long run's drift, an unfair worker, a leak and a contention hop, planted in generated traces and
//! found: the claim hop's latency grows over the run, one of three workers takes most of the steps and
//! another's memory grows, and across a load sweep the claim grows with the load.

use hoptrace_analyzer::drift::{DriftVerdict, Settings};
use hoptrace_analyzer::scaling::{self, Load, Scaling, ScalingVerdict};
use hoptrace_analyzer::synthetic::{self, Scenario};
use hoptrace_analyzer::{analyze_with, report, Config, Extras, Filters, Report};
use hoptrace_store::TimeRange;

/// Ten minutes of tasks, one every 20 ms, over three workers, with a health sample every 10 s.
fn run(claim_growth: f64, busy_worker: Option<(usize, f64)>, rss_growth: f64) -> Report {
    let scenario = Scenario {
        tasks: 30_000,
        task_interval_ns: 20_000_000,
        worker_clock_skew_ns: vec![0, 0, 0],
        segment_spans: 200_000,
        claim_growth,
        busy_worker,
        health_every_ns: 10_000_000_000,
        rss_growth,
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
    let report = run(0.8, Some((2, 0.6)), 0.5);
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
    // The leaking worker's memory, and only it, grows.
    let growing: Vec<&str> = report.health.iter().filter(|h| h.growing()).map(|h| h.series.as_str()).collect();
    assert_eq!(growing, ["worker/worker-1 rss"], "{:#?}", report.health);
    assert_eq!(report.health.len(), 4, "three workers' memory and the connections");
    assert_eq!(report.health[0].samples.len(), 60, "a sample every 10 s for ten minutes");
    assert!((workers.instances[2].share - 0.6).abs() < 0.02, "{workers:?}");
    hoptrace_testkit::golden(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden"),
        "report-drift.txt",
        &report::table(&report, false),
    );
}

#[test]
fn a_steady_fair_run_flags_nothing() {
    let report = run(0.0, None, 0.0);
    let over_time = report.over_time.as_ref().unwrap();
    assert_eq!(over_time.drifting, 0, "{over_time:#?}");
    assert!(over_time.hops.iter().any(|h| h.trend.verdict == DriftVerdict::Stable));
    assert_eq!(report.fairness[0].uneven, None, "{:?}", report.fairness);
    assert!(
        report.health.iter().all(|h| !h.growing() && h.trend.verdict == DriftVerdict::Stable),
        "{:#?}",
        report.health
    );
}

/// Four runs at a rising load (1 to 4 workers, tasks started 1 to 8 times as often); with `contention`,
/// the claim takes `1 + contention × (load − 1)` times as long.
fn sweep(contention: f64) -> Scaling {
    let dir = tempfile::tempdir().unwrap();
    let points = [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0)];
    let runs = synthetic::sweep(dir.path(), 1_500, &points, contention).unwrap();
    let settings = scaling::Settings { load: Load::InFlight, threshold: 0.2 };
    let mut scaling =
        hoptrace_analyzer::analyze_scaling(dir.path(), TimeRange::all(), &Config::built_in(), &runs, settings).unwrap();
    scaling.store = "sweep".into();
    scaling
}

#[test]
fn across_a_load_sweep_the_hop_that_grows_with_load_is_named_the_bottleneck() {
    let scaling = sweep(0.5);
    let loads: Vec<(usize, f64)> = scaling.runs.iter().map(|r| (r.workers, r.throughput_per_s)).collect();
    // Each run's workers and throughput as the spans show them: a task every 2, 1, 0.5, 0.25 ms.
    for (run, (workers, expected)) in loads.iter().zip([(1, 500.0), (2, 1_000.0), (3, 2_000.0), (4, 4_000.0)]) {
        assert_eq!(run.0, workers);
        assert!((run.1 / expected - 1.0).abs() < 0.05, "{loads:?}");
    }
    let bottleneck = &scaling.hops[scaling.bottleneck.expect("a bottleneck")];
    assert_eq!((bottleneck.category.as_str(), bottleneck.hop.as_str()), ("worker_execution", "claim"));
    let contending: Vec<String> = scaling
        .hops
        .iter()
        .filter(|h| h.fit.verdict == ScalingVerdict::Contention && !h.interval)
        .map(|h| h.label())
        .collect();
    assert_eq!(contending, ["worker_execution/noop/claim", "worker_execution/simple_calculation/claim"]);
    hoptrace_testkit::golden(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden"),
        "scaling.txt",
        &scaling::table(&scaling),
    );
    hoptrace_testkit::golden(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden"),
        "scaling.md",
        &scaling::markdown(&scaling),
    );
}

#[test]
fn a_sweep_where_nothing_grows_with_load_names_no_bottleneck() {
    let scaling = sweep(0.0);
    assert_eq!(scaling.bottleneck, None);
    let contending: Vec<String> =
        scaling.hops.iter().filter(|h| h.fit.verdict == ScalingVerdict::Contention).map(|h| h.label()).collect();
    assert!(contending.is_empty(), "{contending:?}");
    assert!(scaling.hops.iter().all(|h| h.fit.verdict == ScalingVerdict::Flat), "{:#?}", scaling.hops);
    assert!(scaling::table(&scaling).contains("no bottleneck"));
}
