//! Collectors sharing one S3-compatible bucket (a SeaweedFS server of the test's own): every acknowledged
//! span is readable from the bucket exactly once — with two collectors writing at once, with a collector
//! SIGKILLed mid-upload and restarted, and with the object store restarted under load.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hoptrace_store::{Bucket, Location, TimeRange};
use hoptrace_testkit::seaweed::Seaweed;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

const HOUR: u64 = 3_600_000_000_000;

/// Frequent flushes and eager compaction, so uploads, compactions and removals all happen in a test's time.
const CONFIG: &str = "[storage]\nflush_interval = \"50ms\"\ncompaction_min_segments = 3\n";

struct Setup {
    seaweed: Seaweed,
    dir: tempfile::TempDir,
    url: String,
    config: std::path::PathBuf,
}

fn setup(bucket: &str) -> Setup {
    let seaweed = Seaweed::start();
    seaweed.create_bucket(bucket);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("collector.toml");
    std::fs::write(&config, CONFIG).unwrap();
    Setup { seaweed, url: format!("s3://{bucket}/prod"), config, dir }
}

impl Setup {
    fn collector(&self, name: &str) -> common::Proc {
        let data = self.dir.path().join(name);
        let mut env = self.seaweed.env();
        env.push(("HOPTRACE_CACHE", self.dir.path().join(format!("{name}-cache")).to_str().unwrap().to_owned()));
        common::spawn(&data, &self.config, &["--object-store".into(), self.url.clone()], &env)
    }

    fn bucket(&self) -> Bucket {
        let mut settings = self.seaweed.env();
        settings.push(("HOPTRACE_CACHE", self.dir.path().join("cache").to_str().unwrap().to_owned()));
        Bucket::with_settings(&self.url, &settings).unwrap()
    }

    /// (trace id, span id) of every span a reader of the bucket sees, sorted.
    fn keys_in_bucket(&self) -> Vec<(String, String)> {
        let frame = Location::Bucket(self.bucket()).scan(TimeRange::all()).unwrap().collect().unwrap();
        common::keys(&frame)
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// Twenty spans of collector `c`'s batch `n`: in a settled hour (five hours ago, removed locally once
/// uploaded), the previous hour (compacted) and the current one. Traces are shared between collectors.
fn batch(c: u8, n: u64, now: u64) -> (ExportTraceServiceRequest, Vec<(String, String)>) {
    let mut request = common::spans((n % 50 + 1) as u8, 0, 20);
    let spans = &mut request.resource_spans[0].scope_spans[0].spans;
    let mut keys = Vec::new();
    for (i, span) in spans.iter_mut().enumerate() {
        span.span_id = ((c as u64) << 56 | (n * 100 + i as u64 + 1)).to_be_bytes().to_vec();
        span.start_time_unix_nano = now - [5 * HOUR, HOUR, 0][i % 3] + i as u64;
        span.end_time_unix_nano = span.start_time_unix_nano + 1_000;
        keys.push((hex::encode(&span.trace_id), hex::encode(&span.span_id)));
    }
    (request, keys)
}

/// Every acknowledged span is in `seen` exactly once.
fn assert_exactly_once(seen: &[(String, String)], acknowledged: &BTreeSet<(String, String)>) {
    let unique: BTreeSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no span is readable twice");
    let missing: Vec<_> = acknowledged.difference(&unique).collect();
    assert!(missing.is_empty(), "{} acknowledged spans are not in the bucket, e.g. {:?}", missing.len(), missing[0]);
}

/// Waits until `metric` of `proc` reaches `at_least`.
async fn wait_for(proc: &common::Proc, metric: &str, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while proc.metric(metric).await < at_least {
        assert!(Instant::now() < deadline, "{metric} stayed below {at_least}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends `batches` of collector `c` one after another; the keys of those acknowledged.
async fn send(proc: &common::Proc, c: u8, batches: std::ops::Range<u64>) -> BTreeSet<(String, String)> {
    let client = reqwest::Client::new();
    let mut acknowledged = BTreeSet::new();
    let now = now();
    for n in batches {
        let (request, keys) = batch(c, n, now);
        if proc.send(&client, &request).await {
            acknowledged.extend(keys);
        }
    }
    acknowledged
}

fn local_segments(data: &Path) -> Vec<hoptrace_store::segment::Segment> {
    let hours = hoptrace_store::segment::partitions(data).unwrap();
    hours.into_iter().flat_map(|h| hoptrace_store::segment::live_segments(data, h).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_collectors_write_one_bucket_and_every_span_is_read_once() {
    let setup = setup("two-collectors");
    let (a, b) = (setup.collector("a"), setup.collector("b"));
    a.wait_healthy().await;
    b.wait_healthy().await;
    let (sent_a, sent_b) = tokio::join!(send(&a, 1, 0..60), send(&b, 2, 0..60));
    assert_eq!(sent_a.len() + sent_b.len(), 2 * 60 * 20, "every batch is acknowledged");
    wait_for(&a, "hoptrace_store_segments_uploaded_total", 3).await;
    // The settled hour's local copies go once uploaded (the flusher removes them after its next flush).
    let more = send(&a, 1, 60..70).await;
    wait_for(&a, "hoptrace_store_segments_removed_locally_total", 1).await;
    // Either collector's query API answers for both, from the bucket, within moments of the acknowledgement.
    let trace = hex::encode([1u8; 16]);
    let written = |sent: &BTreeSet<(String, String)>| sent.iter().filter(|(t, _)| *t == trace).count();
    let expected = written(&sent_a) + written(&sent_b) + written(&more);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let url = format!("{}/api/traces/{trace}", b.query);
        let body: serde_json::Value = reqwest::get(url).await.unwrap().json().await.unwrap();
        let spans = body["data"][0]["spans"].as_array().map_or(0, Vec::len);
        if spans == expected {
            break;
        }
        assert!(Instant::now() < deadline, "the query API shows {spans} of the trace's {expected} spans");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    a.terminate();
    b.terminate();

    let acknowledged: BTreeSet<_> = sent_a.into_iter().chain(sent_b).chain(more).collect();
    assert_exactly_once(&setup.keys_in_bucket(), &acknowledged);

    // The layout: each collector under its own id in every partition; after a clean stop every local
    // segment is in the bucket too.
    let bucket = setup.bucket();
    let id = |name: &str| std::fs::read_to_string(setup.dir.path().join(name).join("COLLECTOR_ID")).unwrap();
    let ids: BTreeSet<String> = [id("a").trim().to_owned(), id("b").trim().to_owned()].into();
    let partitions = bucket.partitions().unwrap();
    assert_eq!(partitions.len(), 3, "three hours of spans");
    for hour in partitions {
        let stored = bucket.segments(hour, None).unwrap();
        let writers: BTreeSet<String> = stored.iter().map(|s| s.collector.clone()).collect();
        assert_eq!(writers, ids, "both collectors wrote partition {}", hour.dir_name());
    }
    for name in ["a", "b"] {
        let collector = id(name).trim().to_owned();
        for segment in local_segments(&setup.dir.path().join(name)) {
            let stored = bucket.segments(segment.hour, Some(&collector)).unwrap();
            assert!(
                stored.iter().any(|s| (s.lo, s.hi, s.bytes) == (segment.lo, segment.hi, segment.bytes)),
                "{} is not in the bucket",
                segment.path.display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_killed_mid_upload_and_restarted_loses_nothing() {
    let setup = setup("killed-collector");
    let mut acknowledged = BTreeSet::new();
    for round in 0..3u64 {
        let proc = setup.collector("a");
        proc.wait_healthy().await;
        acknowledged.extend(send(&proc, 1, round * 100..round * 100 + 40).await);
        // Uploads run a flush behind ingest: the kill lands with segments written, some uploaded, some
        // on their way.
        wait_for(&proc, "hoptrace_store_segments_uploaded_total", 1).await;
        acknowledged.extend(send(&proc, 1, round * 100 + 40..round * 100 + 50).await);
        proc.kill();
    }
    let proc = setup.collector("a");
    proc.wait_healthy().await;
    proc.terminate();
    assert_eq!(acknowledged.len(), 3 * 50 * 20);
    assert_exactly_once(&setup.keys_in_bucket(), &acknowledged);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_object_store_restarted_under_load_loses_nothing() {
    let mut setup = setup("restarted-server");
    let proc = setup.collector("a");
    proc.wait_healthy().await;
    let mut acknowledged = send(&proc, 1, 0..20).await;
    setup.seaweed.kill();
    // Ingest goes on while the bucket is away: spans are durable locally, uploads wait and retry.
    let down = Instant::now();
    let mut n = 20;
    while down.elapsed() < Duration::from_secs(3) {
        acknowledged.extend(send(&proc, 1, n..n + 5).await);
        n += 5;
    }
    wait_for(&proc, "hoptrace_store_upload_errors_total", 1).await;
    assert!(proc.metric("hoptrace_store_upload_backlog_segments").await > 0, "segments wait for the bucket");
    setup.seaweed.start_again();
    acknowledged.extend(send(&proc, 1, n..n + 20).await);
    proc.terminate();
    assert_eq!(acknowledged.len() as u64, (n + 20) * 20, "ingest never waited for the bucket");
    assert_exactly_once(&setup.keys_in_bucket(), &acknowledged);
}
