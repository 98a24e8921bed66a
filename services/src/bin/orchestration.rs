//! `orchestration`: the task API and result processing of the reference workflow system.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
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
    /// How long a claimed result stays invisible to other processors (whole seconds).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    visibility_timeout: Duration,
    /// How often idle processors look at the queue when no event arrives.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    poll_interval: Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let service = service::start("orchestration", 8 + args.result_processors as u32 * 2).await?;
    let settings = orchestration::Settings {
        listen: args.listen,
        result_processors: args.result_processors,
        visibility_timeout: args.visibility_timeout,
        poll_interval: args.poll_interval,
    };
    orchestration::run(service.pool, settings, service.stop).await?;
    service.telemetry.shutdown();
    Ok(())
}
