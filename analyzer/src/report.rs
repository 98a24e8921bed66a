//! The report: per category and variant, each hop's percentiles against its target, and what clock-skew
//! correction did; rendered as an aligned table, JSON (schema `hoptrace.report/v1`, docs/report.md), CSV
//! or markdown.

use std::fmt::Write as _;

use hoptrace_text::{Align, Table};
use serde::Serialize;

use crate::config::{Config, Measure, Percentile};
use crate::drift::{DriftVerdict, OverTime};
use crate::fairness::ServiceFairness;
use crate::health::HealthSeries;
use crate::hops::Extraction;
use crate::stats::{samples_needed, Summary, Verdict};

pub const SCHEMA: &str = "hoptrace.report/v1";

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub schema: &'static str,
    pub store: String,
    pub range: Range,
    pub run_id: Option<String>,
    pub traces: usize,
    pub spans: usize,
    /// With a configuration that joins or excludes: what that did before the analysis.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assembly: Option<Assembly>,
    pub clock_skew: Skew,
    pub categories: Vec<CategoryReport>,
    /// Per service with several instances: how its work was shared ([`crate::fairness`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fairness: Vec<ServiceFairness>,
    /// With `--over-time`: each hop's percentiles per bucket and its drift verdict ([`crate::drift`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub over_time: Option<OverTime>,
    /// With `--over-time`: the run's health samples per series and their trends ([`crate::health`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub health: Vec<HealthSeries>,
}

/// What joins and exclusions made of the stored traces (their traces count as one each in `traces`).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Assembly {
    /// Lifecycles assembled from several stored traces by the configuration's joins.
    pub stitched_lifecycles: usize,
    /// The stored traces those were assembled from.
    pub stitched_traces: usize,
    pub excluded_spans: usize,
    pub excluded_traces: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Range {
    /// RFC 3339, or null for an open end.
    pub from: Option<String>,
    pub to: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Skew {
    /// Samples measured between spans of different processes, where clocks can disagree.
    pub cross_process_samples: usize,
    pub corrected: usize,
    pub mean_correction_ns: i64,
    pub max_correction_ns: i64,
    /// Cross-process samples whose trace gave contradictory bounds; kept as measured.
    pub uncorrectable: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CategoryReport {
    pub name: String,
    pub description: String,
    pub group_by: Option<String>,
    pub variants: Vec<VariantReport>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VariantReport {
    /// The `group_by` value; null when the category has none or a span lacked it.
    pub variant: Option<String>,
    pub hops: Vec<HopReport>,
    /// For a category with an `interval` hop: where its time goes along the critical path.
    pub critical_path: Option<CriticalPathReport>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CriticalPathReport {
    /// The interval hop the path covers.
    pub hop: String,
    /// Traces in the median band (40th–60th percentile of the interval) and in the tail (99th and up).
    pub median_traces: usize,
    pub tail_traces: usize,
    /// Largest share in the tail first.
    pub segments: Vec<PathShare>,
    /// The traces at the median and at the 99th percentile, span by span (with details only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exemplars: Vec<crate::critical_path::Exemplar>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PathShare {
    /// A span name (its own time on the path) or `from ⇢ to` (the wait between two spans).
    pub segment: String,
    pub share_median: f64,
    pub share_tail: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HopReport {
    pub hop: String,
    pub measure: &'static str,
    pub count: usize,
    pub p50_ns: Option<i64>,
    pub p95_ns: Option<i64>,
    pub p99_ns: Option<i64>,
    pub max_ns: i64,
    pub mean_ns: i64,
    /// Percentiles left out for want of samples, with the number each needs.
    pub too_few_samples: Vec<TooFew>,
    pub target: Option<String>,
    pub verdict: Option<Verdict>,
    pub clock_skew: Skew,
    /// The cumulative distribution as (ns, fraction of samples at or below) points (with details only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distribution: Option<Vec<(i64, f64)>>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TooFew {
    pub percentile: &'static str,
    pub needs: usize,
}

impl Report {
    /// Summarises an extraction; with `details`, each hop also gets its cumulative distribution and each
    /// critical path its exemplar traces (what the HTML report draws).
    pub fn build(
        config: &Config,
        mut extraction: Extraction,
        store: String,
        range: Range,
        run_id: Option<String>,
        details: bool,
    ) -> Report {
        let mut total = SkewTotals::default();
        let mut paths = std::mem::take(&mut extraction.critical_paths);
        let mut categories: Vec<CategoryReport> = Vec::new();
        for ((c, variant, h), mut samples) in extraction.samples {
            let category = &config.categories[c];
            let rule = &category.hops[h];
            let Some(summary) = Summary::of(&mut samples.values) else { continue };
            let distribution = details.then(|| cumulative(&mut samples.values));
            total.add(&samples);
            let target = rule.target_for(variant.as_deref().unwrap_or(""));
            let hop = HopReport {
                hop: rule.name.clone(),
                measure: match rule.measure {
                    Measure::Duration(_) => "duration",
                    Measure::SelfTime(_) => "self_time",
                    Measure::Gap { .. } => "gap",
                    Measure::Interval { .. } => "interval",
                    Measure::Difference { .. } => "difference",
                },
                count: summary.count,
                p50_ns: summary.p50,
                p95_ns: summary.p95,
                p99_ns: summary.p99,
                max_ns: summary.max,
                mean_ns: summary.mean.round() as i64,
                too_few_samples: [Percentile::P50, Percentile::P95, Percentile::P99]
                    .into_iter()
                    .filter(|&p| summary.percentile(p).is_none())
                    .map(|p| TooFew { percentile: p.label(), needs: samples_needed(p) })
                    .collect(),
                target: target.map(|t| t.text.clone()),
                verdict: target.map(|t| Verdict::judge(t, &summary)),
                clock_skew: SkewTotals::of(&samples).skew(),
                distribution,
            };
            if categories.last().is_none_or(|last| last.name != category.name) {
                categories.push(CategoryReport {
                    name: category.name.clone(),
                    description: category.description.clone(),
                    group_by: category.group_by.clone(),
                    variants: Vec::new(),
                });
            }
            let report = categories.last_mut().expect("pushed above");
            if report.variants.last().is_none_or(|last| last.variant != variant) {
                report.variants.push(VariantReport { variant: variant.clone(), hops: Vec::new(), critical_path: None });
            }
            let variant_report = report.variants.last_mut().expect("pushed above");
            if let Some(path) = paths.remove(&(c, variant, h)) {
                variant_report.critical_path = Some(CriticalPathReport {
                    hop: rule.name.clone(),
                    median_traces: path.median_traces,
                    tail_traces: path.tail_traces,
                    segments: path
                        .segments
                        .into_iter()
                        .map(|(segment, share_median, share_tail)| PathShare {
                            segment,
                            share_median: (share_median * 1e4).round() / 1e4,
                            share_tail: (share_tail * 1e4).round() / 1e4,
                        })
                        .collect(),
                    exemplars: if details { path.exemplars } else { Vec::new() },
                });
            }
            variant_report.hops.push(hop);
        }
        Report {
            schema: SCHEMA,
            store,
            range,
            run_id,
            traces: extraction.traces,
            spans: extraction.spans,
            assembly: (!config.joins.is_empty() || !config.exclude.is_empty()).then_some(Assembly {
                stitched_lifecycles: extraction.stitched,
                stitched_traces: extraction.stitched_traces,
                excluded_spans: extraction.excluded.spans,
                excluded_traces: extraction.excluded.traces,
            }),
            clock_skew: total.skew(),
            categories,
            fairness: Vec::new(),
            over_time: None,
            health: Vec::new(),
        }
    }

    /// Whether any hop with a target failed it.
    pub fn any_failed(&self) -> bool {
        self.hops().any(|(_, _, hop)| hop.verdict == Some(Verdict::Fail))
    }

    fn hops(&self) -> impl Iterator<Item = (&CategoryReport, &VariantReport, &HopReport)> {
        self.categories.iter().flat_map(|c| c.variants.iter().flat_map(move |v| v.hops.iter().map(move |h| (c, v, h))))
    }
}

/// Points of the cumulative distribution: at most 64, evenly spaced in rank, the maximum included.
fn cumulative(values: &mut [i64]) -> Vec<(i64, f64)> {
    values.sort_unstable();
    let n = values.len();
    let points = n.min(64);
    (1..=points)
        .map(|k| {
            let rank = (k * n).div_ceil(points);
            (values[rank - 1], rank as f64 / n as f64)
        })
        .collect()
}

#[derive(Default)]
struct SkewTotals {
    cross: usize,
    corrected: usize,
    total: i64,
    max: i64,
    uncorrectable: usize,
}

impl SkewTotals {
    fn of(s: &crate::hops::HopSamples) -> SkewTotals {
        let mut totals = SkewTotals::default();
        totals.add(s);
        totals
    }

    fn add(&mut self, s: &crate::hops::HopSamples) {
        self.cross += s.cross_process;
        self.corrected += s.corrected;
        self.total += s.correction_total_ns;
        self.max = self.max.max(s.correction_max_ns);
        self.uncorrectable += s.uncorrectable;
    }

    fn skew(&self) -> Skew {
        Skew {
            cross_process_samples: self.cross,
            corrected: self.corrected,
            mean_correction_ns: if self.corrected == 0 { 0 } else { self.total / self.corrected as i64 },
            max_correction_ns: self.max,
            uncorrectable: self.uncorrectable,
        }
    }
}

/// A duration for people: `0.842 ms`, `12.50 ms`, `1.204 s` (see [`hoptrace_text::duration`]).
pub use hoptrace_text::duration as human;

/// A change in duration with its sign: `+1.20 ms`, `-0.300 ms`.
pub(crate) fn signed(ns: i64) -> String {
    if ns < 0 {
        format!("-{}", human(-ns))
    } else {
        format!("+{}", human(ns))
    }
}

fn cell(value: Option<i64>, p: Percentile) -> String {
    match value {
        Some(ns) => human(ns),
        None => format!("n<{}", samples_needed(p)),
    }
}

fn verdict_text(v: Option<Verdict>) -> &'static str {
    match v {
        None => "",
        Some(Verdict::Pass) => "pass",
        Some(Verdict::Fail) => "FAIL",
        Some(Verdict::FewSamples) => "few samples",
    }
}

fn variant_label(v: &VariantReport) -> &str {
    v.variant.as_deref().unwrap_or("(all)")
}

fn header(report: &Report) -> String {
    let range = match (&report.range.from, &report.range.to) {
        (None, None) => "all time".to_owned(),
        (from, to) => format!("{} … {}", from.as_deref().unwrap_or("start"), to.as_deref().unwrap_or("now")),
    };
    let run = report.run_id.as_ref().map(|r| format!(", run {r}")).unwrap_or_default();
    let assembly = report
        .assembly
        .as_ref()
        .map(|a| {
            format!(
                " ({} lifecycles joined from {} traces; {} spans in {} traces excluded)",
                a.stitched_lifecycles, a.stitched_traces, a.excluded_spans, a.excluded_traces
            )
        })
        .unwrap_or_default();
    format!("{range}{run}: {} traces, {} spans{assembly}", report.traces, report.spans)
}

fn skew_line(s: &Skew) -> String {
    format!(
        "clock skew: {} cross-process samples, {} corrected (mean {}, max {}), {} could not be corrected",
        s.cross_process_samples,
        s.corrected,
        human(s.mean_correction_ns),
        human(s.max_correction_ns),
        s.uncorrectable
    )
}

/// An aligned table for a terminal; `colour` marks pass and fail in green and red.
pub fn table(report: &Report, colour: bool) -> String {
    let mut out = format!("hoptrace report — {}\n{}\n", header(report), skew_line(&report.clock_skew));
    if report.categories.is_empty() {
        out.push_str("\nno hop of any category matched a span in this range\n");
        return out;
    }
    let heads = ["hop", "count", "p50", "p95", "p99", "max", "mean", "target", ""];
    let colours = |_: usize, text: &str| match (colour, text) {
        (true, "pass") => Some(format!("\x1b[32m{text}\x1b[0m")),
        (true, "FAIL") => Some(format!("\x1b[31m{text}\x1b[0m")),
        (true, "few samples") => Some(format!("\x1b[33m{text}\x1b[0m")),
        _ => None,
    };
    for category in &report.categories {
        let _ = write!(out, "\n{} — {}\n", category.name, category.description);
        for variant in &category.variants {
            use Align::{Left, Right};
            let mut table = Table::new(&[Left, Right, Right, Right, Right, Right, Right, Left, Left]).indent("    ");
            table.row(heads);
            for hop in &variant.hops {
                table.row([
                    hop.hop.clone(),
                    hop.count.to_string(),
                    cell(hop.p50_ns, Percentile::P50),
                    cell(hop.p95_ns, Percentile::P95),
                    cell(hop.p99_ns, Percentile::P99),
                    human(hop.max_ns),
                    human(hop.mean_ns),
                    hop.target.clone().unwrap_or_default(),
                    verdict_text(hop.verdict).to_owned(),
                ]);
            }
            let _ = writeln!(out, "  {}", variant_label(variant));
            out.push_str(&table.render_styled(colours));
            if let Some(path) = &variant.critical_path {
                out.push_str(&critical_path_lines(path));
            }
        }
    }
    out.push_str(&fairness_lines(&report.fairness));
    if let Some(over_time) = &report.over_time {
        out.push_str(&over_time_lines(over_time));
    }
    if !report.health.is_empty() {
        out.push_str(&health_lines(&report.health));
    }
    if report.hops().any(|(_, _, h)| !h.too_few_samples.is_empty()) {
        out.push_str("\nn<K: too few samples for that percentile (it needs at least K)\n");
    }
    out
}

fn fairness_lines(services: &[ServiceFairness]) -> String {
    let mut out = String::new();
    for f in services {
        let _ = write!(
            out,
            "\nfairness of {} — {} units of {} over {} instances: Jain's index {:.3}, max/min {:.2}\n",
            f.service,
            f.units,
            f.work,
            f.instances.len(),
            f.jain_index,
            f.max_min_ratio
        );
        use Align::{Left, Right};
        let mut table = Table::new(&[Left, Right, Right, Right, Right, Right]).indent("    ");
        table.row(["instance", "units", "share", "time", "time share", "z"]);
        for i in &f.instances {
            table.row([
                i.instance.clone(),
                i.units.to_string(),
                format!("{:.1}%", i.share * 100.0),
                human(i.time_ns),
                format!("{:.1}%", i.time_share * 100.0),
                format!("{:+.1}", i.z),
            ]);
        }
        out.push_str(&table.render());
        out.push_str(&fairness_verdict(f));
        out.push('\n');
    }
    out
}

fn fairness_verdict(f: &ServiceFairness) -> String {
    let equal = 100.0 / f.instances.len() as f64;
    match f.uneven.as_ref().and_then(|name| f.instances.iter().find(|i| &i.instance == name)) {
        Some(i) => format!("    UNEVEN: {} took {:.1}% against an equal {equal:.1}%", i.instance, i.share * 100.0),
        None => format!(
            "    even: no instance's share is off an equal {equal:.1}% by more than both chance and {:.0}%",
            crate::fairness::MIN_DEVIATION * 100.0
        ),
    }
}

fn drift_text(v: DriftVerdict) -> &'static str {
    match v {
        DriftVerdict::Drift => "DRIFT",
        DriftVerdict::Stable => "stable",
        DriftVerdict::TooFewBuckets => "too few buckets",
    }
}

fn trend_text(t: &crate::drift::Trend) -> String {
    trend_in(t, &signed)
}

/// A trend's slope per hour with its interval and growth, each slope written by `value`.
fn trend_in(t: &crate::drift::Trend, value: &dyn Fn(i64) -> String) -> String {
    match (t.slope_per_hour, t.slope_interval_per_hour, t.growth_pct) {
        (Some(slope), Some((lo, hi)), Some(growth)) => {
            format!("{}/h [{} … {}], {growth:+.1}%", value(slope), value(lo), value(hi))
        }
        _ => String::new(),
    }
}

const HEALTH_HEADER: [&str; 6] = ["series", "samples", "first", "last", "trend per hour (95% interval), growth", ""];

fn health_lines(health: &[HealthSeries]) -> String {
    let mut out = String::from(
        "\nhealth — sampled by loadgen; growing: a statistically real upward trend and growth over the run above the drift threshold\n",
    );
    use Align::{Left, Right};
    let mut table = Table::new(&[Left, Right, Right, Right, Left, Left]).indent("    ");
    table.row(HEALTH_HEADER);
    for h in health {
        table.row(health_row(h));
    }
    out.push_str(&table.render());
    out
}

fn health_row(h: &HealthSeries) -> [String; 6] {
    let text = |v: f64| crate::health::value_text(&h.unit, v);
    let signed = |v: i64| if v < 0 { text(v as f64) } else { format!("+{}", text(v as f64)) };
    [
        h.series.clone(),
        h.samples.len().to_string(),
        h.samples.first().map_or_else(String::new, |s| text(s.1)),
        h.samples.last().map_or_else(String::new, |s| text(s.1)),
        trend_in(&h.trend, &signed),
        health_verdict(h).to_owned(),
    ]
}

fn health_verdict(h: &HealthSeries) -> &'static str {
    match h.trend.verdict {
        DriftVerdict::Drift if h.unit == "By" => "GROWING: a leak?",
        DriftVerdict::Drift => "GROWING",
        DriftVerdict::Stable => "stable",
        DriftVerdict::TooFewBuckets => "too few samples",
    }
}

fn over_time_lines(o: &OverTime) -> String {
    let mut out = format!(
        "\nover time — {} buckets; drift: p99 trend statistically real and growth over the range above {:.0}% ({} drifting)\n",
        human(o.bucket_ns).replace(".000 ", " "),
        o.threshold_pct,
        o.drifting
    );
    use Align::{Left, Right};
    let mut table = Table::new(&[Left, Right, Left, Left]).indent("    ");
    table.row(["hop", "buckets", "p99 trend (95% interval), growth", ""]);
    for h in &o.hops {
        table.row([
            hop_label(&h.category, h.variant.as_deref(), &h.hop),
            format!("{}/{}", h.trend.buckets_judged, h.buckets.len()),
            trend_text(&h.trend),
            drift_text(h.trend.verdict).to_owned(),
        ]);
    }
    out.push_str(&table.render());
    out.push_str("  p99 per bucket, oldest first (n<100: too few samples):\n");
    for h in &o.hops {
        let cells: Vec<String> = h.buckets.iter().map(|b| b.p99_ns.map_or("n<100".to_owned(), human)).collect();
        let _ = writeln!(out, "    {}: {}", hop_label(&h.category, h.variant.as_deref(), &h.hop), cells.join("  "));
    }
    out
}

/// `category/variant/hop`, the variant left out when there is none.
pub(crate) fn hop_label(category: &str, variant: Option<&str>, hop: &str) -> String {
    match variant {
        Some(v) => format!("{category}/{v}/{hop}"),
        None => format!("{category}/{hop}"),
    }
}

/// Segments shown in the table: those with at least this share at the median or in the tail.
const SHOWN_SHARE: f64 = 0.02;

fn critical_path_lines(path: &CriticalPathReport) -> String {
    let shown = |s: &&PathShare| s.share_median >= SHOWN_SHARE || s.share_tail >= SHOWN_SHARE;
    let rows: Vec<&PathShare> = path.segments.iter().filter(shown).collect();
    let width = rows.iter().map(|s| s.segment.chars().count()).max().unwrap_or(0).max("segment".len());
    let mut out = format!(
        "    critical path of {}: share at the median ({} traces) and in the tail ({} traces)\n      {:<width$}  {:>7}  {:>7}\n",
        path.hop, path.median_traces, path.tail_traces, "segment", "median", "tail"
    );
    for s in &rows {
        let pad = width - s.segment.chars().count();
        out.push_str(&format!(
            "      {}{}  {:>6.1}%  {:>6.1}%\n",
            s.segment,
            " ".repeat(pad),
            s.share_median * 100.0,
            s.share_tail * 100.0
        ));
    }
    let rest = path.segments.len() - rows.len();
    if rest > 0 {
        out.push_str(&format!("      ({rest} more segments under 2% each; all in --format json)\n"));
    }
    out
}

pub fn json(report: &Report) -> String {
    serde_json::to_string_pretty(report).expect("a report serialises") + "\n"
}

/// One row per hop; durations in nanoseconds, empty when there are too few samples.
pub fn csv(report: &Report) -> String {
    let mut out = String::from(
        "category,variant,hop,measure,count,p50_ns,p95_ns,p99_ns,max_ns,mean_ns,target,verdict,corrected,uncorrectable\n",
    );
    let field = |text: &str| {
        if text.contains([',', '"', '\n']) {
            format!("\"{}\"", text.replace('"', "\"\""))
        } else {
            text.to_owned()
        }
    };
    let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    for (c, v, h) in report.hops() {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            field(&c.name),
            field(v.variant.as_deref().unwrap_or("")),
            field(&h.hop),
            h.measure,
            h.count,
            opt(h.p50_ns),
            opt(h.p95_ns),
            opt(h.p99_ns),
            h.max_ns,
            h.mean_ns,
            field(h.target.as_deref().unwrap_or("")),
            verdict_text(h.verdict),
            h.clock_skew.corrected,
            h.clock_skew.uncorrectable
        );
    }
    out
}

/// A markdown document: one table per category, fit for a pull-request comment.
pub fn markdown(report: &Report) -> String {
    let mut out = format!("## hoptrace report\n\n{}  \n{}\n", header(report), skew_line(&report.clock_skew));
    for category in &report.categories {
        let _ = write!(
            out,
            "\n### {}\n\n{}\n\n| variant | hop | count | p50 | p95 | p99 | max | mean | target | |\n|---|---|--:|--:|--:|--:|--:|--:|---|---|\n",
            category.name, category.description
        );
        for variant in &category.variants {
            for hop in &variant.hops {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    variant_label(variant),
                    hop.hop,
                    hop.count,
                    cell(hop.p50_ns, Percentile::P50),
                    cell(hop.p95_ns, Percentile::P95),
                    cell(hop.p99_ns, Percentile::P99),
                    human(hop.max_ns),
                    human(hop.mean_ns),
                    hop.target.as_deref().unwrap_or(""),
                    match hop.verdict {
                        Some(Verdict::Pass) => "✅ pass",
                        Some(Verdict::Fail) => "❌ fail",
                        Some(Verdict::FewSamples) => "⚠️ few samples",
                        None => "",
                    }
                );
            }
        }
    }
    for f in &report.fairness {
        let _ = write!(
            out,
            "\n### fairness of {}\n\n{} units of {}; Jain's index {:.3}, max/min {:.2}\n\n| instance | units | share | time | time share | z |\n|---|--:|--:|--:|--:|--:|\n",
            f.service, f.units, f.work, f.jain_index, f.max_min_ratio
        );
        for i in &f.instances {
            let _ = writeln!(
                out,
                "| {} | {} | {:.1}% | {} | {:.1}% | {:+.1} |",
                i.instance,
                i.units,
                i.share * 100.0,
                human(i.time_ns),
                i.time_share * 100.0,
                i.z
            );
        }
        let _ = writeln!(out, "\n{}", fairness_verdict(f).trim());
    }
    if let Some(o) = &report.over_time {
        let _ = write!(
            out,
            "\n### over time\n\n{} buckets; drift: a statistically real p99 trend growing more than {:.0}% over the range\n\n| hop | buckets | p99 trend, growth | |\n|---|--:|---|---|\n",
            human(o.bucket_ns),
            o.threshold_pct
        );
        for h in &o.hops {
            let _ = writeln!(
                out,
                "| {} | {}/{} | {} | {} |",
                hop_label(&h.category, h.variant.as_deref(), &h.hop),
                h.trend.buckets_judged,
                h.buckets.len(),
                trend_text(&h.trend),
                match h.trend.verdict {
                    DriftVerdict::Drift => "❌ drift",
                    DriftVerdict::Stable => "✅ stable",
                    DriftVerdict::TooFewBuckets => "too few buckets",
                }
            );
        }
    }
    if !report.health.is_empty() {
        let _ = write!(out, "\n### health\n\n| {} |\n|---|--:|--:|--:|---|---|\n", HEALTH_HEADER.join(" | "));
        for h in &report.health {
            let _ = writeln!(out, "| {} |", health_row(h).join(" | "));
        }
    }
    out
}
