//! The orchestrator's work on the database: creating a task, discovering and enqueueing ready steps,
//! processing step results idempotently, and completing the task.
//!
//! Everything that decides what runs next happens under a row lock on the task, so two results of one
//! task (the two sides of a diamond) processed at once see each other's writes and the join step is
//! enqueued exactly once.

use hoptrace_instrumentation::hop::Messaging;
use hoptrace_instrumentation::Hop;
use opentelemetry::{Context, KeyValue};
use serde_json::{json, Map, Value};
use sqlx::{Connection as _, PgConnection, PgPool};
use uuid::Uuid;

use crate::database;
use crate::faults::{self, Delayed};
use crate::handlers::{Handler, Runtime};
use crate::queue::{self, Claimed, RESULT_QUEUE, STEP_QUEUE};
use crate::templates::StepSpec;

/// Creates the task (in progress) and its steps and enqueues the steps without dependencies, in one
/// transaction and one database call (`hoptrace_create_task`). Returns the number of steps enqueued.
pub async fn create_task(
    pool: &PgPool,
    parent: &Context,
    task_uuid: Uuid,
    template: &str,
    context: &Value,
    run_id: Option<&str>,
    steps: &[StepSpec],
) -> Result<usize, sqlx::Error> {
    let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
    let handlers: Vec<&str> = steps.iter().map(|s| s.handler.name()).collect();
    // text[][] cannot be ragged, so dependencies travel as one JSON array per step.
    let depends_on: Vec<Value> = steps.iter().map(|s| json!(s.depends_on)).collect();
    let mut conn = database::acquire(pool, parent).await?;
    let mut tx = conn.begin().await?;
    let call = Hop::db_function(parent, "hoptrace_create_task");
    call.set_attribute(KeyValue::new("task.uuid", task_uuid.to_string()));
    call.set_attribute(KeyValue::new("step.count", steps.len() as i64));
    // The steps without dependencies are sent by the call: their send spans are opened here, so the
    // messages carry their contexts.
    let messages: Vec<Value> = steps
        .iter()
        .filter(|s| s.depends_on.is_empty())
        .map(|s| step_message(task_uuid, template, &s.name, s.handler.name(), context, json!({})))
        .collect();
    let outgoing: Vec<queue::Outgoing> =
        messages.iter().map(|_| queue::Outgoing::open(call.context(), STEP_QUEUE)).collect();
    let headers: Vec<&Value> = outgoing.iter().map(|o| &o.headers).collect();
    let notify_contexts: Vec<&Value> = outgoing.iter().map(|o| &o.notify_context).collect();
    let sent = sqlx::query_scalar::<_, Vec<i64>>(
        "SELECT hoptrace_create_task($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(task_uuid)
    .bind(template)
    .bind(context)
    .bind(run_id)
    .bind(&names)
    .bind(&handlers)
    .bind(&depends_on)
    .bind(STEP_QUEUE.name)
    .bind(STEP_QUEUE.channel)
    .bind(&messages)
    .bind(&headers)
    .bind(&notify_contexts)
    .fetch_one(&mut *tx)
    .await;
    // The sends end with the call that made them, before it.
    match &sent {
        Ok(ids) => outgoing.into_iter().zip(ids).for_each(|(o, id)| o.close(Ok(*id))),
        Err(err) => {
            outgoing.into_iter().for_each(|o| o.close(Err(err)));
            call.fail(err);
        }
    }
    call.end();
    let sent = sent?;
    tx.commit().await?;
    Ok(sent.len())
}

/// A step's message on the step queue: what the worker needs to run it.
fn step_message(
    task_uuid: Uuid,
    template: &str,
    step_name: &str,
    handler: &str,
    context: &Value,
    inputs: Value,
) -> Value {
    // The runtime a worker reads its steps by (a Ruby handler runs on the Ruby worker only); the
    // handler was checked when the task was created.
    let runtime = Handler::from_name(handler).map_or(Runtime::Rust, |h| h.runtime);
    json!({
        "task_uuid": task_uuid,
        "template": template,
        "step_name": step_name,
        "handler": handler,
        "runtime": runtime.name(),
        "input": {"context": context, "inputs": inputs},
    })
}

/// Finds the pending steps whose dependencies are all complete, marks them enqueued and sends each to
/// the step queue with its input (the task context and the results of its dependencies).
pub async fn enqueue_ready_steps(
    conn: &mut PgConnection,
    parent: &Context,
    task_uuid: Uuid,
    template: &str,
) -> Result<usize, sqlx::Error> {
    let span = Hop::internal(parent, "enqueue ready steps");
    span.set_attribute(KeyValue::new("task.uuid", task_uuid.to_string()));
    span.set_attribute(KeyValue::new("task.template", template.to_owned()));
    let cx = span.context().clone();
    let ready = Hop::db(&cx, "UPDATE", "workflow_steps")
        .run(
            sqlx::query_as::<_, (String, String, Value, Value)>(
                "WITH ready AS ( \
                   SELECT s.step_name FROM workflow_steps s \
                   WHERE s.task_uuid = $1 AND s.status = 'pending' AND NOT EXISTS ( \
                     SELECT 1 FROM workflow_steps d \
                     WHERE d.task_uuid = s.task_uuid AND d.step_name = ANY (s.depends_on) \
                       AND d.status <> 'complete')), \
                 marked AS ( \
                   UPDATE workflow_steps s SET status = 'enqueued' FROM ready \
                   WHERE s.task_uuid = $1 AND s.step_name = ready.step_name \
                   RETURNING s.step_name, s.handler, s.depends_on), \
                 logged AS ( \
                   INSERT INTO step_transitions (task_uuid, step_name, from_status, to_status) \
                   SELECT $1, step_name, 'pending', 'enqueued' FROM marked) \
                 SELECT m.step_name, m.handler, t.context, \
                   coalesce((SELECT jsonb_object_agg(d.step_name, d.result) FROM workflow_steps d \
                             WHERE d.task_uuid = $1 AND d.step_name = ANY (m.depends_on)), '{}') \
                 FROM marked m JOIN tasks t ON t.task_uuid = $1 ORDER BY m.step_name",
            )
            .bind(task_uuid)
            .fetch_all(&mut *conn),
        )
        .await?;
    for (step_name, handler, context, inputs) in &ready {
        let message = step_message(task_uuid, template, step_name, handler, context, inputs.clone());
        queue::send(conn, &cx, STEP_QUEUE, &message).await?;
    }
    span.set_attribute(KeyValue::new("step.count", ready.len() as i64));
    Ok(ready.len())
}

/// What became of a result message.
#[derive(Debug, PartialEq, Eq)]
pub enum ResultOutcome {
    /// The step is recorded; more steps may have been enqueued.
    Progressed { enqueued: usize },
    /// The last step: the task is complete (or failed, when a step failed).
    Finished { task_uuid: Uuid, status: &'static str },
    /// A result for a step already recorded (a redelivery): nothing changes.
    Duplicate,
    /// A message that is not a result: dropped, so it cannot block the queue.
    Malformed,
}

/// Records one step result, enqueues what became ready or completes the task, and deletes the message,
/// in one transaction: a result is processed and gone, or neither (then it is read again).
pub async fn process_result(pool: &PgPool, claimed: Claimed) -> Result<ResultOutcome, sqlx::Error> {
    let span = Hop::process(&claimed.producer, Messaging::Pgmq, RESULT_QUEUE.name, claimed.message_id);
    let cx = span.context().clone();
    let result = StepResult::from_message(&claimed.message);
    if let (Some(_), Some(delay)) = (&result, faults::delay(Delayed::ResultProcessing)) {
        tokio::time::sleep(delay).await;
    }
    let mut conn = database::acquire(pool, &cx).await?;
    let mut tx = conn.begin().await?;
    let outcome = match result {
        None => ResultOutcome::Malformed,
        Some(result) => {
            span.set_attribute(KeyValue::new("task.uuid", result.task_uuid.to_string()));
            span.set_attribute(KeyValue::new("step.name", result.step_name.clone()));
            let recorded = record_result(&mut tx, &cx, &result).await;
            if let Err(err) = &recorded {
                span.fail(err);
            }
            recorded?
        }
    };
    span.set_attribute(KeyValue::new("result.outcome", format!("{outcome:?}")));
    queue::settle(&mut *tx, &cx, RESULT_QUEUE, claimed.message_id).await?;
    tx.commit().await?;
    Ok(outcome)
}

struct StepResult {
    task_uuid: Uuid,
    step_name: String,
    error: Option<String>,
    output: Value,
}

impl StepResult {
    fn from_message(message: &Value) -> Option<StepResult> {
        Some(StepResult {
            task_uuid: message["task_uuid"].as_str()?.parse().ok()?,
            step_name: message["step_name"].as_str()?.to_owned(),
            error: message["error"].as_str().map(str::to_owned),
            output: message.get("result").cloned().unwrap_or(Value::Null),
        })
    }
}

/// Records `result` in the caller's transaction (which holds the task's row lock from here on).
async fn record_result(tx: &mut PgConnection, cx: &Context, result: &StepResult) -> Result<ResultOutcome, sqlx::Error> {
    let task = Hop::db(cx, "SELECT", "tasks")
        .run(
            sqlx::query_as::<_, (String, String)>("SELECT template, status FROM tasks WHERE task_uuid = $1 FOR UPDATE")
                .bind(result.task_uuid)
                .fetch_optional(&mut *tx),
        )
        .await?;
    let Some((template, task_status)) = task else { return Ok(ResultOutcome::Malformed) };
    let to_status = if result.error.is_some() { "error" } else { "complete" };
    let updated = Hop::db(cx, "UPDATE", "workflow_steps")
        .run(
            sqlx::query(
                "WITH done AS ( \
                   UPDATE workflow_steps SET status = $3, result = $4, completed_at = clock_timestamp(), \
                     attempts = attempts + 1 \
                   WHERE task_uuid = $1 AND step_name = $2 AND status = 'enqueued' RETURNING step_name) \
                 INSERT INTO step_transitions (task_uuid, step_name, from_status, to_status) \
                 SELECT $1, step_name, 'enqueued', $3 FROM done",
            )
            .bind(result.task_uuid)
            .bind(&result.step_name)
            .bind(to_status)
            .bind(match &result.error {
                Some(error) => json!({ "error": error }),
                None => result.output.clone(),
            })
            .execute(&mut *tx),
        )
        .await?;
    if updated.rows_affected() == 0 {
        return Ok(ResultOutcome::Duplicate);
    }
    if task_status != "in_progress" {
        // A late result of a task that already failed: recorded, nothing more runs.
        return Ok(ResultOutcome::Progressed { enqueued: 0 });
    }
    let outcome = if result.error.is_some() {
        set_task_status(tx, cx, result.task_uuid, "in_progress", "error").await?;
        ResultOutcome::Finished { task_uuid: result.task_uuid, status: "error" }
    } else {
        let enqueued = enqueue_ready_steps(tx, cx, result.task_uuid, &template).await?;
        let unfinished: i64 =
            sqlx::query_scalar("SELECT count(*) FROM workflow_steps WHERE task_uuid = $1 AND status <> 'complete'")
                .bind(result.task_uuid)
                .fetch_one(&mut *tx)
                .await?;
        if unfinished == 0 {
            let span = Hop::internal(cx, "complete task");
            span.set_attribute(KeyValue::new("task.uuid", result.task_uuid.to_string()));
            span.set_attribute(KeyValue::new("task.template", template.clone()));
            set_task_status(tx, span.context(), result.task_uuid, "in_progress", "complete").await?;
            ResultOutcome::Finished { task_uuid: result.task_uuid, status: "complete" }
        } else {
            ResultOutcome::Progressed { enqueued }
        }
    };
    Ok(outcome)
}

async fn set_task_status(
    conn: &mut PgConnection,
    cx: &Context,
    task_uuid: Uuid,
    from: &str,
    to: &str,
) -> Result<(), sqlx::Error> {
    Hop::db(cx, "UPDATE", "tasks")
        .run(
            sqlx::query(
                "WITH moved AS ( \
                   UPDATE tasks SET status = $3, \
                     completed_at = CASE WHEN $3 IN ('complete', 'error') THEN clock_timestamp() END \
                   WHERE task_uuid = $1 AND status = $2 RETURNING task_uuid) \
                 INSERT INTO step_transitions (task_uuid, from_status, to_status) \
                 SELECT task_uuid, $2, $3 FROM moved",
            )
            .bind(task_uuid)
            .bind(from)
            .bind(to)
            .execute(conn),
        )
        .await
        .map(drop)
}

/// The task and its steps as the API shows them.
pub async fn task_view(pool: &PgPool, task_uuid: Uuid) -> Result<Option<Value>, sqlx::Error> {
    let task = sqlx::query_as::<_, (String, String, Value)>(
        "SELECT template, status, context FROM tasks WHERE task_uuid = $1",
    )
    .bind(task_uuid)
    .fetch_optional(pool)
    .await?;
    let Some((template, status, context)) = task else { return Ok(None) };
    let steps = sqlx::query_as::<_, (String, String, String, i32, Option<Value>)>(
        "SELECT step_name, handler, status, attempts, result FROM workflow_steps \
         WHERE task_uuid = $1 ORDER BY step_name",
    )
    .bind(task_uuid)
    .fetch_all(pool)
    .await?;
    let steps: Vec<Value> = steps
        .into_iter()
        .map(|(name, handler, status, attempts, result)| {
            let mut step = Map::new();
            step.insert("name".into(), json!(name));
            step.insert("handler".into(), json!(handler));
            step.insert("status".into(), json!(status));
            step.insert("attempts".into(), json!(attempts));
            step.insert("result".into(), result.unwrap_or(Value::Null));
            Value::Object(step)
        })
        .collect();
    Ok(Some(json!({
        "task_uuid": task_uuid,
        "template": template,
        "status": status,
        "context": context,
        "steps": steps,
    })))
}
