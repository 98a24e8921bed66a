//! The trace viewer's lookups (the collector's Jaeger query API: services, operations, a trace by id, a
//! search by service and tag over one hour) over a store, each against DuckDB doing the same lookup on
//! the same Parquet files. Rounds alternate hoptrace and DuckDB; each prints the median of its repeats,
//! and the first call of a fresh process ("cold": nothing learnt of the segments yet) apart from the rest
//! ("warm", as after the query server's background warm-up, whose time and memory are printed).
//! Both must find the same traces.
//!
//! `scripts/bench-lookup` runs it over the 10M-span bench store (`BENCH_STORE`, `BENCH_ROUNDS`, `BENCH_ONLY`
//! to run the lookups whose name holds it); under
//! `cargo test` it runs once over a small generated store, without DuckDB when it is not installed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use hoptrace_analyzer::synthetic::{self, Scenario};
use hoptrace_store::read::query::{self, Search};
use hoptrace_store::read::{segment_paths, Catalog};
use hoptrace_store::{schema, Location, TimeRange};
use polars::prelude::*;

const HOUR: u64 = 3_600_000_000_000;
/// Repeats of each lookup per round after its first call (`BENCH_REPEATS`).
fn repeats() -> usize {
    std::env::var("BENCH_REPEATS").ok().and_then(|r| r.parse().ok()).unwrap_or(5)
}

/// A lookup on hoptrace's side, answering the strings DuckDB's SQL answers.
type Run = Box<dyn Fn(&Catalog) -> Vec<String>>;

/// One lookup, as both sides run it.
struct Lookup {
    name: &'static str,
    run: Run,
    /// DuckDB's SQL for it, statements run one after the other; `answer` says how their rows become the
    /// strings hoptrace answers.
    sql: Vec<String>,
    answer: Answer,
}

/// How DuckDB's rows become the answer. Where the API answers with spans, DuckDB fetches the spans too,
/// every column (`SELECT *`): counting them in SQL would read the trace-id column alone.
#[derive(Clone, Copy, serde::Serialize)]
#[serde(rename_all = "snake_case")]
enum Answer {
    /// The first column of every row (names).
    FirstColumn,
    /// The number of rows of each statement (a trace's spans).
    RowCount,
    /// The distinct values of the first column (the trace ids of the spans found).
    DistinctFirstColumn,
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(3);
    let (dir, _scratch) = match std::env::var_os("BENCH_STORE").filter(|_| full) {
        Some(dir) => (PathBuf::from(dir), None),
        None => {
            let scratch = tempfile::tempdir().unwrap();
            let scenario = Scenario { tasks: 300, segment_spans: 1_000, ..Scenario::default() };
            synthetic::generate(&scenario, Some(scratch.path())).unwrap();
            (scratch.path().to_owned(), Some(scratch))
        }
    };
    let paths = segment_paths(&dir, TimeRange::all()).unwrap();
    // BENCH_ONLY=trace: only the lookups whose name holds it (for a profiler).
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let lookups: Vec<Lookup> = lookups(&dir, &paths).into_iter().filter(|l| l.name.contains(only.as_str())).collect();
    let duckdb = Command::new("python3").args(["-c", "import duckdb"]).status().is_ok_and(|s| s.success());
    println!("store: {} ({} segments)", dir.display(), paths.len());
    if !duckdb {
        println!("DuckDB is not installed (pip install duckdb): hoptrace alone");
    }

    // Per lookup: hoptrace's and DuckDB's cold times and warm medians, over the rounds.
    let mut ours: BTreeMap<&str, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    let mut theirs: BTreeMap<&str, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for round in 1..=if full { rounds } else { 1 } {
        // A fresh catalog is a fresh query server: the first call reads the footers and names.
        let catalog = Catalog::new(Location::Dir(dir.clone()));
        let mut answers = BTreeMap::new();
        for lookup in &lookups {
            let (cold, answer) = timed(|| (lookup.run)(&catalog));
            // What the first call learnt must not change the answer.
            let warm = median(
                (0..repeats())
                    .map(|_| {
                        let (ms, again) = timed(|| (lookup.run)(&catalog));
                        assert_eq!(again, answer, "{}: the answer changed once the catalog had learnt", lookup.name);
                        ms
                    })
                    .collect(),
            );
            let entry = ours.entry(lookup.name).or_default();
            entry.0.push(cold);
            entry.1.push(warm);
            answers.insert(lookup.name, answer);
        }
        if duckdb {
            for (name, Timing(cold, warm, answer)) in run_duckdb(&lookups) {
                let entry = theirs.entry(name).or_default();
                entry.0.push(cold);
                entry.1.push(warm);
                let same = answers.get(name) == Some(&answer);
                assert!(same, "{name}: hoptrace found {:?}, DuckDB {answer:?}", answers.get(name));
            }
        }
        let fresh = Catalog::new(Location::Dir(dir.clone()));
        let (seconds, segments) = timed(|| fresh.warm().unwrap());
        println!(
            "round {round}: a fresh catalog learns {segments} segments in {:.0} ms, {:.1} MB",
            seconds,
            fresh.learnt_bytes() as f64 / 1e6
        );
    }
    println!();
    println!("{:<34} {:>22} {:>22} {:>15}", "lookup (ms, median [min–max])", "hoptrace", "DuckDB", "ratio");
    for lookup in &lookups {
        for (phase, pick) in [("cold", 0), ("warm", 1)] {
            let side = |m: &BTreeMap<&str, (Vec<f64>, Vec<f64>)>| {
                m.get(lookup.name).map(|e| if pick == 0 { e.0.clone() } else { e.1.clone() })
            };
            let ours = side(&ours).unwrap();
            let theirs = side(&theirs);
            let ratio = theirs
                .as_ref()
                .map_or("—".to_owned(), |t| format!("{:.2}", median(ours.clone()) / median(t.clone())));
            let fmt = |v: &[f64]| {
                let (lo, hi) = v.iter().fold((f64::MAX, 0f64), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
                format!("{:.1} [{:.1}–{:.1}]", median(v.to_vec()), lo, hi)
            };
            println!(
                "{:<34} {:>22} {:>22} {:>15}",
                format!("{} ({phase})", lookup.name),
                fmt(&ours),
                theirs.as_deref().map_or("—".to_owned(), fmt),
                ratio
            );
        }
    }
}

fn timed<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let start = Instant::now();
    let out = f();
    (start.elapsed().as_secs_f64() * 1e3, out)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The lookups, with their arguments taken from the store: trace ids and a task id spread over it, its
/// busiest hour.
fn lookups(dir: &Path, paths: &[PathBuf]) -> Vec<Lookup> {
    let sample = hoptrace_store::scan(dir, TimeRange::all())
        .unwrap()
        .filter(col(schema::NAME).eq(lit("POST /v1/tasks")))
        .select([
            col(schema::TRACE_ID),
            col(schema::START_TIME),
            col(schema::ATTRIBUTES.keys),
            col(schema::ATTRIBUTES.values),
        ])
        .collect()
        .unwrap();
    let ids = sample.column(schema::TRACE_ID).unwrap().binary().unwrap().clone();
    let starts = sample.column(schema::START_TIME).unwrap().u64().unwrap().clone();
    let n = ids.len();
    let picks: Vec<usize> = (0..8).map(|i| i * n / 8 + n / 16).collect();
    let trace_ids: Vec<[u8; 16]> = picks.iter().map(|&i| ids.get(i).unwrap().try_into().unwrap()).collect();
    let task_row = picks[3];
    let keys = sample.column(schema::ATTRIBUTES.keys).unwrap().list().unwrap().get_as_series(task_row).unwrap();
    let values = sample.column(schema::ATTRIBUTES.values).unwrap().list().unwrap().get_as_series(task_row).unwrap();
    let at = keys.str().unwrap().iter().position(|k| k == Some("task.uuid")).unwrap();
    let task = values.str().unwrap().get(at).unwrap().to_owned();
    let hour_start = starts.get(task_row).unwrap() / HOUR * HOUR;
    let hour = TimeRange { start_unix_nano: hour_start, end_unix_nano: hour_start + HOUR };

    let files = format!(
        "read_parquet([{}], union_by_name = true)",
        paths.iter().map(|p| format!("'{}'", p.display())).collect::<Vec<_>>().join(", ")
    );
    let search = |service: &'static str, key: &'static str, value: String| {
        let search = Search {
            service: Some(service.into()),
            operation: None,
            tags: vec![(key.into(), value.clone())],
            min_duration_nanos: None,
            max_duration_nanos: None,
            range: hour,
            limit: 20,
        };
        let holds = |prefix: &str| {
            format!("{prefix}attribute_values[list_position({prefix}attribute_keys, '{key}')] = '{value}'")
        };
        let sql = format!(
            "WITH matches AS (SELECT trace_id, max(start_time_unix_nano) AS latest FROM {files} \
             WHERE service_name = '{service}' AND start_time_unix_nano >= {} AND start_time_unix_nano < {} AND \
             ({} OR {} OR {} OR len(list_filter(events, lambda e: {})) > 0 OR len(list_filter(links, lambda l: {})) > 0) \
             GROUP BY trace_id ORDER BY latest DESC, trace_id DESC LIMIT 20) \
             SELECT lower(hex(trace_id)), * FROM {files} WHERE trace_id IN (SELECT trace_id FROM matches) \
             AND start_time_unix_nano >= {} AND start_time_unix_nano < {}",
            hour.start_unix_nano,
            hour.end_unix_nano,
            holds(""),
            holds("scope_"),
            holds("resource_"),
            holds("e."),
            holds("l."),
            hour.start_unix_nano - HOUR,
            hour.end_unix_nano + HOUR,
        );
        (search, sql)
    };
    let (one_task, one_task_sql) = search("orchestration", "task.uuid", task);
    let (noop, noop_sql) = search("worker", "step.handler", "noop".into());
    let found = |traces: Vec<Vec<hoptrace_store::SpanRecord>>| -> Vec<String> {
        let set: BTreeSet<String> = traces.iter().flatten().map(|s| s.trace_id.clone()).collect();
        set.into_iter().collect()
    };
    let ids = trace_ids.clone();
    let trace_ids: Vec<String> = trace_ids
        .iter()
        .map(|id| format!("from_hex('{}')", id.iter().map(|b| format!("{b:02x}")).collect::<String>()))
        .collect();
    vec![
        Lookup {
            name: "services",
            run: Box::new(|c| query::services(c).unwrap()),
            sql: vec![format!("SELECT DISTINCT service_name FROM {files}")],
            answer: Answer::FirstColumn,
        },
        Lookup {
            name: "operations of worker",
            run: Box::new(|c| {
                let names: BTreeSet<String> =
                    query::operations(c, "worker", None).unwrap().into_iter().map(|(n, _)| n).collect();
                names.into_iter().collect()
            }),
            sql: vec![format!("SELECT DISTINCT name FROM {files} WHERE service_name = 'worker'")],
            answer: Answer::FirstColumn,
        },
        Lookup {
            name: "trace by id (8 ids)",
            run: Box::new(move |c| {
                let mut spans: Vec<String> =
                    ids.iter().map(|id| query::trace(c, *id, TimeRange::all()).unwrap().len().to_string()).collect();
                spans.sort();
                spans
            }),
            // One trace per call, as a trace viewer asks.
            sql: trace_ids.iter().map(|id| format!("SELECT * FROM {files} WHERE trace_id = {id}")).collect(),
            answer: Answer::RowCount,
        },
        Lookup {
            name: "search: service + task.uuid",
            run: Box::new(move |c| found(query::find_traces(c, &one_task).unwrap())),
            sql: vec![one_task_sql],
            answer: Answer::DistinctFirstColumn,
        },
        Lookup {
            name: "search: service + step.handler",
            run: Box::new(move |c| found(query::find_traces(c, &noop).unwrap())),
            sql: vec![noop_sql],
            answer: Answer::DistinctFirstColumn,
        },
    ]
}

/// Each lookup's SQL in one fresh DuckDB process: the first run (cold) and the median of the repeats, and
/// the sorted answer.
/// One side's run of one lookup: its first call, the median of the repeats, its answer.
#[derive(serde::Deserialize)]
struct Timing(f64, f64, Vec<String>);

fn run_duckdb(lookups: &[Lookup]) -> Vec<(&'static str, Timing)> {
    let script = format!(
        r#"
import duckdb, json, sys, time
con = duckdb.connect()
# Its progress bar writes to stdout, where the answer goes.
con.execute("SET enable_progress_bar = false")
out = []
for statements, answer in json.load(sys.stdin):
    times = []
    for _ in range({}):
        t = time.perf_counter()
        results = [con.execute(sql).fetchall() for sql in statements]
        times.append((time.perf_counter() - t) * 1e3)
    warm = sorted(times[1:])[len(times[1:]) // 2]
    firsts = [str(row[0]) for rows in results for row in rows]
    strings = {{"first_column": firsts, "row_count": [str(len(rows)) for rows in results],
               "distinct_first_column": list(set(firsts))}}[answer]
    out.append([times[0], warm, sorted(strings)])
print(json.dumps(out))
"#,
        repeats() + 1
    );
    let sqls: Vec<(&Vec<String>, Answer)> = lookups.iter().map(|l| (&l.sql, l.answer)).collect();
    let mut child = Command::new("python3")
        .args(["-c", &script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    serde_json::to_writer(child.stdin.take().unwrap(), &sqls).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "DuckDB failed");
    let results: Vec<Timing> = serde_json::from_slice(&output.stdout).unwrap();
    lookups.iter().map(|l| l.name).zip(results).collect()
}
