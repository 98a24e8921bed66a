//! Ingest benchmark: pre-encoded OTLP batches (1,000 spans of ~400 bytes, ~10 attributes, distinct ids)
//! sent over gRPC and HTTP to the real `collector` binary with durable storage, and — in the same run, with
//! the same load — to `rotel` (PyPI) exporting to nowhere, as the reference.
//!
//! Prints spans/s, spans per collector CPU-second, peak RSS, stored bytes per span, and RSS under an
//! overload of 3× capacity; then, with rotel, both targets at equal offered load (CPU-seconds per million
//! spans, alternating, round after round, with the spread). `BENCH_CALLGRIND=1`: instructions per span
//! under callgrind instead. `BENCH_UPLOADS=1`: the reference is the same collector uploading its segments
//! to a SeaweedFS bucket (what uploads cost, at equal load) instead of rotel.
//! `cargo bench --profile dev --workspace --bench ingest`; under `cargo test` it runs as a one-second smoke
//! test. `BENCH_COLLECTOR=path` measures that collector binary instead of this build's.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hoptrace_otlp::EXPORT_PATH;
use hoptrace_testkit::grpc::RawCodec;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

const SPANS_PER_BATCH: usize = 1_000;

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

/// One batch and the byte offsets of every id in its encoding (with the index of the span or trace it
/// names), so each send carries fresh random-looking ids for the cost of a copy.
struct Template {
    bytes: Vec<u8>,
    span_id_offsets: Vec<(usize, u64)>,
    trace_id_offsets: Vec<(usize, u64)>,
}

/// splitmix64: distinct, random-looking ids from a counter, as real SDKs' random ids are.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn template() -> Template {
    let marker = |i: usize| [0xA5, 0x5A, 0xC3, 0x3C, (i >> 16) as u8, (i >> 8) as u8, i as u8, 0x99];
    let spans = (0..SPANS_PER_BATCH)
        .map(|i| {
            // Spans of the current hour, as a live system sends them.
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
            let start = now - 60_000_000_000 + i as u64 * 1_000_000;
            Span {
                trace_id: {
                    let mut t = [0xD1, 0xD2, 0xD3, 0xD4, 0x42, 0x42, 0x42, 0x42, 0, 0, 0, 0, 0, 0, 0, 0];
                    t[8..16].copy_from_slice(&((i / 8) as u64 + 1).to_be_bytes());
                    t.to_vec()
                },
                span_id: marker(i).to_vec(),
                parent_span_id: if i % 8 == 0 { Vec::new() } else { marker(i - 1).to_vec() },
                name: ["process step_queue", "send step_queue", "INSERT workflow_steps", "POST /v1/tasks"][i % 4]
                    .into(),
                kind: (i % 5 + 1) as i32,
                start_time_unix_nano: start,
                end_time_unix_nano: start + 250_000 + (i as u64 * 7919) % 100_000,
                attributes: hoptrace_testkit::spans::benchmark_attributes(i),
                status: Some(Status { code: 1, message: String::new() }),
                ..Default::default()
            }
        })
        .collect();
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", Value::StringValue("worker".into())),
                    kv("host.name", Value::StringValue("bench-host".into())),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope { name: "hoptrace-bench".into(), ..Default::default() }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let bytes = request.encode_to_vec();
    let span_id_offsets = (0..SPANS_PER_BATCH)
        .flat_map(|i| {
            let m = marker(i);
            bytes
                .windows(8)
                .enumerate()
                .filter(move |(_, w)| *w == m)
                .map(move |(at, _)| (at, i as u64))
                .collect::<Vec<_>>()
        })
        .collect();
    let trace_marker = [0xD1, 0xD2, 0xD3, 0xD4, 0x42, 0x42, 0x42, 0x42];
    let trace_id_offsets = bytes
        .windows(8)
        .enumerate()
        .filter(|(_, w)| *w == trace_marker)
        .enumerate()
        .map(|(k, (at, _))| (at, (k / 8) as u64))
        .collect();
    Template { bytes, span_id_offsets, trace_id_offsets }
}

impl Template {
    /// The batch with trace and span ids unique to `seq`; parent ids inside the batch are rewritten alike.
    fn instance(&self, seq: u64) -> Bytes {
        let mut out = self.bytes.clone();
        let base = seq * SPANS_PER_BATCH as u64;
        for &(at, i) in &self.span_id_offsets {
            out[at..at + 8].copy_from_slice(&mix(base + i).to_le_bytes());
        }
        for &(at, t) in &self.trace_id_offsets {
            out[at..at + 8].copy_from_slice(&mix(!(base + t)).to_le_bytes());
            out[at + 8..at + 16].copy_from_slice(&mix((base + t) ^ 0x5555).to_le_bytes());
        }
        Bytes::from(out)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Proto {
    Grpc,
    Http,
}

#[derive(Default)]
struct Counts {
    ok_spans: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
}

/// One sender's connection to a target, over either protocol.
struct Sender {
    proto: Proto,
    url: String,
    http: reqwest::Client,
    grpc: tonic::client::Grpc<tonic::transport::Channel>,
}

impl Sender {
    fn new(proto: Proto, addr: &str) -> Sender {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect_lazy();
        let url = format!("http://{addr}/v1/traces");
        Sender { proto, url, http: reqwest::Client::new(), grpc: tonic::client::Grpc::new(channel) }
    }

    /// Sends one batch; an error says whether the target refused it (overloaded) rather than failed.
    async fn send(&mut self, body: Bytes) -> Result<(), bool> {
        match self.proto {
            Proto::Grpc => {
                self.grpc.ready().await.map_err(|_| false)?;
                let path = http::uri::PathAndQuery::from_static(EXPORT_PATH);
                match self.grpc.unary(tonic::Request::new(body), path, RawCodec).await {
                    Ok(_) => Ok(()),
                    Err(s) => Err(s.code() == tonic::Code::Unavailable),
                }
            }
            Proto::Http => {
                let sent = self.http.post(&self.url).header("content-type", "application/x-protobuf").body(body);
                match sent.send().await {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(r.status() == 503 || r.status() == 429),
                    Err(_) => Err(false),
                }
            }
        }
    }
}

/// Drives `concurrency` senders for `duration`; ids never repeat across the whole process.
async fn load(
    proto: Proto,
    addr: &str,
    concurrency: usize,
    duration: Duration,
    tpl: Arc<Template>,
    seq: Arc<AtomicU64>,
) -> Arc<Counts> {
    let counts = Arc::new(Counts::default());
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (tpl, seq, counts, addr) = (tpl.clone(), seq.clone(), counts.clone(), addr.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut sender = Sender::new(proto, &addr);
            while Instant::now() < deadline {
                match sender.send(tpl.instance(seq.fetch_add(1, Relaxed))).await {
                    Ok(()) => counts.ok_spans.fetch_add(SPANS_PER_BATCH as u64, Relaxed),
                    Err(true) => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        counts.refused.fetch_add(1, Relaxed)
                    }
                    Err(false) => counts.failed.fetch_add(1, Relaxed),
                };
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    counts
}

/// Offers `spans` spans at `rate` spans/s, whatever the target makes of them: `senders` senders, each on
/// its own schedule of batches (a sender behind schedule sends at once, so the offer does not shrink when
/// the target is slow; the phase takes longer instead). Returns the counts and the wall time.
async fn offer(
    proto: Proto,
    addr: &str,
    senders: usize,
    rate: f64,
    spans: u64,
    tpl: Arc<Template>,
    seq: Arc<AtomicU64>,
) -> (Arc<Counts>, f64) {
    let counts = Arc::new(Counts::default());
    let batches = spans.div_ceil(SPANS_PER_BATCH as u64);
    let interval = Duration::from_secs_f64(SPANS_PER_BATCH as f64 / rate);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for k in 0..senders as u64 {
        let (tpl, seq, counts, addr) = (tpl.clone(), seq.clone(), counts.clone(), addr.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut sender = Sender::new(proto, &addr);
            let mut i = k;
            while i < batches {
                tokio::time::sleep_until(start + interval * i as u32).await;
                if sender.send(tpl.instance(seq.fetch_add(1, Relaxed))).await.is_ok() {
                    counts.ok_spans.fetch_add(SPANS_PER_BATCH as u64, Relaxed);
                } else {
                    counts.failed.fetch_add(1, Relaxed);
                }
                i += senders as u64;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (counts, start.elapsed().as_secs_f64())
}

/// Median and range of `values`.
fn spread(values: &mut [f64]) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 };
    (median, values[0], values[n - 1])
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_comm = stat.rsplit_once(')').map(|(_, s)| s).unwrap_or("");
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0)))
        .unwrap_or(0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn wait_for_port(port: u16) {
    for _ in 0..400 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nothing listens on port {port}");
}

struct Target {
    name: &'static str,
    child: Child,
    grpc: String,
    http: String,
    data_dir: Option<PathBuf>,
}

/// The collector as measured; with `upload_to` (a bucket URL and its `AWS_*` variables), uploading too.
fn start_collector(data_dir: &Path, upload_to: Option<(&str, Vec<(&str, String)>)>) -> Target {
    let (g, h, q) = (free_port(), free_port(), free_port());
    let (name, upload_args, env) = match upload_to {
        Some((url, env)) => ("hoptrace + uploads", vec!["--object-store".to_owned(), url.to_owned()], env),
        None => ("hoptrace", Vec::new(), Vec::new()),
    };
    // BENCH_COLLECTOR=path measures another build (an A/B of two versions on the same load).
    let bin = std::env::var_os("BENCH_COLLECTOR").map(PathBuf::from);
    let child = Command::new(bin.unwrap_or_else(|| env!("CARGO_BIN_EXE_collector").into()))
        .args(["--data-dir", data_dir.to_str().unwrap()])
        .args(["--grpc-listen", &format!("127.0.0.1:{g}"), "--http-listen", &format!("127.0.0.1:{h}")])
        .args(["--query-listen", &format!("127.0.0.1:{q}")])
        .args(upload_args)
        .envs(env)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("collector binary");
    Target {
        name,
        child,
        grpc: format!("127.0.0.1:{g}"),
        http: format!("127.0.0.1:{h}"),
        data_dir: Some(data_dir.into()),
    }
}

fn rotel_binary() -> Option<PathBuf> {
    let out = Command::new("python3")
        .args(["-c", "import rotel, os; print(os.path.join(os.path.dirname(rotel.__file__), 'rotel-agent'))"])
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    path.exists().then_some(path)
}

fn start_rotel(bin: &Path) -> Target {
    let (g, h) = (free_port(), free_port());
    let child = Command::new(bin)
        .args(["start", "--exporter", "blackhole"])
        .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{g}"), "--otlp-http-endpoint", &format!("127.0.0.1:{h}")])
        .args(["--pid-file", &std::env::temp_dir().join(format!("rotel-bench-{g}.pid")).to_string_lossy()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("rotel-agent");
    Target {
        name: "rotel (blackhole)",
        child,
        grpc: format!("127.0.0.1:{g}"),
        http: format!("127.0.0.1:{h}"),
        data_dir: None,
    }
}

struct Phase {
    spans_per_s: f64,
    spans_per_cpu_s: f64,
    refused: u64,
    failed: u64,
}

async fn phase(
    t: &Target,
    proto: Proto,
    concurrency: usize,
    duration: Duration,
    tpl: &Arc<Template>,
    seq: &Arc<AtomicU64>,
) -> Phase {
    let pid = t.child.id();
    let addr = if proto == Proto::Grpc { &t.grpc } else { &t.http };
    let cpu0 = cpu_seconds(pid);
    let t0 = Instant::now();
    let counts = load(proto, addr, concurrency, duration, tpl.clone(), seq.clone()).await;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu0;
    let spans = counts.ok_spans.load(Relaxed) as f64;
    Phase {
        spans_per_s: spans / wall,
        spans_per_cpu_s: if cpu > 0.0 { spans / cpu } else { 0.0 },
        refused: counts.refused.load(Relaxed),
        failed: counts.failed.load(Relaxed),
    }
}

fn stop(mut t: Target) {
    let _ = Command::new("kill").args(["-TERM", &t.child.id().to_string()]).status();
    let _ = t.child.wait();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let secs = std::env::var("BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(if full { 8 } else { 1 });
    let duration = Duration::from_secs(secs);
    let concurrency = 8;
    let tpl = Arc::new(template());
    if let Ok(path) = std::env::var("BENCH_DUMP_BATCH") {
        std::fs::write(path, tpl.instance(u32::MAX as u64 - 1)).unwrap();
        return;
    }
    let seq = Arc::new(AtomicU64::new(0));
    if std::env::var_os("BENCH_CALLGRIND").is_some() {
        return callgrind(&tpl, &seq).await;
    }
    println!(
        "batch: {} spans, {} bytes ({} bytes/span), {} attributes/span; {}s per phase, {} senders",
        SPANS_PER_BATCH,
        tpl.bytes.len(),
        tpl.bytes.len() / SPANS_PER_BATCH,
        10,
        secs,
        concurrency
    );
    assert_eq!(
        tpl.span_id_offsets.len(),
        SPANS_PER_BATCH * 2 - SPANS_PER_BATCH.div_ceil(8),
        "every span id and parent id located"
    );
    assert_eq!(tpl.trace_id_offsets.len(), SPANS_PER_BATCH, "every trace id located");

    let dir = tempfile::tempdir().unwrap();
    let mut targets = vec![start_collector(&dir.path().join("data"), None)];
    let mut seaweed = None;
    match (full, std::env::var_os("BENCH_UPLOADS").is_some(), rotel_binary()) {
        (true, true, _) => {
            let server = hoptrace_testkit::seaweed::Seaweed::start();
            server.create_bucket("bench");
            targets.push(start_collector(&dir.path().join("uploading"), Some(("s3://bench/ingest", server.env()))));
            seaweed = Some(server);
        }
        (true, false, Some(bin)) => targets.push(start_rotel(&bin)),
        (true, false, None) => println!("rotel not installed (pip install rotel): no reference in this run"),
        _ => {}
    }
    let mut per_cpu = std::collections::HashMap::new();
    let mut saturated = Vec::new();
    println!(
        "{:<20} {:<5} {:>12} {:>16} {:>9} {:>8}",
        "target", "proto", "spans/s", "spans/CPU-s", "refused", "failed"
    );
    for t in &targets {
        wait_for_port(t.grpc.rsplit(':').next().unwrap().parse().unwrap()).await;
        wait_for_port(t.http.rsplit(':').next().unwrap().parse().unwrap()).await;
        for proto in [Proto::Http, Proto::Grpc] {
            let p = phase(t, proto, concurrency, duration, &tpl, &seq).await;
            let label = if proto == Proto::Grpc { "grpc" } else { "http" };
            println!(
                "{:<20} {:<5} {:>12.0} {:>16.0} {:>9} {:>8}   RSS now {:.0} MiB",
                t.name,
                label,
                p.spans_per_s,
                p.spans_per_cpu_s,
                p.refused,
                p.failed,
                status_kib(t.child.id(), "VmRSS:") as f64 / 1024.0
            );
            per_cpu.insert((t.name, label), p.spans_per_cpu_s);
            if t.data_dir.is_some() {
                saturated.push(p.spans_per_s);
            }
        }
    }
    if targets.len() > 1 {
        let hoptrace_max = saturated.iter().copied().fold(f64::INFINITY, f64::min);
        equal_load(&targets, hoptrace_max, secs, &tpl, &seq).await;
    }
    for t in targets {
        let pid = t.child.id();
        println!("{:<20} peak RSS {:.1} MiB", t.name, status_kib(pid, "VmHWM:") as f64 / 1024.0);
        if let Some(data_dir) = t.data_dir.clone() {
            // Overload: three times the senders, RSS sampled as it runs.
            let rss_before = status_kib(pid, "VmRSS:");
            let over = {
                let (tpl, seq, addr) = (tpl.clone(), seq.clone(), t.grpc.clone());
                tokio::spawn(async move { load(Proto::Grpc, &addr, concurrency * 3, duration * 2, tpl, seq).await })
            };
            let mut samples = Vec::new();
            while !over.is_finished() {
                tokio::time::sleep(Duration::from_millis(250)).await;
                samples.push(status_kib(pid, "VmRSS:"));
            }
            let counts = over.await.unwrap();
            let half = samples.len() / 2;
            let first_half = samples[..half.max(1)].iter().copied().max().unwrap_or(0);
            let second_half = samples[half..].iter().copied().max().unwrap_or(0);
            println!(
                "{:<20} overload 3x senders: RSS before {:.1} MiB, max first half {:.1} MiB, max second half {:.1} MiB, refused {} batches",
                t.name,
                rss_before as f64 / 1024.0,
                first_half as f64 / 1024.0,
                second_half as f64 / 1024.0,
                counts.refused.load(Relaxed)
            );
            let name = t.name;
            stop(t);
            let paths = hoptrace_store::read::segment_paths(&data_dir, hoptrace_store::TimeRange::all()).unwrap();
            let bytes: u64 = paths.iter().map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)).sum();
            let stored = hoptrace_store::scan(&data_dir, hoptrace_store::TimeRange::all())
                .unwrap()
                .select([polars::prelude::len()])
                .collect()
                .unwrap();
            let stored = stored.column("len").unwrap().u32().unwrap().get(0).unwrap_or(0) as f64;
            println!(
                "{:<20} stored {} spans in {} segments: {:.1} bytes/span",
                name,
                stored,
                paths.len(),
                bytes as f64 / stored.max(1.0)
            );
        } else {
            stop(t);
        }
    }
    for label in ["grpc", "http"] {
        for other in ["rotel (blackhole)", "hoptrace + uploads"] {
            if let (Some(h), Some(r)) = (per_cpu.get(&("hoptrace", label)), per_cpu.get(&(other, label))) {
                println!("saturated ratio hoptrace / {other} spans per CPU-second over {label}: {:.2}", h / r);
            }
        }
    }
    drop(seaweed);
}

/// Both targets at the same offered load, alternating, round after round: CPU-seconds per million spans for
/// each and their ratio, with the spread over the rounds. The load points: `BENCH_RATES` (spans/s, comma
/// separated), by default 100,000 and 80 % of the slowest saturated rate hoptrace reached above.
async fn equal_load(targets: &[Target], hoptrace_max: f64, secs: u64, tpl: &Arc<Template>, seq: &Arc<AtomicU64>) {
    let rates: Vec<f64> = match std::env::var("BENCH_RATES") {
        Ok(list) => list.split(',').filter_map(|r| r.trim().parse().ok()).collect(),
        Err(_) => vec![100_000.0f64.min(hoptrace_max * 0.5), (hoptrace_max * 0.8 / 1000.0).round() * 1000.0],
    };
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(3);
    let senders = 4;
    println!(
        "\nequal offered load: {rounds} rounds, targets alternating, {senders} senders, {secs} s of spans per phase"
    );
    // (rate index, proto, target) → CPU-seconds per million spans, round by round.
    let mut cpu: std::collections::BTreeMap<(usize, &str, &str), Vec<f64>> = Default::default();
    for round in 0..rounds {
        for (r, &rate) in rates.iter().enumerate() {
            for proto in [Proto::Http, Proto::Grpc] {
                let label = if proto == Proto::Grpc { "grpc" } else { "http" };
                let order: Vec<&Target> =
                    if round % 2 == 0 { targets.iter().collect() } else { targets.iter().rev().collect() };
                for t in order {
                    let addr = if proto == Proto::Grpc { &t.grpc } else { &t.http };
                    let spans = (rate * secs as f64) as u64;
                    let cpu0 = cpu_seconds(t.child.id());
                    let (counts, wall) = offer(proto, addr, senders, rate, spans, tpl.clone(), seq.clone()).await;
                    let used = cpu_seconds(t.child.id()) - cpu0;
                    let ok = counts.ok_spans.load(Relaxed);
                    let per_million = used / (ok.max(1) as f64 / 1e6);
                    println!(
                        "  round {} {:>7.0} spans/s {label:<4} {:<18} {:>8.3} CPU-s per M spans (offered {:.0}/s, got {:.0}/s, {} failed)",
                        round + 1,
                        rate,
                        t.name,
                        per_million,
                        rate,
                        ok as f64 / wall,
                        counts.failed.load(Relaxed)
                    );
                    cpu.entry((r, label, t.name)).or_default().push(per_million);
                }
            }
        }
    }
    let other = targets[1].name;
    println!("\nCPU-seconds per million spans, median [min–max] over {rounds} rounds; ratio {other} / hoptrace per round (> 1: hoptrace cheaper)");
    for (r, &rate) in rates.iter().enumerate() {
        for label in ["http", "grpc"] {
            let (Some(h), Some(o)) = (cpu.get(&(r, label, "hoptrace")), cpu.get(&(r, label, other))) else {
                continue;
            };
            let mut ratios: Vec<f64> = o.iter().zip(h).map(|(o, h)| o / h).collect();
            let (hm, hl, hh) = spread(&mut h.clone());
            let (om, ol, oh) = spread(&mut o.clone());
            let (rm, rl, rh) = spread(&mut ratios);
            println!(
                "  {rate:>7.0} spans/s {label:<4}  hoptrace {hm:.3} [{hl:.3}–{hh:.3}]  {other} {om:.3} [{ol:.3}–{oh:.3}]  ratio {rm:.3} [{rl:.3}–{rh:.3}]"
            );
        }
    }
}

/// Instructions per span under callgrind (repeatable whatever else the machine runs): the collector is
/// started under `valgrind --tool=callgrind` twice, sent 20 and then 60 batches over HTTP one at a time and
/// stopped (its shutdown flushes them to Parquet); the difference of the two totals over the 40,000 spans
/// between them leaves start-up and shutdown out.
async fn callgrind(tpl: &Arc<Template>, seq: &Arc<AtomicU64>) {
    let bin: PathBuf = std::env::var_os("BENCH_COLLECTOR")
        .map(PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_collector").into());
    let mut totals = Vec::new();
    for batches in [20u64, 60] {
        let dir = tempfile::tempdir().unwrap();
        // BENCH_CALLGRIND_OUT=dir keeps callgrind's files there, for callgrind_annotate.
        let out = match std::env::var_os("BENCH_CALLGRIND_OUT") {
            Some(keep) => PathBuf::from(keep).join(format!("callgrind.{batches}.out")),
            None => dir.path().join("callgrind.out"),
        };
        let (g, h, q) = (free_port(), free_port(), free_port());
        let mut child = Command::new("valgrind")
            .args(["--tool=callgrind", &format!("--callgrind-out-file={}", out.display())])
            .arg(&bin)
            .args(["--data-dir", dir.path().join("data").to_str().unwrap()])
            .args(["--grpc-listen", &format!("127.0.0.1:{g}"), "--http-listen", &format!("127.0.0.1:{h}")])
            .args(["--query-listen", &format!("127.0.0.1:{q}")])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("valgrind (apt install valgrind)");
        // Ready, not only listening: the collector answers "starting" until its store is open.
        let health = format!("http://127.0.0.1:{h}/health");
        for _ in 0..2400 {
            if reqwest::get(&health).await.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (counts, _) = offer(
            Proto::Http,
            &format!("127.0.0.1:{h}"),
            1,
            1e9,
            batches * SPANS_PER_BATCH as u64,
            tpl.clone(),
            seq.clone(),
        )
        .await;
        assert_eq!(counts.ok_spans.load(Relaxed), batches * SPANS_PER_BATCH as u64, "every batch accepted");
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        child.wait().unwrap();
        let text = std::fs::read_to_string(&out).expect("callgrind's output");
        let total: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("totals:").or_else(|| l.strip_prefix("summary:")))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("a totals line");
        println!("{batches} batches ({} spans): {total} instructions", batches * SPANS_PER_BATCH as u64);
        totals.push(total);
    }
    let per_span = (totals[1] - totals[0]) as f64 / (40 * SPANS_PER_BATCH) as f64;
    println!("instructions per span (durable, HTTP, one sender): {per_span:.0}");
}
