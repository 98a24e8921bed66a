//! `OTEL_SDK_DISABLED=true` records nothing, and `OTEL_TRACES_SAMPLER=always_off` samples nothing; the
//! services keep working either way, and a bad protocol is refused with its name.

mod common;

use hoptrace_instrumentation::{Hop, Telemetry};
use opentelemetry::Context;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_or_unsampled_tracing_exports_nothing_and_bad_settings_are_named() {
    let sink = common::sink().await;
    std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{}", sink.collector.grpc_addr));
    std::env::set_var("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc");

    std::env::set_var("OTEL_SDK_DISABLED", "true");
    let telemetry = Telemetry::from_env("svc").unwrap();
    assert!(!telemetry.enabled());
    drop(Hop::internal(&Context::new(), "not recorded"));
    telemetry.shutdown();

    std::env::remove_var("OTEL_SDK_DISABLED");
    std::env::set_var("OTEL_TRACES_SAMPLER", "always_off");
    let telemetry = Telemetry::from_env("svc").unwrap();
    assert!(telemetry.enabled());
    drop(Hop::internal(&Context::new(), "not sampled"));
    telemetry.shutdown();

    std::env::set_var("OTEL_TRACES_SAMPLER", "always_on");
    let telemetry = Telemetry::from_env("svc").unwrap();
    drop(Hop::internal(&Context::new(), "sampled over grpc"));
    telemetry.shutdown();

    std::env::set_var("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon");
    let err = Telemetry::from_env("svc").err().unwrap().to_string();
    assert!(err.contains("OTEL_EXPORTER_OTLP_PROTOCOL=\"carrier-pigeon\" is not supported"), "{err}");

    let spans = sink.spans().await;
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["sampled over grpc"]);
    assert_eq!(spans[0].service_name, "svc", "the default service name when OTEL_SERVICE_NAME is unset");
}
