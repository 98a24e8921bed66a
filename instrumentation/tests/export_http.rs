//! Telemetry set up from OTEL_* variables exports over OTLP/HTTP (the specification's default protocol):
//! service name and resource attributes from the environment, hop spans with their parents, links and
//! baggage-borne run id, all flushed by shutdown.

mod common;

use hoptrace_instrumentation::hop::Messaging;
use hoptrace_instrumentation::{propagation, Hop, Telemetry};
use opentelemetry::baggage::BaggageExt;
use opentelemetry::{Context, KeyValue};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_otlp_http_collector_with_the_resource_from_the_environment() {
    let sink = common::sink().await;
    std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{}", sink.collector.http_addr));
    std::env::remove_var("OTEL_EXPORTER_OTLP_PROTOCOL");
    std::env::set_var("OTEL_SERVICE_NAME", "checkout");
    std::env::set_var("OTEL_RESOURCE_ATTRIBUTES", "service.instance.id=checkout-7,deployment.environment=test");
    let telemetry = Telemetry::from_env("unused-default").unwrap();
    assert!(telemetry.enabled());

    // A producer in one "process", its message headers, and the consumer on the other side.
    let run = Context::new().with_baggage([KeyValue::new("benchmark.run_id", "r-42")]);
    let send = Hop::send(&run, Messaging::Pgmq, "orders");
    let headers = propagation::to_json(send.context());
    drop(send);
    let producer = propagation::extract(&headers);
    let process = Hop::process(&producer, Messaging::Pgmq, "orders", 7);
    drop(Hop::db(process.context(), "UPDATE", "orders"));
    drop(process);
    telemetry.shutdown();

    let spans = sink.spans().await;
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(spans.len(), 3, "{names:?}");
    let by_name = |name: &str| spans.iter().find(|s| s.name == name).unwrap();
    let (send, process, db) = (by_name("send orders"), by_name("process orders"), by_name("UPDATE orders"));
    for span in [send, process, db] {
        assert_eq!(span.service_name, "checkout");
        assert_eq!(span.resource_attribute("service.instance.id"), Some("checkout-7"));
        assert_eq!(span.resource_attribute("deployment.environment"), Some("test"));
        assert_eq!(span.attribute("benchmark.run_id"), Some("r-42"), "{}", span.name);
        assert_eq!(span.trace_id, send.trace_id);
    }
    assert_eq!((send.kind, process.kind, db.kind), (4, 5, 3));
    assert_eq!(process.parent_span_id.as_deref(), Some(send.span_id.as_str()));
    let links: Vec<_> = process.links.iter().map(|l| (&l.trace_id, &l.span_id)).collect();
    assert_eq!(links, vec![(&send.trace_id, &send.span_id)]);
    assert_eq!(process.attribute("messaging.message.id"), Some("7"));
    assert_eq!(db.parent_span_id.as_deref(), Some(process.span_id.as_str()));
    assert_eq!(db.attribute("db.system.name"), Some("postgresql"));
}
