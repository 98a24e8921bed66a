//! The store end to end, without the collector: flush, read back by time range, dedup, compaction.

use std::time::Duration;

use hoptrace_store::{scan, schema, segment, Batch, SpanStore, StoreConfig, TimeRange};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use polars::prelude::*;
use prost::Message;

const HOUR: u64 = 3_600_000_000_000;
const BASE: u64 = 490_000 * HOUR; // an hour long over, so compaction runs

fn batch(first: u64, n: u64, start: u64) -> Batch {
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: (first..first + n)
                    .map(|i| Span {
                        trace_id: [7; 16].to_vec(),
                        span_id: (i + 1).to_be_bytes().to_vec(),
                        name: format!("s{i}"),
                        start_time_unix_nano: start + i,
                        end_time_unix_nano: start + i + 10,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    Batch::scan(request.encode_to_vec().into()).unwrap().0
}

fn count(dir: &std::path::Path, range: TimeRange) -> usize {
    scan(dir, range).unwrap().collect().unwrap().height()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)] // polars blocks in place: not on a current-thread runtime
async fn ranges_prune_by_hour_duplicates_drop_and_compaction_keeps_every_span_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StoreConfig::new(dir.path());
    config.compaction_min_segments = 3;
    config.flush_interval = Duration::from_secs(3600);
    let (store, _) = SpanStore::open(config.clone()).unwrap();
    for k in 0..4u64 {
        let appended = store.append(batch(k * 10, 10, BASE)).await.unwrap();
        assert_eq!(appended.stored, 10);
        store.flush().unwrap();
    }
    // A retry of the first batch and spans of the next hour.
    assert_eq!(store.append(batch(0, 10, BASE)).await.unwrap().duplicates, 10);
    store.append(batch(100, 5, BASE + HOUR)).await.unwrap();
    store.shutdown().unwrap();

    let first_hour = segment::Hour::of_nanos(BASE);
    let live = segment::live_segments(dir.path(), first_hour).unwrap();
    assert_eq!(
        live.iter().map(|s| (s.lo, s.hi)).collect::<Vec<_>>(),
        vec![(1, 3), (4, 4)],
        "flushes 1..3 compacted, flush 4 waiting for more"
    );
    assert_eq!(count(dir.path(), TimeRange::all()), 45);
    let hour = |h: u64| TimeRange { start_unix_nano: BASE + h * HOUR, end_unix_nano: BASE + (h + 1) * HOUR };
    assert_eq!(count(dir.path(), hour(0)), 40);
    assert_eq!(count(dir.path(), hour(1)), 5);
    assert_eq!(count(dir.path(), TimeRange { start_unix_nano: BASE + 5, end_unix_nano: BASE + 15 }), 10);
    assert_eq!(hoptrace_store::read::segment_paths(dir.path(), hour(1)).unwrap().len(), 1, "only that hour is opened");

    // After a restart the retry is still recognised, and nothing is replayed twice.
    let (store, recovery) = SpanStore::open(config).unwrap();
    assert_eq!(recovery.replayed_spans, 0, "a clean shutdown leaves nothing to replay");
    assert_eq!(store.append(batch(30, 10, BASE)).await.unwrap().duplicates, 10);
    store.shutdown().unwrap();
    let df = scan(dir.path(), TimeRange::all()).unwrap().collect().unwrap();
    let unique = df
        .clone()
        .lazy()
        .unique(Some(cols([schema::TRACE_ID, schema::SPAN_ID])), UniqueKeepStrategy::Any)
        .collect()
        .unwrap();
    assert_eq!((df.height(), unique.height()), (45, 45));
}

#[test]
fn empty_store_scans_to_an_empty_frame_with_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let df = scan(dir.path(), TimeRange::all()).unwrap().collect().unwrap();
    assert_eq!(df.height(), 0);
    assert!(df.column(schema::ATTRIBUTES.values).is_ok());
}
