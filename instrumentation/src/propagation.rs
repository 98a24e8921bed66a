//! W3C trace context (and baggage) in JSON objects: a PGMQ message's `headers` and a `pg_notify` payload.
//!
//! Both carriers are JSON objects, so one pair of functions serves both: [`inject`] adds `traceparent`,
//! `tracestate` and `baggage` keys, [`extract`] reads them back. Anything else in the object is left alone.

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::{global, Context};
use serde_json::{Map, Value};

/// Writes `cx`'s trace context into `carrier` (overwriting earlier trace-context keys).
pub fn inject(cx: &Context, carrier: &mut Map<String, Value>) {
    global::get_text_map_propagator(|propagator| propagator.inject_context(cx, &mut JsonCarrier(carrier)));
}

/// `cx`'s trace context as a fresh JSON object, e.g. for PGMQ `headers`.
pub fn to_json(cx: &Context) -> Value {
    let mut headers = Map::new();
    inject(cx, &mut headers);
    Value::Object(headers)
}

/// The context carried in `carrier`; an empty context when it carries none or an invalid one, so a message
/// without headers starts a new trace instead of failing.
pub fn extract(carrier: &Value) -> Context {
    let empty = Map::new();
    let object = carrier.as_object().unwrap_or(&empty);
    global::get_text_map_propagator(|propagator| propagator.extract_with_context(&Context::new(), &JsonFields(object)))
}

struct JsonCarrier<'a>(&'a mut Map<String, Value>);

impl Injector for JsonCarrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), Value::String(value));
    }
}

struct JsonFields<'a>(&'a Map<String, Value>);

impl Extractor for JsonFields<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::baggage::BaggageExt;
    use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
    use opentelemetry::KeyValue;

    fn install_propagators() {
        // Telemetry::from_env installs the same pair; the disabled SDK keeps the test free of exporters.
        std::env::set_var("OTEL_SDK_DISABLED", "true");
        let _ = crate::Telemetry::from_env("test");
    }

    #[test]
    fn context_survives_a_json_round_trip_beside_other_keys() {
        install_propagators();
        let span = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::from_key_value([("vendor", "x")]).unwrap(),
        );
        let cx = Context::new()
            .with_remote_span_context(span.clone())
            .with_baggage([KeyValue::new("benchmark.run_id", "run-7")]);
        let mut payload = serde_json::json!({"queue": "step_queue", "msg_id": 42});
        inject(&cx, payload.as_object_mut().unwrap());
        assert_eq!(payload["traceparent"], "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert_eq!(payload["tracestate"], "vendor=x");
        assert_eq!(payload["baggage"], "benchmark.run_id=run-7");
        assert_eq!(payload["msg_id"], 42);

        let back = extract(&payload);
        assert_eq!(back.span().span_context(), &span);
        assert_eq!(back.baggage().get("benchmark.run_id").map(|v| v.as_str().to_owned()), Some("run-7".into()));
    }

    #[test]
    fn missing_or_malformed_context_gives_an_empty_one() {
        install_propagators();
        for carrier in [
            serde_json::json!(null),
            serde_json::json!({}),
            serde_json::json!({"traceparent": "00-zz-00f067aa0ba902b7-01"}),
            serde_json::json!({"traceparent": 7}),
        ] {
            assert!(!extract(&carrier).span().span_context().is_valid(), "{carrier}");
        }
    }
}
