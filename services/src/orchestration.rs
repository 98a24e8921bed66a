//! The orchestrator: the task API and the result-processing loops.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hoptrace_instrumentation::http::HttpServerLayer;
use opentelemetry::trace::TraceContextExt;
use opentelemetry::{Context, KeyValue};
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::sync::{broadcast, watch, Notify};
use uuid::Uuid;

use crate::coordination::{self, ResultOutcome};
use crate::queue::{self, RESULT_QUEUE};
use crate::templates;

#[derive(Clone, Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    /// Result messages processed at once.
    pub result_processors: usize,
    /// How long a claimed result stays invisible to other processors.
    pub visibility_timeout: Duration,
    /// The fallback when no event arrives: how often idle processors look at the queue anyway.
    pub poll_interval: Duration,
}

#[derive(Clone)]
struct Api {
    pool: PgPool,
    /// Tasks that reached `complete` or `error`, for requests waiting on them.
    finished: broadcast::Sender<Uuid>,
}

/// Serves the API and processes results until `stop` is set.
pub async fn run(pool: PgPool, settings: Settings, stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let (finished, _) = broadcast::channel(4096);
    let wake = Arc::new(Notify::new());
    let (listening, ready) = tokio::sync::oneshot::channel();
    let listener = tokio::spawn(queue::listen(pool.clone(), RESULT_QUEUE, wake.clone(), stop.clone(), listening));
    // Up means listening: an event sent from now on is not missed.
    ready.await.map_err(|_| anyhow::anyhow!("listening on {} failed", RESULT_QUEUE.channel))?;
    let processors: Vec<_> = (0..settings.result_processors.max(1))
        .map(|_| {
            tokio::spawn(process_results(
                pool.clone(),
                wake.clone(),
                settings.clone(),
                finished.clone(),
                stop.clone(),
            ))
        })
        .collect();
    let api = Api { pool, finished };
    let socket = tokio::net::TcpListener::bind(settings.listen).await?;
    tracing::info!("orchestration listening on http://{}", socket.local_addr()?);
    let mut stopping = stop.clone();
    axum::serve(socket, router(api))
        .with_graceful_shutdown(async move {
            let _ = stopping.wait_for(|s| *s).await;
        })
        .await?;
    for processor in processors {
        let _ = processor.await;
    }
    let _ = listener.await;
    Ok(())
}

fn router(api: Api) -> Router {
    Router::new()
        .route("/v1/tasks", post(create_task).route_layer(HttpServerLayer))
        // Status reads are not part of a task's lifecycle, so they are not traced.
        .route("/v1/tasks/{task_uuid}", get(task_status))
        .route("/health", get(health))
        .with_state(api)
}

/// A JSON error body: `{"error": "..."}`.
fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": message.to_string() }))).into_response()
}

async fn create_task(State(api): State<Api>, body: axum::body::Bytes) -> Response {
    let request: Value = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => return error(StatusCode::BAD_REQUEST, format!("the body is not JSON: {err}")),
    };
    let Some(template) = request.get("template").and_then(Value::as_str) else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "\"template\" (a string) is required");
    };
    let context = request.get("context").cloned().unwrap_or_else(|| json!({}));
    if !context.is_object() {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "\"context\" must be a JSON object");
    }
    let steps = match templates::steps(template, &context) {
        Ok(steps) => steps,
        Err(err) => return error(StatusCode::UNPROCESSABLE_ENTITY, err),
    };
    let cx = Context::current();
    let task_uuid = Uuid::new_v4();
    let span = cx.span();
    span.set_attribute(KeyValue::new("task.uuid", task_uuid.to_string()));
    span.set_attribute(KeyValue::new("task.template", template.to_owned()));
    span.set_attribute(KeyValue::new("task.step_count", steps.len() as i64));
    let run_id = opentelemetry::baggage::BaggageExt::baggage(&cx)
        .get("benchmark.run_id")
        .map(|value| value.as_str().to_owned());
    match coordination::create_task(&api.pool, &cx, task_uuid, template, &context, run_id.as_deref(), &steps).await {
        Ok(_) => (StatusCode::CREATED, Json(json!({ "task_uuid": task_uuid, "status": "in_progress" })))
            .into_response(),
        Err(err) => {
            tracing::error!("creating a task: {err}");
            error(StatusCode::SERVICE_UNAVAILABLE, format!("the task could not be stored: {err}"))
        }
    }
}

#[derive(Deserialize)]
struct StatusQuery {
    /// Wait up to this many milliseconds for the task to finish before answering.
    wait_ms: Option<u64>,
}

async fn task_status(State(api): State<Api>, Path(task_uuid): Path<String>, Query(query): Query<StatusQuery>) -> Response {
    let Ok(task_uuid) = task_uuid.parse::<Uuid>() else {
        return error(StatusCode::BAD_REQUEST, format!("{task_uuid:?} is not a task UUID"));
    };
    // Subscribe before reading, so a completion between the read and the wait is not missed.
    let mut finished = api.finished.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(query.wait_ms.unwrap_or(0).min(60_000));
    loop {
        let view = match coordination::task_view(&api.pool, task_uuid).await {
            Ok(Some(view)) => view,
            Ok(None) => return error(StatusCode::NOT_FOUND, format!("no task {task_uuid}")),
            Err(err) => return error(StatusCode::SERVICE_UNAVAILABLE, err),
        };
        let done = matches!(view["status"].as_str(), Some("complete" | "error"));
        if done || tokio::time::Instant::now() >= deadline {
            return Json(view).into_response();
        }
        loop {
            match tokio::time::timeout_at(deadline, finished.recv()).await {
                Ok(Ok(id)) if id != task_uuid => continue,
                // Ours finished, or we lagged behind and must look again, or the wait is over.
                _ => break,
            }
        }
    }
}

async fn health(State(api): State<Api>) -> Response {
    match sqlx::query("SELECT 1").execute(&api.pool).await {
        Ok(_) => Json(json!({ "status": "ok" })).into_response(),
        Err(err) => error(StatusCode::SERVICE_UNAVAILABLE, format!("database unreachable: {err}")),
    }
}

async fn process_results(
    pool: PgPool,
    wake: Arc<Notify>,
    settings: Settings,
    finished: broadcast::Sender<Uuid>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if *stop.borrow() {
            return;
        }
        match queue::claim(&pool, RESULT_QUEUE, settings.visibility_timeout).await {
            Ok(Some(claimed)) => match coordination::process_result(&pool, claimed).await {
                Ok(ResultOutcome::Finished { task_uuid, .. }) => {
                    let _ = finished.send(task_uuid);
                }
                Ok(_) => {}
                // The message stays and is redelivered after its visibility timeout.
                Err(err) => tracing::warn!("processing a result: {err}"),
            },
            Ok(None) => {
                if !queue::idle(&wake, settings.poll_interval, &mut stop).await {
                    return;
                }
            }
            Err(err) => {
                tracing::warn!("reading {}: {err}", RESULT_QUEUE.name);
                if !queue::idle(&wake, settings.poll_interval, &mut stop).await {
                    return;
                }
            }
        }
    }
}
