//! Runs of one system at different loads, side by side: each hop's latency against the load its run
//! carried, and the hop whose latency grows most with load named as the contention bottleneck.
//!
//! A run's load is read from its spans: throughput (traces started per second, first start to last),
//! tasks in flight (Little's law: throughput × mean trace duration) and worker instances (the processes
//! that did the fairness hop's work); loadgen's `benchmark.concurrency` is shown beside them. A hop
//! *contends* when its p50, fitted against the load, grows by more than a threshold over the sweep and
//! the growth is beyond chance: the median's distribution-free confidence interval at the most loaded
//! run lies wholly above the one at the least loaded run, at 1 % for the whole comparison (Bonferroni
//! over its hops). Interval hops contain the others, so the bottleneck is named among the rest.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::{Config, Measure};
use crate::hops::{self, Extraction, Filters, RUN_ID_KEY};
use crate::report::{human, signed};
use crate::spans::{SpanTable, NONE};
use crate::stats::normal_quantile;

/// The attribute loadgen puts on every span of a run (as baggage): its clients' concurrency.
pub const CONCURRENCY_KEY: &str = "benchmark.concurrency";

/// Family-wise false-alarm rate of the contention verdicts of one comparison.
pub const FAMILY_ALPHA: f64 = 0.01;

/// The most loaded run a hop is compared in must carry at least this many times the least loaded one's
/// load: between runs at (nearly) one load, a slope fits noise.
pub const MIN_LOAD_SPREAD: f64 = 1.25;

/// A run's samples of a hop below this are not compared.
pub const MIN_SAMPLES: usize = 20;

/// What the latencies are drawn and fitted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Load {
    /// Tasks in flight (Little's law), the default: the load a closed-loop client's concurrency makes,
    /// measured whatever drove the system.
    InFlight,
    /// Worker instances.
    Workers,
    /// Traces per second.
    Throughput,
}

impl Load {
    pub fn label(self) -> &'static str {
        match self {
            Load::InFlight => "tasks in flight",
            Load::Workers => "workers",
            Load::Throughput => "tasks/s",
        }
    }

    pub fn of(self, run: &RunLoad) -> f64 {
        match self {
            Load::InFlight => run.in_flight,
            Load::Workers => run.workers as f64,
            Load::Throughput => run.throughput_per_s,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub load: Load,
    /// Growth of a hop's fitted p50 over the sweep (a fraction) beyond which real growth is contention.
    pub threshold: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Scaling {
    pub store: String,
    pub load: Load,
    pub threshold_pct: f64,
    /// In order of load, least loaded first.
    pub runs: Vec<RunLoad>,
    pub hops: Vec<HopScaling>,
    /// The contending hop (not an interval) whose p50 grows most over the sweep: an index into `hops`.
    pub bottleneck: Option<usize>,
}

/// One run and the load it carried, as its spans show it.
#[derive(Debug, Clone, Serialize)]
pub struct RunLoad {
    pub run: String,
    pub traces: usize,
    /// Instances that did the configuration's fairness hop (0 without one).
    pub workers: usize,
    /// loadgen's `benchmark.concurrency`, when the run carries it.
    pub concurrency: Option<u64>,
    pub throughput_per_s: f64,
    pub in_flight: f64,
    /// From the run's first span start to its last span end.
    pub wall_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct HopScaling {
    pub category: String,
    pub variant: Option<String>,
    pub hop: String,
    pub interval: bool,
    #[serde(flatten)]
    pub fit: Fit,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    pub count: usize,
    pub p50_ns: i64,
    pub p99_ns: Option<i64>,
    /// The p50's confidence interval at the comparison's level.
    pub p50_low_ns: i64,
    pub p50_high_ns: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScalingVerdict {
    /// Grows with load beyond the threshold and beyond chance.
    Contention,
    Flat,
    /// Fewer than two runs with enough samples at loads [`MIN_LOAD_SPREAD`] apart.
    TooFewRuns,
}

/// Compares `runs` in `table` (each by its `benchmark.run_id`).
pub fn compare(table: &SpanTable, config: &Config, runs: &[String], settings: Settings, store: String) -> Scaling {
    let extractions: Vec<Extraction> = runs
        .iter()
        .map(|run| hops::extract(table, config, &Filters { run_id: Some(run.clone()), ..Filters::default() }))
        .collect();
    let mut loads = run_loads(table, runs);
    for (load, extraction) in loads.iter_mut().zip(&extractions) {
        load.workers = workers(config, extraction);
    }
    // Least loaded first.
    let mut order: Vec<usize> = (0..runs.len()).collect();
    order.sort_by(|&a, &b| settings.load.of(&loads[a]).total_cmp(&settings.load.of(&loads[b])).then(a.cmp(&b)));
    let x: Vec<f64> = order.iter().map(|&r| settings.load.of(&loads[r])).collect();
    // Each hop's sorted samples per run, in load order.
    let mut by_hop: BTreeMap<(usize, Option<String>, usize), Vec<Vec<i64>>> = BTreeMap::new();
    for (i, &r) in order.iter().enumerate() {
        for (key, samples) in &extractions[r].samples {
            let per_run = by_hop.entry(key.clone()).or_insert_with(|| vec![Vec::new(); runs.len()]);
            per_run[i] = samples.values.clone();
            per_run[i].sort_unstable();
        }
    }
    let tests = by_hop.values().filter(|per_run| comparable(per_run, &x)).count().max(1);
    let hops: Vec<HopScaling> = by_hop
        .into_iter()
        .map(|((c, variant, h), per_run)| {
            let (category, rule) = (&config.categories[c], &config.categories[c].hops[h]);
            HopScaling {
                category: category.name.clone(),
                variant,
                hop: rule.name.clone(),
                interval: matches!(rule.measure, Measure::Interval { .. }),
                fit: judge(&x, &per_run, tests, settings.threshold),
            }
        })
        .collect();
    let bottleneck = hops
        .iter()
        .enumerate()
        .filter(|(_, h)| h.fit.verdict == ScalingVerdict::Contention && !h.interval)
        .max_by_key(|(_, h)| h.fit.growth_ns)
        .map(|(i, _)| i);
    let runs = order.iter().map(|&r| loads[r].clone()).collect();
    Scaling { store, load: settings.load, threshold_pct: settings.threshold * 100.0, runs, hops, bottleneck }
}

fn comparable(per_run: &[Vec<i64>], x: &[f64]) -> bool {
    let loads: Vec<f64> = per_run.iter().zip(x).filter(|(s, _)| s.len() >= MIN_SAMPLES).map(|(_, &x)| x).collect();
    match (loads.first(), loads.last()) {
        (Some(&lo), Some(&hi)) => hi > lo && hi >= lo * MIN_LOAD_SPREAD,
        _ => false,
    }
}

/// What the samples of one hop across runs say.
#[derive(Debug, Clone, Serialize)]
pub struct Fit {
    /// Per run, in the order of [`Scaling::runs`]; `None` where the run has too few samples of the hop.
    pub points: Vec<Option<Point>>,
    /// Least-squares slope of the p50 against the load, ns per unit of load.
    pub slope_ns: Option<f64>,
    /// The fitted p50 at the least and at the most loaded run.
    pub fitted_ns: Option<(i64, i64)>,
    /// The fitted p50 at the most loaded run minus at the least loaded one.
    pub growth_ns: Option<i64>,
    pub growth_pct: Option<f64>,
    pub verdict: ScalingVerdict,
}

/// Judges one hop: `per_run[i]` are its sorted samples in the run at load `x[i]` (ascending), `tests` the
/// number of hops judged together, `threshold` the growth (a fraction) that counts.
pub fn judge(x: &[f64], per_run: &[Vec<i64>], tests: usize, threshold: f64) -> Fit {
    // Two intervals that each miss the common median with probability gamma / 2 are disjoint with
    // probability at most gamma when nothing changed.
    let gamma = FAMILY_ALPHA / tests.max(1) as f64;
    let z = normal_quantile(1.0 - gamma / 2.0);
    let points: Vec<Option<Point>> = per_run.iter().map(|s| (s.len() >= MIN_SAMPLES).then(|| point(s, z))).collect();
    let fitted: Vec<(f64, f64)> = points.iter().zip(x).filter_map(|(p, &x)| p.map(|p| (x, p.p50_ns as f64))).collect();
    let none = |points| Fit {
        points,
        slope_ns: None,
        fitted_ns: None,
        growth_ns: None,
        growth_pct: None,
        verdict: ScalingVerdict::TooFewRuns,
    };
    let (Some(&(x_lo, _)), Some(&(x_hi, _))) = (fitted.first(), fitted.last()) else { return none(points) };
    if fitted.len() < 2 || x_hi < x_lo * MIN_LOAD_SPREAD || x_hi <= x_lo {
        return none(points);
    }
    let n = fitted.len() as f64;
    let (mx, my) = (fitted.iter().map(|p| p.0).sum::<f64>() / n, fitted.iter().map(|p| p.1).sum::<f64>() / n);
    let sxx: f64 = fitted.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = fitted.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let slope = sxy / sxx;
    let at = |x: f64| my + slope * (x - mx);
    let growth = at(x_hi) - at(x_lo);
    let growth_pct = (at(x_lo) > 0.0).then(|| growth / at(x_lo) * 100.0);
    let ends: Vec<&Point> = points.iter().flatten().collect();
    let (least, most) = (ends[0], ends[ends.len() - 1]);
    let real = most.p50_low_ns > least.p50_high_ns;
    let verdict = if real && growth_pct.is_some_and(|g| g > threshold * 100.0) {
        ScalingVerdict::Contention
    } else {
        ScalingVerdict::Flat
    };
    Fit {
        points,
        slope_ns: Some(slope),
        fitted_ns: Some((at(x_lo).round() as i64, at(x_hi).round() as i64)),
        growth_ns: Some(growth.round() as i64),
        growth_pct,
        verdict,
    }
}

/// The p50, p99 and the p50's order-statistic interval (ranks n/2 ± z·√n/2) of sorted samples.
fn point(sorted: &[i64], z: f64) -> Point {
    let n = sorted.len();
    let half = z * (n as f64).sqrt() / 2.0;
    let rank = |r: f64| (r.round().max(1.0) as usize).min(n) - 1;
    Point {
        count: n,
        p50_ns: crate::stats::nearest_rank(sorted, 0.5),
        p99_ns: (n >= crate::stats::samples_needed(crate::config::Percentile::P99))
            .then(|| crate::stats::nearest_rank(sorted, 0.99)),
        p50_low_ns: sorted[rank(n as f64 / 2.0 - half)],
        p50_high_ns: sorted[rank(n as f64 / 2.0 + half + 1.0)],
    }
}

/// Per run: its traces, span of time, throughput, tasks in flight and concurrency attribute.
fn run_loads(table: &SpanTable, runs: &[String]) -> Vec<RunLoad> {
    #[derive(Clone)]
    struct Acc {
        traces: usize,
        first_start: i64,
        last_start: i64,
        last_end: i64,
        busy_s: f64,
        concurrency: Option<u64>,
    }
    let slot = table.key_slot(RUN_ID_KEY);
    let concurrency_slot = table.key_slot(CONCURRENCY_KEY);
    let ids: Vec<u32> = runs.iter().map(|r| table.strings.get(r).unwrap_or(NONE)).collect();
    let empty = Acc {
        traces: 0,
        first_start: i64::MAX,
        last_start: i64::MIN,
        last_end: i64::MIN,
        busy_s: 0.0,
        concurrency: None,
    };
    let mut acc = vec![empty; runs.len()];
    for rows in table.traces.iter().filter(|_| slot.is_some()) {
        let slot = slot.expect("filtered");
        let of_run = |row: usize| ids.iter().position(|&id| id != NONE && table.attributes[slot][row] == id);
        let Some(r) = rows.clone().find_map(of_run) else { continue };
        let start = rows.clone().map(|row| table.start[row]).min().unwrap_or(0);
        let end = rows.clone().map(|row| table.end[row]).max().unwrap_or(0);
        let a = &mut acc[r];
        a.traces += 1;
        a.first_start = a.first_start.min(start);
        a.last_start = a.last_start.max(start);
        a.last_end = a.last_end.max(end);
        a.busy_s += (end - start) as f64 / 1e9;
        if let (None, Some(c)) = (a.concurrency, concurrency_slot) {
            let value = rows.clone().map(|row| table.attributes[c][row]).find(|&v| v != NONE);
            a.concurrency = value.and_then(|v| table.strings.resolve(v).parse().ok());
        }
    }
    runs.iter()
        .zip(acc)
        .map(|(run, a)| {
            // Traces started per second, first start to last: in a steady run the rate they finish at
            // too, without the last trace's tail in the denominator.
            let starts_s = (a.last_start - a.first_start) as f64 / 1e9;
            let throughput_per_s = if a.traces > 1 && starts_s > 0.0 { (a.traces - 1) as f64 / starts_s } else { 0.0 };
            let mean_s = if a.traces > 0 { a.busy_s / a.traces as f64 } else { 0.0 };
            RunLoad {
                run: run.clone(),
                traces: a.traces,
                workers: 0,
                concurrency: a.concurrency,
                throughput_per_s,
                in_flight: throughput_per_s * mean_s,
                wall_s: if a.traces > 0 { (a.last_end - a.first_start) as f64 / 1e9 } else { 0.0 },
            }
        })
        .collect()
}

/// The processes that did the fairness hop's work in a run.
fn workers(config: &Config, extraction: &Extraction) -> usize {
    let Some((c, h)) = config.fairness else { return 0 };
    let mut processes: Vec<u32> = extraction
        .samples
        .iter()
        .filter(|((category, _, hop), _)| (*category, *hop) == (c, h))
        .flat_map(|(_, samples)| samples.origins.iter().map(|o| o.process))
        .collect();
    processes.sort_unstable();
    processes.dedup();
    processes.len()
}

impl HopScaling {
    pub fn label(&self) -> String {
        crate::report::hop_label(&self.category, self.variant.as_deref(), &self.hop)
    }
}

impl Scaling {
    /// One line on the bottleneck, or why none is named.
    pub fn bottleneck_text(&self) -> String {
        if self.hops.iter().all(|h| h.fit.verdict == ScalingVerdict::TooFewRuns) {
            return format!(
                "no comparison: the runs' {} differ by less than {MIN_LOAD_SPREAD}× (try another --against)",
                self.load.label()
            );
        }
        let Some(hop) = self.bottleneck.map(|b| &self.hops[b]) else {
            return format!(
                "no bottleneck: no hop (besides the end-to-end intervals) grows with load beyond chance and {:.0}%",
                self.threshold_pct
            );
        };
        let ends: Vec<(f64, &Point)> =
            self.runs.iter().zip(&hop.fit.points).filter_map(|(r, p)| Some((self.load.of(r), p.as_ref()?))).collect();
        let ((lo, first), (hi, last)) = (ends[0], ends[ends.len() - 1]);
        format!(
            "bottleneck: {} — p50 {} at {lo:.1} {load} to {} at {hi:.1} {load} ({})",
            hop.label(),
            human(first.p50_ns),
            human(last.p50_ns),
            growth_text(hop),
            load = self.load.label(),
        )
    }
}

fn growth_text(hop: &HopScaling) -> String {
    match (hop.fit.growth_ns, hop.fit.growth_pct) {
        (Some(ns), Some(pct)) => format!("{} {pct:+.0}%", signed(ns)),
        (Some(ns), None) => signed(ns),
        _ => String::new(),
    }
}

fn verdict_text(v: ScalingVerdict) -> &'static str {
    match v {
        ScalingVerdict::Contention => "CONTENTION",
        ScalingVerdict::Flat => "flat",
        ScalingVerdict::TooFewRuns => "too few runs",
    }
}

fn run_cells(r: &RunLoad, i: usize) -> [String; 8] {
    let workers = if r.workers == 0 { "-".to_owned() } else { r.workers.to_string() };
    [
        format!("#{}", i + 1),
        r.run.clone(),
        workers,
        r.concurrency.map_or_else(|| "-".to_owned(), |c| c.to_string()),
        format!("{:.1}", r.in_flight),
        format!("{:.1}", r.throughput_per_s),
        r.traces.to_string(),
        format!("{:.1} s", r.wall_s),
    ]
}

const RUN_HEADER: [&str; 8] = ["", "run", "workers", "concurrency", "in flight", "tasks/s", "traces", "wall"];

fn header(s: &Scaling) -> String {
    format!(
        "{} runs of {}, each hop's p50 against {}; contention: a real growth above {:.0}% over the sweep (family-wise {:.0}%)",
        s.runs.len(),
        s.store,
        s.load.label(),
        s.threshold_pct,
        FAMILY_ALPHA * 100.0
    )
}

/// The runs' loads, then one line per hop with its p50 in each run, its growth and verdict, then each
/// hop's p99 per run (`-`: fewer than 100 samples).
pub fn table(s: &Scaling) -> String {
    use hoptrace_text::{Align::*, Table};
    let mut out = format!("scaling — {}\n\n", header(s));
    let mut runs = Table::new(&[Left, Left, Right, Right, Right, Right, Right, Right]).indent("  ");
    runs.row(RUN_HEADER.map(str::to_owned));
    for (i, r) in s.runs.iter().enumerate() {
        runs.row(run_cells(r, i));
    }
    out.push_str(&runs.render());
    let mut align = vec![Left];
    align.extend(std::iter::repeat_n(Right, s.runs.len() + 1));
    align.push(Left);
    let mut hops = Table::new(&align).indent("  ");
    let mut head = vec!["hop".to_owned()];
    head.extend((1..=s.runs.len()).map(|i| format!("#{i} p50")));
    head.extend(["growth".to_owned(), "verdict".to_owned()]);
    hops.row(head);
    for h in ordered(s) {
        let mut row = vec![h.label()];
        row.extend(h.fit.points.iter().map(|p| p.map_or_else(|| "-".to_owned(), |p| human(p.p50_ns))));
        row.extend([growth_text(h), verdict_text(h.fit.verdict).to_owned()]);
        hops.row(row);
    }
    out.push('\n');
    out.push_str(&hops.render());
    // The tails, for the same hops in the same order.
    let mut tails = Table::new(&align[..=s.runs.len()]).indent("  ");
    let mut head = vec!["hop".to_owned()];
    head.extend((1..=s.runs.len()).map(|i| format!("#{i} p99")));
    tails.row(head);
    for h in ordered(s) {
        let mut row = vec![h.label()];
        row.extend(h.fit.points.iter().map(|p| p.and_then(|p| p.p99_ns).map_or_else(|| "-".to_owned(), human)));
        tails.row(row);
    }
    out.push('\n');
    out.push_str(&tails.render());
    out.push('\n');
    out.push_str(&s.bottleneck_text());
    out.push('\n');
    out
}

/// Hops in the order people read them: contending first (most growth first), then the rest as configured.
pub fn ordered(s: &Scaling) -> Vec<&HopScaling> {
    let mut hops: Vec<&HopScaling> = s.hops.iter().collect();
    hops.sort_by_key(|h| {
        (
            h.fit.verdict != ScalingVerdict::Contention,
            std::cmp::Reverse(h.fit.growth_ns.filter(|_| h.fit.verdict == ScalingVerdict::Contention)),
        )
    });
    hops
}

pub fn json(s: &Scaling) -> String {
    serde_json::to_string_pretty(s).expect("a comparison serialises") + "\n"
}

pub fn markdown(s: &Scaling) -> String {
    let mut out = format!("## hoptrace scaling\n\n{}\n\n", header(s));
    out.push_str(
        "| | run | workers | concurrency | in flight | tasks/s | traces | wall |\n|---|---|--:|--:|--:|--:|--:|--:|\n",
    );
    for (i, r) in s.runs.iter().enumerate() {
        out.push_str(&format!("| {} |\n", run_cells(r, i).join(" | ")));
    }
    let runs = s.runs.len();
    out.push_str(&format!(
        "\n| hop |{}growth | verdict |\n|---|{}--:|---|\n",
        (1..=runs).map(|i| format!(" #{i} p50 |")).collect::<String>(),
        "--:|".repeat(runs)
    ));
    for h in ordered(s) {
        let cells: String = h
            .fit
            .points
            .iter()
            .map(|p| format!(" {} |", p.map_or_else(|| "-".to_owned(), |p| human(p.p50_ns))))
            .collect();
        let verdict = match h.fit.verdict {
            ScalingVerdict::Contention => "❌ contention",
            other => verdict_text(other),
        };
        out.push_str(&format!("| {} |{cells} {} | {verdict} |\n", h.label(), growth_text(h)));
    }
    out.push_str(&format!("\n{}\n", s.bottleneck_text()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Log-normal samples with this median, sorted.
    fn samples(rng: &mut Rng, n: usize, median_ns: f64, sigma: f64) -> Vec<i64> {
        let mut v: Vec<i64> = (0..n).map(|_| rng.latency(median_ns, sigma)).collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn flat_hops_are_not_flagged_over_many_sweeps() {
        // 500 sweeps of four runs (200 samples each), eight flat hops judged together in each.
        let x = [1.0, 2.0, 5.0, 10.0];
        let mut rng = Rng(11);
        let mut flagged = 0;
        for _ in 0..500 {
            let any = (0..8).any(|_| {
                let per_run: Vec<Vec<i64>> = x.iter().map(|_| samples(&mut rng, 200, 2e6, 0.6)).collect();
                judge(&x, &per_run, 8, 0.2).verdict == ScalingVerdict::Contention
            });
            flagged += usize::from(any);
        }
        assert!(flagged < 5, "{flagged} of 500 flat sweeps flagged a hop");
    }

    #[test]
    fn a_hop_growing_with_load_contends_and_a_slight_real_growth_does_not() {
        let x = [1.0, 2.0, 5.0, 10.0];
        let mut rng = Rng(3);
        let growing: Vec<Vec<i64>> = x.iter().map(|&l| samples(&mut rng, 200, 1e6 * (1.0 + 0.3 * l), 0.5)).collect();
        let fit = judge(&x, &growing, 8, 0.2);
        assert_eq!(fit.verdict, ScalingVerdict::Contention, "{fit:?}");
        assert!(fit.growth_pct.unwrap() > 150.0, "{fit:?}");
        // +10 % over the sweep on 20,000 samples a run: real, but under the threshold.
        let slight: Vec<Vec<i64>> =
            x.iter().map(|&l| samples(&mut rng, 20_000, 1e6 * (1.0 + 0.011 * l), 0.3)).collect();
        let fit = judge(&x, &slight, 8, 0.2);
        assert_eq!(fit.verdict, ScalingVerdict::Flat, "{fit:?}");
        let (first, last) = (fit.points[0].unwrap(), fit.points[3].unwrap());
        assert!(last.p50_low_ns > first.p50_high_ns, "the growth is real: {fit:?}");
    }

    #[test]
    fn runs_at_nearly_one_load_or_with_few_samples_cannot_be_judged() {
        let mut rng = Rng(5);
        let same = [2.0, 2.2];
        let per_run: Vec<Vec<i64>> = same.iter().map(|_| samples(&mut rng, 100, 1e6, 0.5)).collect();
        assert_eq!(judge(&same, &per_run, 1, 0.2).verdict, ScalingVerdict::TooFewRuns);
        let few = vec![samples(&mut rng, 100, 1e6, 0.5), samples(&mut rng, 5, 9e6, 0.5)];
        let fit = judge(&[1.0, 4.0], &few, 1, 0.2);
        assert_eq!((fit.verdict, fit.points[1]), (ScalingVerdict::TooFewRuns, None));
    }
}
