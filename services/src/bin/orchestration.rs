//! `orchestration`: the task API and result processing of the reference workflow system.

use std::net::SocketAddr;

use clap::Parser;
use hoptrace_services::queue::QueueTiming;
use hoptrace_services::{orchestration, service};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Reads DATABASE_URL, and OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Address of the HTTP API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Step results processed at once.
    #[arg(long, default_value_t = 4)]
    result_processors: usize,
    #[command(flatten)]
    timing: QueueTiming,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let service = service::start("orchestration", 8 + args.result_processors as u32 * 2).await?;
    let settings =
        orchestration::Settings { listen: args.listen, result_processors: args.result_processors, timing: args.timing };
    orchestration::run(service.pool, settings, service.stop).await?;
    service.telemetry.shutdown();
    Ok(())
}
