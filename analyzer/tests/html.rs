//! The HTML report: one self-contained page whose embedded data is the JSON report, with a chart per
//! hop, critical-path bars and two waterfalls per end-to-end variant; it opens in headless Chromium
//! with no console errors and renders to a screenshot. The scaling page likewise.

use std::path::Path;
use std::process::Command;

use hoptrace_analyzer::synthetic::{self, Scenario};
use serde_json::Value;

const ANALYZER: &str = env!("CARGO_BIN_EXE_analyzer");

fn store() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let scenario = Scenario { tasks: 120, segment_spans: 4_000, ..Scenario::default() };
    synthetic::generate(&scenario, Some(&dir.path().join("data"))).unwrap();
    dir
}

fn run(dir: &Path, args: &[&str]) -> String {
    let output = Command::new(ANALYZER).current_dir(dir).args(args).output().unwrap();
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// The JSON embedded in the page.
fn embedded(page: &str) -> Value {
    let start = page.find("<script type=\"application/json\" id=\"hoptrace-report\">").expect("embedded data");
    let rest = &page[start..];
    let json = &rest[rest.find('>').unwrap() + 1..rest.find("</script>").unwrap()];
    serde_json::from_str(&json.replace("<\\/", "</")).unwrap()
}

/// Drops the page-only details (distributions, exemplar traces) from the embedded report.
fn without_details(mut value: Value) -> Value {
    for category in value["categories"].as_array_mut().unwrap() {
        for variant in category["variants"].as_array_mut().unwrap() {
            for hop in variant["hops"].as_array_mut().unwrap() {
                assert!(
                    hop.as_object_mut().unwrap().remove("distribution").is_some(),
                    "every hop has its distribution"
                );
            }
            if let Some(path) = variant["critical_path"].as_object_mut() {
                assert_eq!(path.remove("exemplars").unwrap().as_array().unwrap().len(), 2, "p50 and p99 exemplars");
            }
        }
    }
    value
}

#[test]
fn the_page_carries_the_json_report_and_a_chart_for_each_part() {
    let dir = store();
    let json: Value = serde_json::from_str(&run(
        dir.path(),
        &["report", "--store", "data", "--run", "synthetic", "--format", "json"],
    ))
    .unwrap();
    run(dir.path(), &["report", "--store", "data", "--run", "synthetic", "--format", "html", "-o", "report.html"]);
    let page = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert_eq!(without_details(embedded(&page)), json, "the page's data is the JSON report");

    let hops: usize = json["categories"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["variants"].as_array().unwrap())
        .map(|v| v["hops"].as_array().unwrap().len())
        .sum();
    let paths = json["categories"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["variants"].as_array().unwrap())
        .filter(|v| !v["critical_path"].is_null())
        .count();
    assert_eq!(page.matches("<svg class=cdf").count(), hops);
    assert_eq!(page.matches("<svg class=stacked").count(), paths);
    assert_eq!(page.matches("<svg class=waterfall").count(), 2 * paths);
    assert!(page.contains("<line class=gap"), "queue waits are drawn as gaps");
    assert!(page.contains("<line class=target"), "targets are drawn on the distributions");
    assert!(page.contains(", log scale)"), "sub-millisecond hops beside millisecond targets get a log axis");
    // The page opens with every target's verdict, failures first.
    let summary = &page[page.find("<section class=summary>").expect("a summary of the targets")..];
    let summary = &summary[..summary.find("</section>").unwrap()];
    let targets = json["categories"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["variants"].as_array().unwrap())
        .flat_map(|v| v["hops"].as_array().unwrap())
        .filter(|h| !h["verdict"].is_null())
        .count();
    assert_eq!(summary.matches("<tr><td>").count(), targets);
    let verdicts: Vec<&str> = summary.split("<td class=").skip(1).map(|c| &c[..c.find('>').unwrap()]).collect();
    let mut ordered = verdicts.clone();
    ordered.sort_by_key(|c| ["fail", "few", "pass"].iter().position(|k| k == c));
    assert_eq!(verdicts, ordered, "failures first");
    // Over time, a chart per hop.
    run(
        dir.path(),
        &["report", "--store", "data", "--run", "synthetic", "--over-time", "1s", "--format", "html", "-o", "t.html"],
    );
    let page = std::fs::read_to_string(dir.path().join("t.html")).unwrap();
    assert_eq!(page.matches("<svg class=drift").count(), hops);
    // Self-contained: nothing is fetched.
    for external in ["http://", "https://", "<link", "src="] {
        assert!(!page.contains(external), "the page refers to {external}");
    }
    // Without -o, the HTML format refuses to write a page to a terminal.
    let out = Command::new(ANALYZER)
        .current_dir(dir.path())
        .args(["report", "--store", "data", "--format", "html"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("-o report.html"));
}

#[test]
fn the_scaling_page_names_the_bottleneck_and_draws_every_hop_against_the_load() {
    let dir = tempfile::tempdir().unwrap();
    let runs = synthetic::sweep(&dir.path().join("data"), 300, &[(1, 1.0), (2, 2.0), (4, 4.0)], 1.0).unwrap();
    let mut args = vec!["scaling", "--store", "data"];
    for run in &runs {
        args.extend(["--run", run.as_str()]);
    }
    let json: Value = serde_json::from_str(&run(dir.path(), &[&args[..], &["--format", "json"]].concat())).unwrap();
    run(dir.path(), &[&args[..], &["--format", "html", "-o", "scaling.html"]].concat());
    let page = std::fs::read_to_string(dir.path().join("scaling.html")).unwrap();
    let start = page.find("<script type=\"application/json\" id=\"hoptrace-scaling\">").expect("embedded data");
    let rest = &page[start..];
    let embedded: Value =
        serde_json::from_str(&rest[rest.find('>').unwrap() + 1..rest.find("</script>").unwrap()].replace("<\\/", "</"))
            .unwrap();
    assert_eq!(embedded, json);
    let hops = json["hops"].as_array().unwrap().len();
    assert_eq!(page.matches("<svg class=scaling").count(), hops);
    assert!(page.contains("<p class=\"summary fail\">bottleneck: worker_execution/"), "the bottleneck opens the page");
    // The contending hops come first.
    let first_chart = &page[page.find("<figure>").unwrap()..];
    assert!(first_chart[..first_chart.find("</figure>").unwrap()].contains("contention"));
    for external in ["http://", "https://", "<link", "src="] {
        assert!(!page.contains(external), "the page refers to {external}");
    }
    screenshot(dir.path(), "scaling.html");
}

#[test]
fn the_page_opens_in_headless_chromium_without_console_errors() {
    let dir = store();
    run(dir.path(), &["report", "--store", "data", "--run", "synthetic", "--format", "html", "-o", "report.html"]);
    screenshot(dir.path(), "report.html");
}

/// Opens `page` in headless Chromium: no console error, and a screenshot with charts in it.
fn screenshot(dir: &Path, page: &str) {
    let shot = dir.join(page.replace(".html", ".png"));
    let page = dir.join(page);
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()))
        .expect("Chromium is installed (scripts/test installs Debian's chromium)");
    let output = Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,4000"])
        .args(["--enable-logging=stderr", "--v=0"])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    if let Some(error) = log.lines().find(|l| l.contains("CONSOLE") || l.contains("Uncaught")) {
        panic!("console error: {error}");
    }
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(png.len() > 50_000, "a screenshot with charts, not a blank page: {} bytes", png.len());
    // HOPTRACE_KEEP_SCREENSHOTS=DIR keeps them, to look at.
    if let Some(keep) = std::env::var_os("HOPTRACE_KEEP_SCREENSHOTS") {
        std::fs::copy(&shot, Path::new(&keep).join(shot.file_name().unwrap())).unwrap();
    }
}
