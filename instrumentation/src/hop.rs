//! The spans of each hop, named and attributed by the OpenTelemetry semantic conventions.
//!
//! | hop | span name | kind | parent |
//! |---|---|---|---|
//! | database call | `{operation} {table}` | CLIENT | the caller |
//! | message send | `send {queue}` | PRODUCER | the caller |
//! | notify publish | `publish {channel}` | PRODUCER | the caller (usually the send) |
//! | notify reception | `receive {channel}` | CONSUMER | the publisher's context, and a link to it |
//! | claim (queue read) | `receive {queue}` | CLIENT | the producer's context |
//! | message processing | `process {queue}` | CONSUMER | the producer's context, and a link to it |
//! | settle (delete) | `settle {queue}` | CLIENT | the processing |
//!
//! A claim only learns which message it got when the read returns, so its span is opened afterwards with
//! the read's start time and parented to that message's producer: the claim belongs to the task's trace.

use std::future::Future;
use std::time::SystemTime;

use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::{FutureExt as _, Link, SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};

use crate::Telemetry;

/// Baggage entries copied onto every hop span, so one benchmark run's spans can be selected and runs
/// at different loads compared.
pub const SPAN_BAGGAGE_KEYS: &[&str] = &["benchmark.run_id", "benchmark.concurrency"];

/// The messaging system a queue hop runs on, as `messaging.system` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Messaging {
    Pgmq,
    PgNotify,
}

impl Messaging {
    fn name(self) -> &'static str {
        match self {
            Messaging::Pgmq => "pgmq",
            Messaging::PgNotify => "pg_notify",
        }
    }
}

/// Opens hop spans. Every span gets the baggage entries named in [`SPAN_BAGGAGE_KEYS`].
pub struct Hop;

impl Hop {
    /// An in-process step of the work, e.g. `enqueue ready steps` or `execute noop`.
    pub fn internal(parent: &Context, name: impl Into<String>) -> HopSpan {
        HopSpan::start(parent, name.into(), SpanKind::Internal, Vec::new(), None, Vec::new())
    }

    /// [`Hop::internal`] that began at `start`: work timed where the span could not be opened (in an
    /// embedded VM, say).
    pub fn internal_at(parent: &Context, name: impl Into<String>, start: SystemTime) -> HopSpan {
        HopSpan::start(parent, name.into(), SpanKind::Internal, Vec::new(), Some(start), Vec::new())
    }

    /// A database call: `INSERT tasks`, `SELECT workflow_steps`.
    pub fn db(parent: &Context, operation: &str, table: &str) -> HopSpan {
        let attributes = vec![
            KeyValue::new("db.system.name", "postgresql"),
            KeyValue::new("db.operation.name", operation.to_owned()),
            KeyValue::new("db.collection.name", table.to_owned()),
        ];
        HopSpan::start(parent, format!("{operation} {table}"), SpanKind::Client, attributes, None, Vec::new())
    }

    /// Waiting for a connection from the process's database pool: a span of its own, so an exhausted
    /// pool shows as time here rather than inside whatever query came next.
    pub fn connection_wait(parent: &Context) -> HopSpan {
        let attributes = vec![KeyValue::new("db.system.name", "postgresql")];
        HopSpan::start(parent, "acquire connection".into(), SpanKind::Internal, attributes, None, Vec::new())
    }

    /// A call of a database function that does several statements' work in one round trip:
    /// `SELECT hoptrace_create_task`.
    pub fn db_function(parent: &Context, function: &str) -> HopSpan {
        let attributes = vec![
            KeyValue::new("db.system.name", "postgresql"),
            KeyValue::new("db.operation.name", "SELECT"),
            KeyValue::new("db.stored_procedure.name", function.to_owned()),
        ];
        HopSpan::start(parent, format!("SELECT {function}"), SpanKind::Client, attributes, None, Vec::new())
    }

    /// Sending a message to `queue`. Inject this span's context into the message headers.
    pub fn send(parent: &Context, system: Messaging, queue: &str) -> HopSpan {
        let attributes = messaging(system, "send", queue);
        HopSpan::start(parent, format!("send {queue}"), SpanKind::Producer, attributes, None, Vec::new())
    }

    /// Publishing an event on a `pg_notify` channel. Inject this span's context into the payload.
    pub fn publish(parent: &Context, channel: &str) -> HopSpan {
        let attributes = messaging(Messaging::PgNotify, "publish", channel);
        HopSpan::start(parent, format!("publish {channel}"), SpanKind::Producer, attributes, None, Vec::new())
    }

    /// An event received on `channel` at `received_at`; `publisher` is the context its payload carried.
    pub fn notify_receive(publisher: &Context, channel: &str, received_at: SystemTime) -> HopSpan {
        let attributes = messaging(Messaging::PgNotify, "receive", channel);
        HopSpan::start(
            publisher,
            format!("receive {channel}"),
            SpanKind::Consumer,
            attributes,
            Some(received_at),
            link_to(publisher),
        )
    }

    /// The queue read that claimed message `message_id`, which started at `read_started`; `producer` is
    /// the context from the message's headers.
    pub fn receive(
        producer: &Context,
        system: Messaging,
        queue: &str,
        message_id: i64,
        read_started: SystemTime,
    ) -> HopSpan {
        let mut attributes = messaging(system, "receive", queue);
        attributes.push(KeyValue::new("messaging.message.id", message_id.to_string()));
        HopSpan::start(
            producer,
            format!("receive {queue}"),
            SpanKind::Client,
            attributes,
            Some(read_started),
            Vec::new(),
        )
    }

    /// Processing one message: a child of the producer's context that also links to it.
    pub fn process(producer: &Context, system: Messaging, queue: &str, message_id: i64) -> HopSpan {
        let mut attributes = messaging(system, "process", queue);
        attributes.push(KeyValue::new("messaging.message.id", message_id.to_string()));
        HopSpan::start(producer, format!("process {queue}"), SpanKind::Consumer, attributes, None, link_to(producer))
    }

    /// Settling (deleting) a processed message.
    pub fn settle(parent: &Context, system: Messaging, queue: &str, message_id: i64) -> HopSpan {
        let mut attributes = messaging(system, "settle", queue);
        attributes.push(KeyValue::new("messaging.message.id", message_id.to_string()));
        HopSpan::start(parent, format!("settle {queue}"), SpanKind::Client, attributes, None, Vec::new())
    }
}

fn messaging(system: Messaging, operation: &'static str, destination: &str) -> Vec<KeyValue> {
    vec![
        KeyValue::new("messaging.system", system.name()),
        KeyValue::new("messaging.operation.type", operation),
        KeyValue::new("messaging.destination.name", destination.to_owned()),
    ]
}

fn link_to(producer: &Context) -> Vec<Link> {
    let span = producer.span();
    let producer = span.span_context();
    if producer.is_valid() {
        vec![Link::with_context(producer.clone())]
    } else {
        Vec::new()
    }
}

/// An open hop span and the context that makes it the parent of what happens inside it. The span ends
/// when this is dropped, or at [`HopSpan::end`].
pub struct HopSpan {
    cx: Context,
}

impl HopSpan {
    pub(crate) fn start(
        parent: &Context,
        name: String,
        kind: SpanKind,
        mut attributes: Vec<KeyValue>,
        start_time: Option<SystemTime>,
        links: Vec<Link>,
    ) -> HopSpan {
        let baggage = parent.baggage();
        for key in SPAN_BAGGAGE_KEYS {
            if let Some(value) = baggage.get(*key) {
                attributes.push(KeyValue::new(*key, value.clone()));
            }
        }
        let mut builder = Telemetry::tracer().span_builder(name).with_kind(kind).with_attributes(attributes);
        if let Some(start) = start_time {
            builder = builder.with_start_time(start);
        }
        if !links.is_empty() {
            builder = builder.with_links(links);
        }
        let span = builder.start_with_context(&Telemetry::tracer(), parent);
        HopSpan { cx: parent.with_span(span) }
    }

    /// The context to parent child spans to, or to inject into a message.
    pub fn context(&self) -> &Context {
        &self.cx
    }

    pub fn set_attribute(&self, attribute: KeyValue) {
        self.cx.span().set_attribute(attribute);
    }

    /// Marks the span failed with a description of why.
    pub fn fail(&self, description: impl std::fmt::Display) {
        self.cx.span().set_status(Status::error(description.to_string()));
    }

    /// Records an exception as the OpenTelemetry semantic conventions do: an `exception` event with its
    /// type, message and stack trace.
    pub fn record_exception(&self, kind: &str, message: &str, stacktrace: &str) {
        self.cx.span().add_event(
            "exception",
            vec![
                KeyValue::new("exception.type", kind.to_owned()),
                KeyValue::new("exception.message", message.to_owned()),
                KeyValue::new("exception.stacktrace", stacktrace.to_owned()),
            ],
        );
    }

    /// Runs `work` with this span as the current context, ends the span after it and records an error
    /// result as the span's status.
    pub async fn run<T, E: std::fmt::Display>(self, work: impl Future<Output = Result<T, E>>) -> Result<T, E> {
        let result = work.with_context(self.cx.clone()).await;
        if let Err(err) = &result {
            self.fail(err);
        }
        result
    }

    pub fn end(self) {}

    /// Ends the span at a time already taken (e.g. when a read returned, before its result was parsed).
    pub fn end_at(self, time: SystemTime) {
        self.cx.span().end_with_timestamp(time);
    }
}

impl Drop for HopSpan {
    fn drop(&mut self) {
        self.cx.span().end();
    }
}
