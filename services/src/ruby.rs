//! The Ruby worker's VM: Ruby embedded through `magnus`, running the handlers in `services/ruby/`.
//!
//! Ruby has one VM per process and a global VM lock, and a VM is used from the thread that started it. So
//! the VM lives on a thread of its own, and the worker's claim loops hand it one call at a time over a
//! channel: claims, result sends and settles of several steps overlap, handler bodies run one after
//! another. A call waiting for the VM shows as the framework's own time of its `process` span.
//!
//! Each call is two spans, made on the VM thread: `execute {handler}`, exactly around the call into Ruby
//! (what crossing costs: the call, parsing the input, the answer in JSON), and under it `ruby {handler}`,
//! the handler body's own start and end, taken in Ruby on the monotonic clock the Rust side reads too.
//! `execute` minus `ruby` is the FFI overhead the report's `handler_overhead` category shows.

use std::cell::RefCell;
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use hoptrace_instrumentation::Hop;
use magnus::prelude::*;
use magnus::{function, Error, RModule, Ruby};
use opentelemetry::{Context, KeyValue};
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::handlers::{Handler, Runtime};

/// The handlers' source, compiled into the binary.
const HANDLERS: &str = include_str!("../ruby/handlers.rb");
const HANDLERS_PATH: &str = "services/ruby/handlers.rb";

/// One step for the VM.
pub struct Call {
    pub handler: Handler,
    pub step_name: String,
    pub task_uuid: Uuid,
    /// The step's input, as the Rust handlers get it.
    pub input: Value,
    pub timeout: Duration,
    /// The span the `execute` span goes under.
    pub parent: Context,
    /// For handlers that query the database (through `Hoptrace.step_transitions`).
    pub pool: PgPool,
}

/// Why a Ruby handler gave no output.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// The handler raised: the step fails with the message.
    Exception { class: String, message: String, backtrace: Vec<String> },
    /// The handler ran past the step timeout and was interrupted: the step may be retried.
    Timeout,
    /// The VM is gone (its thread ended).
    Vm(String),
}

impl Failure {
    /// The step's error: `ArgumentError: … (at services/ruby/handlers.rb:40)`.
    pub fn describe(&self) -> String {
        match self {
            Failure::Exception { class, message, backtrace } => match backtrace.first() {
                Some(at) => format!("{class}: {message} (at {})", at.split(":in ").next().unwrap_or(at)),
                None => format!("{class}: {message}"),
            },
            Failure::Timeout => "the Ruby handler ran past the step timeout".to_owned(),
            Failure::Vm(reason) => format!("the Ruby VM is unavailable: {reason}"),
        }
    }
}

struct Job {
    call: Call,
    runtime: tokio::runtime::Handle,
    reply: oneshot::Sender<Result<Value, Failure>>,
}

/// The embedded Ruby VM: cheap to clone, every clone a way to the one VM thread.
#[derive(Clone)]
pub struct RubyVm {
    jobs: mpsc::Sender<Job>,
}

impl RubyVm {
    /// Starts the VM on its own thread and loads the handlers; an error in them is returned here. Start
    /// it before installing signal handlers: Ruby's start-up installs its own, which the handlers' file
    /// then resets to the system default for SIGTERM and SIGINT.
    pub fn start() -> anyhow::Result<RubyVm> {
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (ready, started) = mpsc::channel::<Result<(), String>>();
        std::thread::Builder::new()
            .name("ruby-vm".into())
            // Ruby's own programs run on an 8 MB main-thread stack; deep Ruby recursion needs room.
            .stack_size(16 << 20)
            .spawn(move || vm_thread(inbox, ready))?;
        match started.recv() {
            Ok(Ok(())) => Ok(RubyVm { jobs }),
            Ok(Err(reason)) => anyhow::bail!("loading {HANDLERS_PATH}: {reason}"),
            Err(_) => anyhow::bail!("the Ruby VM did not start"),
        }
    }

    /// Runs a Ruby handler's step; resolves when the VM has answered.
    pub async fn call(&self, call: Call) -> Result<Value, Failure> {
        debug_assert_eq!(call.handler.runtime, Runtime::Ruby);
        let (reply, answer) = oneshot::channel();
        let job = Job { call, runtime: tokio::runtime::Handle::current(), reply };
        self.jobs.send(job).map_err(|_| Failure::Vm("its thread has ended".into()))?;
        answer.await.unwrap_or_else(|_| Err(Failure::Vm("it stopped during the call".into())))
    }
}

/// What a Ruby database call needs, set for the duration of one call (the VM runs one at a time).
struct CallEnv {
    pool: PgPool,
    runtime: tokio::runtime::Handle,
    parent: Context,
}

thread_local! {
    static CURRENT: RefCell<Option<CallEnv>> = const { RefCell::new(None) };
}

fn vm_thread(inbox: mpsc::Receiver<Job>, ready: mpsc::Sender<Result<(), String>>) {
    // SAFETY: the one VM of the process, started and used on this thread only; `cleanup` stops it when the
    // thread ends, after the last call.
    let cleanup = unsafe { magnus::embed::init() };
    let ruby: &Ruby = &cleanup;
    let module = match load(ruby) {
        Ok(module) => module,
        Err(err) => {
            let _ = ready.send(Err(err.to_string()));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    for Job { call, runtime, reply } in inbox {
        let _ = reply.send(run(module, call, runtime));
    }
}

/// Evaluates the handlers' file (under its own name, for backtraces) and defines the functions it calls
/// back into Rust.
fn load(ruby: &Ruby) -> Result<RModule, Error> {
    let module = ruby.define_module("Hoptrace")?;
    module.define_module_function("step_transitions", function!(step_transitions, 1))?;
    let _: magnus::Value = ruby.module_kernel().funcall("eval", (HANDLERS, ruby.qnil(), HANDLERS_PATH, 1))?;
    Ok(module)
}

/// One step on the VM thread: the `execute` span around the call, the `ruby` span from the body's times.
fn run(module: RModule, call: Call, runtime: tokio::runtime::Handle) -> Result<Value, Failure> {
    let name = call.handler.name();
    let execute = Hop::internal(&call.parent, format!("execute {name}"));
    execute.set_attribute(KeyValue::new("step.handler", name));
    execute.set_attribute(KeyValue::new("step.name", call.step_name.clone()));
    let mut input = call.input;
    input["task_uuid"] = Value::String(call.task_uuid.to_string());
    let input = input.to_string();
    CURRENT.with(|env| {
        *env.borrow_mut() = Some(CallEnv { pool: call.pool, runtime, parent: execute.context().clone() });
    });
    // The monotonic clock Ruby reads (`Process::CLOCK_MONOTONIC`), and the wall clock, at one instant: the
    // body's times are placed on the wall clock from here.
    let (mono, wall) = (monotonic_ns(), SystemTime::now());
    let answer: Result<String, Error> =
        module.funcall("run", (call.handler.work.name(), input, call.timeout.as_secs_f64()));
    CURRENT.with(|env| env.borrow_mut().take());
    let at = |ns: i64| wall + Duration::from_nanos(ns.saturating_sub(mono).max(0) as u64);
    let answer: Value = match answer {
        Ok(json) => serde_json::from_str(&json).unwrap_or_else(
            |err| serde_json::json!({"ok": false, "class": "hoptrace", "message": format!("unreadable answer: {err}")}),
        ),
        // Only what the entry point itself cannot rescue gets here.
        Err(err) => serde_json::json!({"ok": false, "class": "Exception", "message": err.to_string()}),
    };
    let body = match (answer["started"].as_i64(), answer["ended"].as_i64()) {
        (Some(start), Some(end)) => {
            let span = Hop::internal_at(execute.context(), format!("ruby {name}"), at(start));
            span.set_attribute(KeyValue::new("step.handler", name));
            Some((span, at(end)))
        }
        _ => None,
    };
    let outcome = if answer["ok"].as_bool() == Some(true) {
        Ok(answer["output"].clone())
    } else if answer["timeout"].as_bool() == Some(true) {
        Err(Failure::Timeout)
    } else {
        let text = |key: &str| answer[key].as_str().unwrap_or_default().to_owned();
        let backtrace = answer["backtrace"]
            .as_array()
            .map_or_else(Vec::new, |lines| lines.iter().filter_map(|l| l.as_str().map(str::to_owned)).collect());
        Err(Failure::Exception { class: text("class"), message: text("message"), backtrace })
    };
    if let Err(failure) = &outcome {
        let description = failure.describe();
        if let Failure::Exception { class, message, backtrace } = failure {
            // Where it was raised: the body, or the call around it (bad input, an unknown handler).
            let span = body.as_ref().map_or(&execute, |(span, _)| span);
            span.record_exception(class, message, &backtrace.join("\n"));
        }
        if let Some((span, _)) = &body {
            span.fail(&description);
        }
        execute.fail(description);
    }
    if let Some((span, end)) = body {
        span.end_at(end);
    }
    execute.end();
    outcome
}

/// `Hoptrace.step_transitions(task_uuid)` in Ruby: `[transitions, steps done]` of the task, queried
/// through the worker's pool under a span of its own.
fn step_transitions(ruby: &Ruby, task_uuid: String) -> Result<(i64, i64), Error> {
    let fail = |message: String| Error::new(ruby.exception_runtime_error(), message);
    let task_uuid: Uuid = task_uuid.parse().map_err(|err| fail(format!("task_uuid {task_uuid:?}: {err}")))?;
    CURRENT.with(|env| {
        let env = env.borrow();
        let env = env.as_ref().ok_or_else(|| fail("no step is running".into()))?;
        let span = Hop::db(&env.parent, "SELECT", "step_transitions");
        let query = sqlx::query_as::<_, (i64, i64)>(
            "SELECT count(*), count(*) FILTER (WHERE to_status = 'complete') \
             FROM step_transitions WHERE task_uuid = $1",
        )
        .bind(task_uuid)
        .fetch_one(&env.pool);
        // The VM thread is no runtime thread, so it may block on one; Ruby waits meanwhile (the GVL held).
        env.runtime.block_on(span.run(query)).map_err(|err| fail(format!("querying step_transitions: {err}")))
    })
}

/// `CLOCK_MONOTONIC` in nanoseconds, the clock of Ruby's `Process.clock_gettime(Process::CLOCK_MONOTONIC)`.
fn monotonic_ns() -> i64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid out-pointer and a clock every Linux has.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec * 1_000_000_000 + now.tv_nsec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_names_the_exception_and_where_it_was_raised() {
        let failure = Failure::Exception {
            class: "ArgumentError".into(),
            message: "context.value must be a non-negative integer, got \"six\"".into(),
            backtrace: vec!["services/ruby/handlers.rb:40:in `simple_calculation'".into()],
        };
        assert_eq!(
            failure.describe(),
            "ArgumentError: context.value must be a non-negative integer, got \"six\" (at services/ruby/handlers.rb:40)"
        );
        assert_eq!(Failure::Timeout.describe(), "the Ruby handler ran past the step timeout");
    }
}
