//! End to end on real PostgreSQL and PGMQ: the orchestration and worker binaries run tasks of every
//! template while exporting their spans to a real collector, and each task's lifecycle is one intact
//! trace in the store — across the queue and across the notify channel.

mod harness;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use harness::*;
use hoptrace_store::SpanRecord;
use serde_json::{json, Value};

const SERVER: u8 = 2;
const PRODUCER: u8 = 4;
const CONSUMER: u8 = 5;

/// The spans of one task: every span whose trace holds a span tagged with its uuid.
fn trace_of<'a>(spans: &'a [SpanRecord], task: &str) -> Vec<&'a SpanRecord> {
    let traces: HashSet<&str> =
        spans.iter().filter(|s| s.attribute("task.uuid") == Some(task)).map(|s| s.trace_id.as_str()).collect();
    assert_eq!(traces.len(), 1, "every span of task {task} is in one trace, found {traces:?}");
    spans.iter().filter(|s| traces.contains(s.trace_id.as_str())).collect()
}

fn named<'a>(trace: &[&'a SpanRecord], name: &str) -> Vec<&'a SpanRecord> {
    trace.iter().copied().filter(|s| s.name == name).collect()
}

/// Checks the shape of one task's trace and returns it.
fn check_lifecycle<'a>(spans: &'a [SpanRecord], task: &str, steps: usize) -> Vec<&'a SpanRecord> {
    let trace = trace_of(spans, task);
    let by_id: HashMap<&str, &SpanRecord> = trace.iter().map(|s| (s.span_id.as_str(), *s)).collect();
    assert_eq!(by_id.len(), trace.len(), "no duplicate span ids");

    let roots: Vec<_> = trace.iter().filter(|s| s.parent_span_id.is_none()).collect();
    assert_eq!(roots.len(), 1, "one root");
    assert_eq!((roots[0].name.as_str(), roots[0].kind), ("POST /v1/tasks", SERVER));
    assert_eq!(roots[0].service_name, "orchestration");
    assert_eq!(roots[0].attribute("http.response.status_code"), Some("201"));
    assert_eq!(roots[0].attribute("benchmark.run_id"), Some("e2e-test"));
    for span in &trace {
        if let Some(parent) = &span.parent_span_id {
            assert!(by_id.contains_key(parent.as_str()), "the parent of {} is in the trace", span.name);
        }
    }

    // The queue, both ways: each process span is a child of a send span and links to it.
    for (queue, processor) in [("step_queue", "worker"), ("result_queue", "orchestration")] {
        let processes = named(&trace, &format!("process {queue}"));
        assert_eq!(processes.len(), steps, "one process {queue} per step");
        for process in processes {
            assert_eq!((process.kind, process.service_name.as_str()), (CONSUMER, processor));
            let producer = by_id[process.parent_span_id.as_deref().unwrap()];
            assert_eq!((producer.name.as_str(), producer.kind), (format!("send {queue}").as_str(), PRODUCER));
            let links: Vec<_> = process.links.iter().map(|l| (&l.trace_id, &l.span_id)).collect();
            assert_eq!(links, vec![(&producer.trace_id, &producer.span_id)]);
            assert!(process.start_time_unix_nano >= producer.start_time_unix_nano);
        }
    }
    // The notify channel, both ways: every reception is a child of a publish, in this trace.
    for channel in ["step_ready", "result_ready"] {
        let receptions = named(&trace, &format!("receive {channel}"));
        assert!(receptions.len() >= steps, "{channel}: {} receptions for {steps} steps", receptions.len());
        for reception in receptions {
            let publish = by_id[reception.parent_span_id.as_deref().unwrap()];
            assert_eq!(publish.name, format!("publish {channel}"));
            assert_eq!(publish.attribute("messaging.system"), Some("pg_notify"));
        }
    }
    let executes = trace.iter().filter(|s| s.name.starts_with("execute ")).count();
    assert_eq!(executes, steps, "one handler execution per step");
    let completions = named(&trace, "complete task");
    assert_eq!(completions.len(), 1, "the task completes once");
    assert_eq!(completions[0].attribute("task.uuid"), Some(task));
    trace
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_template_completes_as_one_trace_and_two_workers_share_the_steps() {
    let db = TestDb::create().await;
    let sink = SpanSink::start().await;
    let api = Service::start(ORCHESTRATION, &[], &db, &sink.grpc_endpoint, "orchestration-1");
    let workers = [
        Service::start(WORKER, &["--concurrency", "2"], &db, &sink.grpc_endpoint, "worker-1"),
        Service::start(WORKER, &["--concurrency", "2"], &db, &sink.grpc_endpoint, "worker-2"),
    ];
    let client = reqwest::Client::new();
    let health: Value = client.get(api.url("/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");

    let mut tasks = Vec::new();
    for template in ["linear_3", "diamond_4", "tree_7", "linear_10"] {
        for handler in ["simple_calculation", "noop", "database_query"] {
            let task = create_task(&client, &api, "e2e-test", template, json!({"value": 6, "handler": handler})).await;
            tasks.push((template, handler, task));
        }
    }
    for (template, handler, task) in &tasks {
        let view = wait_finished(&client, &api, task).await;
        let steps = view["steps"].as_array().unwrap();
        assert!(steps.iter().all(|s| s["status"] == "complete" && s["attempts"] == 1), "{template} {handler}: {view}");
        if (*template, *handler) == ("linear_3", "simple_calculation") {
            // The sequence: 6² = 36, 36² = 1296, 1296² = 1679616.
            let values: BTreeMap<&str, &Value> =
                steps.iter().map(|s| (s["name"].as_str().unwrap(), &s["result"]["value"])).collect();
            assert_eq!(values["step_3"], &json!(1_679_616));
        }
    }
    for worker in workers {
        worker.stop();
    }
    api.stop();
    let spans = sink.stop_and_read().await;

    let mut steps_by_worker: HashMap<String, usize> = HashMap::new();
    for (template, _, task) in &tasks {
        let count: usize = template.rsplit('_').next().unwrap().parse().unwrap();
        let trace = check_lifecycle(&spans, task, count);
        for process in named(&trace, "process step_queue") {
            *steps_by_worker
                .entry(process.resource_attribute("service.instance.id").unwrap().to_owned())
                .or_default() += 1;
        }
    }
    assert_eq!(steps_by_worker.len(), 2, "both workers ran steps: {steps_by_worker:?}");
    assert_eq!(steps_by_worker.values().sum::<usize>(), 3 * (3 + 4 + 7 + 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_held_by_a_killed_worker_is_redelivered_and_completes_once() {
    let db = TestDb::create().await;
    let sink = SpanSink::start().await;
    let api = Service::start(ORCHESTRATION, &[], &db, &sink.grpc_endpoint, "orchestration-1");
    let doomed = Service::start(
        WORKER,
        &["--concurrency", "1", "--visibility-timeout", "2s"],
        &db,
        &sink.grpc_endpoint,
        "doomed",
    );
    let client = reqwest::Client::new();
    let task =
        create_task(&client, &api, "e2e-test", "linear_3", json!({"handler": "noop", "handler_delay_ms": 1500})).await;

    // Wait until the doomed worker has claimed step_1, give its claim span time to be exported, then kill it.
    let mut conn = db.connect().await;
    for _ in 0..200 {
        let claimed: i64 = sqlx::query_scalar("SELECT count(*) FROM pgmq.q_step_queue WHERE read_ct > 0")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        if claimed > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    doomed.kill();

    let rescuer = Service::start(WORKER, &["--concurrency", "1"], &db, &sink.grpc_endpoint, "rescuer");
    let view = wait_finished(&client, &api, &task).await;
    assert!(view["steps"].as_array().unwrap().iter().all(|s| s["attempts"] == 1), "recorded once: {view}");
    let completions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM step_transitions WHERE task_uuid = $1::uuid AND step_name = 'step_1' AND to_status = 'complete'",
    )
    .bind(&task)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(completions, 1, "step_1 completes exactly once");
    rescuer.stop();
    api.stop();
    let spans = sink.stop_and_read().await;

    let trace = check_lifecycle(&spans, &task, 3);
    // The retry is in the trace: step_1's message was claimed twice, by two workers.
    let step_1 =
        named(&trace, "process step_queue").into_iter().find(|s| s.attribute("step.name") == Some("step_1")).unwrap();
    assert_eq!(step_1.attribute("step.attempt"), Some("2"));
    let message = step_1.attribute("messaging.message.id").unwrap();
    let mut claims: Vec<_> = named(&trace, "receive step_queue")
        .into_iter()
        .filter(|s| s.attribute("messaging.message.id") == Some(message))
        .map(|s| (s.resource_attribute("service.instance.id").unwrap(), s.attribute("messaging.pgmq.read_count")))
        .collect();
    claims.sort_by_key(|(_, read_count)| *read_count);
    assert_eq!(claims, vec![("doomed", Some("1")), ("rescuer", Some("2"))]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_answered_4xx_and_write_nothing() {
    let db = TestDb::create().await;
    let sink = SpanSink::start().await;
    let api = Service::start(ORCHESTRATION, &[], &db, &sink.grpc_endpoint, "orchestration-1");
    let client = reqwest::Client::new();
    let cases: [(&str, &str, u16, &str); 6] = [
        ("not json", "{\"template\": ", 400, "not JSON"),
        ("no template", "{\"context\": {}}", 422, "\"template\""),
        ("unknown template", "{\"template\": \"linear_4\"}", 422, "unknown template \"linear_4\""),
        ("context not an object", "{\"template\": \"linear_3\", \"context\": [1]}", 422, "\"context\""),
        ("unknown handler", "{\"template\": \"linear_3\", \"context\": {\"handler\": \"ruby\"}}", 422, "ruby"),
        ("template not a string", "{\"template\": 3}", 422, "\"template\""),
    ];
    for (case, body, status, says) in cases {
        let response = client
            .post(api.url("/v1/tasks"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{case}");
        let error: Value = response.json().await.unwrap();
        assert!(error["error"].as_str().unwrap().contains(says), "{case}: {error}");
    }
    let response = client.get(api.url("/v1/tasks/not-a-uuid")).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let response = client.get(api.url("/v1/tasks/00000000-0000-4000-8000-000000000000")).send().await.unwrap();
    assert_eq!(response.status(), 404);

    let mut conn = db.connect().await;
    for table in ["tasks", "workflow_steps", "step_transitions", "pgmq.q_step_queue"] {
        let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(rows, 0, "{table} is untouched");
    }
    api.stop();
    sink.stop_and_read().await;
}
