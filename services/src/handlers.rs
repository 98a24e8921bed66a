//! Step handlers: the business logic a worker runs for a step.

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use hoptrace_instrumentation::Hop;
use opentelemetry::Context;

/// A step handler: a kind of work, written in one of the workers' languages. Rust handlers are named
/// after their work (`noop`), Ruby ones with a `ruby_` prefix (`ruby_noop`); each runs only on a worker of
/// its runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handler {
    pub work: Work,
    pub runtime: Runtime,
}

/// What a handler does, the same in either language.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    /// Returns at once: what is left of a step is the framework's own cost.
    Noop,
    /// One step of a mathematical sequence: squares the sum of its inputs (modulo a prime).
    SimpleCalculation,
    /// A real query: the task's transitions so far, counted in PostgreSQL.
    DatabaseQuery,
}

/// The language a handler is written in, and so the worker that runs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Runtime {
    /// Compiled into the `worker`.
    Rust,
    /// Ruby code in `services/ruby/`, run by the `ruby-worker` in its embedded VM.
    Ruby,
}

impl Runtime {
    /// The name step messages carry, which a worker reads its own steps by.
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Rust => "rust",
            Runtime::Ruby => "ruby",
        }
    }
}

const MODULUS: u64 = 1_000_000_007;

/// Every handler's name, for messages that list them.
pub const NAMES: &[&str] =
    &["noop", "simple_calculation", "database_query", "ruby_noop", "ruby_simple_calculation", "ruby_database_query"];

impl Work {
    pub fn name(self) -> &'static str {
        match self {
            Work::Noop => "noop",
            Work::SimpleCalculation => "simple_calculation",
            Work::DatabaseQuery => "database_query",
        }
    }
}

impl Handler {
    pub const fn rust(work: Work) -> Handler {
        Handler { work, runtime: Runtime::Rust }
    }

    pub fn from_name(name: &str) -> Option<Handler> {
        let (runtime, work) = match name.strip_prefix("ruby_") {
            Some(work) => (Runtime::Ruby, work),
            None => (Runtime::Rust, name),
        };
        let work = match work {
            "noop" => Work::Noop,
            "simple_calculation" => Work::SimpleCalculation,
            "database_query" => Work::DatabaseQuery,
            _ => return None,
        };
        Some(Handler { work, runtime })
    }

    pub fn name(self) -> &'static str {
        match (self.runtime, self.work) {
            (Runtime::Rust, work) => work.name(),
            (Runtime::Ruby, Work::Noop) => "ruby_noop",
            (Runtime::Ruby, Work::SimpleCalculation) => "ruby_simple_calculation",
            (Runtime::Ruby, Work::DatabaseQuery) => "ruby_database_query",
        }
    }

    /// Runs a Rust handler on a step's input: `{"context": task context, "inputs": {dependency:
    /// result}}`. `context.handler_delay_ms` makes every step take that much longer (a slow handler, on
    /// purpose). Ruby handlers run in the Ruby worker's VM ([`crate::ruby`]).
    pub async fn run(self, pool: &PgPool, task_uuid: Uuid, input: &Value) -> Result<Value, String> {
        if let Some(delay) = input["context"].get("handler_delay_ms").and_then(Value::as_u64) {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        match self.work {
            Work::Noop => Ok(json!({})),
            Work::SimpleCalculation => simple_calculation(input),
            Work::DatabaseQuery => {
                let span = Hop::db(&Context::current(), "SELECT", "step_transitions");
                let (transitions, steps_done) = span
                    .run(
                        sqlx::query_as::<_, (i64, i64)>(
                            "SELECT count(*), count(*) FILTER (WHERE to_status = 'complete') \
                             FROM step_transitions WHERE task_uuid = $1",
                        )
                        .bind(task_uuid)
                        .fetch_one(pool),
                    )
                    .await
                    .map_err(|err| format!("querying step_transitions: {err}"))?;
                Ok(json!({ "transitions": transitions, "steps_done": steps_done }))
            }
        }
    }
}

/// The `simple_calculation` handler's work: the square of the step's starting value.
pub fn simple_calculation(input: &Value) -> Result<Value, String> {
    let sum = sequence_input(input)?;
    Ok(json!({ "value": sum * sum % MODULUS }))
}

/// The value a sequence step starts from: the sum of its dependencies' values, or the task's
/// `context.value` (default 2) for a first step.
fn sequence_input(input: &Value) -> Result<u64, String> {
    match input["inputs"].as_object() {
        Some(inputs) if !inputs.is_empty() => Ok(inputs
            .values()
            .map(|result| result["value"].as_u64().unwrap_or(0))
            .fold(0, |sum, value| (sum + value) % MODULUS)),
        _ => match input["context"].get("value") {
            None => Ok(2),
            Some(value) => value
                .as_u64()
                .map(|v| v % MODULUS)
                .ok_or_else(|| format!("context.value must be a non-negative integer, got {value}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_pick_the_work_and_the_runtime() {
        for name in NAMES {
            assert_eq!(Handler::from_name(name).unwrap().name(), *name);
        }
        assert_eq!(Handler::from_name("ruby_noop"), Some(Handler { work: Work::Noop, runtime: Runtime::Ruby }));
        assert_eq!(Handler::from_name("noop"), Some(Handler::rust(Work::Noop)));
        assert_eq!(Handler::from_name("ruby_"), None);
        assert_eq!(Handler::from_name("python_noop"), None);
    }

    #[test]
    fn a_sequence_squares_the_sum_of_its_inputs() {
        assert_eq!(sequence_input(&json!({"context": {"value": 6}, "inputs": {}})), Ok(6));
        assert_eq!(sequence_input(&json!({"context": {}, "inputs": {}})), Ok(2));
        let join = json!({"context": {"value": 6}, "inputs": {"left": {"value": 3}, "right": {"value": 4}}});
        assert_eq!(sequence_input(&join), Ok(7));
        assert!(sequence_input(&json!({"context": {"value": "six"}})).unwrap_err().contains("context.value"));
    }
}
