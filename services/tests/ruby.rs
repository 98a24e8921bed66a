//! The Ruby worker with the real Ruby VM: Ruby handlers run through FFI in the `ruby-worker`, in the
//! task's one trace, with the crossing (`execute ruby_…`) and the handler body (`ruby ruby_…`, timed in
//! Ruby) as spans of their own. A Ruby exception fails its step with the Ruby message; a handler that never
//! returns is bounded by the step timeout; concurrent steps do not mix their state in the one VM.

mod harness;

use std::collections::{BTreeMap, HashSet};

use harness::*;
use hoptrace_analyzer::{analyze, Config, Filters};
use hoptrace_store::{SpanRecord, TimeRange};
use serde_json::{json, Value};

/// The sequence of a `linear_3` task from `value`: each step squares its input, modulo 10⁹ + 7.
fn sequence(value: u64) -> [u64; 3] {
    let square = |v: u64| v * v % 1_000_000_007;
    let first = square(value);
    [first, square(first), square(square(first))]
}

fn values(view: &Value) -> BTreeMap<String, u64> {
    view["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap().to_owned(), s["result"]["value"].as_u64().unwrap_or(u64::MAX)))
        .collect()
}

fn named<'a>(spans: &'a [SpanRecord], name: &str) -> Vec<&'a SpanRecord> {
    spans.iter().filter(|s| s.name == name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ruby_handlers_run_in_one_intact_trace_with_the_crossing_and_the_body_apart() {
    let db = TestDb::create().await;
    let sink = SpanSink::start().await;
    let api = Service::start(ORCHESTRATION, &[], &db, &sink.grpc_endpoint, "orchestration-1");
    // A Rust worker beside it must leave the Ruby steps alone.
    let rust = Service::start(WORKER, &[], &db, &sink.grpc_endpoint, "worker-1");
    let ruby = Service::start(RUBY_WORKER, &["--concurrency", "4"], &db, &sink.grpc_endpoint, "ruby-worker-1");
    let client = reqwest::Client::new();
    let health: Value = client.get(ruby.url("/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");

    let one =
        create_task(&client, &api, "ruby", "linear_3", json!({"handler": "ruby_simple_calculation", "value": 6})).await;
    let view = wait_finished(&client, &api, &one).await;
    let expected = sequence(6);
    assert_eq!(
        values(&view),
        BTreeMap::from([
            ("step_1".into(), expected[0]),
            ("step_2".into(), expected[1]),
            ("step_3".into(), expected[2])
        ])
    );

    // Concurrent steps in the one VM: every task gets its own sequence.
    let mut tasks = Vec::new();
    for value in 2..14u64 {
        let handler = if value % 3 == 0 { "ruby_database_query" } else { "ruby_simple_calculation" };
        let task =
            create_task(&client, &api, "ruby-many", "diamond_4", json!({"handler": handler, "value": value})).await;
        tasks.push((value, handler, task));
    }
    for (value, handler, task) in &tasks {
        let view = wait_finished(&client, &api, task).await;
        let steps = view["steps"].as_array().unwrap();
        if *handler == "ruby_simple_calculation" {
            // start = v², left = right = v⁴, join = (2v⁴)².
            let v = *value;
            let start = v * v % 1_000_000_007;
            let branch = start * start % 1_000_000_007;
            let join = (2 * branch % 1_000_000_007).pow(2) % 1_000_000_007;
            assert_eq!(values(&view)["join"], join, "task with value {v}: {view}");
        } else {
            // The query counts the task's transitions so far: the join sees those of the three before it.
            let join = steps.iter().find(|s| s["name"] == "join").unwrap();
            assert!(join["result"]["steps_done"].as_i64().unwrap() >= 3, "{view}");
        }
    }
    for service in [ruby, rust] {
        service.stop();
    }
    api.stop();
    let store = sink.stop().await;
    let spans = read(store.path());

    // One trace for the first task, the Ruby worker's spans in it.
    let traces: HashSet<&str> =
        spans.iter().filter(|s| s.attribute("task.uuid") == Some(one.as_str())).map(|s| s.trace_id.as_str()).collect();
    assert_eq!(traces.len(), 1);
    let trace: Vec<SpanRecord> = spans.iter().filter(|s| traces.contains(s.trace_id.as_str())).cloned().collect();
    let processes = named(&trace, "process step_queue");
    assert_eq!(processes.len(), 3);
    assert!(processes.iter().all(|p| p.service_name == "ruby-worker"), "only the Ruby worker ran Ruby steps");
    let executes = named(&trace, "execute ruby_simple_calculation");
    let bodies = named(&trace, "ruby ruby_simple_calculation");
    assert_eq!((executes.len(), bodies.len()), (3, 3));
    for body in &bodies {
        let execute =
            executes.iter().find(|e| Some(&e.span_id) == body.parent_span_id.as_ref()).expect("under its execute");
        assert!(
            execute.start_time_unix_nano <= body.start_time_unix_nano
                && body.end_time_unix_nano <= execute.end_time_unix_nano
        );
        assert!(processes.iter().any(|p| Some(&p.span_id) == execute.parent_span_id.as_ref()));
    }
    assert!(spans.iter().all(|s| !(s.service_name == "worker" && s.name.starts_with("execute ruby_"))));
    // The query of a Ruby handler, through the worker's pool, under the call into Ruby.
    let queries =
        spans.iter().filter(|s| s.name == "SELECT step_transitions" && s.service_name == "ruby-worker").count();
    assert_eq!(queries, 4 * tasks.iter().filter(|(_, h, _)| *h == "ruby_database_query").count());

    // The report: handler_overhead has the Ruby variant with its FFI overhead and body; validate is clean.
    let config = Config::built_in();
    let report = analyze(
        store.path(),
        TimeRange::all(),
        &config,
        &Filters { run_id: Some("ruby".into()), ..Filters::default() },
    )
    .unwrap();
    let overhead = report.categories.iter().find(|c| c.name == "handler_overhead").unwrap();
    let ruby_variant =
        overhead.variants.iter().find(|v| v.variant.as_deref() == Some("ruby_simple_calculation")).unwrap();
    let hops: Vec<(&str, usize)> = ruby_variant.hops.iter().map(|h| (h.hop.as_str(), h.count)).collect();
    assert_eq!(hops, [("framework", 3), ("handler", 3), ("ffi overhead", 3), ("ruby body", 3)]);
    let table =
        hoptrace_analyzer::load(store.path(), TimeRange::all(), &hoptrace_analyzer::validate::attribute_keys(&config))
            .unwrap();
    let validation = hoptrace_analyzer::validate::validate(&table, &config, i64::MAX, Some("ruby"));
    assert_eq!((validation.traces_checked, validation.broken), (1, 0), "{}", validation.table(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ruby_exception_fails_its_step_with_the_ruby_message_and_backtrace() {
    let db = TestDb::create().await;
    let sink = SpanSink::start().await;
    let api = Service::start(ORCHESTRATION, &[], &db, &sink.grpc_endpoint, "orchestration-1");
    let ruby = Service::start(RUBY_WORKER, &[], &db, &sink.grpc_endpoint, "ruby-worker-1");
    let client = reqwest::Client::new();
    let task =
        create_task(&client, &api, "ruby", "linear_3", json!({"handler": "ruby_simple_calculation", "value": "six"}))
            .await;
    let view = wait_done(&client, &api, &task).await;
    assert_eq!(view["status"], "error", "{view}");
    let step = &view["steps"][0];
    assert_eq!(step["status"], "error");
    assert_eq!(
        step["result"]["error"],
        "ArgumentError: context.value must be a non-negative integer, got \"six\" (at services/ruby/handlers.rb:40)"
    );
    ruby.stop();
    api.stop();
    let spans = sink.stop_and_read().await;
    let body = spans.iter().find(|s| s.name == "ruby ruby_simple_calculation").expect("the body ran");
    assert_eq!(body.status_code, 2, "error");
    let exception = body.events.iter().find(|e| e.name == "exception").expect("an exception event");
    let text = |key: &str| exception.attributes.get(key).map(|v| v.text.clone()).unwrap_or_default();
    assert_eq!(text("exception.type"), "ArgumentError");
    assert!(text("exception.message").contains("context.value must be a non-negative integer"));
    assert!(
        text("exception.stacktrace").contains("services/ruby/handlers.rb:40:in `simple_calculation'"),
        "{}",
        text("exception.stacktrace")
    );
    let execute = spans.iter().find(|s| s.name == "execute ruby_simple_calculation").unwrap();
    assert_eq!(execute.status_code, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ruby_handler_that_never_returns_is_bounded_and_its_step_retried_then_failed() {
    let db = TestDb::create().await;
    let sink = SpanSink::start().await;
    let api = Service::start(ORCHESTRATION, &[], &db, &sink.grpc_endpoint, "orchestration-1");
    let flags = ["--step-timeout", "1s", "--max-attempts", "2", "--concurrency", "1"];
    let workers = [Service::start(RUBY_WORKER, &flags, &db, &sink.grpc_endpoint, "ruby-worker-1")];
    let client = reqwest::Client::new();
    // Ten minutes of handler: for the test's purposes, forever.
    let task =
        create_task(&client, &api, "ruby", "linear_3", json!({"handler": "ruby_noop", "handler_delay_ms": 600_000}))
            .await;
    let view = wait_done(&client, &api, &task).await;
    assert_eq!(view["status"], "error", "{view}");
    assert_eq!(view["steps"][0]["result"]["error"], "the handler ran past the step timeout (1s) in each of 2 attempts");
    // The VM is free again: the next task runs.
    let next = create_task(&client, &api, "ruby", "linear_3", json!({"handler": "ruby_noop"})).await;
    wait_finished(&client, &api, &next).await;
    for worker in workers {
        worker.stop();
    }
    api.stop();
    let spans = sink.stop_and_read().await;
    let attempts: Vec<&SpanRecord> =
        spans.iter().filter(|s| s.name == "execute ruby_noop" && s.status_code == 2).collect();
    assert_eq!(attempts.len(), 2, "two attempts, each interrupted");
    for attempt in attempts {
        let took = (attempt.end_time_unix_nano - attempt.start_time_unix_nano) as f64 / 1e9;
        assert!((1.0..1.5).contains(&took), "interrupted at the timeout, after {took} s");
    }
}
