//! From trace trees to hop samples: every rule of every category applied to every trace.
//!
//! Per trace: span ids are resolved to rows (parents and links), each span is tested once against every
//! selector (a bit per selector), clock offsets between the trace's processes are estimated
//! ([`crate::skew`]), then each rule's measure turns matching spans into samples, keyed by category,
//! variant (the `group_by` attribute) and hop. Traces are split between threads.

use std::collections::BTreeMap;

use crate::config::{Config, Edge, Measure, Selector};
use crate::critical_path::{self, CriticalPath, Paths, Segment};
use crate::select::{keys_of, Matches, Selectors};
use crate::skew::{self, ClockOffsets};
use crate::spans::{FxMap, SpanTable, TraceIndex, NONE};

/// What to analyse.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    /// Only traces with a span whose `benchmark.run_id` is this.
    pub run_id: Option<String>,
    /// Only these categories (all when empty).
    pub categories: Vec<String>,
    /// Only samples whose measured span comes from this service.
    pub service: Option<String>,
    /// Keep each sample's trace and start time ([`HopSamples::origins`]), for an export; a report does
    /// without, which spares a push per sample.
    pub with_origins: bool,
}

pub const RUN_ID_KEY: &str = "benchmark.run_id";

/// The samples of one hop of one variant, in nanoseconds, with what clock-skew correction did to them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HopSamples {
    pub values: Vec<i64>,
    /// With [`Filters::with_origins`] (and always for the configuration's fairness hop), for each value
    /// where it came from: what a dashboard plots over time and links back to the trace by, and what
    /// fairness counts per worker instance. Empty otherwise.
    pub origins: Vec<Origin>,
    /// Samples that crossed processes (gaps, intervals), where clocks can disagree.
    pub cross_process: usize,
    pub corrected: usize,
    pub correction_total_ns: i64,
    pub correction_max_ns: i64,
    /// Cross-process samples whose clock offset the trace's bounds could not settle (kept uncorrected).
    pub uncorrectable: usize,
    /// For an `interval` hop: each trace's critical path over the interval.
    pub paths: Paths,
}

impl HopSamples {
    fn push(&mut self, value: i64, origin: Option<Origin>, correction: Option<Correction>) {
        self.values.push(value);
        self.origins.extend(origin);
        if let Some(c) = correction {
            self.cross_process += 1;
            if !c.consistent {
                self.uncorrectable += 1;
            } else if c.shift != 0 {
                self.corrected += 1;
                self.correction_total_ns += c.shift.abs();
                self.correction_max_ns = self.correction_max_ns.max(c.shift.abs());
            }
        }
    }

    fn merge(&mut self, other: HopSamples) {
        if self.values.is_empty() {
            // Nothing here yet (every sample pushes a value): take the other's vectors instead of copying.
            *self = other;
            return;
        }
        self.paths.merge(other.paths);
        self.values.extend(other.values);
        self.origins.extend(other.origins);
        self.cross_process += other.cross_process;
        self.corrected += other.corrected;
        self.correction_total_ns += other.correction_total_ns;
        self.correction_max_ns = self.correction_max_ns.max(other.correction_max_ns);
        self.uncorrectable += other.uncorrectable;
    }
}

/// Where a sample came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Origin {
    /// The trace's number in the span table.
    pub trace: u32,
    /// When the measured span started (Unix ns).
    pub at: i64,
    /// The measured span's process (service and instance), a string id of the table.
    pub process: u32,
}

#[derive(Debug, Clone, Copy)]
struct Correction {
    shift: i64,
    consistent: bool,
}

/// Samples by (category index, variant, hop index). The variant is `None` when the category has no
/// `group_by` or the attribute is absent.
#[derive(Debug, Default)]
pub struct Extraction {
    pub samples: BTreeMap<(usize, Option<String>, usize), HopSamples>,
    /// Per interval hop: its critical path at the median and in the tail.
    pub critical_paths: BTreeMap<(usize, Option<String>, usize), CriticalPath>,
    pub traces: usize,
    pub spans: usize,
    /// Spans the configuration excluded before the analysis.
    pub excluded: crate::stitch::Excluded,
    /// Lifecycles assembled from several stored traces by joins, and those traces.
    pub stitched: usize,
    pub stitched_traces: usize,
}

enum CompiledMeasure {
    Duration(usize),
    SelfTime(usize),
    /// `pair`: the table column of the join whose equal values pair the two sides.
    Gap {
        from: usize,
        to: usize,
        from_edge: Edge,
        pair: Option<usize>,
    },
    Interval {
        from: usize,
        to: usize,
    },
    Difference {
        outer: usize,
        inner: usize,
    },
}

struct CompiledRule {
    category: usize,
    hop: usize,
    group_slot: Option<usize>,
    measure: CompiledMeasure,
    /// Whether its samples keep their [`Origin`]s.
    origins: bool,
}

struct Plan {
    selectors: Selectors,
    rules: Vec<CompiledRule>,
    run_id: Option<(usize, u32)>,
    run_filter: bool,
    service: Option<u32>,
}

/// The attribute keys the analysis reads: group-by keys, selector attributes and the run id.
pub fn attribute_keys(config: &Config) -> Vec<String> {
    let mut keys = vec![RUN_ID_KEY.to_owned()];
    for category in &config.categories {
        keys.extend(category.group_by.clone());
        for hop in &category.hops {
            match &hop.measure {
                Measure::Duration(s) | Measure::SelfTime(s) => keys_of(s, &mut keys),
                Measure::Gap { from, to, .. } | Measure::Interval { from, to } => {
                    keys_of(from, &mut keys);
                    keys_of(to, &mut keys);
                }
                Measure::Difference { outer, inner } => {
                    keys_of(outer, &mut keys);
                    keys_of(inner, &mut keys);
                }
            }
        }
    }
    keys.extend(crate::stitch::attribute_keys(config));
    let mut seen = std::collections::HashSet::new();
    keys.retain(|k| seen.insert(k.clone()));
    keys
}

impl Plan {
    fn new(table: &SpanTable, config: &Config, filters: &Filters) -> Plan {
        let mut plan = Plan {
            selectors: Selectors::default(),
            rules: Vec::new(),
            run_id: None,
            run_filter: filters.run_id.is_some(),
            service: filters.service.as_ref().map(|s| table.strings.get(s).unwrap_or(NONE)),
        };
        if let (Some(run), Some(slot)) = (&filters.run_id, table.key_slot(RUN_ID_KEY)) {
            plan.run_id = table.strings.get(run).map(|id| (slot, id));
        }
        for (c, category) in config.categories.iter().enumerate() {
            if !filters.categories.is_empty() && !filters.categories.contains(&category.name) {
                continue;
            }
            let group_slot = category.group_by.as_ref().and_then(|key| table.key_slot(key));
            for (h, hop) in category.hops.iter().enumerate() {
                let mut sel = |s: &Selector| plan.selectors.add(table, s);
                let measure = match &hop.measure {
                    Measure::Duration(s) => CompiledMeasure::Duration(sel(s)),
                    Measure::SelfTime(s) => CompiledMeasure::SelfTime(sel(s)),
                    Measure::Gap { from, to, from_edge, pair } => CompiledMeasure::Gap {
                        from: sel(from),
                        to: sel(to),
                        from_edge: *from_edge,
                        // A join the table lacks (not prepared) pairs nothing.
                        pair: pair.as_ref().map(|p| table.key_slot(&crate::stitch::column(p)).unwrap_or(usize::MAX)),
                    },
                    Measure::Interval { from, to } => CompiledMeasure::Interval { from: sel(from), to: sel(to) },
                    Measure::Difference { outer, inner } => {
                        CompiledMeasure::Difference { outer: sel(outer), inner: sel(inner) }
                    }
                };
                let origins = filters.with_origins || config.fairness == Some((c, h));
                plan.rules.push(CompiledRule { category: c, hop: h, group_slot, measure, origins });
            }
        }
        plan.selectors.finish(table);
        plan
    }
}

/// Reusable per-thread buffers, so a trace costs no allocation.
#[derive(Default)]
struct Scratch {
    index: TraceIndex,
    parent: Vec<u32>,
    matches: Matches,
    offsets: ClockOffsets,
    children: Vec<(i64, i64)>,
    pieces: Vec<(Segment, i64)>,
    shifted: Vec<(i64, i64)>,
    /// For a gap paired by key: (value, start, side, span) of each span on either side.
    paired: Vec<(u32, i64, u8, u32)>,
    /// Per group-by key slot, its value elsewhere in the trace.
    elsewhere: Vec<(usize, u32)>,
}

/// Applies every rule of `config` to every trace in `table`.
pub fn extract(table: &SpanTable, config: &Config, filters: &Filters) -> Extraction {
    let plan = Plan::new(table, config, filters);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(table.traces.len().max(1));
    let per_thread = table.traces.len().div_ceil(threads.max(1)).max(1);
    // Per thread: its samples by (category, variant, hop), and its counts of traces and spans.
    type Part = (FxMap<(usize, u32, usize), HopSamples>, usize, usize);
    let parts: Vec<Part> = std::thread::scope(|scope| {
        let handles: Vec<_> = table
            .traces
            .chunks(per_thread)
            .enumerate()
            .map(|(chunk, traces)| {
                let plan = &plan;
                scope.spawn(move || {
                    let mut out = FxMap::default();
                    let (mut n_traces, mut n_spans) = (0, 0);
                    let mut scratch = Scratch::default();
                    for (k, trace) in traces.iter().enumerate() {
                        let trace_no = (chunk * per_thread + k) as u32;
                        if analyse_trace(table, plan, trace_no, trace.clone(), &mut scratch, &mut out) {
                            n_traces += 1;
                            n_spans += trace.len();
                        }
                    }
                    (out, n_traces, n_spans)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("analysis threads do not panic")).collect()
    });
    let mut extraction = Extraction::default();
    // Each hop's samples from every thread, in thread order; merged (and, for an interval hop, its
    // critical path summarised) hop by hop on both threads, the hops with paths first (the longest jobs).
    let mut by_hop: FxMap<(usize, u32, usize), Vec<HopSamples>> = FxMap::default();
    for (samples, traces, spans) in parts {
        extraction.traces += traces;
        extraction.spans += spans;
        for (key, samples) in samples {
            by_hop.entry(key).or_default().push(samples);
        }
    }
    let mut jobs: Vec<((usize, u32, usize), Vec<HopSamples>)> = by_hop.into_iter().collect();
    jobs.sort_by_key(|(key, parts)| (parts.iter().all(|p| p.paths.starts.is_empty()), *key));
    let jobs = std::sync::Mutex::new(jobs.into_iter());
    let done: Vec<_> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    while let Some((key, parts)) = jobs.lock().expect("no thread panics holding the jobs").next() {
                        let mut samples = HopSamples::default();
                        parts.into_iter().for_each(|part| samples.merge(part));
                        let paths = std::mem::take(&mut samples.paths);
                        let summary = (!paths.starts.is_empty())
                            .then(|| critical_path::summarise(table, &samples.values, &paths));
                        done.push((key, samples, summary));
                    }
                    done
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("analysis threads do not panic")).collect()
    });
    for ((category, variant, hop), samples, summary) in done {
        let key = (category, (variant != NONE).then(|| table.strings.resolve(variant).to_owned()), hop);
        if let Some(summary) = summary {
            extraction.critical_paths.insert(key.clone(), summary);
        }
        extraction.samples.insert(key, samples);
    }
    extraction
}

/// Returns whether the trace was analysed (it passed the run filter).
fn analyse_trace(
    t: &SpanTable,
    plan: &Plan,
    trace_no: u32,
    rows: std::ops::Range<usize>,
    s: &mut Scratch,
    out: &mut FxMap<(usize, u32, usize), HopSamples>,
) -> bool {
    let base = rows.start;
    let n = rows.len();
    if plan.run_filter {
        let Some((slot, run)) = plan.run_id else { return false };
        if !rows.clone().any(|r| t.attributes[slot][r] == run) {
            return false;
        }
    }
    s.index.build(t, rows.clone());
    let index = &s.index;
    let find = |id: u64| -> u32 { index.local(id) };
    s.parent.clear();
    s.parent.extend(rows.clone().map(|r| if t.parent_id[r] == 0 { NONE } else { find(t.parent_id[r]) }));

    // One pass per selector, parents' selectors first, so `parent = {…}` reads a finished answer.
    plan.selectors.evaluate(t, base, n, &s.parent, &mut s.matches);
    skew::estimate(t, base, n, &s.parent, &find, &mut s.offsets);

    let Scratch { parent, matches, offsets, children, pieces, shifted, elsewhere, paired, .. } = s;
    // Across the join of a stitched lifecycle no causal bound ties two processes' clocks: such samples
    // are kept uncorrected and counted as uncorrectable.
    let stitched = t.stitched(trace_no as usize);
    let between = |a: usize, b: usize| -> Correction {
        match stitched && t.process[base + a] != t.process[base + b] {
            true => Correction { shift: 0, consistent: false },
            false => offsets.between(base, a, b, t),
        }
    };
    // For each group-by key, the value of the trace's earliest span that carries it: where a variant is
    // found when neither the measured span nor its ancestors carry the key (the attribute sits on a
    // child, as in systems that set it where they learn it). Once per trace, not per sample.
    elsewhere.clear();
    for slot in plan.rules.iter().filter_map(|r| r.group_slot) {
        if elsewhere.iter().all(|(s, _)| *s != slot) {
            let first = (0..n)
                .filter(|&i| t.attributes[slot][base + i] != NONE)
                .min_by_key(|&i| (t.start[base + i], i))
                .map_or(NONE, |i| t.attributes[slot][base + i]);
            elsewhere.push((slot, first));
        }
    }
    let variant = |slot: Option<usize>, mut i: u32| -> u32 {
        let Some(slot) = slot else { return NONE };
        while i != NONE {
            let value = t.attributes[slot][base + i as usize];
            if value != NONE {
                return value;
            }
            i = parent[i as usize];
        }
        elsewhere.iter().find(|(s, _)| *s == slot).map_or(NONE, |(_, v)| *v)
    };
    let service_ok = |i: usize| plan.service.is_none_or(|service| t.service[base + i] == service);
    let duration = |i: usize| t.end[base + i] - t.start[base + i];
    for rule in &plan.rules {
        let mut record = |i: usize, value: i64, correction: Option<Correction>| {
            out.entry((rule.category, variant(rule.group_slot, i as u32), rule.hop)).or_default().push(
                value,
                rule.origins.then(|| Origin { trace: trace_no, at: t.start[base + i], process: t.process[base + i] }),
                correction,
            );
        };
        match rule.measure {
            CompiledMeasure::Duration(sel) => {
                for i in (0..n).filter(|&i| matches.get(i, sel) && service_ok(i)) {
                    record(i, duration(i), None);
                }
            }
            CompiledMeasure::SelfTime(sel) => {
                for i in (0..n).filter(|&i| matches.get(i, sel) && service_ok(i)) {
                    children.clear();
                    for c in (0..n).filter(|&c| parent[c] == i as u32) {
                        let shift = offsets.between(base, i, c, t).shift;
                        children.push((t.start[base + c] - shift, t.end[base + c] - shift));
                    }
                    let covered = union_within(children, t.start[base + i], t.end[base + i]);
                    record(i, duration(i) - covered, None);
                }
            }
            CompiledMeasure::Gap { from, to, from_edge, pair: Some(slot) } => {
                // Each `from` span pairs with the first `to` span after it with the same value; a later
                // one with that value is a repeat (a duplicate delivery), which validate reports.
                let Some(values) = t.attributes.get(slot) else { continue };
                paired.clear();
                for i in 0..n {
                    let value = values[base + i];
                    if value == NONE {
                        continue;
                    }
                    if matches.get(i, from) {
                        paired.push((value, t.start[base + i], 0, i as u32));
                    }
                    if matches.get(i, to) && service_ok(i) {
                        paired.push((value, t.start[base + i], 1, i as u32));
                    }
                }
                paired.sort_unstable();
                let mut open: Option<(u32, usize)> = None;
                for &(value, _, side, i) in paired.iter() {
                    let i = i as usize;
                    match (side, open) {
                        (0, _) => open = Some((value, i)),
                        (_, Some((v, a))) if v == value => {
                            open = None;
                            let origin = match from_edge {
                                Edge::Start => t.start[base + a],
                                Edge::End => t.end[base + a],
                            };
                            let correction = between(a, i);
                            let cross = t.process[base + a] != t.process[base + i];
                            record(i, t.start[base + i] - origin - correction.shift, cross.then_some(correction));
                        }
                        _ => {}
                    }
                }
            }
            CompiledMeasure::Gap { from, to, from_edge, pair: None } => {
                for b in (0..n).filter(|&b| matches.get(b, to) && service_ok(b)) {
                    let mut sources: [u32; 2] = [NONE; 2];
                    if parent[b] != NONE && matches.get(parent[b] as usize, from) {
                        sources[0] = parent[b];
                    }
                    for &link in t.links(base + b) {
                        let a = find(link);
                        if a != NONE && a != sources[0] && matches.get(a as usize, from) {
                            sources[1] = a;
                            break;
                        }
                    }
                    for a in sources.into_iter().filter(|&a| a != NONE).map(|a| a as usize) {
                        let origin = match from_edge {
                            Edge::Start => t.start[base + a],
                            Edge::End => t.end[base + a],
                        };
                        let raw = t.start[base + b] - origin;
                        let correction = offsets.between(base, a, b, t);
                        let cross = t.process[base + a] != t.process[base + b];
                        record(b, raw - correction.shift, cross.then_some(correction));
                    }
                }
            }
            CompiledMeasure::Interval { from, to } => {
                // On the clock of the earliest `from` span's process.
                let first = (0..n).filter(|&i| matches.get(i, from)).min_by_key(|&i| t.start[base + i]);
                let Some(a) = first else { continue };
                if !service_ok(a) {
                    continue;
                }
                let mut last: Option<(i64, usize, Correction)> = None;
                for b in (0..n).filter(|&b| matches.get(b, to)) {
                    let correction = between(a, b);
                    let end = t.end[base + b] - correction.shift;
                    if last.is_none_or(|(e, _, _)| end > e) {
                        last = Some((end, b, correction));
                    }
                }
                if let Some((end, b_last, correction)) = last {
                    let cross = t.process[base + a] != t.process[base + b_last];
                    // Every span's time on `a`'s clock, computed once for the walk.
                    shifted.clear();
                    shifted.extend((0..n).map(|i| {
                        let shift = between(a, i).shift;
                        (t.start[base + i] - shift, t.end[base + i] - shift)
                    }));
                    critical_path::walk(t, base, parent, shifted, a, b_last, pieces);
                    let key = (rule.category, variant(rule.group_slot, a as u32), rule.hop);
                    let samples = out.entry(key).or_default();
                    let origin = rule.origins.then(|| Origin {
                        trace: trace_no,
                        at: t.start[base + a],
                        process: t.process[base + a],
                    });
                    samples.push(end - t.start[base + a], origin, cross.then_some(correction));
                    samples.paths.push(trace_no, pieces);
                }
            }
            CompiledMeasure::Difference { outer, inner } => {
                for i in (0..n).filter(|&i| matches.get(i, outer) && service_ok(i)) {
                    let inner_total: Option<i64> = (0..n)
                        .filter(|&c| parent[c] == i as u32 && matches.get(c, inner))
                        .map(duration)
                        .reduce(|a, b| a + b);
                    if let Some(inner_total) = inner_total {
                        record(i, duration(i) - inner_total, None);
                    }
                }
            }
        }
    }
    true
}

/// How much of `[start, end)` the intervals cover together.
fn union_within(intervals: &mut [(i64, i64)], start: i64, end: i64) -> i64 {
    intervals.sort_unstable();
    let (mut covered, mut reach) = (0, start);
    for &(s, e) in intervals.iter() {
        let (s, e) = (s.max(reach), e.min(end));
        if e > s {
            covered += e - s;
            reach = e;
        }
    }
    covered
}

impl ClockOffsets {
    /// How far `b`'s clock is ahead of `a`'s (subtract it from `b`'s times to read them on `a`'s clock).
    fn between(&self, base: usize, a: usize, b: usize, t: &SpanTable) -> Correction {
        let (pa, pb) = (t.process[base + a], t.process[base + b]);
        if pa == pb {
            return Correction { shift: 0, consistent: true };
        }
        let (oa, ca) = self.offset(pa);
        let (ob, cb) = self.offset(pb);
        Correction { shift: if ca && cb { ob - oa } else { 0 }, consistent: ca && cb }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The variant is read on the measured span, then its ancestors, then the rest of its trace: a system
    /// that sets the task's name on a child of the request span still gets one variant per name.
    #[test]
    fn group_by_finds_the_attribute_on_the_span_its_ancestors_or_elsewhere_in_the_trace() {
        use hoptrace_testkit::spans::{row, text as name};
        let span = |trace: u8, id: u8, parent: Option<u8>, span_name: &str, task: Option<&str>| {
            let mut r = row(trace, id);
            r.name = span_name.into();
            r.parent_span_id = parent.map(|p| [p; 8]);
            r.attributes = task.map(|t| vec![name("task_name", t)]).unwrap_or_default();
            r
        };
        let rows = [
            // The name on a child of the measured span only.
            span(1, 1, None, "request", None),
            span(1, 2, Some(1), "create_task", Some("linear")),
            span(1, 3, Some(2), "insert", None),
            // On the measured span itself, which wins over a child's.
            span(2, 1, None, "request", Some("diamond")),
            span(2, 2, Some(1), "create_task", Some("other")),
            // On an ancestor of the measured span.
            span(3, 1, None, "request", Some("tree")),
            span(3, 2, Some(1), "insert", None),
            // Nowhere in the trace.
            span(4, 1, None, "request", None),
        ];
        let mut frame = hoptrace_store::to_frame(&rows).unwrap();
        let config = Config::parse(
            r#"
            [[category]]
            name = "tasks"
            group_by = "task_name"
            [[category.hop]]
            name = "request"
            measure = "duration"
            span = { name = "request" }
            [[category.hop]]
            name = "insert"
            measure = "duration"
            span = { name = "insert" }
            "#,
        )
        .unwrap();
        let table = SpanTable::from_frame(&mut frame, &attribute_keys(&config)).unwrap();
        let extraction = extract(&table, &config, &Filters::default());
        let variants = |hop: usize| -> Vec<Option<&str>> {
            extraction.samples.iter().filter(|((_, _, h), _)| *h == hop).map(|((_, v, _), _)| v.as_deref()).collect()
        };
        assert_eq!(variants(0), [None, Some("diamond"), Some("linear"), Some("tree")]);
        assert_eq!(variants(1), [Some("linear"), Some("tree")], "the insert under create_task reads its parent's");
    }

    #[test]
    fn union_counts_overlaps_once_and_clips_to_the_parent() {
        assert_eq!(union_within(&mut [(0, 10), (5, 15), (20, 30)], 0, 100), 25);
        assert_eq!(union_within(&mut [(-5, 10), (90, 120)], 0, 100), 20);
        assert_eq!(union_within(&mut [], 0, 100), 0);
    }
}
