//! The analyzer on the real system: loadgen drives every category against the orchestrator and two
//! workers, the collector stores the spans, and `analyzer report` finds every category with samples —
//! and the hops it reports for a task's step cycles add up to the cycles measured from the raw spans.

mod harness;

use std::collections::HashMap;
use std::process::Command;

use harness::*;
use hoptrace_analyzer::{analyze, Config, Filters, Report};
use hoptrace_store::TimeRange;

/// Runs loadgen; its own spans (the event-propagation ping-pong) go to `otlp`.
fn loadgen(api: &Service, db: &TestDb, otlp: &str, args: &[&str]) {
    let status = Command::new(LOADGEN)
        .args(["--api", &format!("http://{}", api.addr)])
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .status()
        .unwrap();
    assert!(status.success(), "loadgen {args:?} failed");
}

fn hop<'a>(report: &'a Report, category: &str, variant: &str, hop: &str) -> &'a hoptrace_analyzer::report::HopReport {
    report
        .categories
        .iter()
        .find(|c| c.name == category)
        .and_then(|c| c.variants.iter().find(|v| v.variant.as_deref() == Some(variant)))
        .and_then(|v| v.hops.iter().find(|h| h.hop == hop))
        .unwrap_or_else(|| panic!("no {category}/{variant}/{hop} in the report"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_category_is_measured_and_a_step_cycle_adds_up() {
    let db = TestDb::create().await;
    let sink = SpanSink::start().await;
    let api = Service::start(ORCHESTRATION, &[], &db, &sink.grpc_endpoint, "orchestration-1");
    let workers = [
        Service::start(WORKER, &[], &db, &sink.grpc_endpoint, "worker-1"),
        Service::start(WORKER, &[], &db, &sink.grpc_endpoint, "worker-2"),
        Service::start(RUBY_WORKER, &[], &db, &sink.grpc_endpoint, "ruby-worker-1"),
    ];
    loadgen(
        &api,
        &db,
        &sink.grpc_endpoint,
        &["--scenario", "all", "--duration", "6s", "--concurrency", "2", "--run-id", "all-categories"],
    );
    loadgen(
        &api,
        &db,
        &sink.grpc_endpoint,
        &["--scenario", "worker_execution", "--tasks", "1", "--run-id", "one-task"],
    );
    for worker in workers {
        worker.stop();
    }
    api.stop();
    let store = sink.stop().await;

    let config = Config::built_in();
    let run = |id: &str| Filters { run_id: Some(id.into()), ..Filters::default() };
    let report = analyze(store.path(), TimeRange::all(), &config, &run("all-categories")).unwrap();
    let categories: Vec<&str> = report.categories.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        categories,
        [
            "task_initialization",
            "step_enqueueing",
            "worker_execution",
            "event_propagation",
            "e2e_latency",
            "handler_overhead"
        ]
    );
    for category in &report.categories {
        for variant in &category.variants {
            assert!(variant.variant.is_some(), "{}: every sample has its variant", category.name);
            assert!(variant.hops.iter().all(|h| h.count > 0));
        }
    }
    for channel in ["step_ready", "result_ready", "hoptrace_ping"] {
        assert!(hop(&report, "event_propagation", channel, "publish to reception").count > 0, "{channel}");
    }
    assert_eq!(report.clock_skew.uncorrectable, 0, "one host, one clock: {:?}", report.clock_skew);

    // One linear_3 task with noop handlers: its three step cycles, hop by hop.
    let one = analyze(store.path(), TimeRange::all(), &config, &run("one-task")).unwrap();
    assert_eq!(one.traces, 1);
    let total = |name: &str| {
        let h = hop(&one, "worker_execution", "noop", name);
        assert_eq!(h.count, 3, "{name}: one sample per step");
        h.mean_ns as i128 * 3
    };
    let spans = read(store.path());
    let by_id: HashMap<&str, &hoptrace_store::SpanRecord> = spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    // The task's trace (loadgen's health samples carry the run id too).
    let of_task = |s: &&hoptrace_store::SpanRecord| s.name == "process step_queue";
    let trace =
        &spans.iter().filter(of_task).find(|s| s.attribute("benchmark.run_id") == Some("one-task")).unwrap().trace_id;
    let (mut cycles, mut claim_to_process) = (0i128, 0i128);
    for process in spans.iter().filter(|s| &s.trace_id == trace && s.name == "process step_queue") {
        let send = by_id[process.parent_span_id.as_deref().unwrap()];
        let claim = spans
            .iter()
            .find(|s| s.name == "receive step_queue" && s.parent_span_id.as_deref() == Some(send.span_id.as_str()))
            .unwrap();
        cycles += process.end_time_unix_nano as i128 - send.end_time_unix_nano as i128;
        claim_to_process += process.start_time_unix_nano as i128 - claim.end_time_unix_nano as i128;
    }
    // queue wait + claim + (claim end → processing) + execute + overhead = send end → processing end.
    let hops = total("queue wait") + total("claim") + claim_to_process + total("execute") + total("overhead");
    assert!((hops - cycles).abs() <= 6, "hops add up to {hops} ns, the cycles took {cycles} ns");
}
