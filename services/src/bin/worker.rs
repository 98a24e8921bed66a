//! `worker`: claims workflow steps whose handlers are Rust from the step queue and runs them.

use std::net::SocketAddr;

use clap::Parser;
use hoptrace_services::worker::{self, Executor, Flags};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Reads DATABASE_URL, and OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    flags: Flags,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let flags = Args::parse().flags;
    worker::main("worker", SocketAddr::from(([127, 0, 0, 1], 8081)), flags, Executor::Rust).await
}
