//! What every long-running service does first: logging, telemetry from `OTEL_*`, a prepared database,
//! and a stop flag set by SIGTERM or Ctrl-C.

use hoptrace_instrumentation::Telemetry;
use sqlx::PgPool;
use tokio::sync::watch;

use crate::database;

pub struct Service {
    pub telemetry: Telemetry,
    pub pool: PgPool,
    /// Set once, on the first SIGTERM or SIGINT.
    pub stop: watch::Receiver<bool>,
}

/// Starts `name`: `RUST_LOG` (default `info`) for logs, `OTEL_*` for spans, `DATABASE_URL` for the
/// database, which is brought up to date (PGMQ, migrations, queues) before anything else runs.
pub async fn start(name: &'static str, max_connections: u32) -> anyhow::Result<Service> {
    logging();
    crate::faults::from_env()?;
    let telemetry = Telemetry::from_env(name)?;
    let pool = database::connect(&database::database_url(), max_connections).await?;
    database::prepare(&pool).await?;
    Ok(Service { telemetry, pool, stop: on_signal() })
}

pub fn logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Resolves on SIGTERM or SIGINT.
pub async fn signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn on_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        signal().await;
        tracing::info!("stopping: finishing the work in hand");
        let _ = tx.send(true);
    });
    rx
}
