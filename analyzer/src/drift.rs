//! Latency over a long run: each hop's percentiles per time bucket, and whether its p99 drifts upward.
//!
//! Buckets are aligned to the wall clock (a 1m bucket starts on the minute) and hold the samples whose
//! measured span started in them. The trend is judged on the p99 of every bucket with enough samples for
//! one (100): its slope is Sen's (the median of the slopes between every two buckets, robust to a few odd
//! buckets), with the rank-based confidence interval that goes with it, and its reality by the
//! Mann–Kendall test (do later buckets exceed earlier ones more often than chance?), one-sided, at a
//! family-wise false-alarm rate of [`FAMILY_FALSE_ALARM`] over every hop of the report (Bonferroni). A hop
//! drifts when that test says so **and** its fitted p99 grew by more than the threshold over the buckets
//! judged. Both tests assume buckets are independent under no drift; a periodic load pattern is not.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::hops::HopSamples;
use crate::stats::{normal_quantile, samples_needed, Summary};

/// The chance that a report on a run without drift flags any hop.
pub const FAMILY_FALSE_ALARM: f64 = 0.01;
/// Buckets with a p99 a trend needs.
pub const MIN_BUCKETS: usize = 6;
const NS_PER_HOUR: f64 = 3.6e12;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    pub bucket_ns: i64,
    /// Growth of the fitted p99 over the run, as a fraction, beyond which a real trend is drift.
    pub threshold: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OverTime {
    pub bucket_ns: i64,
    pub threshold_pct: f64,
    /// Hops whose p99 drifts upward.
    pub drifting: usize,
    pub hops: Vec<HopOverTime>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HopOverTime {
    pub category: String,
    pub variant: Option<String>,
    pub hop: String,
    pub buckets: Vec<Bucket>,
    pub trend: Trend,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Bucket {
    pub start_unix_nano: i64,
    pub count: usize,
    pub p50_ns: Option<i64>,
    pub p99_ns: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftVerdict {
    Drift,
    Stable,
    /// Fewer than [`MIN_BUCKETS`] buckets have a p99.
    TooFewBuckets,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Trend {
    pub verdict: DriftVerdict,
    /// Buckets with a p99, the ones judged.
    pub buckets_judged: usize,
    /// Sen's slope per hour, and its 95 % interval, in the values' unit (ns for a hop's p99).
    pub slope_per_hour: Option<i64>,
    pub slope_interval_per_hour: Option<(i64, i64)>,
    /// Growth of the fitted value from the first point judged to the last, in percent.
    pub growth_pct: Option<f64>,
    /// The Mann–Kendall statistic as a z-score (positive: later buckets higher).
    pub z: Option<f64>,
}

impl Trend {
    fn too_few(buckets_judged: usize) -> Trend {
        Trend {
            verdict: DriftVerdict::TooFewBuckets,
            buckets_judged,
            slope_per_hour: None,
            slope_interval_per_hour: None,
            growth_pct: None,
            z: None,
        }
    }
}

/// Per hop (as the report keys them), its buckets and trend. `samples` must carry origins.
pub fn over_time(
    samples: &BTreeMap<(usize, Option<String>, usize), HopSamples>,
    names: impl Fn(usize, usize) -> (String, String),
    settings: Settings,
) -> OverTime {
    let mut hops: Vec<HopOverTime> = Vec::new();
    let mut series: Vec<Vec<(f64, f64)>> = Vec::new();
    for ((c, variant, h), s) in samples {
        let mut by_bucket: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for (origin, &value) in s.origins.iter().zip(&s.values) {
            by_bucket.entry(origin.at.div_euclid(settings.bucket_ns) * settings.bucket_ns).or_default().push(value);
        }
        let buckets: Vec<Bucket> = by_bucket
            .into_iter()
            .filter_map(|(start, mut values)| {
                let summary = Summary::of(&mut values)?;
                Some(Bucket { start_unix_nano: start, count: summary.count, p50_ns: summary.p50, p99_ns: summary.p99 })
            })
            .collect();
        let (category, hop) = names(*c, *h);
        series.push(
            buckets
                .iter()
                .filter(|b| b.count >= samples_needed(crate::config::Percentile::P99))
                .filter_map(|b| {
                    Some(((b.start_unix_nano + settings.bucket_ns / 2) as f64 / NS_PER_HOUR, b.p99_ns? as f64))
                })
                .collect(),
        );
        // Judged below, once the number of hops tested together is known.
        hops.push(HopOverTime { category, variant: variant.clone(), hop, buckets, trend: Trend::too_few(0) });
    }
    let tests = series.iter().filter(|s| s.len() >= MIN_BUCKETS).count().max(1);
    for (hop, points) in hops.iter_mut().zip(&series) {
        hop.trend = trend(points, tests, settings.threshold);
    }
    OverTime {
        bucket_ns: settings.bucket_ns,
        threshold_pct: settings.threshold * 100.0,
        drifting: hops.iter().filter(|h| h.trend.verdict == DriftVerdict::Drift).count(),
        hops,
    }
}

/// The trend of `(hours, value)` points in time order (a hop's p99 per bucket, a health series), one of
/// `tests` judged together.
pub fn trend(points: &[(f64, f64)], tests: usize, threshold: f64) -> Trend {
    let n = points.len();
    if n < MIN_BUCKETS {
        return Trend::too_few(n);
    }
    let mut s = 0i64;
    let mut slopes = Vec::with_capacity(n * (n - 1) / 2);
    for i in 0..n {
        for j in i + 1..n {
            let (a, b) = (points[i], points[j]);
            s += (b.1 - a.1).partial_cmp(&0.0).map_or(0, |o| o as i64);
            slopes.push((b.1 - a.1) / (b.0 - a.0));
        }
    }
    // Mann–Kendall's variance, less what tied values take away.
    let mut values: Vec<f64> = points.iter().map(|p| p.1).collect();
    values.sort_by(f64::total_cmp);
    let ties: f64 = values
        .chunk_by(|a, b| a == b)
        .map(|g| g.len() as f64)
        .filter(|&t| t > 1.0)
        .map(|t| t * (t - 1.0) * (2.0 * t + 5.0))
        .sum();
    let nf = n as f64;
    let variance = (nf * (nf - 1.0) * (2.0 * nf + 5.0) - ties) / 18.0;
    let z = match s.signum() {
        0 => 0.0,
        sign => (s - sign) as f64 / variance.sqrt(),
    };
    slopes.sort_by(f64::total_cmp);
    let slope = median(&slopes);
    // Sen's interval: the slopes at ranks (N ∓ z·√var S) / 2.
    let reach = 1.959964 * variance.sqrt();
    let count = slopes.len() as f64;
    let rank = |r: f64| slopes[(r.round().max(0.0) as usize).min(slopes.len() - 1)];
    let interval = (rank((count - reach) / 2.0), rank((count + reach) / 2.0));
    let mut offsets: Vec<f64> = points.iter().map(|p| p.1 - slope * p.0).collect();
    offsets.sort_by(f64::total_cmp);
    let intercept = median(&offsets);
    let (first, last) = (points[0].0, points[n - 1].0);
    let fitted_start = intercept + slope * first;
    let level = if fitted_start > 0.0 { fitted_start } else { median(&values) };
    let growth = slope * (last - first) / level;
    let real = z > normal_quantile(1.0 - FAMILY_FALSE_ALARM / tests as f64);
    Trend {
        verdict: if real && growth > threshold { DriftVerdict::Drift } else { DriftVerdict::Stable },
        buckets_judged: n,
        slope_per_hour: Some(slope.round() as i64),
        slope_interval_per_hour: Some((interval.0.round() as i64, interval.1.round() as i64)),
        growth_pct: Some((growth * 1e3).round() / 10.0),
        z: Some((z * 100.0).round() / 100.0),
    }
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// `buckets` one-minute buckets of `per_bucket` log-normal samples (median 1 ms), the latency scaled
    /// by `1 + growth · t / T` at time t of T: each bucket's p99.
    fn run(seed: u64, buckets: usize, per_bucket: usize, growth: f64) -> Vec<(f64, f64)> {
        let mut rng = Rng(seed);
        (0..buckets)
            .map(|b| {
                let scale = 1.0 + growth * b as f64 / (buckets - 1) as f64;
                let mut values: Vec<i64> =
                    (0..per_bucket).map(|_| (rng.latency(1e6, 0.5) as f64 * scale) as i64).collect();
                let p99 = Summary::of(&mut values).unwrap().p99.unwrap();
                (b as f64 / 60.0, p99 as f64)
            })
            .collect()
    }

    #[test]
    fn a_growing_p99_is_drift_with_its_slope_per_hour() {
        // +50 % over ten minutes.
        let t = trend(&run(3, 10, 1_000, 0.5), 1, 0.2);
        assert_eq!(t.verdict, DriftVerdict::Drift, "{t:?}");
        let (lo, hi) = t.slope_interval_per_hour.unwrap();
        let slope = t.slope_per_hour.unwrap();
        assert!(lo < slope && slope < hi && lo > 0, "{t:?}");
        assert!((35.0..70.0).contains(&t.growth_pct.unwrap()), "{t:?}");
    }

    #[test]
    fn a_real_but_small_trend_is_not_drift() {
        let t = trend(&run(4, 30, 2_000, 0.08), 1, 0.2);
        assert_eq!(t.verdict, DriftVerdict::Stable, "{t:?}");
        assert!(t.slope_interval_per_hour.unwrap().0 > 0, "the trend is real: {t:?}");
    }

    #[test]
    fn too_few_buckets_give_no_verdict() {
        assert_eq!(trend(&run(5, 5, 500, 1.0), 1, 0.2).verdict, DriftVerdict::TooFewBuckets);
    }

    #[test]
    fn flat_runs_are_not_flagged_over_many_seeds() {
        // Reports of eight hops each, like the built-in categories' busiest: the whole report flags
        // nothing in at least 99 % of them.
        let (reports, hops) = (400u64, 8u64);
        let mut flagged = 0;
        for r in 0..reports {
            let any = (0..hops).any(|h| {
                let buckets = [6, 10, 30][(h % 3) as usize];
                let per_bucket = [100, 400, 2_000][((h / 3) % 3) as usize];
                trend(&run(r * hops + h, buckets, per_bucket, 0.0), hops as usize, 0.2).verdict == DriftVerdict::Drift
            });
            flagged += any as usize;
        }
        assert!(flagged * 100 < reports as usize, "{flagged} of {reports} flat reports flagged drift");
    }

    #[test]
    fn a_planted_drift_is_found_at_the_threshold_it_clears() {
        let mut found = 0;
        for seed in 0..50 {
            found += (trend(&run(seed, 20, 1_000, 0.6), 8, 0.2).verdict == DriftVerdict::Drift) as usize;
        }
        assert!(found >= 48, "found {found} of 50");
    }
}
