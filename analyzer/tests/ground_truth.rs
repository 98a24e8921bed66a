//! The report against ground truth: traces generated with known per-hop latencies, written shuffled
//! across segments, read back through the store. Every percentile equals the one computed directly from
//! the generated values — and with a worker's clock skewed, the durations still do, while the gaps across
//! that worker are corrected into what causality allows and counted.

use std::collections::BTreeMap;

use hoptrace_analyzer::hops::{self, Filters};
use hoptrace_analyzer::spans::SpanTable;
use hoptrace_analyzer::stats::Summary;
use hoptrace_analyzer::synthetic::{self, Scenario, Truth};
use hoptrace_analyzer::{analyze, Config, Report};
use hoptrace_store::TimeRange;

fn generated(scenario: &Scenario) -> (tempfile::TempDir, Truth) {
    let dir = tempfile::tempdir().unwrap();
    let (_, truth) = synthetic::generate(scenario, Some(dir.path())).unwrap();
    (dir, truth)
}

/// The report's hops as (category, variant, hop) → (count, p50, p95, p99, max).
type Row = (usize, Option<i64>, Option<i64>, Option<i64>, i64);

fn report_rows(report: &Report) -> BTreeMap<(String, String, String), Row> {
    let mut rows = BTreeMap::new();
    for c in &report.categories {
        for v in &c.variants {
            for h in &v.hops {
                let key = (c.name.clone(), v.variant.clone().unwrap_or_default(), h.hop.clone());
                rows.insert(key, (h.count, h.p50_ns, h.p95_ns, h.p99_ns, h.max_ns));
            }
        }
    }
    rows
}

fn truth_rows(truth: &Truth) -> BTreeMap<(String, String, String), Row> {
    truth
        .samples
        .iter()
        .map(|(key, values)| {
            let s = Summary::of(&mut values.clone()).unwrap();
            (key.clone(), (s.count, s.p50, s.p95, s.p99, s.max))
        })
        .collect()
}

#[test]
fn every_hop_of_every_category_reproduces_the_generated_latencies_exactly() {
    let scenario = Scenario { tasks: 600, segment_spans: 7_000, ..Scenario::default() };
    let (dir, truth) = generated(&scenario);
    let report = analyze(dir.path(), TimeRange::all(), &Config::built_in(), &Filters::default()).unwrap();
    assert_eq!((report.traces, report.spans), (truth.traces, truth.spans));
    assert_eq!(report.clock_skew.corrected + report.clock_skew.uncorrectable, 0, "clocks agree");
    let (got, want) = (report_rows(&report), truth_rows(&truth));
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "the same hops and variants");
    for (key, expected) in &want {
        assert_eq!(&got[key], expected, "{key:?}");
    }
    // All six categories, with their variants.
    let categories: Vec<&str> = report.categories.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(categories.len(), 6, "{categories:?}");
}

#[test]
fn a_run_filter_selects_only_that_run() {
    let dir = tempfile::tempdir().unwrap();
    let a = Scenario { tasks: 40, run_id: "run-a".into(), ..Scenario::default() };
    let b = Scenario {
        tasks: 25,
        run_id: "run-b".into(),
        seed: 99,
        first_segment: 1_000,
        start_unix_nano: a.start_unix_nano + 1_000_000_000,
        ..Scenario::default()
    };
    let (_, truth_a) = synthetic::generate(&a, Some(dir.path())).unwrap();
    let (_, truth_b) = synthetic::generate(&b, Some(dir.path())).unwrap();
    let filters = Filters { run_id: Some("run-b".into()), ..Filters::default() };
    let report = analyze(dir.path(), TimeRange::all(), &Config::built_in(), &filters).unwrap();
    assert_eq!(report.traces, truth_b.traces);
    assert_eq!(report_rows(&report), truth_rows(&truth_b));
    let all = analyze(dir.path(), TimeRange::all(), &Config::built_in(), &Filters::default()).unwrap();
    assert_eq!(all.traces, truth_a.traces + truth_b.traces);
    let none = Filters { run_id: Some("run-c".into()), ..Filters::default() };
    let empty = analyze(dir.path(), TimeRange::all(), &Config::built_in(), &none).unwrap();
    assert_eq!((empty.traces, empty.categories.len()), (0, 0));
}

#[test]
fn a_service_filter_keeps_the_hops_measured_on_that_service() {
    let scenario = Scenario { tasks: 50, ..Scenario::default() };
    let (dir, truth) = generated(&scenario);
    let filters = Filters { service: Some("worker".into()), ..Filters::default() };
    let report = analyze(dir.path(), TimeRange::all(), &Config::built_in(), &filters).unwrap();
    let got = report_rows(&report);
    // The worker's hops (claim, execute, submit, overhead, framework, its receptions) and nothing else.
    let hops: std::collections::BTreeSet<&str> = got.keys().map(|k| k.2.as_str()).collect();
    assert_eq!(
        hops.into_iter().collect::<Vec<_>>(),
        ["claim", "execute", "framework", "handler", "overhead", "publish to reception", "queue wait", "submit"]
    );
    let want = truth_rows(&truth);
    assert_eq!(
        got[&("worker_execution".into(), "noop".into(), "claim".into())],
        want[&("worker_execution".into(), "noop".into(), "claim".into())]
    );
    let steps = &("event_propagation".to_owned(), "step_ready".to_owned(), "publish to reception".to_owned());
    assert_eq!(got[steps], want[steps], "step_ready is received by workers");
    assert!(!got.keys().any(|k| k.1 == "result_ready"), "result_ready is received by the orchestrator");
}

#[test]
fn skewed_worker_clocks_leave_durations_exact_and_gaps_corrected_into_causal_bounds() {
    // worker-2 runs 5 ms behind the orchestrator: its spans seem to start before the messages they handle.
    let scenario = Scenario { tasks: 300, worker_clock_skew_ns: vec![0, -5_000_000], ..Scenario::default() };
    let (dir, truth) = generated(&scenario);
    let config = Config::built_in();
    let report = analyze(dir.path(), TimeRange::all(), &config, &Filters::default()).unwrap();
    let (got, want) = (report_rows(&report), truth_rows(&truth));
    let crosses = |hop: &str| ["queue wait", "publish to reception"].contains(&hop);
    for (key, expected) in want.iter().filter(|(k, _)| !crosses(&k.2)) {
        assert_eq!(&got[key], expected, "{key:?} does not cross processes, so skew does not touch it");
    }
    assert!(report.clock_skew.corrected > 0, "{:?}", report.clock_skew);
    assert_eq!(report.clock_skew.uncorrectable, 0);
    assert!(report.clock_skew.max_correction_ns <= 5_000_000, "never more than the skew: {:?}", report.clock_skew);

    // Sample by sample: after correction no reception precedes its publish, and no claim ends before
    // its message was sent (uncorrected, worker-2's would be up to 5 ms early).
    let mut frame = hoptrace_store::scan(dir.path(), TimeRange::all()).unwrap().collect().unwrap();
    let table = SpanTable::from_frame(&mut frame, &hops::attribute_keys(&config)).unwrap();
    let extraction = hops::extract(&table, &config, &Filters::default());
    let category = |name: &str| config.categories.iter().position(|c| c.name == name).unwrap();
    for ((c, variant, _), samples) in &extraction.samples {
        if *c == category("event_propagation") {
            assert!(samples.values.iter().all(|&v| v >= 0), "{variant:?}: {:?}", samples.values.iter().min());
        }
    }
    // Queue wait (hop 0): claim start − send end ≥ −(claim + send durations), under 2 ms here.
    let (c, h) = (category("worker_execution"), 0);
    let waits: Vec<i64> = extraction
        .samples
        .iter()
        .filter(|((ci, _, hi), _)| *ci == c && *hi == h)
        .flat_map(|(_, s)| s.values.clone())
        .collect();
    assert!(*waits.iter().min().unwrap() > -2_000_000, "min corrected queue wait {:?}", waits.iter().min());
    let raw_min = raw_min_queue_wait(&table);
    assert!(raw_min < -3_000_000, "the raw data is skewed: {raw_min}");
}

/// The smallest queue wait as stored (claim start − send end), without correction.
fn raw_min_queue_wait(table: &SpanTable) -> i64 {
    let claim = table.strings.get("receive step_queue").unwrap();
    let mut min = i64::MAX;
    for trace in &table.traces {
        for row in trace.clone().filter(|&r| table.name[r] == claim) {
            let send = trace.clone().find(|&r| table.span_id[r] == table.parent_id[row]).unwrap();
            min = min.min(table.start[row] - table.end[send]);
        }
    }
    min
}
