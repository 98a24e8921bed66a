//! The real stack for end-to-end tests: a throwaway PostgreSQL database, an in-process collector, and
//! the `orchestration` and `worker` binaries as child processes exporting spans to it over OTLP/gRPC.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hoptrace_collector::{Collector, Config};
use hoptrace_store::{SpanRecord, TimeRange};

/// A database of its own, dropped (with everything in it) at the end of the test.
pub use hoptrace_testkit::ScratchDb as TestDb;

/// A service binary running as a child process.
pub struct Service {
    child: Child,
    /// The address it printed it listens on.
    pub addr: String,
}

impl Service {
    /// Starts `binary` with `args`, exporting spans to `otlp_endpoint` over gRPC, and waits until it
    /// logs the address it listens on.
    pub fn start(binary: &str, args: &[&str], db: &TestDb, otlp_endpoint: &str, instance: &str) -> Service {
        Service::start_with(binary, args, db, otlp_endpoint, instance, &[])
    }

    /// [`Service::start`] with extra environment variables.
    pub fn start_with(
        binary: &str,
        args: &[&str],
        db: &TestDb,
        otlp_endpoint: &str,
        instance: &str,
        env: &[(&str, &str)],
    ) -> Service {
        let mut child = Command::new(binary)
            .envs(env.iter().copied())
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("DATABASE_URL", &db.url)
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_endpoint)
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .env("OTEL_RESOURCE_ATTRIBUTES", format!("service.instance.id={instance}"))
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("starting {binary}: {err}"));
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let name = instance.to_owned();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("listening on http://").nth(1) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr.split_whitespace().next().unwrap_or_default().to_owned());
                    }
                }
                if std::env::var_os("HOPTRACE_TEST_LOGS").is_some() {
                    eprintln!("[{name}] {line}");
                }
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("{binary} did not start"));
        Service { child, addr }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// SIGTERM, and wait for a clean exit (which flushes its spans).
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "the service exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "the service did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: the service dies holding whatever it holds.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An in-process collector with its own store directory.
pub struct SpanSink {
    collector: Collector,
    dir: tempfile::TempDir,
    pub grpc_endpoint: String,
    /// The collector's Jaeger query API.
    pub query_url: String,
}

impl SpanSink {
    pub async fn start() -> SpanSink {
        let dir = tempfile::tempdir().unwrap();
        let collector = Collector::start(Config::ephemeral(dir.path())).await.unwrap();
        let grpc_endpoint = format!("http://{}", collector.grpc_addr);
        let query_url = format!("http://{}", collector.query_addr);
        SpanSink { collector, dir, grpc_endpoint, query_url }
    }

    /// Stops the collector, flushing everything, and returns every stored span.
    pub async fn stop_and_read(self) -> Vec<SpanRecord> {
        read(self.stop().await.path())
    }

    /// Waits until every span the collector has acknowledged is in a segment, where readers see it.
    pub async fn settle(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let backend = self.collector.pipeline.backend().expect("the sink's store is open");
        let stats = backend.stats().expect("the sink is the embedded store");
        for _ in 0..200 {
            if stats.spans_stored.load(Relaxed) >= stats.spans_acknowledged.load(Relaxed) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the collector did not flush its spans within 10 s");
    }

    /// The store's directory (segments appear there as the collector flushes).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Stops the collector, flushing everything, and hands over its store.
    pub async fn stop(self) -> tempfile::TempDir {
        self.collector.stop().await.unwrap();
        self.dir
    }
}

pub fn read(store: &std::path::Path) -> Vec<SpanRecord> {
    let frame = hoptrace_store::scan(store, TimeRange::all()).unwrap().collect().unwrap();
    hoptrace_store::records(&frame).unwrap()
}

pub const ORCHESTRATION: &str = env!("CARGO_BIN_EXE_orchestration");
pub const WORKER: &str = env!("CARGO_BIN_EXE_worker");
pub const RUBY_WORKER: &str = env!("CARGO_BIN_EXE_ruby-worker");
pub const LOADGEN: &str = env!("CARGO_BIN_EXE_loadgen");

/// A binary of another workspace crate (`analyzer`, `collector`), built beside the services' (`cargo test
/// --workspace` builds every binary).
pub fn workspace_binary(name: &str) -> std::path::PathBuf {
    let dir = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().to_owned();
    let binary = dir.join(name);
    assert!(binary.exists(), "{} is missing: build it with cargo build --bins", binary.display());
    binary
}

/// Creates a task through the API, tagged with run `run`; returns its uuid.
pub async fn create_task(
    client: &reqwest::Client,
    api: &Service,
    run: &str,
    template: &str,
    context: serde_json::Value,
) -> String {
    let response = client
        .post(api.url("/v1/tasks"))
        .header("baggage", format!("benchmark.run_id={run}"))
        .json(&serde_json::json!({"template": template, "context": context}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "in_progress");
    body["task_uuid"].as_str().unwrap().to_owned()
}

/// Waits (up to 30 s) for the task to finish, checks that it completed, and returns its view.
pub async fn wait_finished(client: &reqwest::Client, api: &Service, task: &str) -> serde_json::Value {
    let view = wait_done(client, api, task).await;
    assert_eq!(view["status"], "complete", "task {task}: {view}");
    view
}

/// Waits (up to 30 s) for the task to finish, completed or failed, and returns its view.
pub async fn wait_done(client: &reqwest::Client, api: &Service, task: &str) -> serde_json::Value {
    client.get(api.url(&format!("/v1/tasks/{task}?wait_ms=30000"))).send().await.unwrap().json().await.unwrap()
}
