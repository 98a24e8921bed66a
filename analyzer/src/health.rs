//! Process health over a run, from the health samples loadgen records into it (a `health sample` trace
//! every interval; see docs/services.md): per series — a process's resident memory, the database's open
//! connections, a queue's depth — its values over time and a verdict in the drift style: `growing` when
//! the Mann–Kendall trend is real (family-wise 1 % over the series) and the fitted growth over the run
//! exceeds the threshold. Growing memory is a leak; growing connections, a pool or client not giving
//! them back; a growing queue, work arriving faster than it is done.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::drift::{self, DriftVerdict, Trend};
use crate::hops::RUN_ID_KEY;
use crate::spans::{SpanTable, NONE};

pub const SERIES_KEY: &str = "health.series";
pub const VALUE_KEY: &str = "health.value";
pub const UNIT_KEY: &str = "health.unit";
/// The attributes the table must hold for [`health`].
pub const KEYS: [&str; 3] = [SERIES_KEY, VALUE_KEY, UNIT_KEY];
/// The spans of a health sample: not part of the system's work, so [`take`] removes them before the
/// analysis.
pub const SPAN_NAMES: [&str; 2] = ["health sample", "health measurement"];

const NS_PER_HOUR: f64 = 3.6e12;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HealthSeries {
    pub series: String,
    /// UCUM, as OpenTelemetry names units: `By`, `{connection}`, `{message}`.
    pub unit: String,
    /// (Unix ns, value), in time order.
    pub samples: Vec<(i64, f64)>,
    /// The trend of the values per hour (its slope in the series' unit).
    pub trend: Trend,
}

impl HealthSeries {
    pub fn growing(&self) -> bool {
        self.trend.verdict == DriftVerdict::Drift
    }
}

/// Takes the health samples out of `table`: with a `threshold`, their series (see [`health`]) are
/// returned; either way their spans are removed, so they count neither as traces nor in any hop.
pub fn take(table: &mut SpanTable, run: Option<&str>, threshold: Option<f64>) -> Vec<HealthSeries> {
    let series = threshold.map(|t| health(table, run, t)).unwrap_or_default();
    let names: Vec<u32> = SPAN_NAMES.iter().filter_map(|n| table.strings.get(n)).collect();
    if !names.is_empty() {
        let sample: Vec<bool> = table.name.iter().map(|n| names.contains(n)).collect();
        table.retain(|row| !sample[row]);
    }
    series
}

/// Every series sampled in `table` (of `run`, when given), sorted by name, each judged at `threshold`
/// (a fraction of growth over the run).
pub fn health(table: &SpanTable, run: Option<&str>, threshold: f64) -> Vec<HealthSeries> {
    let slot = |key: &str| table.key_slot(key);
    let (Some(series), Some(value), Some(unit)) = (slot(SERIES_KEY), slot(VALUE_KEY), slot(UNIT_KEY)) else {
        return Vec::new();
    };
    let run = match (run, slot(RUN_ID_KEY)) {
        (None, _) => None,
        (Some(run), Some(run_slot)) => Some((run_slot, table.strings.get(run).unwrap_or(NONE))),
        (Some(_), None) => return Vec::new(),
    };
    // Series name → (unit, samples).
    type Samples<'a> = (&'a str, Vec<(i64, f64)>);
    let mut by_series: BTreeMap<&str, Samples> = BTreeMap::new();
    for rows in &table.traces {
        for row in rows.clone() {
            let name = table.attributes[series][row];
            if name == NONE || run.is_some_and(|(slot, id)| table.attributes[slot][row] != id) {
                continue;
            }
            let Ok(v) = table.strings.resolve(table.attributes[value][row]).parse::<f64>() else { continue };
            let entry = by_series
                .entry(table.strings.resolve(name))
                .or_insert_with(|| (table.strings.resolve(table.attributes[unit][row]), Vec::new()));
            entry.1.push((table.start[row], v));
        }
    }
    let tests = by_series.values().filter(|(_, s)| s.len() >= drift::MIN_BUCKETS).count().max(1);
    by_series
        .into_iter()
        .map(|(name, (unit, mut samples))| {
            samples.sort_by_key(|s| s.0);
            let points: Vec<(f64, f64)> = samples.iter().map(|&(t, v)| (t as f64 / NS_PER_HOUR, v)).collect();
            HealthSeries {
                series: name.to_owned(),
                unit: unit.to_owned(),
                trend: drift::trend(&points, tests, threshold),
                samples,
            }
        })
        .collect()
}

/// A value of a series for people: bytes in MB, counts as they are.
pub fn value_text(unit: &str, value: f64) -> String {
    match unit {
        "By" => format!("{:.1} MB", value / 1e6),
        _ => format!("{value:.0}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_in_their_unit() {
        assert_eq!(value_text("By", 21_300_000.0), "21.3 MB");
        assert_eq!(value_text("{connection}", 12.0), "12");
    }
}
