//! The load generator: drives the reference system for each benchmark category and reports what a
//! client saw. Every trace it starts carries `benchmark.run_id` and `benchmark.concurrency` (as W3C
//! baggage), so a report can select one run and a comparison of runs knows each one's load.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use hoptrace_instrumentation::{propagation, Hop};
use opentelemetry::baggage::BaggageExt;
use opentelemetry::{Context, KeyValue};
use serde_json::{json, Value};
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::{oneshot, Semaphore};

/// The six benchmark categories, and `all` of them in turn.
pub const SCENARIOS: &[&str] = &[
    "task_initialization",
    "step_enqueueing",
    "worker_execution",
    "event_propagation",
    "e2e_latency",
    "handler_overhead",
];

/// The baggage entries of a run: its id, and how many clients it ran.
pub const RUN_ID_KEY: &str = "benchmark.run_id";
pub const CONCURRENCY_KEY: &str = "benchmark.concurrency";

/// The notify channel of the event-propagation ping-pong.
pub const PING_CHANNEL: &str = "hoptrace_ping";

#[derive(Clone, Debug)]
pub struct Settings {
    pub api: String,
    pub concurrency: usize,
    /// Tasks (or pings) started per second; unset: each of `concurrency` clients starts the next as soon
    /// as its last one finished.
    pub rate: Option<f64>,
    pub limit: Limit,
    pub run_id: String,
    /// How long one task may take to finish before it counts as timed out.
    pub task_timeout: Duration,
    pub database_url: String,
}

#[derive(Clone, Copy, Debug)]
pub enum Limit {
    Duration(Duration),
    Tasks(usize),
}

/// One kind of work a scenario sends: a task of a template with a context.
#[derive(Clone, Debug)]
struct Variant {
    template: &'static str,
    context: Value,
}

impl Variant {
    /// `linear_3`, or `linear_3/noop` when the context picks a handler.
    fn label(&self) -> String {
        match self.context["handler"].as_str() {
            Some(handler) => format!("{}/{handler}", self.template),
            None => self.template.to_owned(),
        }
    }
}

fn variants(scenario: &str) -> Option<Vec<Variant>> {
    let v = |template, context| Variant { template, context };
    Some(match scenario {
        "task_initialization" => {
            ["linear_3", "diamond_4", "tree_7"].into_iter().map(|t| v(t, json!({"handler": "noop"}))).collect()
        }
        "step_enqueueing" => {
            ["linear_3", "linear_10", "linear_50"].into_iter().map(|t| v(t, json!({"handler": "noop"}))).collect()
        }
        "worker_execution" => ["noop", "simple_calculation", "database_query"]
            .into_iter()
            .map(|h| v("linear_3", json!({"handler": h, "value": 6})))
            .collect(),
        "e2e_latency" => ["linear_3", "diamond_4", "tree_7"].into_iter().map(|t| v(t, json!({"value": 6}))).collect(),
        // The same work in Rust and in Ruby (the Ruby worker runs the `ruby_` handlers).
        "handler_overhead" => ["noop", "simple_calculation", "ruby_noop", "ruby_simple_calculation"]
            .into_iter()
            .map(|h| v("linear_3", json!({"handler": h, "value": 6})))
            .collect(),
        _ => return None,
    })
}

/// What one run of a scenario measured, client side.
#[derive(Debug, Default)]
pub struct Outcome {
    pub scenario: String,
    pub started: usize,
    pub failed: usize,
    pub timed_out: usize,
    pub elapsed: Duration,
    /// Measurement (`create linear_3`, `complete linear_3/noop`, `ping`) → samples, by name.
    pub latencies: Vec<(String, Vec<Duration>)>,
    pub first_error: Option<String>,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.failed == 0 && self.timed_out == 0
    }
}

/// Runs `scenario` (or each one in turn for `all`, splitting the limit between them).
pub async fn run(scenario: &str, settings: &Settings) -> anyhow::Result<Vec<Outcome>> {
    if scenario == "all" {
        let share = match settings.limit {
            Limit::Duration(d) => Limit::Duration(d / SCENARIOS.len() as u32),
            tasks => tasks,
        };
        let mut outcomes = Vec::new();
        for name in SCENARIOS {
            let settings = Settings { limit: share, ..settings.clone() };
            outcomes.push(run_one(name, &settings).await?);
        }
        return Ok(outcomes);
    }
    Ok(vec![run_one(scenario, settings).await?])
}

/// Pings per second when no `--rate` is given: enough for stable percentiles, few enough that the
/// spans they make do not crowd out the system's own.
pub const DEFAULT_PING_RATE: f64 = 1_000.0;

async fn run_one(scenario: &str, settings: &Settings) -> anyhow::Result<Outcome> {
    if scenario == "event_propagation" {
        let settings = Settings { rate: settings.rate.or(Some(DEFAULT_PING_RATE)), ..settings.clone() };
        return ping_pong(&settings).await;
    }
    let Some(variants) = variants(scenario) else {
        bail!("unknown scenario {scenario:?}; scenarios: {}, all", SCENARIOS.join(", "));
    };
    let client = reqwest::Client::builder().pool_max_idle_per_host(settings.concurrency.max(1)).build()?;
    let api = settings.api.trim_end_matches('/').to_owned();
    health_check(&client, &api).await?;
    let work = Arc::new(TaskClient { client, api, baggage: baggage(settings), timeout: settings.task_timeout });
    drive(scenario, settings, move |i| {
        let work = work.clone();
        let variant = variants[i % variants.len()].clone();
        async move { work.run_task(&variant).await }
    })
    .await
}

async fn health_check(client: &reqwest::Client, api: &str) -> anyhow::Result<()> {
    let response = client
        .get(format!("{api}/health"))
        .send()
        .await
        .with_context(|| format!("the orchestration API at {api} is not reachable"))?;
    if !response.status().is_success() {
        bail!("the orchestration API at {api} is not healthy: {}", response.text().await.unwrap_or_default());
    }
    Ok(())
}

/// One unit of work's result: its measurements, or why it failed.
enum Attempt {
    /// Measurements named `{measure} {variant}`, e.g. `complete linear_3`.
    Done(Vec<(String, Duration)>),
    Failed(String),
    TimedOut(String),
}

struct TaskClient {
    client: reqwest::Client,
    api: String,
    /// The `baggage` header of every task's creation.
    baggage: String,
    timeout: Duration,
}

/// The run's W3C baggage, as a header: its id and its clients' concurrency.
fn baggage(settings: &Settings) -> String {
    format!("{RUN_ID_KEY}={},{CONCURRENCY_KEY}={}", settings.run_id, settings.concurrency.max(1))
}

/// The run's baggage as a context, for the traces loadgen starts itself (pings, health samples).
pub fn run_context(settings: &Settings) -> Context {
    Context::new().with_baggage([
        KeyValue::new(RUN_ID_KEY, settings.run_id.clone()),
        KeyValue::new(CONCURRENCY_KEY, settings.concurrency.max(1).to_string()),
    ])
}

impl TaskClient {
    async fn run_task(&self, variant: &Variant) -> Attempt {
        let started = Instant::now();
        let created = self
            .client
            .post(format!("{}/v1/tasks", self.api))
            .header("baggage", &self.baggage)
            .json(&json!({"template": variant.template, "context": variant.context}))
            .send()
            .await;
        let response = match created {
            Ok(response) if response.status() == reqwest::StatusCode::CREATED => response,
            Ok(response) => {
                let status = response.status();
                return Attempt::Failed(format!(
                    "POST /v1/tasks answered {status}: {}",
                    response.text().await.unwrap_or_default()
                ));
            }
            Err(err) => return Attempt::Failed(format!("POST /v1/tasks: {err}")),
        };
        let create = started.elapsed();
        let body: Value = match response.json().await {
            Ok(body) => body,
            Err(err) => return Attempt::Failed(format!("POST /v1/tasks answered no JSON: {err}")),
        };
        let Some(task_uuid) = body["task_uuid"].as_str() else {
            return Attempt::Failed(format!("POST /v1/tasks answered no task_uuid: {body}"));
        };
        let deadline = started + self.timeout;
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            let url = format!("{}/v1/tasks/{task_uuid}?wait_ms={}", self.api, wait.as_millis());
            let view: Value = match self.client.get(&url).send().await {
                Ok(response) => match response.json().await {
                    Ok(view) => view,
                    Err(err) => return Attempt::Failed(format!("GET {url}: {err}")),
                },
                Err(err) => return Attempt::Failed(format!("GET {url}: {err}")),
            };
            match view["status"].as_str() {
                Some("complete") => {
                    let label = variant.label();
                    return Attempt::Done(vec![
                        (format!("create {label}"), create),
                        (format!("complete {label}"), started.elapsed()),
                    ]);
                }
                Some("error") => {
                    return Attempt::Failed(format!("task {task_uuid} ({}) failed: {view}", variant.template))
                }
                _ if Instant::now() >= deadline => {
                    return Attempt::TimedOut(format!(
                        "task {task_uuid} ({}) did not finish in {:?}",
                        variant.template, self.timeout
                    ))
                }
                _ => {}
            }
        }
    }
}

/// Runs `unit` (given a sequence number) at the configured concurrency or rate until the limit, showing
/// progress, and gathers the measurements.
async fn drive<F, Fut>(scenario: &str, settings: &Settings, unit: F) -> anyhow::Result<Outcome>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Attempt> + Send + 'static,
{
    let unit = Arc::new(unit);
    let tally = Arc::new(Mutex::new(Outcome { scenario: scenario.to_owned(), ..Outcome::default() }));
    let samples: Arc<Mutex<BTreeMap<String, Vec<Duration>>>> = Arc::default();
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let claim = {
        let next = next.clone();
        let limit = settings.limit;
        move || {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let open = match limit {
                Limit::Duration(d) => started.elapsed() < d,
                Limit::Tasks(n) => i < n,
            };
            open.then_some(i)
        }
    };
    let record = {
        let tally = tally.clone();
        let samples = samples.clone();
        move |attempt: Attempt| {
            let mut tally = tally.lock().unwrap();
            tally.started += 1;
            match attempt {
                Attempt::Done(measured) => {
                    let mut samples = samples.lock().unwrap();
                    for (name, latency) in measured {
                        samples.entry(name).or_default().push(latency);
                    }
                }
                Attempt::Failed(why) => {
                    tally.failed += 1;
                    tally.first_error.get_or_insert(why);
                }
                Attempt::TimedOut(why) => {
                    tally.timed_out += 1;
                    tally.first_error.get_or_insert(why);
                }
            }
        }
    };
    let progress = tokio::spawn(show_progress(scenario.to_owned(), settings.limit, started, tally.clone()));
    let concurrency = settings.concurrency.max(1);
    match settings.rate {
        None => {
            let clients: Vec<_> = (0..concurrency)
                .map(|_| {
                    let (unit, claim, record) = (unit.clone(), claim.clone(), record.clone());
                    tokio::spawn(async move {
                        while let Some(i) = claim() {
                            record(unit(i).await);
                        }
                    })
                })
                .collect();
            for client in clients {
                client.await?;
            }
        }
        Some(rate) => {
            let permits = Arc::new(Semaphore::new(concurrency));
            let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.001)));
            let mut running = Vec::new();
            while let Some(i) = claim() {
                ticks.tick().await;
                let permit = permits.clone().acquire_owned().await?;
                let (unit, record) = (unit.clone(), record.clone());
                running.push(tokio::spawn(async move {
                    record(unit(i).await);
                    drop(permit);
                }));
            }
            for task in running {
                task.await?;
            }
        }
    }
    progress.abort();
    let mut outcome = std::mem::take(&mut *tally.lock().unwrap());
    outcome.elapsed = started.elapsed();
    outcome.latencies = std::mem::take(&mut *samples.lock().unwrap()).into_iter().collect();
    Ok(outcome)
}

async fn show_progress(scenario: String, limit: Limit, started: Instant, tally: Arc<Mutex<Outcome>>) {
    let tty = std::io::stderr().is_terminal();
    let every = if tty { Duration::from_secs(1) } else { Duration::from_secs(10) };
    let mut ticks = tokio::time::interval(every);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let (done, failed) = {
            let t = tally.lock().unwrap();
            (t.started, t.failed + t.timed_out)
        };
        let of = match limit {
            Limit::Duration(d) => format!("{:.0}/{:.0} s", started.elapsed().as_secs_f64(), d.as_secs_f64()),
            Limit::Tasks(n) => format!("{done}/{n}"),
        };
        if tty {
            eprint!("\r  {scenario}: {of}, {done} done, {failed} failed   ");
        } else {
            eprintln!("  {scenario}: {of}, {done} done, {failed} failed");
        }
    }
}

/// Event propagation: a ping published on a notify channel and received by a listener of ours, each a
/// span, with the publisher's context in the payload.
async fn ping_pong(settings: &Settings) -> anyhow::Result<Outcome> {
    let pool = crate::database::connect(&settings.database_url, settings.concurrency.max(1) as u32 + 1).await?;
    let waiting: Arc<Mutex<HashMap<u64, oneshot::Sender<()>>>> = Arc::default();
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen(PING_CHANNEL).await?;
    let receiver = {
        let waiting = waiting.clone();
        tokio::spawn(async move {
            while let Ok(event) = listener.recv().await {
                let received_at = SystemTime::now();
                let payload: Value = serde_json::from_str(event.payload()).unwrap_or(Value::Null);
                let publisher = propagation::extract(&payload);
                drop(Hop::notify_receive(&publisher, PING_CHANNEL, received_at));
                if let Some(id) = payload["ping"].as_u64() {
                    if let Some(waiter) = waiting.lock().unwrap().remove(&id) {
                        let _ = waiter.send(());
                    }
                }
            }
        })
    };
    let run = run_context(settings);
    let timeout = settings.task_timeout;
    let outcome = drive("event_propagation", settings, move |i| {
        let (pool, waiting, run) = (pool.clone(), waiting.clone(), run.clone());
        async move { ping(&pool, &waiting, &run, i as u64, timeout).await }
    })
    .await;
    receiver.abort();
    outcome
}

async fn ping(
    pool: &PgPool,
    waiting: &Mutex<HashMap<u64, oneshot::Sender<()>>>,
    run: &Context,
    id: u64,
    timeout: Duration,
) -> Attempt {
    let root = Hop::internal(run, "ping");
    let publish = Hop::publish(root.context(), PING_CHANNEL);
    let mut payload = json!({ "ping": id });
    propagation::inject(publish.context(), payload.as_object_mut().expect("an object"));
    let (tx, rx) = oneshot::channel();
    waiting.lock().unwrap().insert(id, tx);
    let started = Instant::now();
    let sent = sqlx::query("SELECT pg_notify($1, $2)").bind(PING_CHANNEL).bind(payload.to_string()).execute(pool).await;
    drop(publish);
    if let Err(err) = sent {
        waiting.lock().unwrap().remove(&id);
        return Attempt::Failed(format!("pg_notify: {err}"));
    }
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(())) => Attempt::Done(vec![("ping".to_owned(), started.elapsed())]),
        _ => {
            waiting.lock().unwrap().remove(&id);
            Attempt::TimedOut(format!("ping {id} was not received within {timeout:?}"))
        }
    }
}

/// A run id unique enough to select one run: the start time and the process id.
pub fn new_run_id() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("run-{}-{}", now.as_secs(), std::process::id())
}

/// Nearest-rank percentile of sorted samples (`p` in percent), zero for none.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    hoptrace_text::nearest_rank(sorted, p / 100.0).unwrap_or_default()
}

/// The summary printed at the end of a run.
pub fn summary(outcome: &Outcome, run_id: &str) -> String {
    let secs = outcome.elapsed.as_secs_f64().max(1e-9);
    let unit = if outcome.scenario == "event_propagation" { "pings" } else { "tasks" };
    let mut out = format!(
        "{}: {} {unit} in {:.1} s ({:.1} {unit}/s), {} failed, {} timed out   run {}\n",
        outcome.scenario,
        outcome.started,
        secs,
        outcome.started as f64 / secs,
        outcome.failed,
        outcome.timed_out,
        run_id
    );
    use hoptrace_text::{millis, Align::*, Table};
    let mut table = Table::new(&[Left, Right, Right, Right, Right, Right])
        .indent("  ")
        .gap(" ")
        .min_widths(&[38, 7, 10, 10, 10, 10]);
    table.row(["client side", "count", "p50", "p95", "p99", "max"].map(str::to_owned));
    for (name, samples) in &outcome.latencies {
        let mut sorted = samples.clone();
        sorted.sort();
        let ms = |d: Duration| millis(d.as_nanos() as i64, 2);
        table.row([
            name.clone(),
            sorted.len().to_string(),
            ms(percentile(&sorted, 50.0)),
            ms(percentile(&sorted, 95.0)),
            ms(percentile(&sorted, 99.0)),
            ms(*sorted.last().unwrap_or(&Duration::ZERO)),
        ]);
    }
    out.push_str(&table.render());
    if let Some(error) = &outcome.first_error {
        out.push_str(&format!("  first failure: {error}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let ms: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&ms, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&ms, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&ms, 100.0), Duration::from_millis(100));
        assert_eq!(percentile(&ms[..1], 99.0), Duration::from_millis(1));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }

    #[test]
    fn the_summary_shows_throughput_failures_and_percentiles_per_variant() {
        let ms = |values: &[u64]| values.iter().map(|v| Duration::from_micros(*v)).collect::<Vec<_>>();
        let outcome = Outcome {
            scenario: "e2e_latency".into(),
            started: 4,
            failed: 1,
            timed_out: 0,
            elapsed: Duration::from_secs(2),
            latencies: vec![
                ("complete linear_3".into(), ms(&[18_000, 19_500, 52_250])),
                ("create linear_3".into(), ms(&[1_900, 2_000, 6_000])),
            ],
            first_error: Some("task 1 (tree_7) failed".into()),
        };
        let expected = "\
e2e_latency: 4 tasks in 2.0 s (2.0 tasks/s), 1 failed, 0 timed out   run run-1
  client side                              count        p50        p95        p99        max
  complete linear_3                            3   19.50 ms   52.25 ms   52.25 ms   52.25 ms
  create linear_3                              3    2.00 ms    6.00 ms    6.00 ms    6.00 ms
  first failure: task 1 (tree_7) failed
";
        assert_eq!(summary(&outcome, "run-1"), expected);
    }

    #[test]
    fn every_category_has_a_scenario() {
        for scenario in SCENARIOS {
            assert!(*scenario == "event_propagation" || variants(scenario).is_some(), "{scenario}");
        }
    }
}
