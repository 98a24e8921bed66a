//! `worker`: claims workflow steps from the step queue and runs their handlers.

use std::net::SocketAddr;

use clap::Parser;
use hoptrace_services::queue::QueueTiming;
use hoptrace_services::{service, worker};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Reads DATABASE_URL, and OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Address of the health endpoint.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// Steps run at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    #[command(flatten)]
    timing: QueueTiming,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let service = service::start("worker", args.concurrency as u32 * 2 + 2).await?;
    let settings = worker::Settings { listen: args.listen, concurrency: args.concurrency, timing: args.timing };
    worker::run(service.pool, settings, service.stop).await?;
    service.telemetry.shutdown();
    Ok(())
}
