//! Trace-correlation validation: is every lifecycle still one intact trace?
//!
//! Each trace of the range is checked against rules with stable names (below). A trace whose newest span
//! ended less than the settle window ago may still be receiving spans: it is reported as pending, not
//! broken. The rules are generic: which spans start a lifecycle, the correlation key and the expected
//! span counts come from the configuration.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::Config;
use crate::select::Selectors;
use crate::spans::{FxMap, SpanTable, NONE};

/// The rules, by their stable names.
pub const RULES: &[(&str, &str)] = &[
    ("single_root", "exactly one span without a parent"),
    ("expected_root", "the root is the entry span of a lifecycle"),
    ("no_orphans", "every parent span id exists in the trace"),
    ("unique_span_ids", "no span id occurs twice"),
    ("valid_ids", "trace and span ids are non-zero"),
    ("end_after_start", "no span ends before it starts"),
    ("consumer_paired", "every consumer has a parent or link to a producer in the trace"),
    ("one_trace_per_key", "spans with the same correlation key share one trace"),
    ("expected_structure", "the lifecycle's span counts for its variant"),
    ("child_within_parent", "a synchronous child lies within its parent, within the clock-skew bound"),
];

const PRODUCER: u8 = 4;
const CONSUMER: u8 = 5;

/// One broken rule in one trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub trace_id: String,
    pub rule: &'static str,
    /// The lifecycle the trace belongs to, when its root says so.
    pub lifecycle: Option<String>,
    /// The offending span: `name (span id)`, when one span is to blame.
    pub span: Option<String>,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Validation {
    pub schema: &'static str,
    pub traces_checked: usize,
    pub intact: usize,
    pub broken: usize,
    pub pending: usize,
    /// Rule → number of broken traces that fail it.
    pub by_rule: BTreeMap<&'static str, usize>,
    pub failures: Vec<Failure>,
}

pub const SCHEMA: &str = "hoptrace.validate/v1";

/// Checks every trace of `table` (of run `run` only, when given: its traces and any trace sharing a
/// correlation key with them, as a trace split off by lost context carries no run id). Traces whose
/// newest span ended after `settled_before` (unix ns) are pending.
pub fn validate(table: &SpanTable, config: &Config, settled_before: i64, run: Option<&str>) -> Validation {
    let selected = select_run(table, config, run);
    let v = &config.validation;
    let mut roots = Selectors::default();
    let lifecycles: Vec<(usize, Option<usize>)> = v
        .lifecycles
        .iter()
        .map(|l| (roots.add(table, &l.root), l.group_by.as_ref().and_then(|k| table.key_slot(k))))
        .collect();
    let bound = v.clock_skew_bound.as_nanos() as i64;
    let key_slot = v.correlation_key.as_ref().and_then(|k| table.key_slot(k));

    let mut failures: Vec<Failure> = Vec::new();
    let mut pending = vec![false; table.traces.len()];
    let mut lifecycle_of = vec![None; table.traces.len()];
    // Correlation key value → the traces it occurs in.
    let mut key_traces: FxMap<u32, Vec<u32>> = FxMap::default();
    let mut ids: Vec<(u64, usize)> = Vec::new();
    for (trace_no, rows) in table.traces.iter().enumerate() {
        if !selected[trace_no] {
            continue;
        }
        let trace_hex = hex(&table.trace_ids[trace_no]);
        if rows.clone().map(|r| table.end[r]).max().unwrap_or(0) > settled_before {
            pending[trace_no] = true;
            continue;
        }
        let span_label = |r: usize| format!("{} ({:016x})", table.strings.resolve(table.name[r]), table.span_id[r]);
        let mut fail = |rule: &'static str, span: Option<usize>, detail: String| {
            failures.push(Failure { trace_id: trace_hex.clone(), rule, lifecycle: None, span: span.map(span_label), detail });
        };
        ids.clear();
        ids.extend(rows.clone().map(|r| (table.span_id[r], r)));
        ids.sort_unstable();
        let find = |id: u64| ids.binary_search_by_key(&id, |&(s, _)| s).ok().map(|at| ids[at].1);

        if table.trace_ids[trace_no] == [0; 16] {
            fail("valid_ids", None, "the trace id is all zeros".into());
        }
        for w in ids.windows(2).filter(|w| w[0].0 == w[1].0) {
            fail("unique_span_ids", Some(w[1].1), "this span id occurs twice".into());
        }
        let root_rows: Vec<usize> = rows.clone().filter(|&r| table.parent_id[r] == 0).collect();
        if root_rows.len() != 1 {
            let names: Vec<String> = root_rows.iter().map(|&r| span_label(r)).collect();
            fail("single_root", root_rows.first().copied(), format!("{} roots: {}", root_rows.len(), names.join(", ")));
        }
        if let Some(&root) = root_rows.first() {
            match lifecycles.iter().position(|&(sel, _)| roots.matches_own(sel, table, root)) {
                Some(l) => lifecycle_of[trace_no] = Some((l, root)),
                None => fail("expected_root", Some(root), "the root is no lifecycle's entry span".into()),
            }
        }
        for r in rows.clone() {
            if table.span_id[r] == 0 {
                fail("valid_ids", Some(r), "the span id is zero".into());
            }
            if table.end[r] < table.start[r] {
                fail("end_after_start", Some(r), format!("ends {} ns before it starts", table.start[r] - table.end[r]));
            }
            let parent = if table.parent_id[r] == 0 { None } else { find(table.parent_id[r]) };
            if table.parent_id[r] != 0 && parent.is_none() {
                fail("no_orphans", Some(r), format!("parent {:016x} is not in the trace", table.parent_id[r]));
            }
            if table.kind[r] == CONSUMER {
                let paired = parent.is_some_and(|p| table.kind[p] == PRODUCER)
                    || table.links(r).iter().any(|&l| find(l).is_some_and(|p| table.kind[p] == PRODUCER));
                if !paired {
                    fail("consumer_paired", Some(r), "no parent or link to a producer in this trace".into());
                }
            }
            if let Some(p) = parent {
                let synchronous = table.kind[p] != PRODUCER && table.kind[r] != CONSUMER;
                if synchronous && (table.start[r] < table.start[p] - bound || table.end[r] > table.end[p] + bound) {
                    fail(
                        "child_within_parent",
                        Some(r),
                        format!("outside its parent {} by more than {} ns", span_label(p), bound),
                    );
                }
            }
            if let Some(slot) = key_slot {
                let key = table.attributes[slot][r];
                if key != NONE {
                    let traces = key_traces.entry(key).or_default();
                    if traces.last() != Some(&(trace_no as u32)) {
                        traces.push(trace_no as u32);
                    }
                }
            }
        }
        // The expected structure of the lifecycle's variant.
        if let Some((l, root)) = lifecycle_of[trace_no] {
            let lifecycle = &v.lifecycles[l];
            let variant = lifecycles[l].1.map(|slot| table.attributes[slot][root]).filter(|&v| v != NONE);
            let variant = variant.map(|id| table.strings.resolve(id));
            if let Some(expected) = lifecycle.expected(variant) {
                for (name, &count) in expected {
                    let id = table.strings.get(name);
                    let found = rows.clone().filter(|&r| Some(table.name[r]) == id).count();
                    if found != count {
                        fail(
                            "expected_structure",
                            Some(root),
                            format!("{} {:?} spans, expected {count} for {}", found, name, variant.unwrap_or("this lifecycle")),
                        );
                    }
                }
            }
        }
    }
    // One lifecycle, one trace: a key in several traces breaks all of them.
    if let Some(slot) = key_slot {
        let key_name = &table.keys[slot];
        let mut split: Vec<(&u32, &Vec<u32>)> = key_traces.iter().filter(|(_, traces)| traces.len() > 1).collect();
        split.sort_by_key(|(key, _)| table.strings.resolve(**key));
        for (&key, traces) in split {
            for &trace_no in traces {
                let others: Vec<String> =
                    traces.iter().filter(|&&t| t != trace_no).map(|&t| hex(&table.trace_ids[t as usize])).collect();
                failures.push(Failure {
                    trace_id: hex(&table.trace_ids[trace_no as usize]),
                    rule: "one_trace_per_key",
                    lifecycle: None,
                    span: None,
                    detail: format!("{key_name}={} is also in {}", table.strings.resolve(key), others.join(", ")),
                });
            }
        }
    }
    // Name each failure's lifecycle, count broken traces per rule.
    let trace_index: FxMap<String, usize> =
        table.trace_ids.iter().enumerate().map(|(i, id)| (hex(id), i)).collect();
    let mut broken_traces = std::collections::BTreeSet::new();
    let mut by_rule_traces: BTreeMap<&'static str, std::collections::BTreeSet<String>> = BTreeMap::new();
    for failure in &mut failures {
        if let Some(&i) = trace_index.get(&failure.trace_id) {
            failure.lifecycle = lifecycle_of[i].map(|(l, _)| v.lifecycles[l].name.clone());
        }
        broken_traces.insert(failure.trace_id.clone());
        by_rule_traces.entry(failure.rule).or_default().insert(failure.trace_id.clone());
    }
    failures.sort_by(|a, b| (a.rule, &a.trace_id, &a.span).cmp(&(b.rule, &b.trace_id, &b.span)));
    let pending = pending.iter().filter(|&&p| p).count();
    let checked = selected.iter().filter(|&&s| s).count() - pending;
    Validation {
        schema: SCHEMA,
        traces_checked: checked,
        intact: checked - broken_traces.len(),
        broken: broken_traces.len(),
        pending,
        by_rule: by_rule_traces.into_iter().map(|(rule, traces)| (rule, traces.len())).collect(),
        failures,
    }
}

/// Which traces to check: all, or those of `run` and those sharing a correlation key with them.
fn select_run(table: &SpanTable, config: &Config, run: Option<&str>) -> Vec<bool> {
    let Some(run) = run else { return vec![true; table.traces.len()] };
    let (Some(slot), Some(run)) = (table.key_slot(crate::hops::RUN_ID_KEY), table.strings.get(run)) else {
        return vec![false; table.traces.len()];
    };
    let mut selected: Vec<bool> =
        table.traces.iter().map(|rows| rows.clone().any(|r| table.attributes[slot][r] == run)).collect();
    let key_slot = config.validation.correlation_key.as_ref().and_then(|k| table.key_slot(k));
    if let Some(key) = key_slot {
        let keys: std::collections::HashSet<u32> = table
            .traces
            .iter()
            .zip(&selected)
            .filter(|(_, &s)| s)
            .flat_map(|(rows, _)| rows.clone().map(|r| table.attributes[key][r]))
            .filter(|&k| k != NONE)
            .collect();
        for (trace, rows) in table.traces.iter().enumerate() {
            if !selected[trace] && rows.clone().any(|r| keys.contains(&table.attributes[key][r])) {
                selected[trace] = true;
            }
        }
    }
    selected
}

fn hex(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// How many broken traces are tolerated: a number, or a percentage of the traces checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxBroken {
    Count(usize),
    Percent(f64),
}

impl std::str::FromStr for MaxBroken {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is neither a count (3) nor a percentage (0.5%)");
        match text.strip_suffix('%') {
            Some(p) => p.trim().parse::<f64>().ok().filter(|p| (0.0..=100.0).contains(p)).map(MaxBroken::Percent).ok_or_else(bad),
            None => text.trim().parse().map(MaxBroken::Count).map_err(|_| bad()),
        }
    }
}

impl Validation {
    /// Whether the broken traces stay within `max`.
    pub fn acceptable(&self, max: MaxBroken) -> bool {
        match max {
            MaxBroken::Count(n) => self.broken <= n,
            MaxBroken::Percent(p) => (self.broken as f64) <= p / 100.0 * self.traces_checked as f64,
        }
    }

    /// The summary and each failure, for a terminal.
    pub fn table(&self, limit: usize) -> String {
        use std::fmt::Write as _;
        let mut out = format!(
            "hoptrace validate: {} traces checked, {} intact, {} broken, {} pending\n",
            self.traces_checked, self.intact, self.broken, self.pending
        );
        let width = RULES.iter().map(|(r, _)| r.len()).max().unwrap_or(0);
        for (rule, what) in RULES {
            let broken = self.by_rule.get(rule).copied().unwrap_or(0);
            let mark = if broken == 0 { "ok".to_owned() } else { format!("{broken} broken") };
            let _ = writeln!(out, "  {rule:<width$}  {mark:>10}  {what}");
        }
        if !self.failures.is_empty() {
            let _ = writeln!(out, "\nfailures{}:", if self.failures.len() > limit { format!(" (first {limit} of {})", self.failures.len()) } else { String::new() });
            for f in self.failures.iter().take(limit) {
                let span = f.span.as_ref().map(|s| format!(" at {s}")).unwrap_or_default();
                let lifecycle = f.lifecycle.as_ref().map(|l| format!(" [{l}]")).unwrap_or_default();
                let _ = writeln!(out, "  {} trace {}{lifecycle}{span}: {}", f.rule, f.trace_id, f.detail);
            }
        }
        out
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a validation serialises") + "\n"
    }

    /// JUnit XML: a test suite with one test case per rule and lifecycle; a failing case lists its traces.
    pub fn junit(&self, config: &Config) -> String {
        use std::fmt::Write as _;
        let mut lifecycles: Vec<Option<&str>> = config.validation.lifecycles.iter().map(|l| Some(l.name.as_str())).collect();
        lifecycles.push(None);
        let mut cases = String::new();
        let (mut tests, mut failed) = (0, 0);
        for (rule, what) in RULES {
            for lifecycle in &lifecycles {
                let hits: Vec<&Failure> =
                    self.failures.iter().filter(|f| f.rule == *rule && f.lifecycle.as_deref() == *lifecycle).collect();
                // Traces of no lifecycle only get a case when they fail.
                if lifecycle.is_none() && hits.is_empty() {
                    continue;
                }
                tests += 1;
                let class = lifecycle.unwrap_or("(no lifecycle)");
                let _ = write!(cases, "    <testcase classname=\"{}\" name=\"{}\">", xml(class), xml(rule));
                if !hits.is_empty() {
                    failed += 1;
                    let mut traces: Vec<&str> = hits.iter().map(|f| f.trace_id.as_str()).collect();
                    traces.dedup();
                    let body: Vec<String> = hits.iter().map(|f| {
                        format!("trace {}{}: {}", f.trace_id, f.span.as_ref().map(|s| format!(" at {s}")).unwrap_or_default(), f.detail)
                    }).collect();
                    let _ = write!(
                        cases,
                        "\n      <failure message=\"{}: {} trace(s) broken\">{}</failure>\n    ",
                        xml(what),
                        traces.len(),
                        xml(&body.join("\n"))
                    );
                }
                cases.push_str("</testcase>\n");
            }
        }
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"hoptrace validate\" tests=\"{tests}\" failures=\"{failed}\">\n  <testsuite name=\"trace correlation\" tests=\"{tests}\" failures=\"{failed}\">\n{cases}  </testsuite>\n</testsuites>\n"
        )
    }
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
