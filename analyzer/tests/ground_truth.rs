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

/// Stitching against ground truth: the generated lifecycles split wherever work crosses services (new
/// trace ids, no parents or links across), a message id on both sides of each step message. The gap
/// paired by that id recovers every generated queue wait exactly, the interval over the joined pieces
/// every end-to-end time; the same traces left whole give the same numbers through their causal links.
#[test]
fn lifecycles_split_at_every_service_boundary_are_measured_through_their_keys_exactly() {
    use hoptrace_otlp::SpanRow;
    let scenario = Scenario { tasks: 300, ..Scenario::default() };
    let (mut whole, truth) = synthetic::generate(&scenario, None).unwrap();
    let text = |k: &str, v: String| hoptrace_testkit::spans::text(k, &v);
    // The step message's id, on its sender and its receiver (the sender is the receiver's parent): unique
    // in the store, as a queue's message ids are.
    let message_id =
        |trace: &[u8], span: &[u8]| trace.iter().chain(span).map(|b| format!("{b:02x}")).collect::<String>();
    for span in whole.iter_mut() {
        if span.name == "send step_queue" {
            span.attributes.push(text("message.id", message_id(&span.trace_id, &span.span_id)));
        }
        if span.name == "receive step_queue" {
            let id = message_id(&span.trace_id, &span.parent_span_id.unwrap());
            span.attributes.push(text("message.id", id));
        }
    }
    // Split: a span whose parent is in another service starts a trace of its own, its subtree with it.
    type Ids = std::collections::HashMap<([u8; 16], [u8; 8]), usize>;
    let by_id: Ids = whole.iter().enumerate().map(|(i, s)| ((s.trace_id, s.span_id), i)).collect();
    let parent_of = |i: usize| whole[i].parent_span_id.and_then(|p| by_id.get(&(whole[i].trace_id, p)).copied());
    let cut: Vec<bool> = (0..whole.len())
        .map(|i| parent_of(i).is_some_and(|p| whole[p].origin.service_name != whole[i].origin.service_name))
        .collect();
    let trace_of = |mut i: usize| -> [u8; 16] {
        loop {
            if cut[i] {
                let mut id = whole[i].trace_id;
                id[8..].copy_from_slice(&(i as u64 + 1).to_be_bytes());
                return id;
            }
            match parent_of(i) {
                Some(p) => i = p,
                None => return whole[i].trace_id,
            }
        }
    };
    let mut split: Vec<SpanRow> = whole.clone();
    for (i, span) in split.iter_mut().enumerate() {
        span.trace_id = trace_of(i);
        if cut[i] {
            span.parent_span_id = None;
        }
        span.links.clear();
    }
    assert!(
        cut.iter().filter(|&&c| c).count() > 2 * 300,
        "each step's worker side and its result's handling split off"
    );

    let config = |pair: bool| {
        Config::parse(&format!(
            r#"
            [[join]]
            name = "task"
            [[join.source]]
            parts = [{{ attribute = "task.uuid" }}]
            [[join]]
            name = "message"
            [[join.source]]
            parts = [{{ attribute = "message.id" }}]

            [[category]]
            name = "worker_execution"
            group_by = "step.handler"
            [[category.hop]]
            name = "queue wait"
            measure = "gap"
            from = {{ name = "send step_queue", kind = "producer" }}
            to = {{ name = "receive step_queue" }}
            {}

            [[category]]
            name = "e2e_latency"
            group_by = "task.template"
            [[category.hop]]
            name = "end to end"
            measure = "interval"
            from = {{ name = "POST /v1/tasks", kind = "server" }}
            to = {{ name = "complete task" }}
            "#,
            if pair { "pair = \"message\"" } else { "" }
        ))
        .unwrap()
    };
    let measure = |rows: &[SpanRow], config: &Config| {
        let mut frame = hoptrace_store::to_frame(rows).unwrap();
        let mut table = SpanTable::from_frame(&mut frame, &hops::attribute_keys(config)).unwrap();
        hoptrace_analyzer::stitch::prepare(&mut table, config);
        hoptrace_analyzer::join_lifecycles(&mut table, config);
        let extraction = hops::extract(&table, config, &Filters::default());
        let mut got: BTreeMap<(String, String), (Vec<i64>, usize)> = BTreeMap::new();
        for ((c, variant, h), samples) in extraction.samples {
            let mut values = samples.values.clone();
            values.sort_unstable();
            let name = config.categories[c].hops[h].name.clone();
            let entry = got.entry((name, variant.unwrap_or_default())).or_default();
            entry.0.extend(values);
            entry.0.sort_unstable();
            entry.1 += samples.uncorrectable;
        }
        (got, extraction.traces)
    };
    let sorted = |key: (&str, &str, &str)| {
        let mut v = truth.samples[&(key.0.to_owned(), key.1.to_owned(), key.2.to_owned())].clone();
        v.sort_unstable();
        v
    };
    let (split_got, _) = measure(&split, &config(true));
    for handler in ["noop", "simple_calculation"] {
        let (values, uncorrectable) = &split_got[&("queue wait".to_owned(), handler.to_owned())];
        assert_eq!(values, &sorted(("worker_execution", handler, "queue wait")), "{handler}");
        assert_eq!(*uncorrectable, values.len(), "across a join no clock is corrected: each sample says so");
    }
    for template in ["linear_3", "linear_10"] {
        let (values, _) = &split_got[&("end to end".to_owned(), template.to_owned())];
        assert_eq!(values, &sorted(("e2e_latency", template, "end to end")), "{template}");
    }
    // Whole, through parents and links (and paired by key within one trace): the same numbers, corrected
    // where needed (the clocks agree, so by nothing) rather than uncorrectable.
    for pair in [false, true] {
        let (whole_got, whole_traces) = measure(&whole, &config(pair));
        assert_eq!(whole_traces, 300);
        for (key, (values, _)) in &split_got {
            assert_eq!(&whole_got[key].0, values, "{key:?}, paired by key: {pair}");
            assert_eq!(whole_got[key].1, 0, "{key:?}");
        }
    }
}
