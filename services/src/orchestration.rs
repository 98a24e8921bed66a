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
use crate::queue::{self, QueueTiming, RESULT_QUEUE};
use crate::service;
use crate::templates;

#[derive(Clone, Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    /// Result messages processed at once.
    pub result_processors: usize,
    pub timing: QueueTiming,
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
    let listener = queue::start_listener(&pool, RESULT_QUEUE, wake.clone(), stop.clone()).await?;
    let processors: Vec<_> = (0..settings.result_processors.max(1))
        .map(|_| {
            let (pool, finished) = (pool.clone(), finished.clone());
            tokio::spawn(queue::consume(
                pool.clone(),
                RESULT_QUEUE,
                serde_json::json!({}),
                settings.timing,
                wake.clone(),
                stop.clone(),
                move |claimed| {
                    let (pool, finished) = (pool.clone(), finished.clone());
                    async move {
                        match coordination::process_result(&pool, claimed).await {
                            Ok(ResultOutcome::Finished { task_uuid, .. }) => {
                                let _ = finished.send(task_uuid);
                            }
                            Ok(_) => {}
                            // The message stays and is redelivered after its visibility timeout.
                            Err(err) => tracing::warn!("processing a result: {err}"),
                        }
                    }
                },
            ))
        })
        .collect();
    service::serve("orchestration", settings.listen, router(Api { pool, finished }), stop).await?;
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
    let run_id =
        opentelemetry::baggage::BaggageExt::baggage(&cx).get("benchmark.run_id").map(|value| value.as_str().to_owned());
    match coordination::create_task(&api.pool, &cx, task_uuid, template, &context, run_id.as_deref(), &steps).await {
        Ok(_) => {
            (StatusCode::CREATED, Json(json!({ "task_uuid": task_uuid, "status": "in_progress" }))).into_response()
        }
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

async fn task_status(
    State(api): State<Api>,
    Path(task_uuid): Path<String>,
    Query(query): Query<StatusQuery>,
) -> Response {
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
    service::database_health(&api.pool).await
}
