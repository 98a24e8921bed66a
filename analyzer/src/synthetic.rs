//! A deterministic generator of traces shaped like the reference workflow system, with known per-hop
//! latencies: the ground truth the analyzer's tests and benchmark are checked against.
//!
//! Every task is one trace (the span names, kinds, parents, links and attributes the services emit, see
//! docs/services.md); each hop's latency is drawn from a log-normal distribution with a fixed median and
//! spread, and the drawn values are kept in [`Truth`] under the built-in category and hop names. Worker
//! hosts can have skewed clocks (their spans' times are shifted; the truth is not). Spans are shuffled
//! before each segment is written and a random remainder waits for a later segment, so traces reach the
//! analyzer split and out of order; within a segment rows are in the collector's order (by trace).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use hoptrace_otlp::{Origin, SpanKind, SpanRow};
use hoptrace_store::segment::{self, Hour};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::span::Link;

use crate::rng::Rng;

/// What to generate.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub seed: u64,
    pub tasks: usize,
    /// Templates as (name, number of steps in a line), used in turn.
    pub templates: Vec<(String, usize)>,
    /// Handlers, used in turn (each with every template).
    pub handlers: Vec<String>,
    /// One entry per worker host: how far its clock is ahead of the orchestrator's (negative: behind).
    pub worker_clock_skew_ns: Vec<i64>,
    pub start_unix_nano: u64,
    /// Time between the starts of consecutive tasks.
    pub task_interval_ns: u64,
    pub run_id: String,
    /// Spans per written segment (they are shuffled across segments first).
    pub segment_spans: usize,
    /// Segments are numbered from here, so several scenarios can share one store.
    pub first_segment: u64,
    /// The worker's claim (`receive step_queue`) takes this many times as long: a known regression.
    pub claim_factor: f64,
    /// The claim grows by this fraction from the first task to the last: a planted drift.
    pub claim_growth: f64,
    /// (worker, fraction): that worker takes this fraction of the steps, the others share the rest in
    /// turn: a planted unfair split. None: steps go to the workers in turn.
    pub busy_worker: Option<(usize, f64)>,
    /// A health sample this often over the run, as loadgen records them (0: none): each worker's
    /// resident memory and the database's connections, a little noise on each.
    pub health_every_ns: u64,
    /// The first worker's memory grows by this fraction over the run: a planted leak.
    pub rss_growth: f64,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            seed: 7,
            tasks: 1000,
            templates: vec![("linear_3".into(), 3), ("linear_10".into(), 10)],
            handlers: vec!["noop".into(), "simple_calculation".into()],
            worker_clock_skew_ns: vec![0, 0],
            start_unix_nano: 1_795_986_000_000_000_000, // 2026-11-29T21:00:00Z
            task_interval_ns: 2_000_000,
            run_id: "synthetic".into(),
            segment_spans: 100_000,
            first_segment: 0,
            claim_factor: 1.0,
            claim_growth: 0.0,
            busy_worker: None,
            health_every_ns: 0,
            rss_growth: 0.0,
        }
    }
}

/// The drawn latency of every hop, by (category, variant, hop), in nanoseconds.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Truth {
    pub samples: BTreeMap<(String, String, String), Vec<i64>>,
    pub spans: usize,
    pub traces: usize,
}

impl Truth {
    fn add(&mut self, category: &str, variant: &str, hop: &str, value: i64) {
        self.samples.entry((category.into(), variant.into(), hop.into())).or_default().push(value);
    }
}

const US: f64 = 1_000.0;

/// The collector's default row group size.
const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Generates the spans and the truth, writing segments into `dir` (when given) as it goes.
pub fn generate(scenario: &Scenario, dir: Option<&Path>) -> hoptrace_store::Result<(Vec<SpanRow>, Truth)> {
    let mut rng = Rng(scenario.seed);
    let mut truth = Truth::default();
    let mut pending: Vec<SpanRow> = Vec::new();
    let mut kept = Vec::new();
    let mut segment_no = scenario.first_segment;
    let orchestration = Arc::new(origin("orchestration", "orchestration-1"));
    let workers: Vec<Arc<Origin>> = (0..scenario.worker_clock_skew_ns.len().max(1))
        .map(|w| Arc::new(origin("worker", &format!("worker-{}", w + 1))))
        .collect();
    for task in 0..scenario.tasks {
        let (template, steps) = &scenario.templates[task % scenario.templates.len()];
        let handler = &scenario.handlers[(task / scenario.templates.len()) % scenario.handlers.len()];
        let mut b = TraceBuilder {
            rng: &mut rng,
            trace_id: trace_id(scenario.seed, task as u64),
            next_span: 1,
            spans: Vec::new(),
            orchestration: orchestration.clone(),
        };
        let t0 = (scenario.start_unix_nano + task as u64 * scenario.task_interval_ns) as i64;
        let uuid = format!("00000000-0000-4000-8000-{task:012}");
        task_trace(&mut b, &mut truth, scenario, &workers, t0, template, *steps, handler, &uuid);
        truth.traces += 1;
        truth.spans += b.spans.len();
        pending.extend(b.spans);
        if let Some(dir) = dir {
            if pending.len() >= scenario.segment_spans {
                write_segments(dir, &mut pending, &mut rng, &mut segment_no, scenario.segment_spans, false)?;
            }
        }
    }
    let run_ns = scenario.tasks as u64 * scenario.task_interval_ns;
    for (k, at) in (0..run_ns).step_by(scenario.health_every_ns.max(1) as usize).enumerate() {
        if scenario.health_every_ns == 0 {
            break;
        }
        let mut b = TraceBuilder {
            rng: &mut rng,
            trace_id: trace_id(scenario.seed ^ 0x4ea1, k as u64),
            next_span: 1,
            spans: Vec::new(),
            orchestration: orchestration.clone(),
        };
        health_trace(
            &mut b,
            scenario,
            &workers,
            at as f64 / run_ns as f64,
            scenario.start_unix_nano as i64 + at as i64,
        );
        truth.traces += 1;
        truth.spans += b.spans.len();
        pending.extend(b.spans);
    }
    match dir {
        Some(dir) => write_segments(dir, &mut pending, &mut rng, &mut segment_no, scenario.segment_spans, true)?,
        None => kept = pending,
    }
    Ok((kept, truth))
}

/// A load sweep written into `dir`, run after run: one run (`sweep-1`, `sweep-2`, …) per `(workers,
/// load)` of `points`, `tasks` tasks each, started `load` times as often as the default scenario's. With
/// `contention`, the claim is a contention hop: it takes `1 + contention × (load − 1)` times as long.
/// Returns the run ids.
pub fn sweep(
    dir: &Path,
    tasks: usize,
    points: &[(usize, f64)],
    contention: f64,
) -> hoptrace_store::Result<Vec<String>> {
    let base = Scenario::default();
    let mut start = base.start_unix_nano;
    let mut runs = Vec::new();
    for (k, &(workers, load)) in points.iter().enumerate() {
        let scenario = Scenario {
            seed: base.seed + k as u64,
            tasks,
            worker_clock_skew_ns: vec![0; workers.max(1)],
            start_unix_nano: start,
            task_interval_ns: (base.task_interval_ns as f64 / load) as u64,
            run_id: format!("sweep-{}", k + 1),
            first_segment: k as u64 * 1_000,
            claim_factor: 1.0 + contention * (load - 1.0),
            ..base.clone()
        };
        generate(&scenario, Some(dir))?;
        // The next run a minute after this one's last task.
        start += tasks as u64 * scenario.task_interval_ns + 60_000_000_000;
        runs.push(scenario.run_id);
    }
    Ok(runs)
}

/// Shuffles the spans, so a shuffled-out remainder of them (smaller than `size`) arrives in a later
/// segment, as late spans do; writes the rest as segments of `size` spans by hour of start, each in the
/// order the collector writes a flush (`segment::write_flush`). With `all`, writes everything.
fn write_segments(
    dir: &Path,
    pending: &mut Vec<SpanRow>,
    rng: &mut Rng,
    segment_no: &mut u64,
    size: usize,
    all: bool,
) -> hoptrace_store::Result<()> {
    for i in (1..pending.len()).rev() {
        pending.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    let size = size.max(1);
    let rest = if all { Vec::new() } else { pending.split_off(pending.len() - pending.len() % size) };
    let mut by_hour: BTreeMap<Hour, Vec<&SpanRow>> = BTreeMap::new();
    for row in pending.iter() {
        by_hour.entry(Hour::of_nanos(row.start_time_unix_nano)).or_default().push(row);
    }
    for (_hour, rows) in by_hour {
        for part in rows.chunks(size) {
            *segment_no += 1;
            segment::write_flush(dir, *segment_no, part.iter().copied(), ROW_GROUP_ROWS)?;
        }
    }
    *pending = rest;
    Ok(())
}

fn origin(service: &str, instance: &str) -> Origin {
    Origin {
        service_name: service.into(),
        resource_attributes: vec![kv(hoptrace_otlp::SERVICE_NAME, service), kv("service.instance.id", instance)],
        scope_name: "hoptrace-instrumentation".into(),
        scope_version: String::new(),
        scope_attributes: Vec::new(),
    }
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }),
        ..Default::default()
    }
}

fn trace_id(seed: u64, task: u64) -> [u8; 16] {
    let mut rng = Rng(seed ^ task.wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&rng.next_u64().to_be_bytes());
    id[8..].copy_from_slice(&rng.next_u64().to_be_bytes());
    id[0] |= 1;
    id
}

struct TraceBuilder<'a> {
    rng: &'a mut Rng,
    trace_id: [u8; 16],
    next_span: u64,
    spans: Vec<SpanRow>,
    orchestration: Arc<Origin>,
}

/// A span's identity and true times, before it is written with its host's clock.
#[derive(Clone, Copy)]
struct Placed {
    id: [u8; 8],
    start: i64,
    end: i64,
}

impl TraceBuilder<'_> {
    /// Adds a span at true times `start..end`, written on a clock `skew` ahead.
    #[allow(clippy::too_many_arguments)]
    fn span(
        &mut self,
        name: &str,
        kind: SpanKind,
        parent: Option<Placed>,
        start: i64,
        end: i64,
        origin: &Arc<Origin>,
        skew: i64,
        attributes: &[(&str, &str)],
        link: Option<Placed>,
    ) -> Placed {
        let id = self.next_span.to_be_bytes();
        self.next_span += 1;
        self.spans.push(SpanRow {
            trace_id: self.trace_id,
            span_id: id,
            parent_span_id: parent.map(|p| p.id),
            trace_state: String::new(),
            flags: 1,
            name: name.into(),
            kind: kind.code(),
            start_time_unix_nano: (start + skew) as u64,
            end_time_unix_nano: (end + skew) as u64,
            status_code: 0,
            status_message: String::new(),
            attributes: attributes.iter().map(|(k, v)| kv(k, v)).collect(),
            events: Vec::new(),
            links: link
                .map(|l| vec![Link { trace_id: self.trace_id.to_vec(), span_id: l.id.to_vec(), ..Default::default() }])
                .unwrap_or_default(),
            dropped: Default::default(),
            origin: origin.clone(),
        });
        Placed { id, start, end }
    }

    fn orch(
        &mut self,
        name: &str,
        kind: SpanKind,
        parent: Option<Placed>,
        start: i64,
        end: i64,
        attrs: &[(&str, &str)],
    ) -> Placed {
        let origin = self.orchestration.clone();
        self.span(name, kind, parent, start, end, &origin, 0, attrs, None)
    }
}

/// One health sample at `t0`, `progress` of the way through the run: a `health sample` root with a
/// measurement per worker's memory (about 30 MB) and one of the database's connections (about 10).
fn health_trace(b: &mut TraceBuilder, scenario: &Scenario, workers: &[Arc<Origin>], progress: f64, t0: i64) {
    let run = scenario.run_id.as_str();
    let root = b.orch("health sample", SpanKind::Internal, None, t0, t0 + 2_000_000, &[("benchmark.run_id", run)]);
    let measure = |b: &mut TraceBuilder, series: &str, value: f64, unit: &str| {
        let value = format!("{}", value.round() as i64);
        let attrs = [
            ("health.series", series),
            ("health.value", value.as_str()),
            ("health.unit", unit),
            ("benchmark.run_id", run),
        ];
        b.orch("health measurement", SpanKind::Internal, Some(root), t0 + 1_000, t0 + 2_000, &attrs);
    };
    for w in 0..workers.len() {
        let growth = if w == 0 { 1.0 + scenario.rss_growth * progress } else { 1.0 };
        let noise = 1.0 + 0.02 * (b.rng.unit() - 0.5);
        measure(b, &format!("worker/worker-{} rss", w + 1), 30e6 * growth * noise, "By");
    }
    let connections = 9.0 + (b.rng.unit() * 3.0).floor();
    measure(b, "database connections", connections, "{connection}");
}

/// One task: the API request, then each step's cycle through the queues, then completion.
#[allow(clippy::too_many_arguments)]
fn task_trace(
    b: &mut TraceBuilder,
    truth: &mut Truth,
    scenario: &Scenario,
    workers: &[Arc<Origin>],
    t0: i64,
    template: &str,
    steps: usize,
    handler: &str,
    uuid: &str,
) {
    let run = scenario.run_id.as_str();
    // How far into the run this task starts, 0 to 1.
    let span = (scenario.tasks as u64 * scenario.task_interval_ns).max(1);
    let progress = (t0 as u64 - scenario.start_unix_nano) as f64 / span as f64;
    let task_attrs: &[(&str, &str)] = &[("task.uuid", uuid), ("task.template", template), ("benchmark.run_id", run)];
    // The request: one database call creates the task and its steps and sends the first step; then the
    // commit and the response.
    let create = b.rng.latency(500.0 * US, 0.3);
    let self_parts: Vec<i64> = (0..2).map(|_| b.rng.latency(60.0 * US, 0.5)).collect();
    let at = t0 + self_parts[0];
    let root_index = b.spans.len();
    let root = b.orch("POST /v1/tasks", SpanKind::Server, None, t0, t0, task_attrs);
    let call = b.orch("SELECT hoptrace_create_task", SpanKind::Client, Some(root), at, at + create, &[]);
    let first_send = sends(b, call, at + create / 10, at + create - create / 10);
    let root_end = at + create + self_parts[1];
    b.spans[root_index].end_time_unix_nano = root_end as u64;
    truth.add("task_initialization", template, "request", root_end - t0);
    truth.add("task_initialization", template, "create task", create);
    truth.add("task_initialization", template, "request self time", self_parts.iter().sum());

    let mut send = first_send;
    let mut complete_end = 0;
    for step in 1..=steps {
        let w = match scenario.busy_worker {
            Some((busy, fraction)) if b.rng.unit() < fraction => busy,
            Some((busy, _)) => (busy + 1 + (step + uuid.len()) % (workers.len() - 1)) % workers.len(),
            None => (step + uuid.len()) % workers.len(),
        };
        let worker = workers[w].clone();
        let skew = scenario.worker_clock_skew_ns.get(w).copied().unwrap_or(0);
        let step_name = format!("step_{step}");
        let step_attrs: &[(&str, &str)] = &[("task.uuid", uuid), ("step.name", &step_name), ("step.handler", handler)];
        // The step_ready event reaches the worker.
        let notify = b.rng.latency(300.0 * US, 0.4);
        let publish = send.1;
        b.span(
            "receive step_ready",
            SpanKind::Consumer,
            Some(publish),
            publish.start + notify,
            publish.start + notify + 10_000,
            &worker,
            skew,
            &[("messaging.system", "pg_notify"), ("messaging.destination.name", "step_ready")],
            Some(publish),
        );
        truth.add("event_propagation", "step_ready", "publish to reception", notify);
        // Queue wait, claim, processing.
        let queue_wait = b.rng.latency(400.0 * US, 0.5);
        let growth = 1.0 + scenario.claim_growth * progress;
        let claim = (b.rng.latency(500.0 * US, 0.3) as f64 * scenario.claim_factor * growth).round() as i64;
        let claim_start = send.0.end + queue_wait;
        b.span(
            "receive step_queue",
            SpanKind::Client,
            Some(send.0),
            claim_start,
            claim_start + claim,
            &worker,
            skew,
            step_attrs,
            None,
        );
        let gap = b.rng.latency(20.0 * US, 0.3);
        let process_start = claim_start + claim + gap;
        let fw: Vec<i64> = (0..4).map(|_| b.rng.latency(15.0 * US, 0.5)).collect();
        let execute = match handler {
            "noop" => b.rng.latency(2.0 * US, 0.3),
            _ => b.rng.latency(40.0 * US, 0.4),
        };
        let submit = b.rng.latency(600.0 * US, 0.4);
        let settle = b.rng.latency(350.0 * US, 0.3);
        let exec_start = process_start + fw[0];
        let submit_start = exec_start + execute + fw[1];
        let settle_start = submit_start + submit + fw[2];
        let process_end = settle_start + settle + fw[3];
        let mut process_attrs = step_attrs.to_vec();
        process_attrs.push(("task.template", template));
        let process = b.span(
            "process step_queue",
            SpanKind::Consumer,
            Some(send.0),
            process_start,
            process_end,
            &worker,
            skew,
            &process_attrs,
            Some(send.0),
        );
        let execute_name = format!("execute {handler}");
        b.span(
            &execute_name,
            SpanKind::Internal,
            Some(process),
            exec_start,
            exec_start + execute,
            &worker,
            skew,
            &[("step.handler", handler)],
            None,
        );
        let result_send = b.span(
            "send result_queue",
            SpanKind::Producer,
            Some(process),
            submit_start,
            submit_start + submit,
            &worker,
            skew,
            &[("messaging.system", "pgmq")],
            None,
        );
        let result_publish = b.span(
            "publish result_ready",
            SpanKind::Producer,
            Some(result_send),
            submit_start,
            submit_start + submit,
            &worker,
            skew,
            &[("messaging.system", "pg_notify"), ("messaging.destination.name", "result_ready")],
            None,
        );
        b.span(
            "settle step_queue",
            SpanKind::Client,
            Some(process),
            settle_start,
            settle_start + settle,
            &worker,
            skew,
            &[],
            None,
        );
        truth.add("worker_execution", handler, "queue wait", queue_wait);
        truth.add("worker_execution", handler, "claim", claim);
        truth.add("worker_execution", handler, "execute", execute);
        truth.add("worker_execution", handler, "submit", submit);
        truth.add("worker_execution", handler, "overhead", process_end - process_start - execute);
        truth.add("handler_overhead", handler, "framework", fw.iter().sum());
        truth.add("handler_overhead", handler, "handler", execute);

        // Back at the orchestrator: the event, the claim of the result, its processing.
        let notify_back = b.rng.latency(300.0 * US, 0.4);
        b.span(
            "receive result_ready",
            SpanKind::Consumer,
            Some(result_publish),
            submit_start + notify_back,
            submit_start + notify_back + 10_000,
            &b.orchestration.clone(),
            0,
            &[("messaging.system", "pg_notify"), ("messaging.destination.name", "result_ready")],
            Some(result_publish),
        );
        truth.add("event_propagation", "result_ready", "publish to reception", notify_back);
        let result_wait = b.rng.latency(400.0 * US, 0.5);
        let result_claim = b.rng.latency(500.0 * US, 0.3);
        let result_claim_start = submit_start + submit + result_wait;
        b.orch(
            "receive result_queue",
            SpanKind::Client,
            Some(result_send),
            result_claim_start,
            result_claim_start + result_claim,
            &[],
        );
        let pr_start = result_claim_start + result_claim + b.rng.latency(20.0 * US, 0.3);
        let select = b.rng.latency(120.0 * US, 0.3);
        let update = b.rng.latency(150.0 * US, 0.3);
        let orchestration = b.orchestration.clone();
        let pr_index = b.spans.len();
        let pr = b.span(
            "process result_queue",
            SpanKind::Consumer,
            Some(result_send),
            pr_start,
            pr_start,
            &orchestration,
            0,
            &[("task.uuid", uuid)],
            Some(result_send),
        );
        let mut at = pr_start + 10_000;
        b.orch("SELECT tasks", SpanKind::Client, Some(pr), at, at + select, &[]);
        at += select;
        b.orch("UPDATE workflow_steps", SpanKind::Client, Some(pr), at, at + update, &[]);
        at += update;
        if step < steps {
            let (next, end, discover) = enqueue(b, pr, at, template, uuid);
            truth.add("step_enqueueing", template, "discover and enqueue", discover);
            truth.add("step_enqueueing", template, "send with notify", next.0.end - next.0.start);
            send = next;
            at = end;
        } else {
            let complete = b.rng.latency(200.0 * US, 0.3);
            b.orch(
                "complete task",
                SpanKind::Internal,
                Some(pr),
                at,
                at + complete,
                &[("task.uuid", uuid), ("task.template", template)],
            );
            at += complete;
            complete_end = at;
        }
        let settle_r = b.rng.latency(350.0 * US, 0.3);
        b.orch("settle result_queue", SpanKind::Client, Some(pr), at, at + settle_r, &[]);
        at += settle_r + 5_000;
        b.spans[pr_index].end_time_unix_nano = at as u64;
        truth.add("step_enqueueing", template, "result processing", at - pr_start);
    }
    truth.add("e2e_latency", template, "end to end", complete_end - t0);
}

/// `enqueue ready steps` with its discovery query and one send (+ publish); returns ((send, publish),
/// end, duration).
fn enqueue(
    b: &mut TraceBuilder,
    parent: Placed,
    start: i64,
    template: &str,
    uuid: &str,
) -> ((Placed, Placed), i64, i64) {
    let discover = b.rng.latency(200.0 * US, 0.3);
    let send = b.rng.latency(250.0 * US, 0.3);
    let tail = b.rng.latency(10.0 * US, 0.3);
    let end = start + discover + send + tail;
    let enqueue = b.orch(
        "enqueue ready steps",
        SpanKind::Internal,
        Some(parent),
        start,
        end,
        &[("task.uuid", uuid), ("task.template", template), ("step.count", "1")],
    );
    b.orch("UPDATE workflow_steps", SpanKind::Client, Some(enqueue), start, start + discover, &[]);
    let send_start = start + discover;
    (sends(b, enqueue, send_start, send_start + send), end, end - start)
}

/// A step message sent with notify: `send step_queue` and, under it, `publish step_ready`.
fn sends(b: &mut TraceBuilder, parent: Placed, start: i64, end: i64) -> (Placed, Placed) {
    let s = b.orch("send step_queue", SpanKind::Producer, Some(parent), start, end, &[("messaging.system", "pgmq")]);
    let p = b.orch(
        "publish step_ready",
        SpanKind::Producer,
        Some(s),
        start,
        end,
        &[("messaging.system", "pg_notify"), ("messaging.destination.name", "step_ready")],
    );
    (s, p)
}
