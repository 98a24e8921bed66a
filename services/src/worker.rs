//! The worker: claims steps from the step queue, runs their handlers and sends the results back. The
//! `worker` runs the Rust handlers, the `ruby-worker` the Ruby ones in its embedded VM ([`crate::ruby`]);
//! each claims only the steps of its runtime (PGMQ's conditional read on the message's `runtime`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use hoptrace_instrumentation::hop::Messaging;
use hoptrace_instrumentation::Hop;
use opentelemetry::trace::{FutureExt as _, SpanContext, SpanId, TraceContextExt, TraceFlags, TraceState};
use opentelemetry::{Context, KeyValue};
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::sync::{watch, Notify};
use uuid::Uuid;

use crate::database;
use crate::faults::{self, Delayed, Fault};
use crate::handlers::{Handler, Runtime};
use crate::queue::{self, Claimed, QueueTiming, RESULT_QUEUE, STEP_QUEUE};
use crate::ruby::{self, RubyVm};
use crate::service;

/// Both workers' command line. Reads DATABASE_URL, and OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_SERVICE_NAME /
/// OTEL_RESOURCE_ATTRIBUTES.
#[derive(clap::Parser)]
#[command(version, about)]
pub struct Args {
    #[command(flatten)]
    pub flags: Flags,
}

/// The flags both workers take.
#[derive(Clone, Debug, clap::Args)]
pub struct Flags {
    /// Address of the health endpoint [default: 127.0.0.1:8081 for the worker, :8082 for the Ruby worker].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Steps run at once (in the Ruby worker, handler bodies still run one at a time: one VM, one lock).
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    #[command(flatten)]
    pub timing: QueueTiming,
    /// How long a handler may run; one that runs longer is interrupted and its step given back to the
    /// queue for any worker to retry [default: 10s, or ¾ of the visibility timeout when that is shorter].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub step_timeout: Option<Duration>,
    /// Attempts of a step before a timed-out one fails instead of being retried.
    #[arg(long, default_value_t = 3)]
    pub max_attempts: u32,
}

impl Flags {
    /// The step timeout, given or by default.
    pub fn timeout(&self) -> Duration {
        self.step_timeout.unwrap_or(Duration::from_secs(10).min(self.timing.visibility_timeout * 3 / 4))
    }

    /// Refuses a step timeout that a claim would not outlast: the step would be delivered again while
    /// it still runs.
    pub fn check(&self) -> anyhow::Result<()> {
        let (step, visibility) = (self.timeout(), self.timing.visibility_timeout);
        if step >= visibility {
            anyhow::bail!(
                "--step-timeout ({}) must be shorter than --visibility-timeout ({}): a step still running \
                 would be delivered again",
                humantime::format_duration(step),
                humantime::format_duration(visibility)
            );
        }
        if self.max_attempts == 0 {
            anyhow::bail!("--max-attempts must be at least 1");
        }
        Ok(())
    }
}

/// Where a worker's handlers run.
#[derive(Clone)]
pub enum Executor {
    Rust,
    Ruby(RubyVm),
}

impl Executor {
    pub fn runtime(&self) -> Runtime {
        match self {
            Executor::Rust => Runtime::Rust,
            Executor::Ruby(_) => Runtime::Ruby,
        }
    }
}

/// A worker binary's `main`: `service` is its name in telemetry, `listen` its default address.
pub async fn main(service: &'static str, listen: SocketAddr, flags: Flags, executor: Executor) -> anyhow::Result<()> {
    flags.check()?;
    let started = service::start(service, flags.concurrency as u32 * 2 + 2).await?;
    let flags = Flags { listen: Some(flags.listen.unwrap_or(listen)), ..flags };
    run(started.pool, flags, executor, started.stop).await?;
    started.telemetry.shutdown();
    Ok(())
}

/// Runs `concurrency` claim loops and the health endpoint until `stop` is set; steps in flight finish.
pub async fn run(pool: PgPool, flags: Flags, executor: Executor, stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let wake = Arc::new(Notify::new());
    let listener = queue::start_listener(&pool, STEP_QUEUE, wake.clone(), stop.clone()).await?;
    let only = json!({ "runtime": executor.runtime().name() });
    let loops: Vec<_> = (0..flags.concurrency.max(1))
        .map(|_| {
            let (pool, flags, executor) = (pool.clone(), flags.clone(), executor.clone());
            tokio::spawn(queue::consume(
                pool.clone(),
                STEP_QUEUE,
                only.clone(),
                flags.timing,
                wake.clone(),
                stop.clone(),
                move |claimed| {
                    let (pool, flags, executor) = (pool.clone(), flags.clone(), executor.clone());
                    async move {
                        if let Err(err) = execute_step(&pool, &flags, &executor, claimed).await {
                            // Unsettled, the step is redelivered after its visibility timeout.
                            tracing::warn!("executing a step: {err}");
                        }
                    }
                },
            ))
        })
        .collect();
    let what = format!("{} worker with {} claim loops,", executor.runtime().name(), loops.len());
    let health = Router::new().route("/health", get(health)).with_state(pool);
    let listen = flags.listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8081)));
    service::serve(&what, listen, health, stop).await?;
    for claim_loop in loops {
        let _ = claim_loop.await;
    }
    let _ = listener.await;
    Ok(())
}

async fn health(State(pool): State<PgPool>) -> Response {
    service::database_health(&pool).await
}

/// What came of running a step's handler.
enum Outcome {
    Output(Value),
    Failed(String),
    /// Interrupted at the step timeout.
    TimedOut,
}

/// Runs one claimed step: handler, result sent to the result queue, step message deleted. A result is
/// sent before the step is deleted, so a crash between the two repeats a result, never loses one. A
/// handler that times out sends nothing: its step goes back to the queue for any worker, until the last
/// attempt, which fails it.
async fn execute_step(pool: &PgPool, flags: &Flags, executor: &Executor, claimed: Claimed) -> Result<(), sqlx::Error> {
    let producer = if faults::active(Fault::WorkerDropsContext) { Context::new() } else { claimed.producer.clone() };
    let process = Hop::process(&producer, Messaging::Pgmq, STEP_QUEUE.name, claimed.message_id);
    let cx = process.context().clone();
    let message = &claimed.message;
    let task_uuid = message["task_uuid"].as_str().and_then(|id| id.parse::<Uuid>().ok());
    let step_name = message["step_name"].as_str().unwrap_or_default();
    let handler_name = message["handler"].as_str().unwrap_or_default();
    process.set_attribute(KeyValue::new("step.name", step_name.to_owned()));
    process.set_attribute(KeyValue::new("step.handler", handler_name.to_owned()));
    process.set_attribute(KeyValue::new("step.attempt", i64::from(claimed.read_count)));
    if let Some(template) = message["template"].as_str() {
        process.set_attribute(KeyValue::new("task.template", template.to_owned()));
    }
    let (Some(task_uuid), Some(handler)) = (task_uuid, Handler::from_name(handler_name)) else {
        process.fail("not a step message");
        tracing::warn!("dropping message {} that is not a step: {message}", claimed.message_id);
        return queue::settle(pool, &cx, STEP_QUEUE, claimed.message_id).await;
    };
    process.set_attribute(KeyValue::new("task.uuid", task_uuid.to_string()));
    if handler.runtime != executor.runtime() {
        // The message names another runtime than its handler's (the orchestrator derives one from the
        // other, so it was not sent by it): no worker would ever claim it for the right runtime.
        let error = format!(
            "{handler_name} runs on the {} worker, but its message was addressed to {} workers",
            handler.runtime.name(),
            executor.runtime().name()
        );
        process.fail(&error);
        let result = json!({ "task_uuid": task_uuid, "step_name": step_name, "error": error });
        send_result(pool, &cx, &result).await?;
        return queue::settle(pool, &cx, STEP_QUEUE, claimed.message_id).await;
    }

    let execute_parent = if faults::active(Fault::OrphanSpan) { never_sent_parent(&cx) } else { cx.clone() };
    let outcome = match executor {
        Executor::Rust => {
            run_rust(pool, flags, handler, step_name, task_uuid, &message["input"], &execute_parent).await
        }
        Executor::Ruby(vm) => {
            let call = ruby::Call {
                handler,
                step_name: step_name.to_owned(),
                task_uuid,
                input: message["input"].clone(),
                timeout: flags.timeout(),
                parent: execute_parent,
                pool: pool.clone(),
            };
            match vm.call(call).await {
                Ok(output) => Outcome::Output(output),
                Err(ruby::Failure::Timeout) => Outcome::TimedOut,
                Err(failure) => Outcome::Failed(failure.describe()),
            }
        }
    };
    let failed = |error: String| json!({ "task_uuid": task_uuid, "step_name": step_name, "error": error });
    let result = match outcome {
        Outcome::Output(output) => json!({ "task_uuid": task_uuid, "step_name": step_name, "result": output }),
        Outcome::Failed(error) => failed(error),
        Outcome::TimedOut if (claimed.read_count as u32) < flags.max_attempts => {
            process.fail("the handler ran past the step timeout: given back to the queue");
            tracing::warn!(
                "step {step_name} of task {task_uuid} ran past {}: given back for attempt {}",
                humantime::format_duration(flags.timeout()),
                claimed.read_count + 1
            );
            return queue::release(pool, STEP_QUEUE, claimed.message_id).await;
        }
        Outcome::TimedOut => failed(format!(
            "the handler ran past the step timeout ({}) in each of {} attempts",
            humantime::format_duration(flags.timeout()),
            claimed.read_count
        )),
    };
    send_result(pool, &cx, &result).await?;
    queue::settle(pool, &cx, STEP_QUEUE, claimed.message_id).await
}

/// A Rust handler under its `execute` span, bounded by the step timeout.
async fn run_rust(
    pool: &PgPool,
    flags: &Flags,
    handler: Handler,
    step_name: &str,
    task_uuid: Uuid,
    input: &Value,
    parent: &Context,
) -> Outcome {
    let execute = Hop::internal(parent, format!("execute {}", handler.name()));
    execute.set_attribute(KeyValue::new("step.handler", handler.name()));
    execute.set_attribute(KeyValue::new("step.name", step_name.to_owned()));
    let run = async {
        if let Some(delay) = faults::delay(Delayed::Handler) {
            tokio::time::sleep(delay).await;
        }
        handler.run(pool, task_uuid, input).await
    };
    match tokio::time::timeout(flags.timeout(), run.with_context(execute.context().clone())).await {
        Ok(Ok(output)) => Outcome::Output(output),
        Ok(Err(error)) => {
            execute.fail(&error);
            Outcome::Failed(error)
        }
        Err(_) => {
            execute.fail("the handler ran past the step timeout");
            Outcome::TimedOut
        }
    }
}

/// A context whose span is in this trace but is never exported (the `orphan_span` fault).
fn never_sent_parent(cx: &Context) -> Context {
    let trace_id = cx.span().span_context().trace_id();
    let span_id = SpanId::from_bytes(Uuid::new_v4().as_u64_pair().0.to_be_bytes());
    cx.with_remote_span_context(SpanContext::new(trace_id, span_id, TraceFlags::SAMPLED, true, TraceState::default()))
}

async fn send_result(pool: &PgPool, cx: &Context, result: &Value) -> Result<(), sqlx::Error> {
    let mut conn = database::acquire(pool, cx).await?;
    queue::send(&mut conn, cx, RESULT_QUEUE, result).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn flags(args: &[&str]) -> Flags {
        Args::parse_from(std::iter::once("worker").chain(args.iter().copied())).flags
    }

    #[test]
    fn the_step_timeout_defaults_below_the_visibility_timeout_and_must_stay_there() {
        assert_eq!(flags(&[]).timeout(), Duration::from_secs(10));
        assert_eq!(flags(&["--visibility-timeout", "2s"]).timeout(), Duration::from_millis(1500));
        assert!(flags(&["--visibility-timeout", "2s"]).check().is_ok());
        let too_long = flags(&["--step-timeout", "30s"]).check().unwrap_err().to_string();
        assert_eq!(
            too_long,
            "--step-timeout (30s) must be shorter than --visibility-timeout (30s): a step still running would be \
             delivered again"
        );
        assert!(flags(&["--max-attempts", "0"]).check().unwrap_err().to_string().contains("at least 1"));
    }
}
