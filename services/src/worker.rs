//! The worker: claims steps from the step queue, runs their handlers and sends the results back.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use hoptrace_instrumentation::hop::Messaging;
use hoptrace_instrumentation::Hop;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceState};
use opentelemetry::{Context, KeyValue};
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::sync::{watch, Notify};
use uuid::Uuid;

use crate::faults::{self, Delayed, Fault};
use crate::handlers::Handler;
use crate::queue::{self, Claimed, QueueTiming, RESULT_QUEUE, STEP_QUEUE};
use crate::service;

#[derive(Clone, Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    /// Steps run at once.
    pub concurrency: usize,
    pub timing: QueueTiming,
}

/// Runs `concurrency` claim loops and the health endpoint until `stop` is set; steps in flight finish.
pub async fn run(pool: PgPool, settings: Settings, stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let wake = Arc::new(Notify::new());
    let listener = queue::start_listener(&pool, STEP_QUEUE, wake.clone(), stop.clone()).await?;
    let loops: Vec<_> = (0..settings.concurrency.max(1))
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(queue::consume(
                pool.clone(),
                STEP_QUEUE,
                settings.timing,
                wake.clone(),
                stop.clone(),
                move |claimed| {
                    let pool = pool.clone();
                    async move {
                        if let Err(err) = execute_step(&pool, claimed).await {
                            // Unsettled, the step is redelivered after its visibility timeout.
                            tracing::warn!("executing a step: {err}");
                        }
                    }
                },
            ))
        })
        .collect();
    let what = format!("worker with {} claim loops,", loops.len());
    let health = Router::new().route("/health", get(health)).with_state(pool);
    service::serve(&what, settings.listen, health, stop).await?;
    for claim_loop in loops {
        let _ = claim_loop.await;
    }
    let _ = listener.await;
    Ok(())
}

async fn health(State(pool): State<PgPool>) -> Response {
    service::database_health(&pool).await
}

/// Runs one claimed step: handler, result sent to the result queue, step message deleted. A result is
/// sent before the step is deleted, so a crash between the two repeats a result, never loses one.
async fn execute_step(pool: &PgPool, claimed: Claimed) -> Result<(), sqlx::Error> {
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

    let execute_parent = if faults::active(Fault::OrphanSpan) { never_sent_parent(&cx) } else { cx.clone() };
    let execute = Hop::internal(&execute_parent, format!("execute {}", handler.name()));
    execute.set_attribute(KeyValue::new("step.handler", handler.name()));
    execute.set_attribute(KeyValue::new("step.name", step_name.to_owned()));
    let run = async {
        if let Some(delay) = faults::delay(Delayed::Handler) {
            tokio::time::sleep(delay).await;
        }
        handler.run(pool, task_uuid, &message["input"]).await
    };
    let outcome = execute.run(run).await;
    let result = match outcome {
        Ok(output) => json!({ "task_uuid": task_uuid, "step_name": step_name, "result": output }),
        Err(error) => json!({ "task_uuid": task_uuid, "step_name": step_name, "error": error }),
    };
    send_result(pool, &cx, &result).await?;
    queue::settle(pool, &cx, STEP_QUEUE, claimed.message_id).await
}

/// A context whose span is in this trace but is never exported (the `orphan_span` fault).
fn never_sent_parent(cx: &Context) -> Context {
    let trace_id = cx.span().span_context().trace_id();
    let span_id = SpanId::from_bytes(Uuid::new_v4().as_u64_pair().0.to_be_bytes());
    cx.with_remote_span_context(SpanContext::new(trace_id, span_id, TraceFlags::SAMPLED, true, TraceState::default()))
}

async fn send_result(pool: &PgPool, cx: &Context, result: &Value) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    queue::send(&mut conn, cx, RESULT_QUEUE, result).await.map(drop)
}
