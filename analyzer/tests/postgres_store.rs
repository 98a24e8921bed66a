//! The analyzer on the PostgreSQL store: the same synthetic spans written to a data directory and to
//! PostgreSQL give the same report — every category, hop, percentile, skew correction and critical path —
//! and the same correlation verdict, through the library and through `--store postgres://…`.

use std::process::Command;

use hoptrace_analyzer::synthetic::{self, Scenario};
use hoptrace_analyzer::{analyze_with, report, Config, Filters};
use hoptrace_store::PgStore;
use hoptrace_store::{segment, Location, TimeRange};
use hoptrace_testkit::ScratchDb;

const ANALYZER: &str = env!("CARGO_BIN_EXE_analyzer");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_is_identical_on_both_stores() {
    let scratch = ScratchDb::create().await;
    let url = scratch.url.clone();

    let dir = tempfile::tempdir().unwrap();
    let scenario = Scenario { tasks: 300, segment_spans: 3_000, ..Scenario::default() };
    let (rows, _) = synthetic::generate(&scenario, None).unwrap();
    // The same rows into both stores: segments of 3,000 by hour, and PostgreSQL by COPY.
    for (n, part) in rows.chunks(3_000).enumerate() {
        let n = n as u64 + 1;
        let hour = segment::Hour::of_nanos(part[0].start_time_unix_nano);
        assert!(
            part.iter().all(|r| segment::Hour::of_nanos(r.start_time_unix_nano) == hour),
            "the synthetic run fits one hour"
        );
        let mut frame = hoptrace_store::to_frame(part).unwrap();
        segment::write(dir.path(), hour, n, n, &mut frame, 128 * 1024).unwrap();
    }
    let db = PgStore::connect(&url).await.unwrap();
    for chunk in rows.chunks(2_000) {
        db.write(chunk).await.unwrap();
    }
    db.close().await;

    let config = Config::built_in();
    let filters = Filters { run_id: Some("synthetic".into()), ..Filters::default() };
    let (embedded, postgres) = (Location::Dir(dir.path().to_owned()), Location::Postgres(url.clone()));
    let reports = tokio::task::spawn_blocking(move || {
        [embedded, postgres].map(|store| {
            let mut report = analyze_with(
                store,
                TimeRange::all(),
                &config,
                &filters,
                hoptrace_analyzer::Extras { details: true, ..Default::default() },
            )
            .unwrap();
            report.store = String::new();
            report::json(&report)
        })
    })
    .await
    .unwrap();
    assert!(reports[0].contains("\"traces\": 300"), "{}", &reports[0][..400]);
    if reports[1] != reports[0] {
        let lines = |r: &str| r.lines().map(str::to_owned).collect::<Vec<_>>();
        let (a, b) = (lines(&reports[0]), lines(&reports[1]));
        let first = a.iter().zip(&b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
        let context = |l: &[String]| l[first.saturating_sub(12)..(first + 4).min(l.len())].join("\n");
        panic!(
            "the reports differ from line {first}:\n--- data directory\n{}\n--- PostgreSQL\n{}",
            context(&a),
            context(&b)
        );
    }

    // The command line takes the URL as --store, for every command.
    let cli = |args: &[&str]| {
        Command::new(ANALYZER).args(args).args(["--store", &url, "--run", "synthetic"]).output().unwrap()
    };
    let out = cli(&["report", "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["traces"], 300);
    assert!(json["store"].as_str().unwrap().starts_with("postgres://"), "{}", json["store"]);
    let validate = cli(&["validate", "--settle", "0s"]);
    assert_eq!(validate.status.code(), Some(0), "{}", String::from_utf8_lossy(&validate.stdout));
}
