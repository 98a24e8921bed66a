//! hoptrace's collector: OTLP/gRPC and OTLP/HTTP receivers in front of the durable span store.
//!
//! ```text
//! receiver/  OTLP/gRPC and OTLP/HTTP, the body rules     ─► pipeline ─► store (hoptrace_store::Backend)
//! forward    everything accepted, to another OTLP endpoint  ◄─┘
//! query/     the Jaeger query API, read from the store
//! auth, tls  bearer tokens and TLS, for the receivers and the query API (and TLS for forwarding)
//! config, metrics
//! ```
//!
//! Both receivers share one [`pipeline::Pipeline`]: admission under a memory budget, validation into
//! accepted and rejected spans, and the hand-off to the store, which answers once the spans are in its
//! write-ahead log. [`Collector::start`] binds the listeners first (so `/health` can say "starting"),
//! replays the store, then takes traffic; the Jaeger query API ([`query`]) reads the store's segments; [`Collector::stop`] stops accepting, drains, and flushes.

pub mod auth;
pub mod config;
pub mod forward;
pub mod metrics;
pub mod pipeline;
pub mod query;
pub mod receiver;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use hoptrace_store::{Backend, PgStore, SpanStore};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::Config;
use pipeline::Pipeline;
use receiver::{grpc, http};

/// A running collector.
pub struct Collector {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub query_addr: SocketAddr,
    pub pipeline: Arc<Pipeline>,
    stop_tx: watch::Sender<bool>,
    servers: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl Collector {
    /// Binds the listeners, opens (and replays) the store, and serves until [`Collector::stop`].
    pub async fn start(config: Config) -> anyhow::Result<Collector> {
        let tokens =
            config.auth.token_file.as_deref().map(auth::Tokens::load).transpose().map_err(anyhow::Error::msg)?;
        let tls = config.tls.server_config().map_err(anyhow::Error::msg)?;
        if tls.is_none() {
            for (what, addr) in config.listen.beyond_loopback() {
                tracing::warn!(%addr, "{what} listens beyond this machine without TLS: spans, queries and tokens cross the network in clear text");
            }
        }
        let grpc_listener = TcpListener::bind(config.listen.grpc)
            .await
            .with_context(|| format!("cannot listen for OTLP/gRPC on {}", config.listen.grpc))?;
        let http_listener = TcpListener::bind(config.listen.http)
            .await
            .with_context(|| format!("cannot listen for OTLP/HTTP on {}", config.listen.http))?;
        let query_listener = TcpListener::bind(config.listen.query)
            .await
            .with_context(|| format!("cannot listen for the Jaeger query API on {}", config.listen.query))?;
        let grpc_addr = grpc_listener.local_addr()?;
        let query_addr = query_listener.local_addr()?;
        let http_addr = http_listener.local_addr()?;
        let pipeline = Arc::new(Pipeline::new(config.limits.max_inflight_bytes, config.limits.retry_after));
        let (stop_tx, stop_rx) = watch::channel(false);
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };

        let http = {
            let app = http::router(Arc::clone(&pipeline), config.limits.max_http_body_bytes, tokens.clone());
            serve_http(http_listener, tls.clone(), app, stopped(stop_rx.clone()), "OTLP/HTTP server failed")?
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!(%http_addr, scheme, "OTLP/HTTP listening (/v1/traces, /health, /metrics)");

        let backend: Arc<dyn Backend> = match &config.storage.postgres {
            Some(url) => {
                let db = PgStore::connect(url)
                    .await
                    .with_context(|| format!("cannot open the span store in {}", config.location()))?;
                tracing::info!(store = %config.location(), "span store open (PostgreSQL)");
                Arc::new(db)
            }
            None => {
                let data_dir = config.data_dir.clone();
                let mut store_config = config.store_config();
                let upload = config.bucket().map(|bucket| (bucket, config.object_store.clone()));
                let (store, recovery) = tokio::task::spawn_blocking(move || {
                    if let Some((bucket, settings)) = upload {
                        let id = hoptrace_store::bucket::upload::collector_id(
                            &store_config.data_dir,
                            settings.collector_id.as_deref(),
                            &bucket,
                        )?;
                        tracing::info!(bucket = bucket.url(), collector = id, "uploading segments to the object store");
                        let mut upload = hoptrace_store::UploadConfig::new(bucket, id);
                        upload.keep_local_hours = settings.keep_local_hours;
                        store_config.upload = Some(upload);
                    }
                    SpanStore::open(store_config)
                })
                .await?
                .with_context(|| format!("cannot open the span store in {}", data_dir.display()))?;
                tracing::info!(
                    data_dir = %config.data_dir.display(),
                    replayed_records = recovery.replayed_records,
                    replayed_spans = recovery.replayed_spans,
                    "span store open"
                );
                Arc::new(store)
            }
        };
        if config.forward.endpoint.is_some() {
            let forwarder = forward::Forwarder::start(&config.forward)?;
            tracing::info!(endpoint = config.forward.url().unwrap_or_default(), "forwarding accepted spans");
            pipeline.set_forwarder(forwarder);
        }
        pipeline.set_ready(backend);

        const GRPC_WINDOW: u32 = 1 << 20;
        let grpc = {
            let service = grpc::service(Arc::clone(&pipeline), config.limits.max_grpc_message_bytes, tokens.clone());
            let stop = stopped(stop_rx.clone());
            let metrics = Arc::clone(&pipeline.metrics);
            let otlp_status = move |response| grpc::otlp_status(&metrics, response);
            // HTTP/2's default 64 KiB windows made a client wait for a window update every 64 KiB of a
            // batch; 1 MiB lets a typical batch arrive in one go and bounds what one connection can have in
            // flight before the collector reads it.
            let server = tonic::transport::Server::builder()
                .initial_stream_window_size(GRPC_WINDOW)
                .initial_connection_window_size(2 * GRPC_WINDOW)
                .layer(tower::util::MapResponseLayer::new(otlp_status))
                .add_service(service);
            let failed = "OTLP/gRPC server failed";
            match tls.clone() {
                Some(config) => {
                    let incoming = tls::TlsListener::new(grpc_listener, config)?.incoming();
                    tokio::spawn(
                        async move { server.serve_with_incoming_shutdown(incoming, stop).await.context(failed) },
                    )
                }
                None => {
                    let incoming = tonic::transport::server::TcpIncoming::from(grpc_listener);
                    tokio::spawn(
                        async move { server.serve_with_incoming_shutdown(incoming, stop).await.context(failed) },
                    )
                }
            }
        };
        tracing::info!(%grpc_addr, tls = tls.is_some(), "OTLP/gRPC listening");

        let query = {
            let app = query::router(config.location(), tokens);
            serve_http(query_listener, tls.clone(), app, stopped(stop_rx), "Jaeger query API failed")?
        };
        tracing::info!(%query_addr, scheme, "Jaeger query API listening (/api/services, /api/traces, /api/dependencies)");
        Ok(Collector { grpc_addr, http_addr, query_addr, pipeline, stop_tx, servers: vec![http, grpc, query] })
    }

    /// Stops accepting, lets in-flight requests finish, then flushes the store to segments.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop_tx.send(true);
        for server in self.servers {
            server.await??;
        }
        if let Some(backend) = self.pipeline.backend().cloned() {
            tokio::task::spawn_blocking(move || backend.shutdown()).await?.context("final flush failed")?;
        }
        if let Some(forwarder) = self.pipeline.forwarder() {
            forwarder.stop().await;
        }
        tracing::info!("collector stopped; every acknowledged span is in a segment");
        Ok(())
    }
}

/// Serves `app` on `listener` until `stop`, over TLS when `tls` is set.
fn serve_http(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: axum::Router,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
    failed: &'static str,
) -> anyhow::Result<JoinHandle<anyhow::Result<()>>> {
    Ok(match tls {
        Some(config) => {
            let listener = tls::TlsListener::new(listener, config)?;
            tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(stop).await.context(failed) })
        }
        None => {
            tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(stop).await.context(failed) })
        }
    })
}
