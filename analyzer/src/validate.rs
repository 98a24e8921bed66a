//! Trace-correlation validation: is every lifecycle still one intact trace?
//!
//! Each trace of the range is checked against rules with stable names (below). A trace whose newest span
//! ended less than the settle window ago may still be receiving spans: it is reported as pending, not
//! broken. The rules are generic: which spans start a lifecycle, the correlation key and the expected
//! span counts come from the configuration.

use std::collections::BTreeMap;

use hoptrace_text::{escape_markup as xml, Align, Table};
use serde::Serialize;

use hoptrace_otlp::SpanKind;

use crate::config::Config;
use crate::select::Selectors;
use crate::spans::{FxMap, SpanTable, TraceIndex, NONE};

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

/// The attribute keys validation reads: the run id, the correlation key, what lifecycles select on.
pub fn attribute_keys(config: &Config) -> Vec<String> {
    let v = &config.validation;
    let mut keys = vec![crate::hops::RUN_ID_KEY.to_owned()];
    keys.extend(v.correlation_key.clone());
    for lifecycle in &v.lifecycles {
        keys.extend(lifecycle.group_by.clone());
        crate::select::keys_of(&lifecycle.root, &mut keys);
    }
    let mut seen = std::collections::HashSet::new();
    keys.retain(|k| seen.insert(k.clone()));
    keys
}

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

    // Each failure with the number of its trace, which names its lifecycle at the end.
    let mut found: Vec<(usize, Failure)> = Vec::new();
    let mut pending = vec![false; table.traces.len()];
    let mut lifecycle_of = vec![None; table.traces.len()];
    // Correlation key value → the traces it occurs in.
    let mut key_traces: FxMap<u32, Vec<u32>> = FxMap::default();
    let mut index = TraceIndex::default();
    for (trace_no, rows) in table.traces.iter().enumerate() {
        if !selected[trace_no] {
            continue;
        }
        if rows.clone().map(|r| table.end[r]).max().unwrap_or(0) > settled_before {
            pending[trace_no] = true;
            continue;
        }
        let span_label = |r: usize| format!("{} ({:016x})", table.strings.resolve(table.name[r]), table.span_id[r]);
        let mut fail = |rule: &'static str, span: Option<usize>, detail: String| {
            let trace_id = table.trace_id_hex(trace_no);
            found.push((trace_no, Failure { trace_id, rule, lifecycle: None, span: span.map(span_label), detail }));
        };
        index.build(table, rows.clone());
        let find = |id: u64| index.row(id);

        if table.trace_ids[trace_no] == [0; 16] {
            fail("valid_ids", None, "the trace id is all zeros".into());
        }
        for row in index.duplicates() {
            fail("unique_span_ids", Some(row), "this span id occurs twice".into());
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
            if table.kind[r] == SpanKind::Consumer {
                let paired = parent.is_some_and(|p| table.kind[p] == SpanKind::Producer)
                    || table.links(r).iter().any(|&l| find(l).is_some_and(|p| table.kind[p] == SpanKind::Producer));
                if !paired {
                    fail("consumer_paired", Some(r), "no parent or link to a producer in this trace".into());
                }
            }
            if let Some(p) = parent {
                let synchronous = table.kind[p] != SpanKind::Producer && table.kind[r] != SpanKind::Consumer;
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
                            format!(
                                "{} {:?} spans, expected {count} for {}",
                                found,
                                name,
                                variant.unwrap_or("this lifecycle")
                            ),
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
                    traces.iter().filter(|&&t| t != trace_no).map(|&t| table.trace_id_hex(t as usize)).collect();
                found.push((
                    trace_no as usize,
                    Failure {
                        trace_id: table.trace_id_hex(trace_no as usize),
                        rule: "one_trace_per_key",
                        lifecycle: None,
                        span: None,
                        detail: format!("{key_name}={} is also in {}", table.strings.resolve(key), others.join(", ")),
                    },
                ));
            }
        }
    }
    // Name each failure's lifecycle, count broken traces per rule.
    let mut broken_traces = std::collections::BTreeSet::new();
    let mut by_rule_traces: BTreeMap<&'static str, std::collections::BTreeSet<usize>> = BTreeMap::new();
    let mut failures: Vec<Failure> = Vec::with_capacity(found.len());
    for (trace_no, mut failure) in found {
        failure.lifecycle = lifecycle_of[trace_no].map(|(l, _)| v.lifecycles[l].name.clone());
        broken_traces.insert(trace_no);
        by_rule_traces.entry(failure.rule).or_default().insert(trace_no);
        failures.push(failure);
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
            Some(p) => p
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|p| (0.0..=100.0).contains(p))
                .map(MaxBroken::Percent)
                .ok_or_else(bad),
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
        let mut rules = Table::new(&[Align::Left, Align::Right, Align::Left]).indent("  ").min_widths(&[0, 10]);
        for (rule, what) in RULES {
            let broken = self.by_rule.get(rule).copied().unwrap_or(0);
            let mark = if broken == 0 { "ok".to_owned() } else { format!("{broken} broken") };
            rules.row([*rule, mark.as_str(), *what]);
        }
        out.push_str(&rules.render());
        if !self.failures.is_empty() {
            let _ = writeln!(
                out,
                "\nfailures{}:",
                if self.failures.len() > limit {
                    format!(" (first {limit} of {})", self.failures.len())
                } else {
                    String::new()
                }
            );
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
        let mut lifecycles: Vec<Option<&str>> =
            config.validation.lifecycles.iter().map(|l| Some(l.name.as_str())).collect();
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
                    let body: Vec<String> = hits
                        .iter()
                        .map(|f| {
                            format!(
                                "trace {}{}: {}",
                                f.trace_id,
                                f.span.as_ref().map(|s| format!(" at {s}")).unwrap_or_default(),
                                f.detail
                            )
                        })
                        .collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;

    /// A span of a hand-written trace: (trace, id, parent, name, kind, start ms, end ms).
    #[derive(Clone)]
    struct S {
        trace: u8,
        id: u64,
        parent: u64,
        name: &'static str,
        kind: u8,
        start: i64,
        end: i64,
        links: Vec<u64>,
        key: Option<&'static str>,
        run: Option<&'static str>,
    }

    fn s(trace: u8, id: u64, parent: u64, name: &'static str, kind: u8, start: i64, end: i64) -> S {
        S { trace, id, parent, name, kind, start: start * MS, end: end * MS, links: vec![], key: None, run: None }
    }

    /// A job: its root, a producer and a consumer that is the producer's child and links to it.
    fn job(trace: u8, key: &'static str) -> Vec<S> {
        let mut root = s(trace, 1, 0, "start", 2, 0, 10);
        root.key = Some(key);
        root.run = Some("r1");
        let send = s(trace, 2, 1, "send", 4, 1, 2);
        let mut work = s(trace, 3, 2, "work", 5, 3, 20);
        work.links = vec![2];
        work.key = Some(key);
        vec![root, send, work]
    }

    fn table(spans: &[S]) -> SpanTable {
        let mut t = SpanTable { keys: vec!["task.uuid".into(), "benchmark.run_id".into()], ..SpanTable::default() };
        t.attributes = vec![Vec::new(), Vec::new()];
        t.link_offsets = vec![0];
        let mut traces: Vec<u8> = spans.iter().map(|s| s.trace).collect();
        traces.dedup();
        for trace in traces {
            let from = t.span_id.len();
            for span in spans.iter().filter(|s| s.trace == trace) {
                t.span_id.push(span.id);
                t.parent_id.push(span.parent);
                let name = t.strings.intern(span.name);
                t.name.push(name);
                t.kind.push(SpanKind::from_code(span.kind));
                let service = t.strings.intern("svc");
                t.service.push(service);
                t.process.push(service);
                t.start.push(span.start);
                t.end.push(span.end);
                let key = span.key.map_or(NONE, |k| t.strings.intern(k));
                let run = span.run.map_or(NONE, |r| t.strings.intern(r));
                t.attributes[0].push(key);
                t.attributes[1].push(run);
                t.link_ids.extend(&span.links);
                t.link_offsets.push(t.link_ids.len() as u32);
            }
            t.trace_ids.push([trace; 16]);
            t.traces.push(from..t.span_id.len());
        }
        t
    }

    fn config() -> Config {
        Config::parse(
            r#"
            [[category]]
            name = "jobs"
            [[category.hop]]
            name = "work"
            measure = "duration"
            span = { name = "work" }
            [validation]
            correlation_key = "task.uuid"
            clock_skew_bound = "1ms"
            [[validation.lifecycle]]
            name = "job"
            root = { name = "start" }
            expect."*" = { "work" = 1 }
            "#,
        )
        .unwrap()
    }

    fn rules(spans: &[S]) -> Vec<&'static str> {
        let result = validate(&table(spans), &config(), i64::MAX, None);
        let mut rules: Vec<&str> = result.failures.iter().map(|f| f.rule).collect();
        rules.dedup();
        rules
    }

    #[test]
    fn an_intact_job_breaks_no_rule() {
        let result = validate(&table(&job(1, "k1")), &config(), i64::MAX, None);
        assert_eq!((result.traces_checked, result.intact, result.broken), (1, 1, 0));
        assert!(result.failures.is_empty());
    }

    #[test]
    fn each_rule_catches_its_own_breakage() {
        let with = |change: &dyn Fn(&mut Vec<S>)| {
            let mut spans = job(1, "k1");
            change(&mut spans);
            rules(&spans)
        };
        assert_eq!(with(&|t| t.push(s(1, 9, 0, "start", 2, 0, 1))), ["single_root"]);
        assert_eq!(with(&|t| t[0].name = "begin"), ["expected_root"]);
        assert_eq!(with(&|t| t.push(s(1, 9, 77, "log", 1, 1, 2))), ["no_orphans"]);
        assert_eq!(with(&|t| t.extend([s(1, 9, 1, "log", 1, 1, 2), s(1, 9, 1, "log", 1, 2, 3)])), ["unique_span_ids"]);
        assert_eq!(with(&|t| t.push(s(1, 0, 1, "log", 1, 1, 2))), ["valid_ids"]);
        assert_eq!(with(&|t| t.push(s(1, 9, 1, "log", 1, 5, 4))), ["end_after_start"]);
        assert_eq!(
            with(&|t| {
                t[2].parent = 1;
                t[2].links.clear();
            }),
            ["consumer_paired"]
        );
        assert_eq!(with(&|t| t.push(s(1, 9, 2, "work", 5, 3, 4))), ["expected_structure"]);
        assert_eq!(with(&|t| t.push(s(1, 9, 1, "log", 1, 5, 12))), ["child_within_parent"]);
        // Within the 1 ms bound is fine.
        assert!(with(&|t| t.push(s(1, 9, 1, "log", 1, 5, 10))).is_empty());
        // A consumer's processing may outlast its producer: only synchronous children are bounded.
        assert!(with(&|t| t[2].end = 500 * MS).is_empty());
    }

    #[test]
    fn a_key_in_two_traces_breaks_both() {
        let mut spans = job(1, "k1");
        let mut split = s(2, 5, 0, "work", 5, 4, 6);
        split.key = Some("k1");
        spans.push(split);
        let result = validate(&table(&spans), &config(), i64::MAX, None);
        let split: Vec<_> =
            result.failures.iter().filter(|f| f.rule == "one_trace_per_key").map(|f| &f.trace_id).collect();
        assert_eq!(split.len(), 2);
        assert_eq!(result.broken, 2);
        assert_eq!(result.by_rule["one_trace_per_key"], 2);
    }

    #[test]
    fn young_traces_are_pending_and_a_run_takes_its_split_off_pieces_along() {
        let mut spans = job(1, "k1");
        spans.extend(job(2, "k2"));
        // A piece split off from job k1: no run id, but its key ties it to the run.
        let mut piece = s(3, 5, 0, "work", 5, 4, 6);
        piece.key = Some("k1");
        spans.push(piece);
        spans.push(s(4, 1, 0, "start", 2, 0, 1)); // another run's job, without a key
        let t = table(&spans);
        let result = validate(&t, &config(), 15 * MS, Some("r1"));
        // Job k2's and job k1's newest spans end at 20 ms, after the settle point: pending.
        assert_eq!((result.pending, result.traces_checked), (2, 1));
        let result = validate(&t, &config(), i64::MAX, Some("r1"));
        assert_eq!(result.traces_checked, 3, "jobs k1 and k2, and the piece of k1");
        assert_eq!(validate(&t, &config(), i64::MAX, Some("r9")).traces_checked, 0);
    }

    #[test]
    fn max_broken_takes_a_count_or_a_percentage() {
        assert_eq!("3".parse(), Ok(MaxBroken::Count(3)));
        assert_eq!("0.5%".parse(), Ok(MaxBroken::Percent(0.5)));
        assert!("lots".parse::<MaxBroken>().unwrap_err().contains("neither a count"));
        assert!("120%".parse::<MaxBroken>().is_err());
        let mut v = validate(&table(&job(1, "k1")), &config(), i64::MAX, None);
        v.broken = 1;
        v.traces_checked = 200;
        assert!(!v.acceptable(MaxBroken::Count(0)));
        assert!(v.acceptable(MaxBroken::Percent(0.5)));
        assert!(!v.acceptable(MaxBroken::Percent(0.4)));
    }

    #[test]
    fn summary_json_and_junit_match_their_golden_files() {
        let mut spans = job(1, "k1");
        spans.push(s(1, 9, 77, "log", 1, 1, 2));
        spans.extend(job(2, "k2"));
        let mut split = s(3, 5, 0, "work", 5, 4, 6);
        split.key = Some("k2");
        spans.push(split);
        let result = validate(&table(&spans), &config(), i64::MAX, None);
        let golden = |name: &str, actual: &str| {
            hoptrace_testkit::golden(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden"), name, actual)
        };
        golden("validate.txt", &result.table(50));
        golden("validate.json", &result.json());
        golden("validate.xml", &result.junit(&config()));
    }
}
