//! `collector`: receive OTLP spans over gRPC and HTTP and store them durably.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

// Spans are decoded on the runtime's threads and freed on the store's flush thread. glibc's allocator spent
// about a sixth of the collector's CPU on that; with mimalloc, spans per CPU-second rose by a quarter.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use hoptrace_collector::{Collector, Config};

/// hoptrace collector: OTLP/gRPC and OTLP/HTTP in, durable Parquet span store out.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// TOML configuration file (unknown keys are an error); flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory [default: $HOPTRACE_DATA or ./hoptrace-data]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Store spans in this PostgreSQL database (postgres://…) instead of the data directory
    #[arg(long)]
    store: Option<String>,
    /// Also keep segments in this S3-compatible bucket, s3://BUCKET[/PREFIX] (endpoint, region and credentials from the AWS_* variables)
    #[arg(long)]
    object_store: Option<String>,
    /// This collector's prefix in the bucket [default: made up at the first start, kept in the data directory]
    #[arg(long)]
    collector_id: Option<String>,
    /// OTLP/gRPC listen address [default: 127.0.0.1:4317]
    #[arg(long)]
    grpc_listen: Option<SocketAddr>,
    /// OTLP/HTTP, /health and /metrics listen address [default: 127.0.0.1:4318]
    #[arg(long)]
    http_listen: Option<SocketAddr>,
    /// Jaeger query API listen address, for Grafana and the Jaeger UI [default: 127.0.0.1:16686]
    #[arg(long)]
    query_listen: Option<SocketAddr>,
    /// Also export everything accepted to this OTLP/HTTP endpoint, e.g. http://127.0.0.1:14318
    #[arg(long)]
    forward_endpoint: Option<String>,
    /// Accept only requests bearing one of this file's tokens (one per line) as Authorization: Bearer <token>
    #[arg(long)]
    auth_token_file: Option<PathBuf>,
    /// Serve all three listeners over TLS with this PEM certificate chain (with --tls-key)
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => Config::load(path).map_err(anyhow::Error::msg)?,
        None => Config::default(),
    };
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if let Some(url) = args.store {
        if !hoptrace_store::backend::postgres::is_url(&url) {
            anyhow::bail!("--store takes a postgres:// URL; for a data directory use --data-dir");
        }
        config.storage.postgres = Some(url);
    }
    if let Some(url) = args.object_store {
        hoptrace_store::Bucket::parse(&url)?;
        config.object_store.url = Some(url);
    }
    if let Some(id) = args.collector_id {
        config.object_store.collector_id = Some(id);
    }
    if let Some(addr) = args.grpc_listen {
        config.listen.grpc = addr;
    }
    if let Some(addr) = args.http_listen {
        config.listen.http = addr;
    }
    if let Some(addr) = args.query_listen {
        config.listen.query = addr;
    }
    if let Some(endpoint) = args.forward_endpoint {
        config.forward.endpoint = Some(endpoint);
        config.forward.url().map_err(anyhow::Error::msg)?;
    }
    if let Some(path) = args.auth_token_file {
        config.auth.token_file = Some(path);
    }
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        config.tls.cert_file = Some(cert);
        config.tls.key_file = Some(key);
    }
    let collector = Collector::start(config).await?;
    shutdown_signal().await;
    tracing::info!("signal received; stopping");
    collector.stop().await
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
