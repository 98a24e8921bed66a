//! The tracer provider, configured the way every OpenTelemetry SDK is: from `OTEL_*` variables.

use std::env;

use opentelemetry::global;
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;

use crate::SetupError;

/// Installed telemetry: the global tracer provider and the W3C propagators. Dropping it (or calling
/// [`Telemetry::shutdown`]) exports every span still buffered, so a service stopping cleanly loses none.
///
/// Variables read, as the OpenTelemetry specification names them:
/// - `OTEL_SDK_DISABLED=true`: no spans at all (a no-op tracer), for measuring the cost of tracing;
/// - `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` / `OTEL_EXPORTER_OTLP_PROTOCOL`: `grpc` or `http/protobuf`
///   (the specification's default);
/// - `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `..._HEADERS`, `..._TIMEOUT`,
///   `..._COMPRESSION` (read by the exporter);
/// - `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`;
/// - `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`; `OTEL_BSP_*` for the batch processor.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sets up tracing for `default_service_name` (used when `OTEL_SERVICE_NAME` is not set). With gRPC
    /// export this must run inside a Tokio runtime, which the exporter's channel lives on.
    pub fn from_env(default_service_name: &'static str) -> Result<Self, SetupError> {
        global::set_text_map_propagator(opentelemetry::propagation::TextMapCompositePropagator::new(vec![
            Box::new(TraceContextPropagator::new()),
            Box::new(BaggagePropagator::new()),
        ]));
        if env_flag("OTEL_SDK_DISABLED") {
            return Ok(Telemetry { provider: None });
        }
        let exporter = match protocol()? {
            Protocol::Grpc => SpanExporter::builder().with_tonic().build()?,
            _ => SpanExporter::builder()
                .with_http()
                // The batch processor exports from its own thread: a blocking client fits it.
                .with_http_client(blocking_client()?)
                .with_protocol(Protocol::HttpBinary)
                .build()?,
        };
        let mut resource = Resource::builder();
        if env::var_os("OTEL_SERVICE_NAME").is_none() && !resource_attributes_name_service() {
            resource = resource.with_service_name(default_service_name);
        }
        let resource = resource.build();
        let provider = SdkTracerProvider::builder().with_resource(resource).with_batch_exporter(exporter).build();
        global::set_tracer_provider(provider.clone());
        Ok(Telemetry { provider: Some(provider) })
    }

    /// Whether spans are recorded (false under `OTEL_SDK_DISABLED=true`).
    pub fn enabled(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports every buffered span and stops the exporter.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.force_flush();
            let _ = provider.shutdown();
        }
    }

    /// The tracer hop spans are started with; the scope names the instrumentation library.
    pub fn tracer() -> global::BoxedTracer {
        global::tracer("hoptrace-instrumentation")
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.stop();
    }
}

fn protocol() -> Result<Protocol, SetupError> {
    let value = env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|_| env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|_| "http/protobuf".into());
    match value.trim().to_ascii_lowercase().as_str() {
        "grpc" => Ok(Protocol::Grpc),
        "http/protobuf" => Ok(Protocol::HttpBinary),
        _ => Err(SetupError::UnsupportedValue {
            variable: "OTEL_EXPORTER_OTLP_PROTOCOL",
            value,
            expected: "grpc, http/protobuf",
        }),
    }
}

fn blocking_client() -> Result<reqwest::blocking::Client, SetupError> {
    // reqwest's blocking client owns a runtime of its own; build it off any async context.
    let client = std::thread::spawn(reqwest::blocking::Client::new);
    Ok(client.join().expect("building an HTTP client does not panic"))
}

fn env_flag(name: &str) -> bool {
    env::var(name).map(|v| v.trim().eq_ignore_ascii_case("true")).unwrap_or(false)
}

fn resource_attributes_name_service() -> bool {
    env::var("OTEL_RESOURCE_ATTRIBUTES")
        .map(|attrs| attrs.split(',').any(|kv| kv.trim_start().starts_with("service.name=")))
        .unwrap_or(false)
}
