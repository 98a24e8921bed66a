use thiserror::Error;

/// Why telemetry could not be set up from the environment.
#[derive(Debug, Error)]
pub enum SetupError {
    #[error("{variable}={value:?} is not supported (expected one of {expected})")]
    UnsupportedValue { variable: &'static str, value: String, expected: &'static str },
    #[error("building the OTLP span exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("building the HTTP client for OTLP/HTTP export: {0}")]
    HttpClient(#[from] reqwest::Error),
}
