//! The regression gate on synthetic data with known answers: a +15 % shift in one hop is flagged on that
//! hop only; the same distribution drawn with different seeds is flagged no more often than the gate's
//! false-alarm rate allows, over a hundred seeds.

use hoptrace_analyzer::baseline::{Baseline, Baselines};
use hoptrace_analyzer::compare::{compare, parse_threshold, Gate, Verdict};
use hoptrace_analyzer::hops::{self, Filters};
use hoptrace_analyzer::spans::SpanTable;
use hoptrace_analyzer::synthetic::{self, Scenario};
use hoptrace_analyzer::Config;

fn measured(scenario: &Scenario) -> Baseline {
    let config = Config::built_in();
    let (rows, _) = synthetic::generate(scenario, None).unwrap();
    let mut frame = hoptrace_store::to_frame(rows.iter()).unwrap();
    let table = SpanTable::from_frame(&mut frame, &hops::attribute_keys(&config)).unwrap();
    let extraction = hops::extract(&table, &config, &Filters::default());
    Baseline::from_extraction("test", format!("seed {}", scenario.seed), &config, &extraction)
}

fn scenario(seed: u64, tasks: usize) -> Scenario {
    Scenario { seed, tasks, templates: vec![("linear_3".into(), 3)], ..Scenario::default() }
}

#[test]
fn a_fifteen_percent_slower_claim_is_flagged_on_the_claim_only() {
    let before = measured(&scenario(1, 400));
    let after = measured(&Scenario { claim_factor: 1.15, ..scenario(2, 400) });
    let result = compare(&before, &after, Gate::default());
    let flagged: Vec<(String, Option<String>, String)> = result
        .hops
        .iter()
        .filter(|h| h.verdict == Verdict::Regression)
        .map(|h| (h.category.clone(), h.variant.clone(), h.hop.clone()))
        .collect();
    let claim = |handler: &str| ("worker_execution".to_owned(), Some(handler.to_owned()), "claim".to_owned());
    assert_eq!(flagged, vec![claim("noop"), claim("simple_calculation")], "{}", result.table());
    assert_eq!(result.regressions, 2);
    let p50 = &result.hops.iter().find(|h| h.verdict == Verdict::Regression).unwrap().percentiles[0];
    assert!((10.0..20.0).contains(&p50.change_pct), "{p50:?}");
    assert!(p50.interval_pct.0 > 0.0);
    // An absolute floor above the claim's shift (about 75 µs) leaves it unflagged.
    let floored = compare(&before, &after, Gate { min_shift_ns: 200_000, ..Gate::default() });
    assert_eq!(floored.regressions, 0);
}

#[test]
fn the_same_distribution_with_other_seeds_is_rarely_a_regression_in_a_hundred_runs() {
    // The gate's family-wise false-alarm rate is 0.1 % per comparison: 0.1 flagged runs expected in a
    // hundred, one in about 10 % of seed sets, two or more in 0.5 %. (Seeds 1065/5065 are such a one: the
    // drawn medians of the noop queue wait are 0.334 and 0.421 ms, four standard errors apart.)
    let mut flagged_runs = Vec::new();
    for seed in 0..100u64 {
        let before = measured(&scenario(1_000 + seed, 150));
        let after = measured(&scenario(5_000 + seed, 150));
        let result = compare(&before, &after, Gate { resamples: 200, ..Gate::default() });
        if result.regressions > 0 {
            flagged_runs.push((seed, result.table()));
        }
    }
    let report: Vec<String> = flagged_runs.iter().map(|(seed, table)| format!("seed {seed}:\n{table}")).collect();
    assert!(flagged_runs.len() <= 1, "{} of 100 noise runs flagged:\n{}", flagged_runs.len(), report.join("\n"));
}

#[test]
fn improvements_are_shown_and_hops_on_one_side_only_are_listed() {
    let before = measured(&Scenario { claim_factor: 1.3, ..scenario(3, 300) });
    let mut after = measured(&scenario(4, 300));
    after.hops.retain(|h| h.category != "e2e_latency");
    let result = compare(&before, &after, Gate { resamples: 300, ..Gate::default() });
    let verdict = |category: &str, hop: &str| {
        result.hops.iter().filter(|h| h.category == category && h.hop == hop).map(|h| h.verdict).collect::<Vec<_>>()
    };
    assert_eq!(verdict("worker_execution", "claim"), [Verdict::Improvement, Verdict::Improvement]);
    assert_eq!(verdict("e2e_latency", "end to end"), [Verdict::OnlyBefore]);
    assert_eq!((result.regressions, result.improvements), (0, 2), "{}", result.table());
}

#[test]
fn baselines_round_trip_through_their_directory() {
    let dir = tempfile::tempdir().unwrap();
    let baselines = Baselines { dir: dir.path().to_owned() };
    let mut baseline = measured(&scenario(5, 20));
    baseline.name = "release-1.2".into();
    baselines.save(&baseline).unwrap();
    assert_eq!(baselines.load("release-1.2").unwrap(), baseline);
    assert_eq!(parse_threshold("10%"), Ok(0.10));
    assert_eq!(parse_threshold("0.25"), Ok(0.25));
    assert!(parse_threshold("ten").unwrap_err().contains("such as \"10%\""));
}
