//! Percentiles of hop samples, and targets judged against them.

use crate::config::{Percentile, Target};

/// The samples a percentile needs before it means anything: at least one sample above it
/// (p50: 2, p95: 20, p99: 100).
pub fn samples_needed(p: Percentile) -> usize {
    match p {
        Percentile::P50 => 2,
        Percentile::P95 => 20,
        Percentile::P99 => 100,
    }
}

fn fraction(p: Percentile) -> f64 {
    match p {
        Percentile::P50 => 0.50,
        Percentile::P95 => 0.95,
        Percentile::P99 => 0.99,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub count: usize,
    /// Nearest-rank percentiles, `None` when there are too few samples for it.
    pub p50: Option<i64>,
    pub p95: Option<i64>,
    pub p99: Option<i64>,
    pub max: i64,
    pub min: i64,
    pub mean: f64,
}

impl Summary {
    /// Summarises samples (reordering them): each percentile is selected in linear time, not sorted for.
    pub fn of(values: &mut [i64]) -> Option<Summary> {
        if values.is_empty() {
            return None;
        }
        let n = values.len();
        let (min, max) = values.iter().fold((i64::MAX, i64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        // Ascending ranks, each selected in the part right of the previous one.
        let mut done = 0;
        let mut at = |p: Percentile| {
            if n < samples_needed(p) {
                return None;
            }
            let rank = hoptrace_text::nearest_rank_index(n, fraction(p));
            let (_, value, _) = values[done..].select_nth_unstable(rank - done);
            let value = *value;
            done = rank;
            Some(value)
        };
        let (p50, p95, p99) = (at(Percentile::P50), at(Percentile::P95), at(Percentile::P99));
        Some(Summary { count: n, p50, p95, p99, max, min, mean })
    }

    pub fn percentile(&self, p: Percentile) -> Option<i64> {
        match p {
            Percentile::P50 => self.p50,
            Percentile::P95 => self.p95,
            Percentile::P99 => self.p99,
        }
    }
}

/// The smallest sample with at least `fraction` of the samples at or below it (`sorted` not empty).
pub fn nearest_rank(sorted: &[i64], fraction: f64) -> i64 {
    hoptrace_text::nearest_rank(sorted, fraction).expect("percentiles of no samples are not asked for")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    /// A percentile the target names has too few samples to judge.
    FewSamples,
}

impl Verdict {
    pub fn judge(target: &Target, summary: &Summary) -> Verdict {
        let mut verdict = Verdict::Pass;
        for &(p, limit) in &target.limits {
            match summary.percentile(p) {
                None => verdict = Verdict::FewSamples,
                Some(value) if value as u128 >= limit.as_nanos() => return Verdict::Fail,
                Some(_) => {}
            }
        }
        verdict
    }
}

/// The standard normal quantile (Acklam's rational approximation, relative error below 1.2e-9).
#[allow(clippy::excessive_precision)] // the coefficients as published
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.383577518672690e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] =
        [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles_are_samples() {
        let mut v: Vec<i64> = (1..=200).rev().collect();
        let s = Summary::of(&mut v).unwrap();
        assert_eq!((s.p50, s.p95, s.p99, s.max, s.min), (Some(100), Some(190), Some(198), 200, 1));
        assert_eq!(s.mean, 100.5);
    }

    #[test]
    fn selection_agrees_with_sorting() {
        let mut state = 1u64;
        for n in [1usize, 2, 19, 20, 99, 100, 101, 1000, 4321] {
            let mut v: Vec<i64> = (0..n)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (state >> 40) as i64 % 1000
                })
                .collect();
            let mut sorted = v.clone();
            sorted.sort_unstable();
            let s = Summary::of(&mut v).unwrap();
            let want = |p, f| (n >= samples_needed(p)).then(|| nearest_rank(&sorted, f));
            assert_eq!(s.p50, want(Percentile::P50, 0.5), "n={n}");
            assert_eq!(s.p95, want(Percentile::P95, 0.95), "n={n}");
            assert_eq!(s.p99, want(Percentile::P99, 0.99), "n={n}");
            assert_eq!((s.min, s.max), (sorted[0], sorted[n - 1]));
        }
    }

    #[test]
    fn too_few_samples_leave_the_percentile_out_and_the_verdict_open() {
        let mut v: Vec<i64> = (1..=50).collect();
        let s = Summary::of(&mut v).unwrap();
        assert_eq!((s.p50, s.p95, s.p99), (Some(25), Some(48), None));
        let target = Target::parse("p99 < 1ms").unwrap();
        assert_eq!(Verdict::judge(&target, &s), Verdict::FewSamples);
        // A failing percentile that can be judged still fails.
        let target = Target::parse("p50 < 10ns, p99 < 1ms").unwrap();
        assert_eq!(Verdict::judge(&target, &s), Verdict::Fail);
        assert_eq!(Summary::of(&mut []), None);
    }

    #[test]
    fn a_target_is_met_strictly_below_its_limit() {
        let mut v = vec![5_000_000i64; 100];
        let s = Summary::of(&mut v).unwrap();
        assert_eq!(Verdict::judge(&Target::parse("p99 < 5ms").unwrap(), &s), Verdict::Fail);
        assert_eq!(Verdict::judge(&Target::parse("p99 < 5.001ms").unwrap(), &s), Verdict::Pass);
    }

    #[test]
    fn normal_quantiles() {
        for (p, z) in [(0.5, 0.0), (0.975, 1.959964), (0.995, 2.575829), (0.999875, 3.662260), (0.025, -1.959964)] {
            assert!((normal_quantile(p) - z).abs() < 1e-5, "{p}: {}", normal_quantile(p));
        }
    }
}
