//! Step handlers: the business logic a worker runs for a step.

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use hoptrace_instrumentation::Hop;
use opentelemetry::Context;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handler {
    /// Returns at once: what is left of a step is the framework's own cost.
    Noop,
    /// One step of a mathematical sequence: squares the sum of its inputs (modulo a prime).
    SimpleCalculation,
    /// A real query: the task's transitions so far, counted in PostgreSQL.
    DatabaseQuery,
}

const MODULUS: u64 = 1_000_000_007;

impl Handler {
    pub fn from_name(name: &str) -> Option<Handler> {
        match name {
            "noop" => Some(Handler::Noop),
            "simple_calculation" => Some(Handler::SimpleCalculation),
            "database_query" => Some(Handler::DatabaseQuery),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Handler::Noop => "noop",
            Handler::SimpleCalculation => "simple_calculation",
            Handler::DatabaseQuery => "database_query",
        }
    }

    /// Runs the handler on a step's input: `{"context": task context, "inputs": {dependency: result}}`.
    /// `context.handler_delay_ms` makes every step take that much longer (a slow handler, on purpose).
    pub async fn run(self, pool: &PgPool, task_uuid: Uuid, input: &Value) -> Result<Value, String> {
        if let Some(delay) = input["context"].get("handler_delay_ms").and_then(Value::as_u64) {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        match self {
            Handler::Noop => Ok(json!({})),
            Handler::SimpleCalculation => {
                let sum = sequence_input(input)?;
                Ok(json!({ "value": sum * sum % MODULUS }))
            }
            Handler::DatabaseQuery => {
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
    fn a_sequence_squares_the_sum_of_its_inputs() {
        assert_eq!(sequence_input(&json!({"context": {"value": 6}, "inputs": {}})), Ok(6));
        assert_eq!(sequence_input(&json!({"context": {}, "inputs": {}})), Ok(2));
        let join = json!({"context": {"value": 6}, "inputs": {"left": {"value": 3}, "right": {"value": 4}}});
        assert_eq!(sequence_input(&join), Ok(7));
        assert!(sequence_input(&json!({"context": {"value": "six"}})).unwrap_err().contains("context.value"));
    }
}
