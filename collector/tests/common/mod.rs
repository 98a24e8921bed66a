//! Shared test harness: an in-process collector on free loopback ports, the collector binary as a process
//! of its own (for tests that kill it), and readers for what it stored.
#![allow(dead_code)]

use std::path::Path;

use hoptrace_collector::{Collector, Config};
use hoptrace_store::{schema, TimeRange};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use polars::prelude::*;

pub struct Running {
    pub collector: Collector,
    pub dir: tempfile::TempDir,
}

pub fn test_config(dir: &Path) -> Config {
    Config::ephemeral(dir)
}

pub async fn start() -> Running {
    start_with(|_| {}).await
}

pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    tweak(&mut config);
    let collector = Collector::start(config).await.unwrap();
    Running { collector, dir }
}

impl Running {
    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.collector.http_addr)
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.collector.grpc_addr)
    }

    /// Stops the collector (flushing everything) and returns what the store holds.
    pub async fn stop_and_read(self) -> (DataFrame, tempfile::TempDir) {
        self.collector.stop().await.unwrap();
        (read_all(self.dir.path()), self.dir)
    }
}

/// The collector binary, started with `--config` and `--data-dir` on free loopback ports.
pub struct Proc {
    pub child: std::process::Child,
    pub http: String,
    /// The Jaeger query API's base URL.
    pub query: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts the collector binary with `args` and `env` besides its data directory and config.
pub fn spawn(dir: &Path, config: &Path, args: &[String], env: &[(&str, String)]) -> Proc {
    let (grpc, http, query) = (free_port(), free_port(), free_port());
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_collector"))
        .args(["--config", config.to_str().unwrap(), "--data-dir", dir.to_str().unwrap()])
        .args(["--grpc-listen", &format!("127.0.0.1:{grpc}"), "--http-listen", &format!("127.0.0.1:{http}")])
        // Not the default port: a collector of the demo may be running on this machine.
        .args(["--query-listen", &format!("127.0.0.1:{query}")])
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    Proc { child, http: format!("http://127.0.0.1:{http}"), query: format!("http://127.0.0.1:{query}") }
}

/// Posts a protobuf request to the collector at `http`; whether it was acknowledged.
pub async fn post(client: &reqwest::Client, http: &str, request: &ExportTraceServiceRequest) -> bool {
    use prost::Message;
    let sent = client
        .post(format!("{http}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(request.encode_to_vec())
        .send()
        .await;
    sent.is_ok_and(|r| r.status() == 200)
}

impl Proc {
    pub async fn wait_healthy(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Ok(r) = reqwest::get(format!("{}/health", self.http)).await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(std::time::Instant::now() < deadline, "collector did not become healthy");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Sends a protobuf request; whether it was acknowledged.
    pub async fn send(&self, client: &reqwest::Client, request: &ExportTraceServiceRequest) -> bool {
        post(client, &self.http, request).await
    }

    /// One value of `/metrics`.
    pub async fn metric(&self, name: &str) -> u64 {
        let text = reqwest::get(format!("{}/metrics", self.http)).await.unwrap().text().await.unwrap();
        let line = text.lines().find(|l| l.split_whitespace().next() == Some(name));
        line.and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap_or_else(|| panic!("no metric {name}"))
    }

    /// SIGTERM, and the clean exit it must lead to.
    pub fn terminate(mut self) {
        std::process::Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "SIGTERM must exit 0, got {status}");
    }

    /// SIGKILL: nothing runs on the way out.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// A token file (`[auth] token_file`) holding `text`.
pub fn token_file(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

pub fn read_all(dir: &Path) -> DataFrame {
    hoptrace_store::scan(dir, TimeRange::all())
        .unwrap()
        .sort([schema::START_TIME], SortMultipleOptions::default())
        .collect()
        .unwrap()
}

/// A stored attribute value, decoded from its typed struct.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    Empty,
    Str(String),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(Vec<u8>),
    /// Arrays and key-value lists, as their OTLP JSON.
    Json(serde_json::Value),
}

/// An attribute set from its three parallel lists, decoded from text by type.
pub fn attrs_from(keys: &Series, types: &Series, values: &Series) -> Vec<(String, Attr)> {
    use base64::Engine;
    let (key, ty, value) = (keys.str().unwrap(), types.u8().unwrap(), values.str().unwrap());
    assert_eq!((key.len(), ty.len()), (value.len(), value.len()), "parallel lists have one length");
    (0..key.len())
        .map(|i| {
            let k = key.get(i).unwrap().to_owned();
            let text = value.get(i);
            let v = match ty.get(i).unwrap() {
                0 => {
                    assert_eq!(text, None);
                    Attr::Empty
                }
                1 => Attr::Str(text.unwrap().to_owned()),
                2 => Attr::Bool(text.unwrap().parse().unwrap()),
                3 => Attr::Int(text.unwrap().parse().unwrap()),
                4 => Attr::Double(text.unwrap().parse().unwrap()),
                5 => Attr::Bytes(base64::engine::general_purpose::STANDARD.decode(text.unwrap()).unwrap()),
                _ => Attr::Json(serde_json::from_str(text.unwrap()).unwrap()),
            };
            (k, v)
        })
        .collect()
}

/// The attribute set `set` of row `row`.
pub fn attrs(df: &DataFrame, set: schema::AttributeColumns, row: usize) -> Vec<(String, Attr)> {
    attrs_from(&list_at(df, set.keys, row), &list_at(df, set.types, row), &list_at(df, set.values, row))
}

/// The attributes of element `i` of a list of events or links.
pub fn attrs_in(items: &StructChunked, i: usize) -> Vec<(String, Attr)> {
    let list = |name: &str| items.field_by_name(name).unwrap().list().unwrap().get_as_series(i).unwrap();
    let set = schema::ATTRIBUTES;
    attrs_from(&list(set.keys), &list(set.types), &list(set.values))
}

pub fn list_at(df: &DataFrame, column: &str, row: usize) -> Series {
    df.column(column).unwrap().list().unwrap().get_as_series(row).unwrap()
}

pub fn str_at(df: &DataFrame, column: &str, row: usize) -> Option<String> {
    df.column(column).unwrap().str().unwrap().get(row).map(str::to_owned)
}

pub fn bin_at(df: &DataFrame, column: &str, row: usize) -> Option<Vec<u8>> {
    df.column(column).unwrap().binary().unwrap().get(row).map(<[u8]>::to_vec)
}

pub fn u64_at(df: &DataFrame, column: &str, row: usize) -> u64 {
    df.column(column).unwrap().u64().unwrap().get(row).unwrap()
}

pub fn u8_at(df: &DataFrame, column: &str, row: usize) -> u8 {
    df.column(column).unwrap().u8().unwrap().get(row).unwrap()
}

/// Row index of the span named `name`.
pub fn row_named(df: &DataFrame, name: &str) -> usize {
    let names = df.column(schema::NAME).unwrap().str().unwrap();
    (0..df.height()).find(|&i| names.get(i) == Some(name)).unwrap_or_else(|| panic!("no span named {name}"))
}

/// (trace id, span id) of every stored span, hex-encoded, sorted.
pub fn keys(df: &DataFrame) -> Vec<(String, String)> {
    let mut keys: Vec<_> = (0..df.height())
        .map(|i| {
            (
                hex::encode(bin_at(df, schema::TRACE_ID, i).unwrap()),
                hex::encode(bin_at(df, schema::SPAN_ID, i).unwrap()),
            )
        })
        .collect();
    keys.sort();
    keys
}

/// A request of `n` valid spans in trace `trace`, span ids starting at `first`.
pub fn spans(trace: u8, first: u64, n: u64) -> ExportTraceServiceRequest {
    let spans = (first..first + n)
        .map(|i| Span {
            trace_id: vec![trace; 16],
            span_id: (i + 1).to_be_bytes().to_vec(),
            name: format!("span-{i}"),
            kind: 1,
            start_time_unix_nano: 1_795_986_538_000_000_000 + i,
            end_time_unix_nano: 1_795_986_538_000_100_000 + i,
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue { value: Some(any_value::Value::StringValue("svc".into())) }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    }
}
