//! OTLP/gRPC bad input: each mistake gets the status the OTLP specification prescribes, and the collector
//! keeps serving without losing what it accepted.

mod common;

use bytes::Bytes;
use common::*;
use hoptrace_otlp::EXPORT_PATH;
use hoptrace_testkit::grpc::RawCodec;
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::Code;

fn encoded(trace: u8, n: u64) -> Bytes {
    Bytes::from(spans(trace, 0, n).encode_to_vec())
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

    export(&url, encoded(1, 10), false).await.expect("valid request accepted");

    let garbage = export(&url, Bytes::from_static(&[0xff, 0xff, 0xff, 0x0f, 0x01]), false).await.unwrap_err();
    assert_eq!(garbage.code(), Code::InvalidArgument, "{garbage:?}");

    let oversize = export(&url, Bytes::from(vec![0u8; 5 << 20]), false).await.unwrap_err();
    assert_eq!(oversize.code(), Code::ResourceExhausted, "{oversize:?}");

    let bomb = export(&url, Bytes::from(vec![0u8; 64 << 20]), true).await.unwrap_err();
    assert_eq!(bomb.code(), Code::ResourceExhausted, "a gzip bomb is refused after 4 MiB of output: {bomb:?}");

    export(&url, Bytes::new(), false).await.expect("an empty request is valid");
    export(&url, encoded(1, 10), false).await.expect("a retried batch is acknowledged");
    export(&url, encoded(2, 5), true).await.expect("still serving after all of the above");

    let metrics = reqwest::get(running.http_url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("hoptrace_collector_requests_invalid_total{transport=\"grpc\"} 1"), "{metrics}");
    assert!(metrics.contains("hoptrace_collector_requests_too_large_total{transport=\"grpc\"} 2"), "{metrics}");

    let (df, _dir) = running.stop_and_read().await;
    assert_eq!(df.height(), 15, "10 + 5 spans, the retried 10 stored once");
}
