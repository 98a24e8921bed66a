//! Forwarding: everything the collector accepts is also exported over OTLP/HTTP (protobuf) to another
//! endpoint — Jaeger, Tempo, another collector. Forwarding never slows ingest: accepted requests wait in a
//! queue bounded in bytes, and what does not fit is dropped and counted. Failed sends are retried as the
//! OTLP specification says: 429, 502, 503 and 504 (honouring `Retry-After`) and transport errors, with
//! exponential backoff; other answers are permanent failures, counted and logged. An `https://` endpoint is
//! reached over TLS (the system's roots, or `forward.ca_file`), with a bearer token when
//! `forward.token_file` is set.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use http::HeaderValue;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::Forward;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct ForwardStats {
    pub spans_forwarded: AtomicU64,
    /// Dropped because the queue was full.
    pub spans_dropped: AtomicU64,
    /// Refused by the endpoint with a non-retryable answer, or still queued when the drain timed out.
    pub spans_failed: AtomicU64,
    pub retries: AtomicU64,
    pub queue_bytes: AtomicU64,
    pub queue_spans: AtomicU64,
}

struct Request {
    body: Bytes,
    spans: u64,
}

type Client = hyper_util::client::legacy::Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Where and how each request is sent.
struct Endpoint {
    client: Client,
    url: http::Uri,
    authorization: Option<HeaderValue>,
    timeout: Duration,
}

pub struct Forwarder {
    /// Taken on stop, which closes the queue.
    tx: Mutex<Option<mpsc::UnboundedSender<Request>>>,
    max_queue_bytes: u64,
    drain_timeout: Duration,
    pub stats: Arc<ForwardStats>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Forwarder {
    /// Starts the sending task on the current runtime.
    pub fn start(config: &Forward) -> anyhow::Result<Forwarder> {
        let url: http::Uri = config.url().map_err(anyhow::Error::msg)?.parse()?;
        // The system's roots are hundreds of files to read: only for an https:// endpoint.
        let roots = match url.scheme_str() {
            Some("https") => crate::tls::roots(config.ca_file.as_deref()).map_err(anyhow::Error::msg)?,
            _ => rustls::RootCertStore::empty(),
        };
        let tls = crate::tls::client_config(roots).map_err(anyhow::Error::msg)?;
        let connector =
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().build();
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector);
        let authorization = match &config.token_file {
            Some(path) => Some(crate::auth::Tokens::load(path).map_err(anyhow::Error::msg)?.bearer()),
            None => None,
        };
        let endpoint = Endpoint { client, url, authorization, timeout: config.timeout };
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(ForwardStats::default());
        let task = tokio::spawn(send_loop(endpoint, rx, Arc::clone(&stats)));
        Ok(Forwarder {
            tx: Mutex::new(Some(tx)),
            max_queue_bytes: config.max_queue_bytes as u64,
            drain_timeout: config.drain_timeout,
            stats,
            task: Mutex::new(Some(task)),
        })
    }

    /// Queues an accepted request (OTLP protobuf) holding `spans` accepted spans; drops it if the queue is full.
    pub fn offer(&self, body: Bytes, spans: u64) {
        let len = body.len() as u64;
        let queued = self.stats.queue_bytes.fetch_add(len, Relaxed);
        self.stats.queue_spans.fetch_add(spans, Relaxed);
        let sent = queued + len <= self.max_queue_bytes
            && self
                .tx
                .lock()
                .expect("not poisoned")
                .as_ref()
                .is_some_and(|tx| tx.send(Request { body, spans }).is_ok());
        if !sent {
            self.stats.queue_bytes.fetch_sub(len, Relaxed);
            self.stats.queue_spans.fetch_sub(spans, Relaxed);
            self.stats.spans_dropped.fetch_add(spans, Relaxed);
        }
    }

    /// Sends what is queued, for at most the drain timeout; what is left is counted as failed.
    pub async fn stop(&self) {
        drop(self.tx.lock().expect("not poisoned").take());
        let Some(mut task) = self.task.lock().expect("not poisoned").take() else { return };
        if tokio::time::timeout(self.drain_timeout, &mut task).await.is_err() {
            task.abort();
            let spans = self.stats.queue_spans.swap(0, Relaxed);
            self.stats.queue_bytes.store(0, Relaxed);
            self.stats.spans_failed.fetch_add(spans, Relaxed);
            tracing::warn!(spans, "forwarding did not drain before the timeout; these spans are not forwarded");
        }
    }
}

async fn send_loop(endpoint: Endpoint, mut rx: mpsc::UnboundedReceiver<Request>, stats: Arc<ForwardStats>) {
    while let Some(Request { body, spans }) = rx.recv().await {
        let len = body.len() as u64;
        let sent = send(&endpoint, body, &stats).await;
        // Out of the queue only once answered, so a stop mid-retry counts this request as unsent.
        stats.queue_bytes.fetch_sub(len, Relaxed);
        stats.queue_spans.fetch_sub(spans, Relaxed);
        let outcome = if sent { &stats.spans_forwarded } else { &stats.spans_failed };
        outcome.fetch_add(spans, Relaxed);
    }
}

/// Sends one request until it is accepted (true) or permanently refused (false).
async fn send(endpoint: &Endpoint, body: Bytes, stats: &ForwardStats) -> bool {
    let url = &endpoint.url;
    let mut backoff = FIRST_BACKOFF;
    loop {
        let mut request = http::Request::post(url.clone()).header(CONTENT_TYPE, "application/x-protobuf");
        if let Some(authorization) = &endpoint.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        let request = request.body(Full::new(body.clone())).expect("a URI that parsed and constant headers");
        let result = match tokio::time::timeout(endpoint.timeout, endpoint.client.request(request)).await {
            Ok(answer) => answer.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", endpoint.timeout)),
        };
        let wait = match result {
            Ok(resp) if resp.status().is_success() => return true,
            Ok(resp) if matches!(resp.status().as_u16(), 429 | 502 | 503 | 504) => {
                let retry_after = resp
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                tracing::debug!(status = %resp.status(), "forward endpoint asks for a retry");
                retry_after.unwrap_or(backoff)
            }
            Ok(resp) => {
                tracing::warn!(%url, status = %resp.status(), "forward endpoint refused a request; it is not retried");
                return false;
            }
            Err(e) => {
                tracing::debug!(%url, error = %e, "forwarding failed; retrying");
                backoff
            }
        };
        stats.retries.fetch_add(1, Relaxed);
        tokio::time::sleep(wait).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
