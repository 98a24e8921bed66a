//! TLS: with a certificate, OTLP/HTTP, OTLP/gRPC and the Jaeger query API answer only over TLS, to clients
//! that trust its CA; forwarding reaches an `https://` collector with its token. Certificates are made by
//! `openssl` (a CA and a leaf for localhost / 127.0.0.1) in a scratch directory.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use hoptrace_collector::{tls, Collector, Config};
use hoptrace_otlp::EXPORT_PATH;
use hoptrace_testkit::grpc::RawCodec;
use http_body_util::{BodyExt, Full};
use prost::Message;

struct Certificates {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// A CA, and a certificate it signed for `localhost` and `127.0.0.1`.
fn certificates() -> Certificates {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir.path()).output().expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    openssl(
        &[
            &["req", "-x509"],
            &ec[..],
            &["-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=hoptrace test CA", "-days", "2"],
        ]
        .concat(),
    );
    openssl(&[&["req"], &ec[..], &["-keyout", "key.pem", "-out", "leaf.csr", "-subj", "/CN=localhost"]].concat());
    std::fs::write(path("leaf.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
    ]);
    Certificates { ca: path("ca.pem"), cert: path("cert.pem"), key: path("key.pem"), _dir: dir }
}

/// A collector serving over TLS with `certs`, admitting only `tokens`.
async fn start_secured(certs: &Certificates, tokens: &tempfile::NamedTempFile) -> Running {
    start_with(|c| {
        c.tls.cert_file = Some(certs.cert.clone());
        c.tls.key_file = Some(certs.key.clone());
        c.auth.token_file = Some(tokens.path().to_owned());
    })
    .await
}

type Client = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

/// An HTTPS client trusting `ca` (the system's roots when `None`), the way the forwarder makes one.
fn https_client(ca: Option<&Path>) -> Client {
    let tls = tls::client_config(tls::roots(ca).unwrap()).unwrap();
    let connector = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_only().enable_http1().build();
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector)
}

async fn request(
    client: &Client,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> Result<(u16, Vec<u8>), String> {
    let mut request = http::Request::builder().method(method).uri(url).header("content-type", "application/x-protobuf");
    if let Some(t) = token {
        request = request.header("authorization", format!("Bearer {t}"));
    }
    let response =
        client.request(request.body(Full::new(Bytes::from(body))).unwrap()).await.map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    Ok((status, response.into_body().collect().await.unwrap().to_bytes().to_vec()))
}

/// One OTLP/gRPC export over TLS, trusting `ca`, with ALPN h2 as gRPC clients offer it.
async fn grpc_export(addr: std::net::SocketAddr, ca: &Path, token: &str, body: Bytes) -> Result<(), tonic::Status> {
    let mut tls = tls::client_config(tls::roots(Some(ca)).unwrap()).unwrap();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let channel = tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_uri| {
            let connector = connector.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect(addr).await?;
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(body);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    grpc.unary(request, http::uri::PathAndQuery::from_static(EXPORT_PATH), RawCodec).await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listener_speaks_tls_to_a_client_that_trusts_its_ca() {
    let certs = certificates();
    let tokens = token_file("secret\n");
    let running = start_secured(&certs, &tokens).await;
    let http_url = format!("https://localhost:{}/v1/traces", running.collector.http_addr.port());
    let client = https_client(Some(&certs.ca));

    let (status, _) =
        request(&client, "POST", &http_url, Some("secret"), spans(1, 0, 10).encode_to_vec()).await.unwrap();
    assert_eq!(status, 200, "OTLP/HTTP over TLS");
    let (status, _) = request(&client, "POST", &http_url, None, spans(9, 0, 10).encode_to_vec()).await.unwrap();
    assert_eq!(status, 401, "TLS does not stand in for the token");
    grpc_export(running.collector.grpc_addr, &certs.ca, "secret", Bytes::from(spans(2, 0, 5).encode_to_vec()))
        .await
        .expect("OTLP/gRPC over TLS");

    // The same address in clear text, or a client that does not trust the CA, gets no answer at all.
    let plain = reqwest::Client::new()
        .post(format!("http://{}/v1/traces", running.collector.http_addr))
        .header("content-type", "application/x-protobuf")
        .body(spans(3, 0, 1).encode_to_vec())
        .send()
        .await;
    assert!(plain.is_err(), "clear text is not answered: {plain:?}");
    let untrusted =
        request(&https_client(None), "POST", &http_url, Some("secret"), spans(4, 0, 1).encode_to_vec()).await;
    let error = untrusted.unwrap_err();
    assert!(error.contains("UnknownIssuer") || error.contains("certificate"), "{error}");

    // The query API, over TLS too; the spans become visible there once flushed.
    let query_url = format!("https://localhost:{}/api/v3/services", running.collector.query_addr.port());
    let mut services = serde_json::Value::Null;
    for _ in 0..100 {
        let (status, body) = request(&client, "GET", &query_url, Some("secret"), Vec::new()).await.unwrap();
        assert_eq!(status, 200);
        services = serde_json::from_slice(&body).unwrap();
        if services["services"].as_array().is_some_and(|s| !s.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(services, serde_json::json!({ "services": ["svc"] }));

    let (frame, _dir) = running.stop_and_read().await;
    assert_eq!(frame.height(), 15, "the 10 and 5 admitted spans, nothing of the others");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_reaches_an_https_collector_with_its_token() {
    let certs = certificates();
    let tokens = token_file("b-token\n");
    let b = start_secured(&certs, &tokens).await;
    let b_port = b.collector.http_addr.port();
    let a = start_with(|c| {
        c.forward.endpoint = Some(format!("https://localhost:{b_port}"));
        c.forward.ca_file = Some(certs.ca.clone());
        c.forward.token_file = Some(tokens.path().to_owned());
    })
    .await;
    let resp = reqwest::Client::new()
        .post(a.http_url("/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(spans(5, 0, 20).encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let stats = Arc::clone(&a.collector.pipeline.forwarder().unwrap().stats);
    for _ in 0..200 {
        if stats.spans_forwarded.load(Relaxed) == 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stats.spans_forwarded.load(Relaxed), 20, "B acknowledged everything A forwarded");
    assert_eq!(stats.spans_failed.load(Relaxed), 0);
    a.collector.stop().await.unwrap();
    let (b_spans, _dir) = b.stop_and_read().await;
    assert_eq!(b_spans.height(), 20);
}

#[tokio::test]
async fn a_bad_certificate_or_key_stops_the_start_with_the_file_named() {
    let certs = certificates();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::ephemeral(dir.path());
    config.tls.cert_file = Some(dir.path().join("missing.pem"));
    config.tls.key_file = Some(certs.key.clone());
    let error = Collector::start(config.clone()).await.err().unwrap().to_string();
    assert!(error.contains("missing.pem"), "{error}");
    // A key that is not the certificate's.
    config.tls.cert_file = Some(certs.ca.clone());
    let error = Collector::start(config).await.err().unwrap().to_string();
    assert!(error.contains("ca.pem") && error.contains("key.pem"), "{error}");
}
