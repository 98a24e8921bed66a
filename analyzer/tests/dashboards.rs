//! The dashboards on real PostgreSQL: `analyzer export` writes a synthetic run's per-hop samples, targets
//! and correlation check (once: a second export adds no sample twice), and every query of the Grafana
//! dashboard — each panel's and each variable's — runs with its macros expanded as Grafana expands them and
//! returns rows. The provisioning files parse and name the data sources the panels use.

use std::path::Path;
use std::process::Command;

use hoptrace_analyzer::synthetic::{self, Scenario};
use hoptrace_testkit::ScratchDb;
use serde_json::Value;
use sqlx::{Connection, PgConnection, Row};

const ANALYZER: &str = env!("CARGO_BIN_EXE_analyzer");

fn repo_file(path: &str) -> Value {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    let text = std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()));
    // The provisioning files are YAML written in its JSON form, so one parser reads them all.
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} does not parse: {e}"))
}

fn export(store: &Path, url: &str) -> String {
    let out = Command::new(ANALYZER)
        .args(["export", "--store"])
        .arg(store)
        .args(["--from", "2026-11-29T00:00:00Z", "--to", "2026-11-30T00:00:00Z", "--to-db"])
        .arg(url)
        .output()
        .unwrap();
    assert!(out.status.success(), "export failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Grafana's PostgreSQL macros and the dashboard's variables, expanded for the whole synthetic day.
fn expand(sql: &str, vars: &[(&str, String)]) -> String {
    let (from, to) = ("'2026-11-29T00:00:00Z'::timestamptz", "'2026-11-30T00:00:00Z'::timestamptz");
    let mut out = sql.to_owned();
    // $__timeGroupAlias(col, 'interval') → the bucket start, named "time".
    while let Some(start) = out.find("$__timeGroupAlias(") {
        let end = start + out[start..].find(')').unwrap();
        let args = &out[start + "$__timeGroupAlias(".len()..end];
        let (column, _) = args.split_once(',').unwrap();
        let bucket = format!("to_timestamp(floor(extract(epoch from {}) / 60) * 60) AS \"time\"", column.trim());
        out.replace_range(start..=end, &bucket);
    }
    while let Some(start) = out.find("$__timeFilter(") {
        let end = start + out[start..].find(')').unwrap();
        let column = out[start + "$__timeFilter(".len()..end].trim().to_owned();
        out.replace_range(start..=end, &format!("{column} BETWEEN {from} AND {to}"));
    }
    for (name, value) in vars {
        out = out.replace(&format!("${name}"), value);
    }
    assert!(!out.contains('$'), "unexpanded macro or variable in {out}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_rows_from_an_exported_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("data");
    synthetic::generate(&Scenario { tasks: 200, segment_spans: 5_000, ..Scenario::default() }, Some(&store)).unwrap();
    let db = ScratchDb::create().await;

    let first = export(&store, &db.url);
    assert!(first.starts_with("exported ") && first.contains("200 traces"), "{first}");
    let new: u64 = first.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(new > 1_000, "{first}");
    let again = export(&store, &db.url);
    assert!(again.starts_with("exported 0 new samples"), "a second export adds nothing: {again}");

    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    let count: i64 =
        sqlx::query("SELECT count(*) FROM hoptrace_hop_samples").fetch_one(&mut conn).await.unwrap().get(0);
    assert_eq!(count as u64, new);
    let in_range: u64 = first.split('(').nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    assert_eq!(new, in_range, "every sample of the range is written, none merged with another");
    let checks: i64 =
        sqlx::query("SELECT count(*) FROM hoptrace_correlation").fetch_one(&mut conn).await.unwrap().get(0);
    assert_eq!(checks, 2, "one correlation row per export");
    let target: f64 = sqlx::query(
        "SELECT target_ms FROM hoptrace_hop_targets WHERE category = 'e2e_latency' AND variant = 'linear_3' AND percentile = 'p99'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap()
    .get(0);
    assert_eq!(target, 500.0, "the built-in seed target");

    // The variables, each from its own query: the first category with variants, its first hop and variant.
    let dashboard = repo_file("dashboards/hoptrace.json");
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    let mut vars: Vec<(&str, String)> = Vec::new();
    for variable in variables {
        let name = variable["name"].as_str().unwrap();
        let sql = expand(variable["query"].as_str().unwrap(), &vars);
        let values: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(!values.is_empty(), "variable {name} has no values");
        let chosen = if name == "category" && values.contains(&"worker_execution".to_owned()) {
            "worker_execution".to_owned()
        } else {
            values[0].clone()
        };
        vars.push((name, chosen));
    }
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap();
        for target in panel["targets"].as_array().unwrap() {
            let sql = expand(target["rawSql"].as_str().unwrap(), &vars);
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .fetch_all(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("panel {title:?}: {e}\n{sql}"));
            assert!(!rows.is_empty(), "panel {title:?} query {} returns no rows:\n{sql}", target["refId"]);
        }
    }
    drop(conn);
}

#[test]
fn provisioning_names_the_data_sources_the_dashboard_uses() {
    let datasources = repo_file("dashboards/provisioning/datasources/hoptrace.yaml");
    let uids: Vec<&str> =
        datasources["datasources"].as_array().unwrap().iter().map(|d| d["uid"].as_str().unwrap()).collect();
    assert_eq!(uids, ["hoptrace-pg", "hoptrace-jaeger"]);
    let providers = repo_file("dashboards/provisioning/dashboards/hoptrace.yaml");
    assert_eq!(providers["providers"][0]["type"], "file");

    let dashboard = repo_file("dashboards/hoptrace.json");
    let text = dashboard.to_string();
    for uid in text.match_indices("\"uid\":\"").map(|(i, _)| text[i + 7..].split('"').next().unwrap()) {
        assert!(uid == "hoptrace-hops" || uids.contains(&uid), "unknown data source uid {uid}");
    }
    // The latency panels link to the traces through the Jaeger data source.
    assert!(text.contains("\"datasourceUid\":\"hoptrace-jaeger\""), "a panel links to Jaeger");
}
