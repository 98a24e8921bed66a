//! The critical path of a trace, queue and notify hops included: the chain of work and waiting that
//! decided when the trace's last span ended.
//!
//! Walking back from the end: inside a span, the time after its latest-ending synchronous child is the
//! span's own; that child is entered next; before the first child, the span's own time again. Consumers
//! (a `process`, a notify reception) and pulls under a producer (a queue read) are asynchronous: they are
//! not entered from their parent, but when the walk reaches one, it leaves it for what happened before it
//! — the latest sibling in the same process that ended before it started (the read that claimed the
//! message), else its producer — and the wait in between is a gap of its own (queue wait). Tracing UIs
//! drop that producer/consumer work from their critical paths; here it is usually most of it.
//!
//! [`summarise`] turns the paths of an interval hop's traces into each segment's share of the interval
//! in the median band and in the tail, with the median and 99th-percentile traces as exemplars.

use hoptrace_otlp::SpanKind;

use crate::spans::{FxMap, SpanTable, NONE};

/// A piece of the critical path: a span's own time, or the gap from one span to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Segment {
    /// Own time of spans with this name id.
    Span(u32),
    /// The wait between the end of a span named `.0` and the start of one named `.1`.
    Gap(u32, u32),
}

/// Whether the span at row `child` runs apart from its parent at row `parent` (it is a consumer, or a read
/// under a producer).
pub fn asynchronous(t: &SpanTable, parent: usize, child: usize) -> bool {
    t.kind[child] == SpanKind::Consumer || (t.kind[child] == SpanKind::Client && t.kind[parent] == SpanKind::Producer)
}

/// The critical path of the trace in rows `base..base + times.len()` that ends at `last`'s end, clipped to
/// start no earlier than `from`'s start. `times` gives each span's (start, end) on one clock
/// (skew-corrected), `parent` the parents' positions. Appends (segment, ns) pieces to `out`, latest first.
pub fn walk(
    t: &SpanTable,
    base: usize,
    parent: &[u32],
    times: &[(i64, i64)],
    from: usize,
    last: usize,
    out: &mut Vec<(Segment, i64)>,
) {
    let n = times.len();
    let start = |i: usize| times[i].0;
    let end = |i: usize| times[i].1;
    let floor = start(from);
    let name = |i: usize| t.name[base + i];
    let mut push = |segment: Segment, from: i64, to: i64| {
        let (from, to) = (from.max(floor), to);
        if to > from {
            out.push((segment, to - from));
        }
    };
    // Each span's children as a list (first child, next sibling): a step looks at the children of one span
    // instead of at every span of the trace.
    let (mut first, mut next) = (vec![NONE; n], vec![NONE; n]);
    for c in (0..n).rev() {
        if let Some(p) = parent.get(c).map(|&p| p as usize).filter(|&p| p < n) {
            next[c] = first[p];
            first[p] = c as u32;
        }
    }
    let (first, next) = (&first, &next);
    let children = |s: usize| {
        let link = |i: u32| (i != NONE).then_some(i as usize);
        std::iter::successors(link(first[s]), move |&c| link(next[c]))
    };
    let (mut s, mut cursor) = (last, end(last));
    // Each step either moves the cursor back or leaves a span for one that began earlier: bounded.
    for _ in 0..4 * n + 4 {
        if cursor <= floor {
            return;
        }
        // The latest synchronous child of `s` that ended by the cursor.
        let child = children(s)
            .filter(|&c| !asynchronous(t, base + s, base + c) && end(c) <= cursor && end(c) > start(s))
            .max_by_key(|&c| (end(c), c));
        if let Some(c) = child {
            push(Segment::Span(name(s)), end(c), cursor);
            s = c;
            cursor = end(c);
            continue;
        }
        push(Segment::Span(name(s)), start(s), cursor);
        let p = parent[s];
        if p == NONE {
            return;
        }
        let p = p as usize;
        if !asynchronous(t, base + p, base + s) {
            // Back in the parent, before this child began.
            cursor = start(s);
            s = p;
            continue;
        }
        // An asynchronous span: what came before it in its own process, else its producer.
        let before = children(p)
            .filter(|&x| x != s && t.process[base + x] == t.process[base + s] && end(x) <= start(s))
            .max_by_key(|&x| (end(x), x));
        let predecessor = before.unwrap_or(p);
        push(Segment::Gap(name(predecessor), name(s)), end(predecessor).min(start(s)), start(s));
        cursor = end(predecessor).min(start(s));
        s = predecessor;
    }
}

/// Critical paths, one per sample: trace `k`'s pieces are `pieces[starts[k]..starts[k + 1]]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Paths {
    pub starts: Vec<u32>,
    pub pieces: Vec<(Segment, i64)>,
    /// The trace (its number in the table) of each path.
    pub traces: Vec<u32>,
}

impl Paths {
    pub(crate) fn push(&mut self, trace: u32, pieces: &mut Vec<(Segment, i64)>) {
        if self.starts.is_empty() {
            self.starts.push(0);
        }
        self.traces.push(trace);
        // One piece per segment: a path passes the same kind of span once per step.
        pieces.sort_unstable_by_key(|p| p.0);
        let mut merged: Vec<(Segment, i64)> = Vec::with_capacity(pieces.len());
        for &(segment, ns) in pieces.iter() {
            match merged.last_mut() {
                Some(last) if last.0 == segment => last.1 += ns,
                _ => merged.push((segment, ns)),
            }
        }
        self.pieces.extend(merged);
        self.starts.push(self.pieces.len() as u32);
        pieces.clear();
    }

    pub(crate) fn merge(&mut self, other: Paths) {
        if other.starts.is_empty() {
            return;
        }
        if self.starts.is_empty() {
            self.starts.push(0);
        }
        let shift = self.pieces.len() as u32;
        self.traces.extend(other.traces);
        self.pieces.extend(other.pieces);
        self.starts.extend(other.starts[1..].iter().map(|s| s + shift));
    }

    fn of(&self, k: usize) -> &[(Segment, i64)] {
        &self.pieces[self.starts[k] as usize..self.starts[k + 1] as usize]
    }
}

/// Where the time of an interval hop goes, at its median and in its tail.
#[derive(Debug, Clone, PartialEq)]
pub struct CriticalPath {
    /// Traces in the median band (40th to 60th percentile of the interval) and the tail (99th and up).
    pub median_traces: usize,
    pub tail_traces: usize,
    /// (segment, share of the interval in the median band, share in the tail), largest tail share first.
    pub segments: Vec<(String, f64, f64)>,
    /// The traces at the median and at the 99th percentile of the interval, span by span.
    pub exemplars: Vec<Exemplar>,
}

/// One trace, for a waterfall.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Exemplar {
    /// `p50` or `p99`.
    pub at: &'static str,
    pub trace_id: String,
    pub interval_ns: i64,
    /// In start order.
    pub spans: Vec<ExemplarSpan>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ExemplarSpan {
    pub name: String,
    pub service: String,
    /// Nanoseconds from the trace's first start, as recorded.
    pub start_ns: i64,
    pub end_ns: i64,
    /// Depth in the tree (0 for the root); the parent's position in `spans`, when any.
    pub depth: u32,
    pub parent: Option<u32>,
    /// Whether the span is a consumer or a read under a producer: drawn after a gap from its parent.
    pub asynchronous: bool,
}

/// Shares of each segment in the median band and the tail of the interval's samples.
pub fn summarise(table: &SpanTable, totals: &[i64], paths: &Paths) -> CriticalPath {
    // The bands and the exemplars' ranks are selected, not sorted for: a band is a set of traces.
    let mut order: Vec<usize> = (0..totals.len()).collect();
    let n = order.len();
    let (p50, p99) = ((n - 1) / 2, ((n * 99).div_ceil(100)).clamp(1, n) - 1);
    let (median_from, median_to, tail_from) =
        (n * 2 / 5, (n * 3 / 5).max(n * 2 / 5 + 1).min(n), (n * 99 / 100).min(n - 1));
    let mut ranks = [median_from, p50, median_to, tail_from, p99];
    ranks.sort_unstable();
    let mut done = 0;
    for rank in ranks.into_iter().filter(|&r| r < n) {
        if rank >= done {
            order[done..].select_nth_unstable_by_key(rank - done, |&k| totals[k]);
            done = rank + 1;
        }
    }
    let median = &order[median_from..median_to];
    let tail = &order[tail_from..];
    let shares = |band: &[usize]| {
        let total: i64 = band.iter().map(|&k| totals[k]).sum::<i64>().max(1);
        let mut by_segment: FxMap<Segment, i64> = FxMap::default();
        for &k in band {
            for &(segment, ns) in paths.of(k) {
                *by_segment.entry(segment).or_default() += ns;
            }
        }
        (by_segment, total)
    };
    let ((mid, mid_total), (end, end_total)) = (shares(median), shares(tail));
    let mut segments: Vec<(String, f64, f64)> = mid
        .keys()
        .chain(end.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|segment| {
            let label = match *segment {
                Segment::Span(name) => table.strings.resolve(name).to_owned(),
                Segment::Gap(from, to) => format!("{} ⇢ {}", table.strings.resolve(from), table.strings.resolve(to)),
            };
            let share = |map: &FxMap<Segment, i64>, total: i64| *map.get(segment).unwrap_or(&0) as f64 / total as f64;
            (label, share(&mid, mid_total), share(&end, end_total))
        })
        .collect();
    segments.sort_by(|a, b| b.2.total_cmp(&a.2).then(b.1.total_cmp(&a.1)).then(a.0.cmp(&b.0)));
    let exemplar = |at: &'static str, k: usize| exemplar(table, paths.traces[k] as usize, at, totals[k]);
    let exemplars = vec![exemplar("p50", order[p50]), exemplar("p99", order[p99])];
    CriticalPath { median_traces: median.len(), tail_traces: tail.len(), segments, exemplars }
}

fn exemplar(t: &SpanTable, trace: usize, at: &'static str, interval_ns: i64) -> Exemplar {
    let rows = t.traces[trace].clone();
    let mut order: Vec<usize> = rows.clone().collect();
    order.sort_by_key(|&r| (t.start[r], r));
    let origin = order.first().map_or(0, |&r| t.start[r]);
    let position = |id: u64| order.iter().position(|&r| t.span_id[r] == id);
    let parents: Vec<Option<usize>> =
        order.iter().map(|&r| if t.parent_id[r] == 0 { None } else { position(t.parent_id[r]) }).collect();
    let depth = |mut i: usize| {
        let mut d = 0;
        while let Some(p) = parents[i] {
            d += 1;
            i = p;
            if d > order.len() {
                break;
            }
        }
        d
    };
    let spans = order
        .iter()
        .enumerate()
        .map(|(i, &r)| ExemplarSpan {
            name: t.strings.resolve(t.name[r]).to_owned(),
            service: t.strings.resolve(t.process[r]).to_owned(),
            start_ns: t.start[r] - origin,
            end_ns: t.end[r] - origin,
            depth: depth(i) as u32,
            parent: parents[i].map(|p| p as u32),
            asynchronous: parents[i].is_some_and(|p| asynchronous(t, order[p], r)),
        })
        .collect();
    let trace_id = t.trace_id_hex(trace);
    Exemplar { at, trace_id, interval_ns, spans }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (name, kind, parent position or NONE, start, end, process)
    type S = (&'static str, u8, u32, i64, i64, &'static str);

    /// The spans as the second trace of a table (the first is another trace's consumer), so positions
    /// within the trace and rows of the table differ, as they do in real tables.
    fn table(spans: &[S]) -> SpanTable {
        let mut t = SpanTable::default();
        let other: S = ("elsewhere", SpanKind::Consumer.code(), NONE, 0, 1, "x");
        for (i, &(name, kind, parent, start, end, process)) in std::iter::once(&other).chain(spans).enumerate() {
            t.span_id.push(i as u64 + 1);
            t.parent_id.push(if parent == NONE { 0 } else { parent as u64 + 1 });
            let name = t.strings.intern(name);
            t.name.push(name);
            t.kind.push(SpanKind::from_code(kind));
            let process = t.strings.intern(process);
            t.service.push(process);
            t.process.push(process);
            t.start.push(start);
            t.end.push(end);
        }
        t.traces = vec![0..1, 1..spans.len() + 1];
        t
    }

    /// The path from the start of span `from` to the end of span `last`, as (label, ns), summed by label.
    fn path(spans: &[S], from: usize, last: usize) -> Vec<(String, i64)> {
        let t = table(spans);
        let parent: Vec<u32> = spans.iter().map(|s| s.2).collect();
        let mut pieces = Vec::new();
        let times: Vec<(i64, i64)> = (1..=spans.len()).map(|r| (t.start[r], t.end[r])).collect();
        walk(&t, 1, &parent, &times, from, last, &mut pieces);
        let mut by_label: std::collections::BTreeMap<String, i64> = Default::default();
        for (segment, ns) in pieces {
            let label = match segment {
                Segment::Span(n) => t.strings.resolve(n).to_owned(),
                Segment::Gap(a, b) => format!("{} ⇢ {}", t.strings.resolve(a), t.strings.resolve(b)),
            };
            *by_label.entry(label).or_default() += ns;
        }
        let total: i64 = by_label.values().sum();
        assert_eq!(total, spans[last].4 - spans[from].3, "the path covers the interval exactly");
        by_label.into_iter().collect()
    }

    fn owned(expected: &[(&str, i64)]) -> Vec<(String, i64)> {
        let mut v: Vec<(String, i64)> = expected.iter().map(|(l, n)| (l.to_string(), *n)).collect();
        v.sort();
        v
    }

    #[test]
    fn sequential_children_share_the_parent_with_its_own_time() {
        let spans = [("root", 2, NONE, 0, 100, "a"), ("A", 3, 0, 10, 40, "a"), ("B", 3, 0, 50, 90, "a")];
        assert_eq!(path(&spans, 0, 0), owned(&[("root", 30), ("A", 30), ("B", 40)]));
    }

    #[test]
    fn in_a_diamond_only_the_branch_that_finished_last_is_on_the_path() {
        let spans = [
            ("root", 2, NONE, 0, 100, "a"),
            ("left", 1, 0, 10, 60, "a"),
            ("right", 1, 0, 10, 80, "a"),
            ("join", 1, 0, 85, 95, "a"),
        ];
        assert_eq!(path(&spans, 0, 0), owned(&[("root", 20), ("right", 70), ("join", 10)]));
    }

    #[test]
    fn queue_waits_are_gaps_on_the_path_through_the_claim() {
        // The orchestrator sends at 2..4; a worker claims the message at 6..7 and processes it at 7.5..20.
        let spans = [
            ("POST", 2, NONE, 0, 10, "orch"),
            ("send", 4, 0, 2, 4, "orch"),
            ("claim", 3, 1, 6, 7, "worker"),
            ("process", 5, 1, 8, 20, "worker"),
            ("execute", 1, 3, 9, 18, "worker"),
        ];
        assert_eq!(
            path(&spans, 0, 3),
            owned(&[
                ("process", 3),
                ("execute", 9),
                ("claim ⇢ process", 1),
                ("claim", 1),
                ("send ⇢ claim", 2),
                ("send", 2),
                ("POST", 2),
            ])
        );
    }

    #[test]
    fn two_step_cycles_chain_through_both_queues() {
        // Step one's result is processed by the orchestrator, which enqueues step two, which completes.
        let spans = [
            ("POST", 2, NONE, 0, 5, "orch"),          // 0
            ("send step", 4, 0, 1, 2, "orch"),        // 1
            ("process step", 5, 1, 4, 10, "worker"),  // 2
            ("send result", 4, 2, 6, 8, "worker"),    // 3
            ("process result", 5, 3, 12, 30, "orch"), // 4
            ("send step", 4, 4, 13, 14, "orch"),      // 5
            ("process step", 5, 5, 16, 25, "worker"), // 6
            ("send result", 4, 6, 20, 22, "worker"),  // 7
            ("process result", 5, 7, 26, 35, "orch"), // 8
            ("complete", 1, 8, 30, 34, "orch"),       // 9
        ];
        let p = path(&spans, 0, 9);
        let get = |label: &str| p.iter().find(|(l, _)| l == label).map_or(0, |(_, n)| *n);
        assert_eq!(get("complete"), 4);
        assert_eq!(get("send result ⇢ process result"), (26 - 22) + (12 - 8));
        assert_eq!(get("send step ⇢ process step"), (16 - 14) + (4 - 2));
        assert_eq!(get("POST"), 1, "only the request's time before the first send is on the path");
    }
}
