//! OTLP/gRPC bad input: each mistake gets the status the OTLP specification prescribes, and the collector
//! keeps serving without losing what it accepted.

mod common;

use bytes::Bytes;
use common::*;
use hoptrace_collector::otlp::raw::{RawCodec, EXPORT_PATH};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::Code;

fn spans(trace: u8, n: u64) -> Bytes {
    let spans = (0..n)
        .map(|i| Span {
            trace_id: vec![trace; 16],
            span_id: (i + 1).to_be_bytes().to_vec(),
            name: format!("span-{i}"),
            start_time_unix_nano: 1_795_986_538_000_000_000 + i,
            end_time_unix_nano: 1_795_986_538_000_100_000 + i,
            ..Default::default()
        })
        .collect();
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    };
    Bytes::from(request.encode_to_vec())
}

async fn export(url: &str, body: Bytes, gzip: bool) -> Result<(), tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned()).unwrap().connect().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    if gzip {
        grpc = grpc.send_compressed(CompressionEncoding::Gzip);
    }
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static(EXPORT_PATH);
    grpc.unary(tonic::Request::new(body), path, RawCodec).await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_bad_input_gets_its_status_and_loses_nothing_accepted() {
    let running = start().await;
    let url = running.grpc_url();

    export(&url, spans(1, 10), false).await.expect("valid request accepted");

    let garbage = export(&url, Bytes::from_static(&[0xff, 0xff, 0xff, 0x0f, 0x01]), false).await.unwrap_err();
    assert_eq!(garbage.code(), Code::InvalidArgument, "{garbage:?}");

    let oversize = export(&url, Bytes::from(vec![0u8; 5 << 20]), false).await.unwrap_err();
    assert_eq!(oversize.code(), Code::ResourceExhausted, "{oversize:?}");

    let bomb = export(&url, Bytes::from(vec![0u8; 64 << 20]), true).await.unwrap_err();
    assert_eq!(bomb.code(), Code::ResourceExhausted, "a gzip bomb is refused after 4 MiB of output: {bomb:?}");

    export(&url, Bytes::new(), false).await.expect("an empty request is valid");
    export(&url, spans(1, 10), false).await.expect("a retried batch is acknowledged");
    export(&url, spans(2, 5), true).await.expect("still serving after all of the above");

    let metrics = reqwest::get(running.http_url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("hoptrace_collector_requests_invalid_total{transport=\"grpc\"} 1"), "{metrics}");
    assert!(metrics.contains("hoptrace_collector_requests_too_large_total{transport=\"grpc\"} 2"), "{metrics}");

    let (df, _dir) = running.stop_and_read().await;
    assert_eq!(df.height(), 15, "10 + 5 spans, the retried 10 stored once");
}
