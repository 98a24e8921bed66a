//! The collector with `--store postgres://…`: OTLP requests are acknowledged once committed to PostgreSQL,
//! retries are stored once, and the Jaeger query API reads the traces back from the database.

mod common;

use hoptrace_store::PgStore;
use hoptrace_store::TimeRange;
use hoptrace_testkit::ScratchDb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_go_to_postgres_and_the_query_api_reads_them_there() {
    let scratch = ScratchDb::create().await;
    let url = scratch.url.clone();

    let db_url = url.clone();
    let running = common::start_with(move |c| c.storage.postgres = Some(db_url)).await;
    let client = reqwest::Client::new();
    let body = std::fs::read(format!("{}/tests/requests/two_traces.json", env!("CARGO_MANIFEST_DIR"))).unwrap();
    for _ in 0..2 {
        let resp = client
            .post(running.http_url("/v1/traces"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "acknowledged, the second time as a retry");
    }
    let health = client.get(running.http_url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    // Committed when acknowledged: readable at once, each span once.
    let db = PgStore::connect(&url).await.unwrap();
    let rows = db.read(TimeRange::all()).await.unwrap();
    db.close().await;
    assert_eq!(rows.len(), 5);
    let query = format!("http://{}", running.collector.query_addr);
    let get = |path: String| {
        let client = client.clone();
        async move {
            let bytes = client.get(path).send().await.unwrap().bytes().await.unwrap();
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()
        }
    };
    let trace = get(format!("{query}/api/traces/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa01")).await;
    assert_eq!(trace["data"][0]["spans"].as_array().unwrap().len(), 3);
    let services = get(format!("{query}/api/services")).await;
    assert_eq!(services["data"], serde_json::json!(["orchestration", "worker"]));
    running.collector.stop().await.unwrap();
}
