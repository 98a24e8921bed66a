//! Is work shared fairly between a service's instances? Per worker instance (`service.instance.id`): the
//! units of work it took (the samples of the configuration's `[fairness]` hop), its share, and its time
//! in that hop; per service, Jain's fairness index and the max/min ratio.
//!
//! An instance is called out as uneven only when its share is off an equal split by more than
//! [`MIN_DEVIATION`] **and** by more than chance allows: under a fair split each unit goes to any of `k`
//! instances alike, so an instance's count is binomial(N, 1/k), and its z-score is judged at a family-wise
//! false-alarm rate of [`FAMILY_FALSE_ALARM`] over the service's instances.

use serde::Serialize;

use crate::config::Config;
use crate::hops::Extraction;
use crate::spans::{FxMap, SpanTable};
use crate::stats::normal_quantile;

/// How far an instance's share must be from an equal one (relatively) to matter.
pub const MIN_DEVIATION: f64 = 0.2;
/// The chance that a fair split is called uneven, per service.
const FAMILY_FALSE_ALARM: f64 = 0.001;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ServiceFairness {
    pub service: String,
    /// The hop counted, `category/hop`.
    pub work: String,
    pub units: usize,
    /// By instance name.
    pub instances: Vec<InstanceShare>,
    /// (Σx)² / (k·Σx²) over the instances' units: 1 for an equal split, 1/k when one instance takes all.
    pub jain_index: f64,
    /// The busiest instance's units over the idlest's.
    pub max_min_ratio: f64,
    /// The instance whose share is off an equal split beyond chance and [`MIN_DEVIATION`], the furthest
    /// first; none when the split is fair.
    pub uneven: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InstanceShare {
    pub instance: String,
    pub units: usize,
    pub share: f64,
    /// Total time of its samples of the hop (the time in the handler, for the built-in `execute`).
    pub time_ns: i64,
    pub time_share: f64,
    /// How many standard deviations its count is from an equal split's.
    pub z: f64,
}

/// Fairness of every service that has several instances among the fairness hop's samples.
pub fn fairness(table: &SpanTable, config: &Config, extraction: &Extraction) -> Vec<ServiceFairness> {
    let Some((c, h)) = config.fairness else { return Vec::new() };
    // Per process string id: units and time, over every variant of the hop.
    let mut per_process: FxMap<u32, (usize, i64)> = FxMap::default();
    for ((category, _, hop), samples) in &extraction.samples {
        if (*category, *hop) != (c, h) {
            continue;
        }
        for (origin, value) in samples.origins.iter().zip(&samples.values) {
            let entry = per_process.entry(origin.process).or_default();
            entry.0 += 1;
            entry.1 += value;
        }
    }
    let mut by_service: std::collections::BTreeMap<String, Vec<(String, usize, i64)>> = Default::default();
    for (process, (units, time)) in per_process {
        let text = table.strings.resolve(process);
        let (service, instance) = text.split_once('/').unwrap_or((text, text));
        by_service.entry(service.to_owned()).or_default().push((instance.to_owned(), units, time));
    }
    let work = format!("{}/{}", config.categories[c].name, config.categories[c].hops[h].name);
    by_service
        .into_iter()
        .filter(|(_, instances)| instances.len() > 1)
        .map(|(service, mut instances)| {
            instances.sort();
            judge(service, work.clone(), &instances)
        })
        .collect()
}

/// The fairness of `(instance, units, time)` rows of one service.
pub fn judge(service: String, work: String, instances: &[(String, usize, i64)]) -> ServiceFairness {
    let k = instances.len() as f64;
    let units: usize = instances.iter().map(|i| i.1).sum();
    let time: i64 = instances.iter().map(|i| i.2).sum();
    let n = units as f64;
    let (p, sd) = (1.0 / k, (n * (1.0 / k) * (1.0 - 1.0 / k)).sqrt());
    let shares: Vec<InstanceShare> = instances
        .iter()
        .map(|(instance, u, t)| InstanceShare {
            instance: instance.clone(),
            units: *u,
            share: round4(*u as f64 / n),
            time_ns: *t,
            time_share: round4(if time > 0 { *t as f64 / time as f64 } else { 0.0 }),
            z: if sd > 0.0 { ((*u as f64 - n * p) / sd * 100.0).round() / 100.0 } else { 0.0 },
        })
        .collect();
    let squares: f64 = instances.iter().map(|i| (i.1 as f64).powi(2)).sum();
    let (max, min) = instances.iter().fold((0, usize::MAX), |(hi, lo), i| (hi.max(i.1), lo.min(i.1)));
    let critical = normal_quantile(1.0 - FAMILY_FALSE_ALARM / 2.0 / k);
    let uneven = instances
        .iter()
        .filter(|(_, u, _)| (*u as f64 / n * k - 1.0).abs() > MIN_DEVIATION)
        .filter_map(|(instance, u, _)| {
            let z = (*u as f64 - n * p) / sd;
            (z.abs() > critical).then_some((z.abs(), instance))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, instance)| instance.clone());
    ServiceFairness {
        service,
        work,
        units,
        instances: shares,
        jain_index: round4(if squares > 0.0 { n * n / (k * squares) } else { 1.0 }),
        max_min_ratio: round4(if min > 0 { max as f64 / min as f64 } else { f64::INFINITY }),
        uneven,
    }
}

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// `units` handed out at random with the given weights.
    fn split(seed: u64, units: usize, weights: &[f64]) -> Vec<(String, usize, i64)> {
        let mut rng = Rng(seed);
        let total: f64 = weights.iter().sum();
        let mut counts = vec![0usize; weights.len()];
        for _ in 0..units {
            let mut x = rng.unit() * total;
            let mut i = 0;
            while i + 1 < weights.len() && x >= weights[i] {
                x -= weights[i];
                i += 1;
            }
            counts[i] += 1;
        }
        counts.iter().enumerate().map(|(i, &c)| (format!("worker-{}", i + 1), c, c as i64 * 1000)).collect()
    }

    #[test]
    fn an_instance_taking_more_than_its_share_is_named() {
        // worker-3 takes twice the others' share.
        let f = judge("worker".into(), "w/e".into(), &split(1, 5_000, &[1.0, 1.0, 2.0, 1.0, 1.0]));
        assert_eq!(f.uneven.as_deref(), Some("worker-3"), "{f:?}");
        assert!(f.jain_index < 0.95 && f.max_min_ratio > 1.7, "{f:?}");
        assert!((f.instances.iter().map(|i| i.share).sum::<f64>() - 1.0).abs() < 1e-3);
    }

    #[test]
    fn an_idle_instance_is_named_too() {
        let f = judge("worker".into(), "w/e".into(), &split(2, 3_000, &[1.0, 1.0, 0.3]));
        assert_eq!(f.uneven.as_deref(), Some("worker-3"), "{f:?}");
    }

    #[test]
    fn fair_splits_are_not_flagged_over_many_seeds() {
        let mut flagged = 0;
        let trials = 2_000;
        for seed in 0..trials {
            let k = 2 + (seed % 9) as usize;
            let units = [20, 200, 2_000][(seed % 3) as usize];
            if judge("w".into(), "w/e".into(), &split(seed, units, &vec![1.0; k])).uneven.is_some() {
                flagged += 1;
            }
        }
        assert!(flagged * 100 < trials, "{flagged} of {trials} fair splits flagged");
    }

    #[test]
    fn jain_index_is_one_for_an_equal_split_and_one_over_k_for_one_taker() {
        let rows = |c: &[usize]| c.iter().enumerate().map(|(i, &u)| (format!("w{i}"), u, 0)).collect::<Vec<_>>();
        assert_eq!(judge("s".into(), "w".into(), &rows(&[10, 10, 10])).jain_index, 1.0);
        let one = judge("s".into(), "w".into(), &rows(&[30, 0, 0, 0]));
        assert_eq!(one.jain_index, 0.25);
        assert_eq!(one.uneven.as_deref(), Some("w0"));
    }
}
