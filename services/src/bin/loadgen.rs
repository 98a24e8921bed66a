//! `loadgen`: drives the reference system for a benchmark category and reports client-side latency.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use hoptrace_instrumentation::Telemetry;
use hoptrace_services::loadgen::{self, Limit, Settings};
use hoptrace_services::{database, health, service};

/// Exits 1 if any task failed or timed out.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Base URL of the orchestration API.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    api: String,
    /// task_initialization, step_enqueueing, worker_execution, event_propagation, e2e_latency,
    /// handler_overhead, or all (each in turn, sharing the duration).
    #[arg(long)]
    scenario: String,
    /// Tasks in flight at once (with --rate: at most).
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Start this many tasks per second instead of one after another.
    #[arg(long)]
    rate: Option<f64>,
    /// Run for this long (default 10s) ...
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "tasks")]
    duration: Option<Duration>,
    /// ... or for this many tasks.
    #[arg(long)]
    tasks: Option<usize>,
    /// Tag for every trace of the run (benchmark.run_id); default: generated and printed.
    #[arg(long)]
    run_id: Option<String>,
    /// How long one task may take before it counts as timed out.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    task_timeout: Duration,
    /// The database of the event_propagation ping-pong and of the health samples (default: DATABASE_URL).
    #[arg(long)]
    database_url: Option<String>,
    /// Every this long, a health sample into the run: the resident memory of the processes named by
    /// --health-processes on this machine, the database's open connections, each queue's depth (0s: none).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    health_interval: Duration,
    /// Command names of the processes whose memory the health samples read.
    #[arg(long, value_delimiter = ',', default_value = "orchestration,worker,ruby-worker")]
    health_processes: Vec<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    service::logging();
    // The ping-pong makes spans faster than the SDK's default queue of 2,048 drains when the machine is
    // busy; a dropped span would break its trace. A larger queue, unless the user chose one.
    if std::env::var_os("OTEL_BSP_MAX_QUEUE_SIZE").is_none() {
        std::env::set_var("OTEL_BSP_MAX_QUEUE_SIZE", "65536");
    }
    let telemetry = match Telemetry::from_env("loadgen") {
        Ok(telemetry) => telemetry,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    let limit = match (args.tasks, args.duration) {
        (Some(tasks), _) => Limit::Tasks(tasks),
        (None, duration) => Limit::Duration(duration.unwrap_or(Duration::from_secs(10))),
    };
    let run_id = args.run_id.unwrap_or_else(loadgen::new_run_id);
    let settings = Settings {
        api: args.api,
        concurrency: args.concurrency,
        rate: args.rate,
        limit,
        run_id: run_id.clone(),
        task_timeout: args.task_timeout,
        database_url: args.database_url.unwrap_or_else(database::database_url),
    };
    eprintln!("run {run_id}: scenario {}", args.scenario);
    let (stop_health, stopped) = tokio::sync::watch::channel(false);
    let health = if args.health_interval.is_zero() {
        None
    } else {
        match database::connect(&settings.database_url, 2).await {
            Ok(pool) => Some(tokio::spawn(health::sample(
                pool,
                args.health_processes,
                args.health_interval,
                loadgen::run_context(&settings),
                stopped,
            ))),
            Err(err) => {
                eprintln!("no health samples: {err:#}");
                None
            }
        }
    };
    let outcomes = loadgen::run(&args.scenario, &settings).await;
    let _ = stop_health.send(true);
    if let Some(health) = health {
        let _ = health.await;
    }
    telemetry.shutdown();
    match outcomes {
        Ok(outcomes) => {
            eprintln!();
            for outcome in &outcomes {
                print!("{}", loadgen::summary(outcome, &run_id));
            }
            if outcomes.iter().all(loadgen::Outcome::ok) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
