//! Clock offsets between the processes of one trace, bounded by what causality allows.
//!
//! Each cross-process edge bounds `d = offset(child's process) − offset(parent's process)`:
//! - any edge (parent/child or link): what a span causes cannot begin before it began, so
//!   `d ≤ child.start − parent.start`; except that a CLIENT child under an asynchronous parent is a pull
//!   (a queue read), which may be issued before the message exists and only returns it afterwards, so for
//!   it the bound is `d ≤ child.end − parent.start`;
//! - a synchronous call (CLIENT parent, SERVER child) also ends before its client does, so
//!   `d ≥ child.end − parent.end`.
//!
//! Edges in the other direction bound `d` from the other side. Starting from the root's process (offset 0)
//! and walking the process graph, each process takes the offset nearest to its neighbour's that the bounds
//! allow: clocks are trusted until the trace proves them wrong, and then moved only as far as needed.
//! When the bounds contradict each other (no offset satisfies them all) the process is marked
//! inconsistent: its gaps are kept as measured and counted as uncorrectable.

use hoptrace_otlp::SpanKind;

use crate::spans::{SpanTable, NONE};

/// Per process of the current trace: (process id, offset in ns, consistent).
#[derive(Debug, Default)]
pub struct ClockOffsets {
    processes: Vec<(u32, i64, bool)>,
    bounds: Vec<(u32, u32, i64, i64)>,
}

impl ClockOffsets {
    /// The offset of `process` and whether it could be settled; unknown processes read as 0.
    pub fn offset(&self, process: u32) -> (i64, bool) {
        self.processes.iter().find(|p| p.0 == process).map_or((0, true), |p| (p.1, p.2))
    }
}

/// Estimates the offsets of the processes of the trace in rows `base..base + n`.
pub fn estimate(
    t: &SpanTable,
    base: usize,
    n: usize,
    parent: &[u32],
    find: &impl Fn(u64) -> u32,
    out: &mut ClockOffsets,
) {
    out.processes.clear();
    out.bounds.clear();
    let first = t.process[base];
    if (base..base + n).all(|r| t.process[r] == first) {
        return;
    }
    // Bounds per ordered process pair (p, q) on d = offset(q) − offset(p): [low, high].
    let mut bound = |a: usize, b: usize, synchronous: bool| {
        let (pa, pb) = (t.process[base + a], t.process[base + b]);
        if pa == pb {
            return;
        }
        let pull = !synchronous && t.kind[base + b] == SpanKind::Client;
        let high = if pull { t.end[base + b] } else { t.start[base + b] } - t.start[base + a];
        let low = if synchronous { t.end[base + b] - t.end[base + a] } else { i64::MIN };
        // Store with the smaller process id first, negating when flipped.
        let (p, q, low, high) = if pa < pb { (pa, pb, low, high) } else { (pb, pa, -high, low.saturating_neg()) };
        match out.bounds.iter_mut().find(|x| x.0 == p && x.1 == q) {
            Some(x) => {
                x.2 = x.2.max(low);
                x.3 = x.3.min(high);
            }
            None => out.bounds.push((p, q, low, high)),
        }
    };
    for (b, &a) in parent.iter().enumerate().take(n) {
        if a != NONE {
            let synchronous = t.kind[base + a as usize] == SpanKind::Client && t.kind[base + b] == SpanKind::Server;
            bound(a as usize, b, synchronous);
        }
        for &link in t.links(base + b) {
            let a = find(link);
            if a != NONE {
                bound(a as usize, b, false);
            }
        }
    }
    // The root's process is the reference clock.
    let root = (0..n).find(|&i| parent[i] == NONE).unwrap_or(0);
    out.processes.push((t.process[base + root], 0, true));
    let mut i = 0;
    while i < out.processes.len() {
        let (p, offset_p, consistent_p) = out.processes[i];
        for k in 0..out.bounds.len() {
            let (x, y, low, high) = out.bounds[k];
            let (q, low, high) = if x == p {
                (y, low, high)
            } else if y == p {
                (x, high.saturating_neg(), low.saturating_neg())
            } else {
                continue;
            };
            if out.processes.iter().any(|known| known.0 == q) {
                continue;
            }
            let (d, consistent) = if low <= high { (0i64.clamp(low, high), true) } else { (0, false) };
            out.processes.push((q, offset_p + d, consistent && consistent_p));
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::hops::{extract, Filters};

    const MS: i64 = 1_000_000;

    /// The orchestrator (process 0) sends at 0..1 ms; a worker (process 1) processes the message and
    /// sends a result at 6..7 ms on its clock; the orchestrator processes the result at `result_at`.
    fn trace(worker_process_at: i64, result_at: i64) -> SpanTable {
        let mut t = SpanTable::default();
        let name = |t: &mut SpanTable, s: &str| t.strings.intern(s);
        let names = [
            name(&mut t, "send step_queue"),
            name(&mut t, "process step_queue"),
            name(&mut t, "send result_queue"),
            name(&mut t, "process result_queue"),
        ];
        let (orch, worker) = (name(&mut t, "orchestration"), name(&mut t, "worker"));
        t.trace_ids = vec![[1; 16]];
        t.traces = std::iter::once(0..4).collect();
        t.span_id = vec![1, 2, 3, 4];
        t.parent_id = vec![0, 1, 2, 3];
        t.name = names.to_vec();
        t.kind = [4, 5, 4, 5].map(SpanKind::from_code).to_vec();
        t.service = vec![orch, worker, worker, orch];
        t.process = t.service.clone();
        t.start = vec![0, worker_process_at, 6 * MS, result_at];
        t.end = vec![MS, 8 * MS, 7 * MS, result_at + MS];
        t.link_offsets = vec![0, 0, 0, 0, 0];
        t
    }

    fn gaps(t: &SpanTable) -> Vec<(i64, usize, usize)> {
        let config = Config::parse(
            "[[category]]\nname = \"queues\"\n[[category.hop]]\nname = \"wait\"\nmeasure = \"gap\"\n\
             from = { kind = \"producer\" }\nto = { kind = \"consumer\" }\n",
        )
        .unwrap();
        let extraction = extract(t, &config, &Filters::default());
        let mut samples: Vec<_> = extraction.samples.into_values().collect();
        let s = samples.pop().unwrap();
        let mut values = s.values.clone();
        values.sort();
        values.into_iter().map(|v| (v, s.corrected, s.uncorrectable)).collect()
    }

    #[test]
    fn clocks_that_agree_are_left_alone() {
        // Worker starts 2 ms after the send began, result processed 1 ms after the result send ended.
        assert_eq!(gaps(&trace(2 * MS, 8 * MS)), vec![(MS, 0, 0), (MS, 0, 0)]);
    }

    #[test]
    fn a_worker_clock_behind_is_moved_just_far_enough() {
        // The worker's processing seems to start 1 ms before the send began: its clock is behind. The
        // bounds are d ≤ −1 ms (from the send) and d ≥ −2 ms (its result is processed 2 ms after it was
        // sent), so d = −1 ms, the smallest correction that restores causality. Raw gaps −2 ms and 1 ms
        // become −1 ms and 0 ms; both samples crossed processes and both were corrected.
        assert_eq!(gaps(&trace(-MS, 8 * MS)), vec![(-MS, 2, 0), (0, 2, 0)]);
    }

    #[test]
    fn contradicting_bounds_are_counted_and_the_gaps_kept_as_measured() {
        // The worker starts 5 ms after the send (so d ≤ 5 ms) but its result is processed 0.5 ms after
        // the orchestrator's send began, 5.5 ms before the worker sent it (so d ≥ 5.5 ms): no offset fits.
        let g = gaps(&trace(5 * MS, MS / 2));
        assert_eq!(g, vec![(-7 * MS + MS / 2, 0, 2), (4 * MS, 0, 2)]);
    }
}
