//! What every long-running service does first: logging, telemetry from `OTEL_*`, a prepared database,
//! and a stop flag set by SIGTERM or Ctrl-C.

use std::net::SocketAddr;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use hoptrace_instrumentation::Telemetry;
use serde_json::json;
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
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
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

/// Serves `router` on `listen` until `stop` is set, logging `{what} listening on http://ADDR` once bound
/// (the tests read the address from that line).
pub async fn serve(
    what: &str,
    listen: SocketAddr,
    router: Router,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let socket = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!("{what} listening on http://{}", socket.local_addr()?);
    axum::serve(socket, router)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        })
        .await?;
    Ok(())
}

/// `GET /health`: 200 when the database answers, 503 with the reason otherwise.
pub async fn database_health(pool: &PgPool) -> Response {
    match sqlx::query("SELECT 1").execute(pool).await {
        Ok(_) => Json(json!({ "status": "ok" })).into_response(),
        Err(err) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": format!("database unreachable: {err}") })))
            .into_response(),
    }
}
