//! The two PGMQ queues and their `pg_notify` channels, with a span for every queue hop.
//!
//! A send is one SQL call (`hoptrace_send_with_notify`) that enqueues the message with the send span's
//! context in its headers and publishes an event carrying the publish span's context. A listener turns
//! each event into a reception span and wakes a claim loop; the claim loops also poll, so a lost event
//! only delays work.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hoptrace_instrumentation::hop::Messaging;
use hoptrace_instrumentation::{propagation, Hop, HopSpan};
use opentelemetry::{Context, KeyValue};
use serde_json::Value;
use sqlx::postgres::{PgListener, PgPool};
use sqlx::PgConnection;
use tokio::sync::{oneshot, watch, Notify};

use crate::faults::{self, Delayed, Fault};

/// A PGMQ queue and the channel its sends are announced on.
#[derive(Clone, Copy, Debug)]
pub struct Queue {
    pub name: &'static str,
    pub channel: &'static str,
}

/// Steps ready to run: orchestration → workers.
pub const STEP_QUEUE: Queue = Queue { name: "step_queue", channel: "step_ready" };
/// Step results: workers → orchestration.
pub const RESULT_QUEUE: Queue = Queue { name: "result_queue", channel: "result_ready" };

/// How the consumers of a queue claim: how long a claimed message stays invisible to other readers (one
/// held by a process that dies is read again after it), and how often idle consumers look at the queue
/// when no event arrives.
#[derive(Clone, Copy, Debug, clap::Args)]
pub struct QueueTiming {
    /// How long a claimed message stays invisible to other readers; a message held by a process that
    /// dies is delivered again after it (whole seconds).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub visibility_timeout: Duration,
    /// How often idle consumers look at the queue when no event arrives.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub poll_interval: Duration,
}

/// A message claimed from a queue: invisible to other readers until `visible_again`, or settled.
pub struct Claimed {
    pub message_id: i64,
    /// How many times the message has been read, this time included: above 1 means a redelivery.
    pub read_count: i32,
    pub message: Value,
    /// The producer's context, from the message headers.
    pub producer: Context,
}

/// Enqueues `message` on `queue` and announces it, inside the caller's transaction (so the message and
/// the event become visible when it commits).
pub async fn send(
    conn: &mut PgConnection,
    parent: &Context,
    queue: Queue,
    message: &Value,
) -> Result<i64, sqlx::Error> {
    let outgoing = Outgoing::open(parent, queue);
    let sent = sqlx::query_scalar::<_, i64>("SELECT hoptrace_send_with_notify($1, $2, $3, $4, $5)")
        .bind(queue.name)
        .bind(message)
        .bind(&outgoing.headers)
        .bind(queue.channel)
        .bind(&outgoing.notify_context)
        .fetch_one(conn)
        .await;
    outgoing.close(sent.as_ref().map(|id| *id));
    sent
}

/// The spans of one message being sent: `send {queue}` and, under it, `publish {channel}`, with the
/// contexts the SQL call carries (the message headers and the notify payload). Opened before the call
/// that sends, closed with its outcome.
pub struct Outgoing {
    // Fields drop in order: the publish span ends before the send span it belongs to.
    publish: HopSpan,
    send: HopSpan,
    pub headers: Value,
    pub notify_context: Value,
}

impl Outgoing {
    pub fn open(parent: &Context, queue: Queue) -> Outgoing {
        let send = Hop::send(parent, Messaging::Pgmq, queue.name);
        let publish = Hop::publish(send.context(), queue.channel);
        let headers = propagation::to_json(send.context());
        let notify_context = if faults::active(Fault::NotifyDropsContext) {
            Value::Object(Default::default())
        } else {
            propagation::to_json(publish.context())
        };
        Outgoing { publish, send, headers, notify_context }
    }

    /// Ends both spans with the message id, or the send span with the error.
    pub fn close(self, sent: Result<i64, &sqlx::Error>) {
        match sent {
            Ok(id) => {
                self.send.set_attribute(KeyValue::new("messaging.message.id", id.to_string()));
                self.publish.set_attribute(KeyValue::new("messaging.message.id", id.to_string()));
            }
            Err(err) => self.send.fail(err),
        }
    }
}

/// Message fields copied onto the claim span, as the domain attributes they are.
const MESSAGE_ATTRIBUTES: [(&str, &str); 4] = [
    ("task_uuid", "task.uuid"),
    ("template", "task.template"),
    ("step_name", "step.name"),
    ("handler", "step.handler"),
];

/// Reads one message from `queue` that contains `only` (PGMQ's conditional read: `message @> only`; `{}`
/// for any), hiding it from other readers for `visibility_timeout`.
pub async fn claim(
    pool: &PgPool,
    queue: Queue,
    visibility_timeout: Duration,
    only: &Value,
) -> Result<Option<Claimed>, sqlx::Error> {
    // The claim is the read itself: waiting for a pooled connection (or opening one) comes before it, and
    // may begin before the message was even sent.
    let mut conn = pool.acquire().await?;
    let read_started = SystemTime::now();
    let row = sqlx::query_as::<_, (i64, i32, Value, Option<Value>)>(
        "SELECT msg_id, read_ct, message, headers FROM pgmq.read($1, $2, 1, $3)",
    )
    .bind(queue.name)
    .bind(visibility_timeout.as_secs().max(1) as i32)
    .bind(only)
    .fetch_optional(&mut *conn)
    .await?;
    drop(conn);
    if row.is_some() && queue.name == STEP_QUEUE.name {
        if let Some(delay) = faults::delay(Delayed::Claim) {
            tokio::time::sleep(delay).await;
        }
    }
    let read_ended = SystemTime::now();
    Ok(row.map(|(message_id, read_count, message, headers)| {
        let producer = propagation::extract(&headers.unwrap_or(Value::Null));
        let receive = Hop::receive(&producer, Messaging::Pgmq, queue.name, message_id, read_started);
        receive.set_attribute(KeyValue::new("messaging.pgmq.read_count", i64::from(read_count)));
        // The claim is measured on the step it claimed, so it groups by handler like the rest of the step.
        for (field, attribute) in MESSAGE_ATTRIBUTES {
            if let Some(value) = message.get(field).and_then(Value::as_str) {
                receive.set_attribute(KeyValue::new(attribute, value.to_owned()));
            }
        }
        receive.end_at(read_ended);
        Claimed { message_id, read_count, message, producer }
    }))
}

/// Deletes a processed message (on its own, or in the caller's transaction).
pub async fn settle<'c>(
    db: impl sqlx::PgExecutor<'c>,
    parent: &Context,
    queue: Queue,
    message_id: i64,
) -> Result<(), sqlx::Error> {
    let span = Hop::settle(parent, Messaging::Pgmq, queue.name, message_id);
    span.run(sqlx::query("SELECT pgmq.delete($1, $2)").bind(queue.name).bind(message_id).execute(db)).await.map(drop)
}

/// Makes a claimed message visible again now, for any reader to claim: a step given up here is retried
/// wherever a worker is free.
pub async fn release(pool: &PgPool, queue: Queue, message_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1 FROM pgmq.set_vt($1, $2, 0)").bind(queue.name).bind(message_id).execute(pool).await.map(drop)
}

/// Listens on `queue`'s channel until `stop`: each event becomes a reception span (a child of the
/// publisher, linked to it) and wakes one claim loop. Reconnects after a lost connection. `ready` fires
/// once the first LISTEN is in place, so a service can say it is up only when no event would be missed.
async fn listen(
    pool: PgPool,
    queue: Queue,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
    ready: oneshot::Sender<()>,
) {
    let mut ready = Some(ready);
    loop {
        let listening = relay_events(&pool, queue, &wake, &mut ready);
        tokio::select! {
            Err(err) = listening => tracing::warn!("listening on {}: {err}; reconnecting", queue.channel),
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// LISTENs on `queue`'s channel and turns events into reception spans and wake-ups until the connection
/// fails.
async fn relay_events(
    pool: &PgPool,
    queue: Queue,
    wake: &Notify,
    ready: &mut Option<oneshot::Sender<()>>,
) -> Result<std::convert::Infallible, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(queue.channel).await?;
    if let Some(ready) = ready.take() {
        let _ = ready.send(());
    }
    // Work announced while we were not listening is found by the claim loops' polling.
    wake.notify_waiters();
    loop {
        let event = listener.recv().await?;
        let received_at = SystemTime::now();
        let payload: Value = serde_json::from_str(event.payload()).unwrap_or(Value::Null);
        let publisher = propagation::extract(&payload);
        let reception = Hop::notify_receive(&publisher, queue.channel, received_at);
        if let Some(id) = payload.get("msg_id").and_then(Value::as_i64) {
            reception.set_attribute(KeyValue::new("messaging.message.id", id.to_string()));
        }
        if let Some(task) = payload.get("task_uuid").and_then(Value::as_str) {
            reception.set_attribute(KeyValue::new("task.uuid", task.to_owned()));
        }
        wake.notify_one();
    }
}

/// Starts listening on `queue`'s channel and returns once the LISTEN is in place: from then on no event is
/// missed. The listener runs until `stop`.
pub async fn start_listener(
    pool: &PgPool,
    queue: Queue,
    wake: Arc<Notify>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let (listening, ready) = oneshot::channel();
    let listener = tokio::spawn(listen(pool.clone(), queue, wake, stop, listening));
    ready.await.map_err(|_| anyhow::anyhow!("listening on {} failed", queue.channel))?;
    Ok(listener)
}

/// Claims messages from `queue` (those containing `only`) one at a time and hands each to `handle`; when
/// none is there, waits for an event, the poll interval or `stop`. Returns once `stop` is set (after the
/// message in hand).
pub async fn consume<F, Fut>(
    pool: PgPool,
    queue: Queue,
    only: Value,
    timing: QueueTiming,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
    mut handle: F,
) where
    F: FnMut(Claimed) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    while !*stop.borrow() {
        match claim(&pool, queue, timing.visibility_timeout, &only).await {
            Ok(Some(claimed)) => handle(claimed).await,
            Ok(None) => idle(&wake, timing.poll_interval, &mut stop).await,
            Err(err) => {
                tracing::warn!("reading {}: {err}", queue.name);
                idle(&wake, timing.poll_interval, &mut stop).await
            }
        }
    }
}

/// Waits for a wake-up, a poll interval, or the stop flag.
async fn idle(wake: &Notify, poll_interval: Duration, stop: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = wake.notified() => {}
        _ = tokio::time::sleep(poll_interval) => {}
        _ = stop.wait_for(|stopped| *stopped) => {}
    }
}
