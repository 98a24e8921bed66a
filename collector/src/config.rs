//! The collector's configuration: a TOML file whose unknown keys are errors, overridden by flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The whole configuration. Every key is optional; the defaults serve one collector on this machine.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the store keeps its write-ahead log and segments (`$HOPTRACE_DATA`, else `./hoptrace-data`).
    pub data_dir: PathBuf,
    pub listen: Listen,
    pub storage: Storage,
    pub object_store: ObjectStore,
    pub limits: Limits,
    pub forward: Forward,
    pub auth: Auth,
    pub tls: Tls,
}

/// TLS on all three listeners (off unless both files are set).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    /// The certificate chain, PEM, the server's own first.
    pub cert_file: Option<PathBuf>,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
}

impl Tls {
    /// The server's TLS configuration, read from the files; `None` when TLS is off.
    pub fn server_config(&self) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>, String> {
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => crate::tls::server_config(cert, key).map(Some),
            (None, None) => Ok(None),
            _ => Err("tls.cert_file and tls.key_file go together: set both, or neither".into()),
        }
    }
}

/// Bearer-token authentication of the OTLP receivers and the query API (off unless `token_file` is set).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    /// A file of accepted tokens, one per line; requests must carry `Authorization: Bearer <token>`.
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Listen {
    /// OTLP/gRPC.
    pub grpc: SocketAddr,
    /// OTLP/HTTP, `/health` and `/metrics`.
    pub http: SocketAddr,
    /// The Jaeger query API (`/api/services`, `/api/traces`, …) for Grafana and the Jaeger UI.
    pub query: SocketAddr,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    /// Store spans in this PostgreSQL database (postgres://…) instead of the data directory.
    pub postgres: Option<String>,
    /// Acknowledged spans reach a Parquet segment at least this often, e.g. "2s".
    #[serde(deserialize_with = "duration")]
    pub flush_interval: Duration,
    /// …or as soon as this many wait in memory.
    pub flush_max_spans: usize,
    /// Recent (trace id, span id) pairs remembered to drop retried duplicates.
    pub dedup_window: usize,
    /// Consecutive small segments of one hour merged into one.
    pub compaction_min_segments: usize,
}

/// Segments also kept in S3-compatible object storage, shared with other collectors (off unless `url` is
/// set). Endpoint, region and credentials come from the `AWS_*` variables.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectStore {
    /// `s3://BUCKET[/PREFIX]`.
    pub url: Option<String>,
    /// This collector's prefix in the bucket; by default made up at the first start and kept in the data
    /// directory (`COLLECTOR_ID`).
    pub collector_id: Option<String>,
    /// Local copies of the current hour and this many before it are kept; older ones are removed once
    /// uploaded.
    pub keep_local_hours: u64,
}

impl Default for ObjectStore {
    fn default() -> Self {
        ObjectStore { url: None, collector_id: None, keep_local_hours: 1 }
    }
}

/// Forwarding of everything accepted to another OTLP endpoint (off unless `endpoint` is set).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Forward {
    /// OTLP/HTTP URL, e.g. "http://jaeger:4318" or "https://…" (`/v1/traces` is added when there is no path).
    pub endpoint: Option<String>,
    /// Accepted request bytes waiting to be forwarded; beyond it requests are dropped (and counted).
    pub max_queue_bytes: usize,
    /// How long one send may take, e.g. "10s".
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
    /// On shutdown, how long to keep sending what is queued.
    #[serde(deserialize_with = "duration")]
    pub drain_timeout: Duration,
    /// For an `https://` endpoint: trust only the CA certificates in this PEM file (default: the system's).
    pub ca_file: Option<PathBuf>,
    /// Send `Authorization: Bearer <token>` with the first token of this file.
    pub token_file: Option<PathBuf>,
}

impl Default for Forward {
    fn default() -> Self {
        Forward {
            endpoint: None,
            max_queue_bytes: 64 << 20,
            timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(5),
            ca_file: None,
            token_file: None,
        }
    }
}

impl Forward {
    /// The URL requests are posted to.
    pub fn url(&self) -> Result<String, String> {
        let endpoint = self.endpoint.as_deref().ok_or("forward.endpoint is not set")?.trim_end_matches('/');
        let rest = (endpoint.strip_prefix("http://").or_else(|| endpoint.strip_prefix("https://")))
            .ok_or_else(|| format!("forward.endpoint {endpoint:?} must be an http:// or https:// URL"))?;
        if rest.is_empty() {
            return Err(format!("forward.endpoint {endpoint:?} names no host"));
        }
        Ok(if rest.contains('/') { endpoint.to_owned() } else { format!("{endpoint}/v1/traces") })
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest accepted gRPC message, after decompression (OTLP default: 4 MiB).
    pub max_grpc_message_bytes: usize,
    /// Largest accepted HTTP body, after decompression (OTLP default: 20 MiB).
    pub max_http_body_bytes: usize,
    /// Memory that requests being decoded and written may hold; beyond it requests are refused with a retry delay.
    pub max_inflight_bytes: usize,
    /// Batches waiting for the write-ahead log.
    pub queue_capacity: usize,
    /// The retry delay suggested when refusing for backpressure, e.g. "1s".
    #[serde(deserialize_with = "duration")]
    pub retry_after: Duration,
}

impl Default for Config {
    fn default() -> Self {
        let data_dir = std::env::var_os("HOPTRACE_DATA").map(PathBuf::from).unwrap_or_else(|| "hoptrace-data".into());
        Config {
            data_dir,
            listen: Listen::default(),
            storage: Storage::default(),
            object_store: ObjectStore::default(),
            limits: Limits::default(),
            forward: Forward::default(),
            auth: Auth::default(),
            tls: Tls::default(),
        }
    }
}

impl Listen {
    /// The listeners reachable from other machines, named.
    pub fn beyond_loopback(&self) -> Vec<(&'static str, SocketAddr)> {
        [("OTLP/gRPC", self.grpc), ("OTLP/HTTP", self.http), ("the Jaeger query API", self.query)]
            .into_iter()
            .filter(|(_, addr)| !addr.ip().is_loopback())
            .collect()
    }
}

impl Default for Listen {
    fn default() -> Self {
        Listen {
            grpc: ([127, 0, 0, 1], 4317).into(),
            http: ([127, 0, 0, 1], 4318).into(),
            query: ([127, 0, 0, 1], 16686).into(),
        }
    }
}

impl Default for Storage {
    fn default() -> Self {
        let store = hoptrace_store::StoreConfig::new("");
        Storage {
            postgres: None,
            flush_interval: store.flush_interval,
            flush_max_spans: store.flush_max_spans,
            dedup_window: store.dedup_window,
            compaction_min_segments: store.compaction_min_segments,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_grpc_message_bytes: 4 << 20,
            max_http_body_bytes: 20 << 20,
            max_inflight_bytes: 256 << 20,
            queue_capacity: 64,
            retry_after: Duration::from_secs(1),
        }
    }
}

impl Config {
    /// The defaults, storing in `data_dir` and listening on free loopback ports (see `Collector`'s
    /// addresses for which): a collector to embed in a test or a tool.
    pub fn ephemeral(data_dir: impl Into<PathBuf>) -> Config {
        let mut config = Config { data_dir: data_dir.into(), ..Config::default() };
        config.listen.grpc = "127.0.0.1:0".parse().expect("a literal address");
        config.listen.http = "127.0.0.1:0".parse().expect("a literal address");
        config.listen.query = "127.0.0.1:0".parse().expect("a literal address");
        config
    }

    /// Reads a config file. The error names the file, the key and the reason.
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
        Config::parse(&text).map_err(|e| format!("config {}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        let positive = [
            ("storage.flush_max_spans", self.storage.flush_max_spans),
            ("storage.dedup_window", self.storage.dedup_window),
            ("storage.compaction_min_segments", self.storage.compaction_min_segments),
            ("limits.max_grpc_message_bytes", self.limits.max_grpc_message_bytes),
            ("limits.max_http_body_bytes", self.limits.max_http_body_bytes),
            ("limits.max_inflight_bytes", self.limits.max_inflight_bytes),
            ("limits.queue_capacity", self.limits.queue_capacity),
            ("forward.max_queue_bytes", self.forward.max_queue_bytes),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(format!("{key} must be greater than zero"));
            }
        }
        if self.storage.flush_interval.is_zero() {
            return Err("storage.flush_interval must be greater than zero".into());
        }
        if let Some(url) = &self.storage.postgres {
            if !hoptrace_store::backend::postgres::is_url(url) {
                return Err(format!("storage.postgres {url:?} must be a postgres:// URL"));
            }
        }
        if self.forward.endpoint.is_some() {
            self.forward.url()?;
        }
        if let Some(url) = &self.object_store.url {
            hoptrace_store::Bucket::parse(url).map_err(|e| format!("object_store.url: {e}"))?;
            if self.storage.postgres.is_some() {
                return Err(
                    "object_store.url keeps the data directory's segments: it does not go with storage.postgres".into(),
                );
            }
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return Err("tls.cert_file and tls.key_file go together: set both, or neither".into());
        }
        if self.limits.max_inflight_bytes < self.limits.max_http_body_bytes {
            return Err("limits.max_inflight_bytes must be at least limits.max_http_body_bytes, or no large request could ever be accepted".into());
        }
        Ok(())
    }

    /// Where readers find the spans this collector stores.
    /// With an object store, that is the bucket: every collector's spans, once uploaded.
    pub fn location(&self) -> hoptrace_store::Location {
        match (&self.storage.postgres, self.bucket()) {
            (Some(url), _) => hoptrace_store::Location::Postgres(url.clone()),
            (None, Some(bucket)) => hoptrace_store::Location::Bucket(bucket),
            (None, None) => hoptrace_store::Location::Dir(self.data_dir.clone()),
        }
    }

    /// The object store, when one is set (its URL was checked by `validate`, or by the flag's parser).
    pub fn bucket(&self) -> Option<hoptrace_store::Bucket> {
        self.object_store.url.as_deref().and_then(|url| hoptrace_store::Bucket::parse(url).ok())
    }

    pub fn store_config(&self) -> hoptrace_store::StoreConfig {
        let mut store = hoptrace_store::StoreConfig::new(&self.data_dir);
        store.flush_interval = self.storage.flush_interval;
        store.flush_max_spans = self.storage.flush_max_spans;
        store.dedup_window = self.storage.dedup_window;
        store.compaction_min_segments = self.storage.compaction_min_segments;
        store.queue_capacity = self.limits.queue_capacity;
        store
    }
}

/// "250ms", "2s", "1m 30s": humantime's durations, as every hoptrace command takes them.
fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(text.trim())
        .map_err(|e| serde::de::Error::custom(format!("{text:?} is not a duration such as \"500ms\" or \"2s\" ({e})")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.listen.grpc.to_string(), "127.0.0.1:4317");
        assert_eq!(c.listen.http.to_string(), "127.0.0.1:4318");
        assert_eq!(c.limits.max_http_body_bytes, 20 << 20);
    }

    #[test]
    fn full_file_is_read() {
        let c = Config::parse(
            r#"
            data_dir = "/var/lib/hoptrace"
            [listen]
            grpc = "0.0.0.0:14317"
            [storage]
            flush_interval = "500ms"
            [limits]
            retry_after = "3s"
            [forward]
            endpoint = "http://jaeger:4318"
            drain_timeout = "1s"
            [auth]
            token_file = "/etc/hoptrace/tokens"
            "#,
        )
        .unwrap();
        assert_eq!(c.forward.url().unwrap(), "http://jaeger:4318/v1/traces");
        assert_eq!(c.forward.drain_timeout, Duration::from_secs(1));
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/hoptrace"));
        assert_eq!(c.listen.grpc.port(), 14317);
        assert_eq!(c.storage.flush_interval, Duration::from_millis(500));
        assert_eq!(c.limits.retry_after, Duration::from_secs(3));
        assert_eq!(c.auth.token_file, Some(PathBuf::from("/etc/hoptrace/tokens")));
        let exposed: Vec<_> = c.listen.beyond_loopback().into_iter().map(|(what, addr)| (what, addr.port())).collect();
        assert_eq!(exposed, [("OTLP/gRPC", 14317)], "the one listener that start warns about");
        assert!(Config::default().listen.beyond_loopback().is_empty());
    }

    #[test]
    fn errors_name_the_key() {
        let unknown = Config::parse("[storage]\nflush_intervall = \"1s\"\n").unwrap_err();
        assert!(unknown.contains("flush_intervall"), "{unknown}");
        let bad = Config::parse("[storage]\nflush_interval = \"soon\"\n").unwrap_err();
        assert!(bad.contains("flush_interval") && bad.contains("soon"), "{bad}");
        let zero = Config::parse("[limits]\nqueue_capacity = 0\n").unwrap_err();
        assert_eq!(zero, "limits.queue_capacity must be greater than zero");
        let addr = Config::parse("[listen]\nhttp = \"nowhere\"\n").unwrap_err();
        assert!(addr.contains("http"), "{addr}");
        let scheme = Config::parse("[forward]\nendpoint = \"grpc://tempo:4317\"\n").unwrap_err();
        assert!(scheme.contains("forward.endpoint") && scheme.contains("https://"), "{scheme}");
        let https = Config::parse("[forward]\nendpoint = \"https://tempo:4318\"\n").unwrap();
        assert_eq!(https.forward.url().unwrap(), "https://tempo:4318/v1/traces");
        let half = Config::parse("[tls]\ncert_file = \"cert.pem\"\n").unwrap_err();
        assert!(half.contains("tls.key_file"), "{half}");
    }
}
