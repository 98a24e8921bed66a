//! Comparing a run with a baseline: every hop's p50/p95/p99 before and after, and a regression flagged
//! only when the slowdown exceeds the threshold **and** is statistically real.
//!
//! "Real" is judged by a bootstrap: both sample sets are resampled (with replacement), and the spread of
//! the log of the percentile ratio (after / before) over the resamples is its standard error. A
//! comparison makes many tests at once (every hop, up to three percentiles), so the interval is widened
//! for their number (Bonferroni, at 0.1 % for the whole comparison): pure noise is flagged well under
//! 1 % of the time. A percentile regressed when its ratio exceeds `1 + threshold` and the lower end of that interval
//! is above 1; an improvement is the mirror image. The resampling is seeded: the same inputs give the same
//! verdicts.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::baseline::Baseline;
use crate::config::Percentile;
use crate::report::human;
use crate::stats::{nearest_rank, normal_quantile};
use hoptrace_text::{Align, Table};

pub const SCHEMA: &str = "hoptrace.compare/v1";
/// The chance that pure noise flags anything in a whole comparison: well under the 1 % a CI gate can
/// live with, as the bootstrap's spread of a percentile is itself an estimate.
const FAMILY_FALSE_ALARM: f64 = 0.001;
const PERCENTILES: [(Percentile, f64); 3] = [(Percentile::P50, 0.50), (Percentile::P95, 0.95), (Percentile::P99, 0.99)];
/// Samples per side used by the bootstrap (a uniform subset beyond it): enough for stable intervals.
const BOOTSTRAP_SAMPLES: usize = 2_000;

/// Samples each side needs before a percentile is compared: twenty beyond it (p99: 2,000). Fewer, and
/// the percentile is one of the last few samples, whose bootstrap spread understates its real one.
pub fn samples_to_compare(p: Percentile) -> usize {
    match p {
        Percentile::P50 => 40,
        Percentile::P95 => 400,
        Percentile::P99 => 2_000,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Regression,
    Improvement,
    Unchanged,
    /// In the run but not the baseline, or the other way round.
    OnlyBefore,
    OnlyAfter,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PercentileChange {
    pub percentile: &'static str,
    pub before_ns: i64,
    pub after_ns: i64,
    pub change_pct: f64,
    /// The interval of the change, in percent, at the comparison's family-wise confidence.
    pub interval_pct: (f64, f64),
    pub verdict: Verdict,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HopChange {
    pub category: String,
    pub variant: Option<String>,
    pub hop: String,
    pub before_count: usize,
    pub after_count: usize,
    /// Only the percentiles both sides have enough samples to compare ([`samples_to_compare`]).
    pub percentiles: Vec<PercentileChange>,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Comparison {
    pub schema: &'static str,
    pub baseline: String,
    pub threshold_pct: f64,
    pub min_shift_ns: i64,
    pub regressions: usize,
    pub improvements: usize,
    pub hops: Vec<HopChange>,
}

type Key = (String, Option<String>, String);

/// How a change must look to count.
#[derive(Debug, Clone, Copy)]
pub struct Gate {
    /// The relative change a percentile must exceed (0.10 for 10 %).
    pub threshold: f64,
    /// The absolute change it must also exceed, in ns: a floor under which a shift is not worth a
    /// failed build, however certain (0 by default).
    pub min_shift_ns: i64,
    /// Bootstrap resamples per hop.
    pub resamples: usize,
}

impl Default for Gate {
    fn default() -> Self {
        Gate { threshold: 0.10, min_shift_ns: 0, resamples: 400 }
    }
}

/// Compares `after` with `before`.
pub fn compare(before: &Baseline, after: &Baseline, gate: Gate) -> Comparison {
    let Gate { threshold, resamples, .. } = gate;
    let index = |b: &Baseline| -> BTreeMap<Key, (usize, Vec<i64>)> {
        b.hops
            .iter()
            .map(|h| ((h.category.clone(), h.variant.clone(), h.hop.clone()), (h.count, h.samples.clone())))
            .collect()
    };
    let (old, new) = (index(before), index(after));
    let mut keys: Vec<&Key> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    // Measure everything first: the interval's width depends on how many percentiles are compared.
    let measured: Vec<(&Key, Option<Vec<Measured>>)> = keys
        .iter()
        .map(|key| match (old.get(*key), new.get(*key)) {
            (Some((_, a)), Some((_, b))) => (*key, Some(measure(a, b, resamples, seed_of(key)))),
            _ => (*key, None),
        })
        .collect();
    let tests = measured.iter().map(|(_, m)| m.as_ref().map_or(0, Vec::len)).sum::<usize>().max(1);
    let z = normal_quantile(1.0 - FAMILY_FALSE_ALARM / 2.0 / tests as f64);
    let mut hops = Vec::new();
    for (key, measured) in measured {
        let (category, variant, hop) = key.clone();
        let (before_count, after_count) = (old.get(key).map_or(0, |o| o.0), new.get(key).map_or(0, |n| n.0));
        let (percentiles, verdict) = match measured {
            Some(measured) => {
                let percentiles: Vec<PercentileChange> = measured.iter().map(|m| judge(m, gate, z)).collect();
                let verdict = if percentiles.iter().any(|p| p.verdict == Verdict::Regression) {
                    Verdict::Regression
                } else if percentiles.iter().any(|p| p.verdict == Verdict::Improvement) {
                    Verdict::Improvement
                } else {
                    Verdict::Unchanged
                };
                (percentiles, verdict)
            }
            None if before_count > 0 => (Vec::new(), Verdict::OnlyBefore),
            None => (Vec::new(), Verdict::OnlyAfter),
        };
        hops.push(HopChange { category, variant, hop, before_count, after_count, percentiles, verdict });
    }
    Comparison {
        schema: SCHEMA,
        baseline: before.name.clone(),
        threshold_pct: threshold * 100.0,
        min_shift_ns: gate.min_shift_ns,
        regressions: hops.iter().filter(|h| h.verdict == Verdict::Regression).count(),
        improvements: hops.iter().filter(|h| h.verdict == Verdict::Improvement).count(),
        hops,
    }
}

/// The resampling seed of a hop, from its key alone: the words of its `Hash` mixed as the Fx hash mixes
/// them (multiply-rotate, no finishing rotation), fixed here so that the same inputs give the same verdict
/// in every run and build whatever a hash map crate's tuning; the values are those compare has always used.
fn seed_of(key: &Key) -> u64 {
    use std::hash::{Hash, Hasher};
    struct Words(u64);
    impl Hasher for Words {
        fn write(&mut self, bytes: &[u8]) {
            for chunk in bytes.chunks(8) {
                let mut word = [0u8; 8];
                word[..chunk.len()].copy_from_slice(chunk);
                self.write_u64(u64::from_le_bytes(word));
            }
        }
        fn write_u8(&mut self, i: u8) {
            self.write_u64(i as u64)
        }
        fn write_usize(&mut self, i: usize) {
            self.write_u64(i as u64)
        }
        fn write_u64(&mut self, word: u64) {
            self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
        fn finish(&self) -> u64 {
            self.0
        }
    }
    let mut words = Words(0);
    key.hash(&mut words);
    words.finish() | 1
}

/// The bootstrap's draws: xorshift64, not the analyzer's [`crate::rng::Rng`], because a verdict at the edge
/// of the gate depends on the exact resamples drawn, and these are the draws every verdict so far was
/// made with (a SplitMix64 stream flips a borderline p95 verdict in `tests/compare.rs`).
struct Resampler(u64);

impl Resampler {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (((self.0 >> 11) as u128 * n as u128) >> 53) as usize
    }
}

/// One percentile measured on both sides, before judging.
struct Measured {
    percentile: Percentile,
    before_ns: i64,
    after_ns: i64,
    /// Standard error of ln(after / before), from the bootstrap.
    log_se: f64,
}

fn measure(before: &[i64], after: &[i64], resamples: usize, seed: u64) -> Vec<Measured> {
    let mut rng = Resampler(seed);
    let sorted = |v: &[i64]| {
        let mut v = v.to_vec();
        v.sort_unstable();
        v
    };
    let (a_all, b_all) = (sorted(before), sorted(after));
    let usable: Vec<(Percentile, f64)> = PERCENTILES
        .into_iter()
        .filter(|(p, _)| a_all.len() >= samples_to_compare(*p) && b_all.len() >= samples_to_compare(*p))
        .collect();
    let (a, b) = (subset(&a_all), subset(&b_all));
    let mut logs: Vec<Vec<f64>> = vec![Vec::with_capacity(resamples); usable.len()];
    let (mut ra, mut rb) = (vec![0i64; a.len()], vec![0i64; b.len()]);
    for _ in 0..resamples {
        for x in ra.iter_mut() {
            *x = a[rng.below(a.len())];
        }
        for x in rb.iter_mut() {
            *x = b[rng.below(b.len())];
        }
        ra.sort_unstable();
        rb.sort_unstable();
        for (k, &(_, f)) in usable.iter().enumerate() {
            let (pa, pb) = (nearest_rank(&ra, f).max(1), nearest_rank(&rb, f).max(1));
            logs[k].push((pb as f64 / pa as f64).ln());
        }
    }
    usable
        .iter()
        .zip(&logs)
        .map(|(&(percentile, f), logs)| {
            let mean = logs.iter().sum::<f64>() / logs.len().max(1) as f64;
            let var = logs.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / (logs.len().max(2) - 1) as f64;
            Measured {
                percentile,
                before_ns: nearest_rank(&a_all, f),
                after_ns: nearest_rank(&b_all, f),
                log_se: var.sqrt(),
            }
        })
        .collect()
}

fn judge(m: &Measured, gate: Gate, z: f64) -> PercentileChange {
    let threshold = gate.threshold;
    let ratio = m.after_ns.max(1) as f64 / m.before_ns.max(1) as f64;
    let (low, high) = ((ratio.ln() - z * m.log_se).exp(), (ratio.ln() + z * m.log_se).exp());
    let large = (m.after_ns - m.before_ns).abs() > gate.min_shift_ns;
    let verdict = if ratio > 1.0 + threshold && low > 1.0 && large {
        Verdict::Regression
    } else if ratio < 1.0 / (1.0 + threshold) && high < 1.0 && large {
        Verdict::Improvement
    } else {
        Verdict::Unchanged
    };
    PercentileChange {
        percentile: m.percentile.label(),
        before_ns: m.before_ns,
        after_ns: m.after_ns,
        change_pct: (ratio - 1.0) * 100.0,
        interval_pct: ((low - 1.0) * 100.0, (high - 1.0) * 100.0),
        verdict,
    }
}

/// At most [`BOOTSTRAP_SAMPLES`] of `sorted`, evenly spaced: the same distribution, fewer points.
fn subset(sorted: &[i64]) -> Vec<i64> {
    if sorted.len() <= BOOTSTRAP_SAMPLES {
        return sorted.to_vec();
    }
    (0..BOOTSTRAP_SAMPLES).map(|i| sorted[i * sorted.len() / BOOTSTRAP_SAMPLES]).collect()
}

fn mark(v: Verdict) -> &'static str {
    match v {
        Verdict::Regression => "REGRESSION",
        Verdict::Improvement => "improvement",
        Verdict::Unchanged => "",
        Verdict::OnlyBefore => "only in baseline",
        Verdict::OnlyAfter => "new",
    }
}

fn cell(p: &PercentileChange) -> String {
    format!("{} → {} ({:+.1}%)", human(p.before_ns), human(p.after_ns), p.change_pct)
}

fn cells(h: &HopChange) -> [String; 3] {
    let find =
        |label: &str| h.percentiles.iter().find(|p| p.percentile == label).map(cell).unwrap_or_else(|| "—".into());
    [find("p50"), find("p95"), find("p99")]
}

impl Comparison {
    pub fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut out = format!(
            "hoptrace compare against baseline {:?} (threshold {:.0}%): {} regression(s), {} improvement(s)\n",
            self.baseline, self.threshold_pct, self.regressions, self.improvements
        );
        let mut table = Table::new(&[Align::Left; 7]).indent("  ");
        table.row(["category", "variant", "hop", "p50", "p95", "p99", ""]);
        for h in &self.hops {
            let [p50, p95, p99] = cells(h);
            table.row([
                h.category.clone(),
                h.variant.clone().unwrap_or_else(|| "(all)".into()),
                h.hop.clone(),
                p50,
                p95,
                p99,
                mark(h.verdict).into(),
            ]);
        }
        out.push_str(&table.render());
        for h in self.hops.iter().filter(|h| h.verdict == Verdict::Regression) {
            for p in h.percentiles.iter().filter(|p| p.verdict == Verdict::Regression) {
                let _ = writeln!(
                    out,
                    "regression: {}/{}/{} {} {:+.1}% (interval {:+.1}% … {:+.1}%)",
                    h.category,
                    h.variant.as_deref().unwrap_or("(all)"),
                    h.hop,
                    p.percentile,
                    p.change_pct,
                    p.interval_pct.0,
                    p.interval_pct.1
                );
            }
        }
        out
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a comparison serialises") + "\n"
    }

    /// For a pull-request comment: the verdict first, then the hops that changed, then all of them.
    pub fn markdown(&self) -> String {
        use std::fmt::Write as _;
        let headline = if self.regressions > 0 { "❌" } else { "✅" };
        let mut out = format!(
            "## {headline} hoptrace: {} regression(s), {} improvement(s) against `{}`\n\nThreshold {:.0}%; a change counts when its bootstrap interval, widened for the number of hops compared, excludes no change.\n\n| category | variant | hop | p50 | p95 | p99 | |\n|---|---|---|---|---|---|---|\n",
            self.regressions, self.improvements, self.baseline, self.threshold_pct
        );
        for h in &self.hops {
            let [p50, p95, p99] = cells(h);
            let _ = writeln!(
                out,
                "| {} | {} | {} | {p50} | {p95} | {p99} | {} |",
                h.category,
                h.variant.as_deref().unwrap_or("(all)"),
                h.hop,
                match h.verdict {
                    Verdict::Regression => "❌ regression",
                    Verdict::Improvement => "✅ improvement",
                    other => mark(other),
                }
            );
        }
        out
    }
}

/// `10%` or `0.1` → 0.1.
pub fn parse_threshold(text: &str) -> Result<f64, String> {
    let bad = || format!("{text:?} is not a threshold such as \"10%\"");
    let value = match text.trim().strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map_err(|_| bad())? / 100.0,
        None => text.trim().parse::<f64>().map_err(|_| bad())?,
    };
    if !(0.0..10.0).contains(&value) {
        return Err(bad());
    }
    Ok(value)
}
