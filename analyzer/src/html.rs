//! The report as one self-contained HTML page: no script, no network, charts drawn as inline SVG. It
//! opens with every target's verdict, failures first; latency axes are logarithmic where the data spans
//! decades ([`Axis`]).
//!
//! Per category and variant: a stacked bar of where the interval's time goes along the critical path
//! (median and tail), each hop's cumulative latency distribution with its target as a vertical line, and a
//! waterfall of the median and the 99th-percentile exemplar traces, asynchronous spans drawn after the
//! gap that separates them from their producer. The report's JSON is embedded as
//! `<script type="application/json" id="hoptrace-report">`, so the page's data can be checked against it.

use std::fmt::Write as _;

use hoptrace_text::escape_markup as esc;

use crate::config::Percentile;
use crate::critical_path::Exemplar;
use crate::drift::{DriftVerdict, HopOverTime, OverTime};
use crate::health::HealthSeries;
use crate::report::{human, CriticalPathReport, HopReport, Report};
use crate::scaling::{HopScaling, Scaling, ScalingVerdict};
use crate::stats::Verdict;

const PALETTE: [&str; 10] =
    ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];

/// `targets(category, variant, hop)`: the limits drawn on a hop's distribution.
pub type Targets<'a> = dyn Fn(&str, &str, &str) -> Vec<(Percentile, i64)> + 'a;

/// The page.
pub fn render(report: &Report, targets: &Targets) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>hoptrace report</h1><p class=meta>{} · {} traces, {} spans · clock skew: {} cross-process samples, {} corrected, {} could not be corrected</p>",
        esc(&range_text(report)),
        report.traces,
        report.spans,
        report.clock_skew.cross_process_samples,
        report.clock_skew.corrected,
        report.clock_skew.uncorrectable
    );
    if report.categories.is_empty() {
        body.push_str("<p>No hop of any category matched a span in this range.</p>");
    }
    body.push_str(&verdicts(report));
    for category in &report.categories {
        let _ =
            write!(body, "<section><h2>{}</h2><p class=meta>{}</p>", esc(&category.name), esc(&category.description));
        for variant in &category.variants {
            let label = variant.variant.as_deref().unwrap_or("(all)");
            let _ = write!(body, "<h3>{}</h3>", esc(label));
            body.push_str(&hop_table(&variant.hops));
            if let Some(path) = &variant.critical_path {
                body.push_str(&stacked_bars(path));
                for exemplar in &path.exemplars {
                    body.push_str(&waterfall(exemplar));
                }
            }
            body.push_str("<div class=charts>");
            for hop in &variant.hops {
                body.push_str(&cdf(hop, &targets(&category.name, label, &hop.hop)));
            }
            body.push_str("</div>");
        }
        body.push_str("</section>");
    }
    body.push_str(&fairness(report));
    if let Some(over_time) = &report.over_time {
        body.push_str(&drift(over_time));
    }
    if !report.health.is_empty() {
        body.push_str(&health(&report.health));
    }
    let data = serde_json::to_string(report).expect("a report serialises").replace("</", "<\\/");
    format!(
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8><title>hoptrace report</title><style>{STYLE}</style></head>\n<body>{body}\n<script type=\"application/json\" id=\"hoptrace-report\">{data}</script>\n</body></html>\n"
    )
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}h2{margin-top:32px;border-bottom:1px solid #ddd}\
.meta{color:#666}table{border-collapse:collapse;margin:8px 0}td,th{padding:2px 10px;text-align:right}td:first-child,th:first-child{text-align:left}\
.pass{color:#2a7}.fail{color:#c33;font-weight:bold}.few{color:#b80}.charts{display:flex;flex-wrap:wrap;gap:12px}svg{background:#fafafa;border:1px solid #eee}\
svg text{font:11px system-ui,sans-serif}";

fn range_text(report: &Report) -> String {
    let run = report.run_id.as_ref().map(|r| format!(", run {r}")).unwrap_or_default();
    match (&report.range.from, &report.range.to) {
        (None, None) => format!("all time{run}"),
        (from, to) => format!("{} … {}{run}", from.as_deref().unwrap_or("start"), to.as_deref().unwrap_or("now")),
    }
}

/// Every target's verdict, failures first, then those with too few samples, then passes: what a person
/// opening the page wants to know before any chart.
fn verdicts(report: &Report) -> String {
    let mut rows: Vec<(u8, String, &HopReport)> = Vec::new();
    for c in &report.categories {
        for v in &c.variants {
            for h in v.hops.iter().filter(|h| h.verdict.is_some()) {
                let rank = match h.verdict {
                    Some(Verdict::Fail) => 0,
                    Some(Verdict::FewSamples) => 1,
                    _ => 2,
                };
                rows.push((rank, format!("{} · {} · {}", c.name, v.variant.as_deref().unwrap_or("(all)"), h.hop), h));
            }
        }
    }
    if rows.is_empty() {
        return String::new();
    }
    rows.sort_by_key(|(rank, _, _)| *rank);
    let failed = rows.iter().filter(|r| r.0 == 0).count();
    let mut out = format!(
        "<section class=summary><h2>Targets</h2><p class=meta>{failed} of {} targets failed</p><table><tr><th>hop</th><th>target</th><th>p50</th><th>p99</th><th></th></tr>",
        rows.len()
    );
    for (_, label, h) in rows {
        let (class, text) = verdict_cell(h.verdict);
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class={class}>{text}</td></tr>",
            esc(&label),
            esc(h.target.as_deref().unwrap_or("")),
            cell(h.p50_ns),
            cell(h.p99_ns)
        );
    }
    out.push_str("</table></section>");
    out
}

/// A percentile, or `too few` where the samples do not give one.
fn cell(v: Option<i64>) -> String {
    v.map(human).unwrap_or_else(|| "too few".into())
}

fn verdict_cell(v: Option<Verdict>) -> (&'static str, &'static str) {
    match v {
        Some(Verdict::Pass) => ("pass", "pass"),
        Some(Verdict::Fail) => ("fail", "FAIL"),
        Some(Verdict::FewSamples) => ("few", "few samples"),
        None => ("", ""),
    }
}

fn fairness(report: &Report) -> String {
    let mut out = String::new();
    for f in &report.fairness {
        let _ = write!(
            out,
            "<section><h2>Fairness of {}</h2><p class=meta>{} units of {} · Jain's index {:.3} · max/min {:.2}</p><table><tr><th>instance</th><th>units</th><th>share</th><th>time</th><th>time share</th><th></th></tr>",
            esc(&f.service), f.units, esc(&f.work), f.jain_index, f.max_min_ratio
        );
        for i in &f.instances {
            let uneven = f.uneven.as_ref() == Some(&i.instance);
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{:.1}%</td><td>{}</td><td>{:.1}%</td><td class={}>{}</td></tr>",
                esc(&i.instance),
                i.units,
                i.share * 100.0,
                human(i.time_ns),
                i.time_share * 100.0,
                if uneven { "fail" } else { "" },
                if uneven { "UNEVEN" } else { "" }
            );
        }
        out.push_str("</table></section>");
    }
    out
}

/// Per hop, its p99 per bucket on a log axis, drifting hops first.
fn drift(o: &OverTime) -> String {
    let mut out = format!(
        "<section><h2>Over time</h2><p class=meta>{} buckets · {} hops drift (a statistically real p99 trend growing more than {:.0}% over the range)</p><div class=charts>",
        human(o.bucket_ns),
        o.drifting,
        o.threshold_pct
    );
    let mut hops: Vec<&HopOverTime> = o.hops.iter().collect();
    hops.sort_by_key(|h| h.trend.verdict != DriftVerdict::Drift);
    for h in hops {
        out.push_str(&drift_chart(h, o.bucket_ns));
    }
    out.push_str("</div></section>");
    out
}

fn drift_chart(h: &HopOverTime, bucket_ns: i64) -> String {
    let (w, ht, pad) = (240.0, 150.0, 28.0);
    let points: Vec<(i64, i64)> = h.buckets.iter().filter_map(|b| Some((b.start_unix_nano, b.p99_ns?))).collect();
    let verdict = match h.trend.verdict {
        DriftVerdict::Drift => "<tspan fill=\"#c33\">drift</tspan>",
        DriftVerdict::Stable => "stable",
        DriftVerdict::TooFewBuckets => "too few buckets",
    };
    let title = format!("{} · {} · {}", h.category, h.variant.as_deref().unwrap_or("(all)"), h.hop);
    let mut out = format!(
        "<figure><figcaption>{} — p99 per bucket</figcaption><svg class=drift width={w} height={ht} viewBox=\"0 0 {w} {ht}\"><text x={pad} y=14>{verdict} {}</text>",
        esc(&title),
        h.trend.growth_pct.map(|g| format!("{g:+.1}%")).unwrap_or_default()
    );
    if let (Some(first), Some(last)) = (points.first(), points.last()) {
        let axis = Axis::fit(points.iter().map(|p| p.1), &[]);
        let span = (last.0 - first.0).max(bucket_ns) as f64;
        let x = |t: i64| pad + (t - first.0) as f64 / span * (w - pad - 8.0);
        let y = |ns: i64| ht - pad + 8.0 - axis.at(ns) * (ht - pad - 20.0);
        let line: Vec<String> = points.iter().map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v))).collect();
        let _ = write!(out, "<polyline fill=none stroke=\"#4e79a7\" stroke-width=1.5 points=\"{}\"/>", line.join(" "));
        for (ns, label) in axis.ticks() {
            let _ = write!(out, "<text x=2 y={:.1}>{label}</text>", y(ns) + 4.0);
        }
    }
    out.push_str("</svg></figure>");
    out
}

/// The page of `analyzer scaling`: the runs' loads, then per hop its p50 and p99 against the load, the
/// contending hops first and the bottleneck named at the top.
pub fn scaling(s: &Scaling) -> String {
    let mut body = format!(
        "<h1>hoptrace scaling</h1><p class=meta>{} runs of {} · each hop's p50 (blue, with its fitted line) and p99 (red) per run against {} · contention: a real p50 growth above {:.0}% over the sweep</p>",
        s.runs.len(),
        esc(&s.store),
        s.load.label(),
        s.threshold_pct
    );
    let class = if s.bottleneck.is_some() { "summary fail" } else { "summary pass" };
    let _ = write!(body, "<p class=\"{class}\">{}</p>", esc(&s.bottleneck_text()));
    body.push_str("<table><tr><th></th><th>run</th><th>workers</th><th>concurrency</th><th>in flight</th><th>tasks/s</th><th>traces</th></tr>");
    for (i, r) in s.runs.iter().enumerate() {
        let _ = write!(
            body,
            "<tr><td>#{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{}</td></tr>",
            i + 1,
            esc(&r.run),
            r.workers,
            r.concurrency.map_or_else(|| "-".to_owned(), |c| c.to_string()),
            r.in_flight,
            r.throughput_per_s,
            r.traces
        );
    }
    body.push_str("</table><div class=charts>");
    for h in crate::scaling::ordered(s) {
        body.push_str(&scaling_chart(s, h));
    }
    body.push_str("</div>");
    let data = serde_json::to_string(s).expect("a comparison serialises").replace("</", "<\\/");
    format!(
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8><title>hoptrace scaling</title><style>{STYLE}</style></head>\n<body>{body}\n<script type=\"application/json\" id=\"hoptrace-scaling\">{data}</script>\n</body></html>\n"
    )
}

/// One hop's p50 (dots) and p99 (red dots) in each run against the load, with the fitted p50 line, on a
/// latency axis fit to the data.
fn scaling_chart(s: &Scaling, h: &HopScaling) -> String {
    let (w, ht, pad) = (320.0, 160.0, 40.0);
    let points: Vec<(f64, &crate::scaling::Point)> =
        s.runs.iter().zip(&h.fit.points).filter_map(|(r, p)| Some((s.load.of(r), p.as_ref()?))).collect();
    let verdict = match h.fit.verdict {
        ScalingVerdict::Contention => "<tspan fill=\"#c33\">contention</tspan>",
        ScalingVerdict::Flat => "flat",
        ScalingVerdict::TooFewRuns => "too few runs",
    };
    let growth = h.fit.growth_pct.map(|g| format!("{g:+.0}%")).unwrap_or_default();
    let mut out = format!(
        "<figure><figcaption>{}</figcaption><svg class=scaling width={w} height={ht} viewBox=\"0 0 {w} {ht}\"><text x={pad} y=14>{verdict} {growth}</text>",
        esc(&h.label())
    );
    let (lo, hi) = points.iter().fold((f64::MAX, f64::MIN), |(lo, hi), (l, _)| (lo.min(*l), hi.max(*l)));
    if !points.is_empty() {
        let axis = Axis::fit(points.iter().flat_map(|(_, p)| [Some(p.p50_ns), p.p99_ns]).flatten(), &[]);
        let span = (hi - lo).max(1e-9);
        let x = |load: f64| pad + (load - lo) / span * (w - pad - 12.0);
        let y = |ns: i64| ht - 28.0 + 8.0 - axis.at(ns) * (ht - 48.0);
        if let Some((from, to)) = h.fit.fitted_ns {
            // A straight line in latency, so a curve where the axis is logarithmic.
            let line: Vec<String> = (0..=16)
                .map(|i| i as f64 / 16.0)
                .map(|f| format!("{:.1},{:.1}", x(lo + f * (hi - lo)), y(from + (f * (to - from) as f64) as i64)))
                .collect();
            let _ =
                write!(out, "<polyline fill=none stroke=\"#4e79a7\" stroke-width=1.5 points=\"{}\"/>", line.join(" "));
        }
        for (l, p) in &points {
            let _ = write!(out, "<circle cx={:.1} cy={:.1} r=3 fill=\"#4e79a7\"/>", x(*l), y(p.p50_ns));
            if let Some(p99) = p.p99_ns {
                let _ = write!(out, "<circle cx={:.1} cy={:.1} r=2 fill=\"#e15759\"/>", x(*l), y(p99));
            }
        }
        for (ns, label) in axis.ticks() {
            let _ = write!(out, "<text x=2 y={:.1}>{label}</text>", y(ns) + 4.0);
        }
        let _ = write!(
            out,
            "<text x={pad} y={}>{lo:.1}</text><text x={} y={} text-anchor=end>{hi:.1} {}</text>",
            ht - 4.0,
            w - 4.0,
            ht - 4.0,
            s.load.label()
        );
    }
    out.push_str("</svg></figure>");
    out
}

/// Per health series, its values over the run on a linear axis from zero, growing series first.
fn health(series: &[HealthSeries]) -> String {
    let mut out = String::from(
        "<section><h2>Health</h2><p class=meta>sampled by loadgen during the run · growing: a statistically real upward trend beyond the drift threshold</p><div class=charts>",
    );
    let mut ordered: Vec<&HealthSeries> = series.iter().collect();
    ordered.sort_by_key(|h| !h.growing());
    for h in ordered {
        out.push_str(&health_chart(h));
    }
    out.push_str("</div></section>");
    out
}

fn health_chart(h: &HealthSeries) -> String {
    let (w, ht, pad) = (240.0, 150.0, 44.0);
    let verdict = if h.growing() { "<tspan fill=\"#c33\">growing</tspan>" } else { "stable" };
    let mut out = format!(
        "<figure><figcaption>{}</figcaption><svg class=health width={w} height={ht} viewBox=\"0 0 {w} {ht}\"><text x={pad} y=14>{verdict} {}</text>",
        esc(&h.series),
        h.trend.growth_pct.map(|g| format!("{g:+.1}%")).unwrap_or_default()
    );
    if let (Some(first), Some(last)) = (h.samples.first(), h.samples.last()) {
        let top = h.samples.iter().map(|s| s.1).fold(1.0, f64::max);
        let span = (last.0 - first.0).max(1) as f64;
        let x = |t: i64| pad + (t - first.0) as f64 / span * (w - pad - 8.0);
        let y = |v: f64| ht - 20.0 - v / top * (ht - 44.0);
        let line: Vec<String> = h.samples.iter().map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v))).collect();
        let _ = write!(out, "<polyline fill=none stroke=\"#4e79a7\" stroke-width=1.5 points=\"{}\"/>", line.join(" "));
        for v in [0.0, top] {
            let _ = write!(out, "<text x=2 y={:.1}>{}</text>", y(v) + 4.0, esc(&crate::health::value_text(&h.unit, v)));
        }
    }
    out.push_str("</svg></figure>");
    out
}

/// A latency axis fit to the data: logarithmic when every value is positive and they span more than a
/// factor of three (a 2 ms distribution beside a 75 ms target stays readable), linear otherwise.
struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
}

impl Axis {
    fn fit(values: impl Iterator<Item = i64>, also: &[i64]) -> Axis {
        let (lo, hi) =
            values.chain(also.iter().copied()).fold((i64::MAX, i64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let (lo, hi) = if lo > hi { (0, 1) } else { (lo, hi) };
        if lo > 0 && hi as f64 / lo as f64 > 3.0 {
            Axis { lo: (lo as f64).log10().floor(), hi: (hi as f64).log10().ceil(), log: true }
        } else {
            let lo = lo.min(0) as f64;
            Axis { lo, hi: (hi as f64).max(lo + 1.0), log: false }
        }
    }

    /// Where `ns` falls, 0 to 1.
    fn at(&self, ns: i64) -> f64 {
        let v = if self.log { (ns.max(1) as f64).log10() } else { ns as f64 };
        ((v - self.lo) / (self.hi - self.lo)).clamp(0.0, 1.0)
    }

    /// Labelled ticks: each power of ten on a log axis, the ends on a linear one.
    fn ticks(&self) -> Vec<(i64, String)> {
        if self.log {
            (self.lo as i32..=self.hi as i32).map(|e| 10f64.powi(e) as i64).map(|ns| (ns, decade(ns))).collect()
        } else {
            [self.lo as i64, self.hi as i64].into_iter().map(|ns| (ns, human(ns))).collect()
        }
    }
}

/// A power of ten of nanoseconds, short: `10µs`, `1ms`, `100ms`, `10s`.
fn decade(ns: i64) -> String {
    match ns {
        ..1_000 => format!("{ns}ns"),
        1_000..1_000_000 => format!("{}µs", ns / 1_000),
        1_000_000..1_000_000_000 => format!("{}ms", ns / 1_000_000),
        _ => format!("{}s", ns / 1_000_000_000),
    }
}

fn hop_table(hops: &[HopReport]) -> String {
    let mut out = String::from("<table><tr><th>hop</th><th>count</th><th>p50</th><th>p95</th><th>p99</th><th>max</th><th>mean</th><th>target</th><th></th></tr>");
    for h in hops {
        let (class, verdict) = verdict_cell(h.verdict);
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class={class}>{verdict}</td></tr>",
            esc(&h.hop),
            h.count,
            cell(h.p50_ns),
            cell(h.p95_ns),
            cell(h.p99_ns),
            human(h.max_ns),
            human(h.mean_ns),
            esc(h.target.as_deref().unwrap_or(""))
        );
    }
    out.push_str("</table>");
    out
}

/// Two stacked bars, median and tail, of the critical path's segments (those over 1 %).
fn stacked_bars(path: &CriticalPathReport) -> String {
    let (w, bar) = (760.0, 22.0);
    let shown: Vec<_> = path.segments.iter().filter(|s| s.share_median >= 0.01 || s.share_tail >= 0.01).collect();
    let legend_rows = shown.len().div_ceil(3);
    let h = 40.0 + 2.0 * (bar + 8.0) + legend_rows as f64 * 16.0;
    let mut out = format!(
        "<figure><figcaption>Critical path of {} — share of each segment at the median ({} traces) and in the tail ({} traces)</figcaption><svg class=stacked width={w} height={h} viewBox=\"0 0 {w} {h}\">",
        esc(&path.hop), path.median_traces, path.tail_traces
    );
    for (row, (label, pick)) in [("median", true), ("tail", false)].into_iter().enumerate() {
        let y = 10.0 + row as f64 * (bar + 8.0);
        let _ = write!(out, "<text x=4 y={}>{label}</text>", y + 15.0);
        let mut x = 60.0;
        for (i, s) in shown.iter().enumerate() {
            let share = if pick { s.share_median } else { s.share_tail };
            let width = share * (w - 70.0);
            let _ = write!(
                out,
                "<rect x={x:.1} y={y} width={width:.1} height={bar} fill=\"{}\"><title>{}: {:.1}%</title></rect>",
                PALETTE[i % PALETTE.len()],
                esc(&s.segment),
                share * 100.0
            );
            x += width;
        }
    }
    for (i, s) in shown.iter().enumerate() {
        let (col, row) = (i % 3, i / 3);
        let (x, y) = (10.0 + col as f64 * 250.0, 10.0 + 2.0 * (bar + 8.0) + 14.0 + row as f64 * 16.0);
        let _ = write!(
            out,
            "<rect x={x} y={} width=10 height=10 fill=\"{}\"/><text x={} y={y}>{}</text>",
            y - 9.0,
            PALETTE[i % PALETTE.len()],
            x + 14.0,
            esc(&s.segment)
        );
    }
    out.push_str("</svg></figure>");
    out
}

/// The exemplar trace as a waterfall: a bar per span, indented by depth; an asynchronous span's wait
/// after its producer is drawn as a dashed line, a gap.
fn waterfall(exemplar: &Exemplar) -> String {
    let (w, row) = (760.0, 14.0);
    let spans = &exemplar.spans;
    let end = spans.iter().map(|s| s.end_ns).max().unwrap_or(1).max(1) as f64;
    let label_w = 260.0;
    let scale = (w - label_w - 10.0) / end;
    let h = 24.0 + spans.len() as f64 * row;
    let mut out = format!(
        "<figure><figcaption>Waterfall of the {} trace {} ({})</figcaption><svg class=waterfall width={w} height={h} viewBox=\"0 0 {w} {h}\">",
        exemplar.at,
        &exemplar.trace_id,
        human(exemplar.interval_ns)
    );
    for (i, s) in spans.iter().enumerate() {
        let y = 16.0 + i as f64 * row;
        let x = label_w + s.start_ns as f64 * scale;
        let width = ((s.end_ns - s.start_ns) as f64 * scale).max(1.0);
        let colour = PALETTE[(s.service.len() + s.service.bytes().map(usize::from).sum::<usize>()) % PALETTE.len()];
        let _ = write!(
            out,
            "<text x={} y={}>{}</text>",
            4.0 + s.depth.min(12) as f64 * 8.0,
            y + 9.0,
            esc(&truncate(&s.name, 34))
        );
        if let (true, Some(p)) = (s.asynchronous, s.parent) {
            let producer_end = spans[p as usize].end_ns;
            if producer_end < s.start_ns {
                let _ = write!(
                    out,
                    "<line class=gap x1={:.1} x2={x:.1} y1={} y2={} stroke=\"#999\" stroke-dasharray=\"3 2\"/>",
                    label_w + producer_end as f64 * scale,
                    y + 5.0,
                    y + 5.0
                );
            }
        }
        let _ = write!(
            out,
            "<rect class=span x={x:.1} y={y} width={width:.1} height={} fill=\"{colour}\"><title>{} ({}): {}</title></rect>",
            row - 3.0,
            esc(&s.name),
            esc(&s.service),
            human(s.end_ns - s.start_ns)
        );
    }
    out.push_str("</svg></figure>");
    out
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        text.chars().take(max - 1).collect::<String>() + "…"
    }
}

/// The hop's cumulative distribution on an [`Axis`] fit to the samples and the targets, with a vertical
/// line at each target limit.
fn cdf(hop: &HopReport, limits: &[(Percentile, i64)]) -> String {
    let (w, h, pad) = (240.0, 150.0, 28.0);
    let Some(points) = &hop.distribution else { return String::new() };
    let axis = Axis::fit(points.iter().map(|p| p.0), &limits.iter().map(|l| l.1).collect::<Vec<_>>());
    let x = |ns: i64| pad + axis.at(ns) * (w - pad - 8.0);
    let y = |f: f64| h - pad + 8.0 - f * (h - pad - 8.0);
    let mut out = format!(
        "<figure><figcaption>{} (n={}{})</figcaption><svg class=cdf width={w} height={h} viewBox=\"0 0 {w} {h}\">",
        esc(&hop.hop),
        hop.count,
        if axis.log { ", log scale" } else { "" }
    );
    let line: Vec<String> = std::iter::once((points[0].0, 0.0))
        .chain(points.iter().copied())
        .map(|(ns, f)| format!("{:.1},{:.1}", x(ns), y(f)))
        .collect();
    let _ = write!(out, "<polyline fill=none stroke=\"#4e79a7\" stroke-width=1.5 points=\"{}\"/>", line.join(" "));
    // One label line per target, so a hop's p50, p95 and p99 limits do not print over each other.
    for (i, (p, limit)) in limits.iter().enumerate() {
        let _ = write!(
            out,
            "<line class=target x1={0:.1} x2={0:.1} y1=8 y2={1} stroke=\"#e15759\" stroke-dasharray=\"4 2\"/><text x={2:.1} y={5} fill=\"#e15759\" text-anchor=end>{3} &lt; {4}</text>",
            x(*limit),
            h - pad + 8.0,
            (x(*limit) - 3.0).max(pad + 80.0),
            p.label(),
            human(*limit),
            18 + 12 * i
        );
    }
    let ticks = axis.ticks();
    for (i, (ns, label)) in ticks.iter().enumerate() {
        let anchor = if i + 1 == ticks.len() {
            "end"
        } else if i == 0 {
            "start"
        } else {
            "middle"
        };
        let _ = write!(out, "<text x={:.1} y={} text-anchor={anchor}>{label}</text>", x(*ns), h - 6.0);
    }
    out.push_str("<text x=2 y=14>100%</text></svg></figure>");
    out
}
