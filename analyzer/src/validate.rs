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
use crate::stitch;

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
    /// Where lifecycles split into several traces joined by keys lost their context.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub breaks: Vec<Break>,
    /// Values of `once` keys handled more than once.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub duplicates: Vec<Duplicate>,
    #[serde(skip_serializing_if = "Background::is_empty")]
    pub background: Background,
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
    keys.extend(stitch::attribute_keys(config));
    let mut seen = std::collections::HashSet::new();
    keys.retain(|k| seen.insert(k.clone()));
    keys
}

/// Checks every trace of `table` (of run `run` only, when given: its traces and any trace joined to
/// them, as a trace split off by lost context carries no run id). Traces whose newest span ended after
/// `settled_before` (unix ns) are pending. Traces outside every lifecycle are background, not checked.
pub fn validate(table: &SpanTable, config: &Config, settled_before: i64, run: Option<&str>) -> Validation {
    validate_with(table, config, settled_before, run, false)
}

/// [`validate`], and with `strict` every trace checked, background ones too (their roots fail
/// `expected_root`).
pub fn validate_with(
    table: &SpanTable,
    config: &Config,
    settled_before: i64,
    run: Option<&str>,
    strict: bool,
) -> Validation {
    let v = &config.validation;
    let mut roots = Selectors::default();
    let lifecycles: Vec<(usize, Option<usize>)> = v
        .lifecycles
        .iter()
        .map(|l| (roots.add(table, &l.root), l.group_by.as_ref().and_then(|k| table.key_slot(k))))
        .collect();
    let bound = v.clock_skew_bound.as_nanos() as i64;
    // The keys that tie traces into lifecycles: the correlation key, then the joins, by name.
    let mut keys: Vec<(String, usize)> = Vec::new();
    if let Some(key) = &v.correlation_key {
        keys.extend(table.key_slot(key).map(|slot| (key.clone(), slot)));
    }
    for join in &config.joins {
        keys.extend(table.key_slot(&stitch::column(&join.name)).map(|slot| (join.name.clone(), slot)));
    }
    let slots: Vec<usize> = keys.iter().map(|(_, slot)| *slot).collect();
    let groups = stitch::components(table, &slots);
    // Each trace's earliest root, found once.
    let first_roots: Vec<u32> = table
        .traces
        .iter()
        .map(|rows| {
            let root = rows.clone().filter(|&r| table.parent_id[r] == 0).min_by_key(|&r| (table.start[r], r));
            root.map_or(NONE, |r| r as u32)
        })
        .collect();
    let root_row = |trace: usize| (first_roots[trace] != NONE).then_some(first_roots[trace] as usize);
    // Each group's entry: its first trace whose root is a lifecycle's entry span.
    let entries: Vec<Option<(usize, usize, usize)>> = groups
        .groups()
        .map(|members| {
            members.iter().find_map(|&trace| {
                let root = root_row(trace as usize)?;
                let l = lifecycles.iter().position(|&(sel, _)| roots.matches_own(sel, table, root))?;
                Some((l, trace as usize, root))
            })
        })
        .collect();
    let selected = select_run(table, &groups, run);
    // A group whose first root is a consumer is the receiving end of a message that lost its producer's
    // context: checked like a lifecycle, never background.
    let receiving_end: Vec<bool> = groups
        .groups()
        .map(|members| root_row(members[0] as usize).is_some_and(|r| table.kind[r] == SpanKind::Consumer))
        .collect();

    // Each failure with the number of its trace, which names its lifecycle at the end.
    let mut found: Vec<(usize, Failure)> = Vec::new();
    let mut pending = vec![false; table.traces.len()];
    let mut checked = vec![false; table.traces.len()];
    let mut background = Background::default();
    // (key, value) → the checked traces it occurs in.
    let mut key_traces: FxMap<(usize, u32), Vec<u32>> = FxMap::default();
    let mut index = TraceIndex::default();
    for (trace_no, rows) in table.traces.iter().enumerate() {
        if !selected[trace_no] {
            continue;
        }
        let group = groups.group_of[trace_no] as usize;
        let entry = entries[group];
        if entry.is_none() && !strict && !receiving_end[group] {
            // Counted once per group, under the root of its first trace.
            if groups.group(group)[0] as usize == trace_no {
                let members = groups.group(group).len();
                let root = root_row(trace_no).map_or("(no root)", |r| table.strings.resolve(table.name[r]));
                background.traces += members;
                *background.by_root.entry(root.to_owned()).or_default() += members;
            }
            continue;
        }
        if rows.clone().map(|r| table.end[r]).max().unwrap_or(0) > settled_before {
            pending[trace_no] = true;
            continue;
        }
        checked[trace_no] = true;
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
            if !lifecycles.iter().any(|&(sel, _)| roots.matches_own(sel, table, root)) {
                fail("expected_root", Some(root), "the root is no lifecycle's entry span".into());
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
            for (k, &slot) in slots.iter().enumerate() {
                let value = table.attributes[slot][r];
                if value != NONE {
                    let traces = key_traces.entry((k, value)).or_default();
                    if traces.last() != Some(&(trace_no as u32)) {
                        traces.push(trace_no as u32);
                    }
                }
            }
        }
        // The expected structure of the lifecycle's variant, in its entry trace: what a split lifecycle's
        // other pieces hold is what `one_trace_per_key` and the breaks report.
        if let Some((l, _, root)) = entry.filter(|&(_, t, _)| t == trace_no) {
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
    let mut split: Vec<(&(usize, u32), &Vec<u32>)> = key_traces.iter().filter(|(_, traces)| traces.len() > 1).collect();
    split.sort_by_key(|((k, value), _)| (*k, table.strings.resolve(*value)));
    for (&(k, value), traces) in split {
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
                    detail: format!(
                        "{}={} is also in {}",
                        keys[k].0,
                        stitch::display(table.strings.resolve(value)),
                        others.join(", ")
                    ),
                },
            ));
        }
    }
    // Name each failure's lifecycle, count broken traces per rule.
    let mut broken_traces = std::collections::BTreeSet::new();
    let mut by_rule_traces: BTreeMap<&'static str, std::collections::BTreeSet<usize>> = BTreeMap::new();
    let mut failures: Vec<Failure> = Vec::with_capacity(found.len());
    let lifecycle_of =
        |trace: usize| entries[groups.group_of[trace] as usize].map(|(l, _, _)| v.lifecycles[l].name.clone());
    for (trace_no, mut failure) in found {
        failure.lifecycle = lifecycle_of(trace_no);
        broken_traces.insert(trace_no);
        by_rule_traces.entry(failure.rule).or_default().insert(trace_no);
        failures.push(failure);
    }
    failures.sort_by(|a, b| (a.rule, &a.trace_id, &a.span).cmp(&(b.rule, &b.trace_id, &b.span)));
    let pending = pending.iter().filter(|&&p| p).count();
    let checked = checked.iter().filter(|&&c| c).count();
    let lifecycle_groups =
        (0..groups.len()).filter(|&g| entries[g].is_some() && groups.group(g).iter().any(|&t| selected[t as usize]));
    Validation {
        schema: SCHEMA,
        traces_checked: checked,
        intact: checked - broken_traces.len(),
        broken: broken_traces.len(),
        pending,
        by_rule: by_rule_traces.into_iter().map(|(rule, traces)| (rule, traces.len())).collect(),
        failures,
        breaks: breaks(table, &groups, &entries, &selected, &keys, lifecycle_groups.count()),
        duplicates: duplicates(table, config, &selected),
        background,
    }
}

/// Which traces to check: all, or the groups that hold a trace of `run`.
fn select_run(table: &SpanTable, groups: &stitch::Components, run: Option<&str>) -> Vec<bool> {
    let Some(run) = run else { return vec![true; table.traces.len()] };
    let (Some(slot), Some(run)) = (table.key_slot(crate::hops::RUN_ID_KEY), table.strings.get(run)) else {
        return vec![false; table.traces.len()];
    };
    let of_run: Vec<bool> = groups
        .groups()
        .map(|members| {
            members.iter().any(|&t| table.traces[t as usize].clone().any(|r| table.attributes[slot][r] == run))
        })
        .collect();
    (0..table.traces.len()).map(|t| of_run[groups.group_of[t] as usize]).collect()
}

/// Traces outside every lifecycle: their groups hold no lifecycle's entry span.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Background {
    pub traces: usize,
    /// The root span's name of each group's first trace (`(no root)` for a rootless one) → traces.
    pub by_root: BTreeMap<String, usize>,
}

impl Background {
    fn is_empty(&self) -> bool {
        self.traces == 0
    }
}

/// Where trace context is lost: the last span before a piece of a lifecycle, and the piece's first span.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Break {
    /// `service name` of the last span before the break that carries the joining value.
    pub before: String,
    /// `service name` of the piece's root (its earliest span when it has none).
    pub after: String,
    /// The key that joined the piece.
    pub key: String,
    /// How often the break occurs.
    pub count: usize,
    /// In how many of the lifecycles checked (the rest occur in background groups).
    pub lifecycles: usize,
    pub lifecycles_total: usize,
    /// What it usually means.
    pub meaning: String,
}

/// The breaks of every group of several traces, most frequent first.
fn breaks(
    table: &SpanTable,
    groups: &stitch::Components,
    entries: &[Option<(usize, usize, usize)>],
    selected: &[bool],
    keys: &[(String, usize)],
    lifecycles_total: usize,
) -> Vec<Break> {
    let label =
        |r: usize| format!("{} {}", table.strings.resolve(table.service[r]), table.strings.resolve(table.name[r]));
    // (before, after, key) → (count, the lifecycle groups it occurs in)
    let mut found: BTreeMap<(String, String, usize), (usize, std::collections::BTreeSet<usize>)> = BTreeMap::new();
    // (key, value) → the spans of the group carrying it: (start, row, piece).
    type Carriers = FxMap<(usize, u32), Vec<(i64, usize, usize)>>;
    let mut carriers = Carriers::default();
    for (g, members) in groups.groups().enumerate() {
        if members.len() < 2 || !selected[members[0] as usize] {
            continue;
        }
        carriers.clear();
        for (m, &trace) in members.iter().enumerate() {
            for row in table.traces[trace as usize].clone() {
                for (k, &(_, slot)) in keys.iter().enumerate() {
                    let value = table.attributes[slot][row];
                    if value != NONE {
                        carriers.entry((k, value)).or_default().push((table.start[row], row, m));
                    }
                }
            }
        }
        for (m, &trace) in members.iter().enumerate().skip(1) {
            let rows = table.traces[trace as usize].clone();
            let Some(first) = rows.clone().min_by_key(|&r| (table.parent_id[r] != 0, table.start[r], r)) else {
                continue;
            };
            // The latest span of an earlier piece that shares a value with this piece and started before
            // it (or else the latest at all).
            let mut before: Option<((bool, bool, i64), usize, usize)> = None;
            for row in rows {
                for (k, &(_, slot)) in keys.iter().enumerate() {
                    let value = table.attributes[slot][row];
                    let Some(list) = (value != NONE).then(|| carriers.get(&(k, value))).flatten() else { continue };
                    // A span doing the piece's own work again (a repeat: a duplicate) is named only when
                    // nothing else is.
                    let repeat =
                        |r: usize| table.name[r] == table.name[first] && table.service[r] == table.service[first];
                    for &(start, r, _) in list.iter().filter(|&&(_, _, piece)| piece < m) {
                        let rank = (!repeat(r), start <= table.start[first], start);
                        if before.is_none_or(|(best, _, _)| rank > best) {
                            before = Some((rank, r, k));
                        }
                    }
                }
            }
            let Some((_, r, k)) = before else { continue };
            let entry = found.entry((label(r), label(first), k)).or_default();
            entry.0 += 1;
            if entries[g].is_some() {
                entry.1.insert(g);
            }
        }
    }
    let mut out: Vec<Break> = found
        .into_iter()
        .map(|((before, after, k), (count, in_lifecycles))| {
            let same_service = before.split(' ').next() == after.split(' ').next();
            let meaning = match same_service {
                false => "the work crossed services without its trace context: inject it where it is sent (W3C traceparent in the message's headers) and extract it where it is received".to_owned(),
                true => "the work was handed over within the service (a queue, a channel, a spawned task) without its context: a new root began".to_owned(),
            };
            Break {
                before,
                after,
                key: keys[k].0.clone(),
                count,
                lifecycles: in_lifecycles.len(),
                lifecycles_total,
                meaning,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        (b.lifecycles, b.count)
            .cmp(&(a.lifecycles, a.count))
            .then_with(|| (&a.before, &a.after).cmp(&(&b.before, &b.after)))
    });
    out
}

/// A value of a key that should be handled once, handled several times by spans of one name.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Duplicate {
    pub key: String,
    /// `service name` of the spans.
    pub span: String,
    /// Values seen on more than one such span.
    pub values: usize,
    /// Spans beyond the first for those values.
    pub extra: usize,
    pub example: String,
}

/// For each join marked `once`: the values more than one span of the same service and name carries.
fn duplicates(table: &SpanTable, config: &Config, selected: &[bool]) -> Vec<Duplicate> {
    let mut out = Vec::new();
    for join in config.joins.iter().filter(|j| j.once) {
        let Some(slot) = table.key_slot(&stitch::column(&join.name)) else { continue };
        let mut seen: FxMap<(u32, u32, u32), usize> = FxMap::default();
        for rows in table.traces.iter().enumerate().filter(|(t, _)| selected[*t]).map(|(_, rows)| rows) {
            for r in rows.clone() {
                let value = table.attributes[slot][r];
                if value != NONE {
                    *seen.entry((table.service[r], table.name[r], value)).or_default() += 1;
                }
            }
        }
        let mut by_span: BTreeMap<String, (usize, usize, String)> = BTreeMap::new();
        let mut repeated: Vec<(&(u32, u32, u32), &usize)> = seen.iter().filter(|(_, &n)| n > 1).collect();
        repeated.sort_by_key(|((service, name, value), _)| (*service, *name, table.strings.resolve(*value).to_owned()));
        for (&(service, name, value), &n) in repeated {
            let span = format!("{} {}", table.strings.resolve(service), table.strings.resolve(name));
            let entry = by_span.entry(span).or_insert_with(|| (0, 0, stitch::display(table.strings.resolve(value))));
            entry.0 += 1;
            entry.1 += n - 1;
        }
        out.extend(by_span.into_iter().map(|(span, (values, extra, example))| Duplicate {
            key: join.name.clone(),
            span,
            values,
            extra,
            example,
        }));
    }
    out
}

fn times(n: usize) -> String {
    if n == 1 {
        "once".to_owned()
    } else {
        format!("{n} times")
    }
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
        if !self.background.is_empty() {
            let mut roots: Vec<(&String, &usize)> = self.background.by_root.iter().collect();
            roots.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
            let shown: Vec<String> = roots.iter().take(8).map(|(root, n)| format!("{root} {n}")).collect();
            let more = if roots.len() > 8 { format!(", {} more", roots.len() - 8) } else { String::new() };
            let _ = writeln!(
                out,
                "\nbackground: {} traces outside every lifecycle, not checked (--strict checks them); by root: {}{more}",
                self.background.traces,
                shown.join(", ")
            );
        }
        if !self.breaks.is_empty() {
            out.push_str("\npropagation breaks: trace context lost between these spans; the piece after each is joined by a key\n");
            for b in &self.breaks {
                let _ = writeln!(
                    out,
                    "  {} → {}: {}, in {} of {} lifecycles (joined by {})\n    {}",
                    b.before,
                    b.after,
                    times(b.count),
                    b.lifecycles,
                    b.lifecycles_total,
                    b.key,
                    b.meaning
                );
            }
        }
        if !self.duplicates.is_empty() {
            out.push_str("\nduplicates: values of a key handled once per span name, handled more than once\n");
            for d in &self.duplicates {
                let _ = writeln!(
                    out,
                    "  {}: {}: {} values, {} extra spans (e.g. {})",
                    d.key, d.span, d.values, d.extra, d.example
                );
            }
        }
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
        for b in &self.breaks {
            tests += 1;
            failed += 1;
            let _ = write!(
                cases,
                "    <testcase classname=\"propagation\" name=\"{} → {}\">\n      <failure message=\"trace context lost: {}, in {} of {} lifecycles (joined by {})\">{}</failure>\n    </testcase>\n",
                xml(&b.before),
                xml(&b.after),
                times(b.count),
                b.lifecycles,
                b.lifecycles_total,
                xml(&b.key),
                xml(&b.meaning)
            );
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
        let result = validate_with(&table(spans), &config(), i64::MAX, None, true);
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

    /// A trace no lifecycle starts and no key ties to one is background: counted by its root, not checked,
    /// unless every trace is to be checked. A consumer at the root is a message's receiving end that lost
    /// its producer: checked anyway.
    #[test]
    fn traces_outside_every_lifecycle_are_background_unless_strict() {
        let mut spans = job(1, "k1");
        spans.push(s(2, 1, 0, "poll", 1, 0, 1));
        spans.push(s(3, 1, 0, "poll", 1, 2, 3));
        spans.push(s(4, 1, 77, "health", 1, 0, 1)); // an orphan, but background
        let result = validate(&table(&spans), &config(), i64::MAX, None);
        assert_eq!((result.traces_checked, result.broken), (1, 0));
        assert_eq!(result.background.traces, 3);
        assert_eq!(result.background.by_root, BTreeMap::from([("(no root)".to_owned(), 1), ("poll".to_owned(), 2)]));
        let strict = validate_with(&table(&spans), &config(), i64::MAX, None, true);
        assert_eq!((strict.traces_checked, strict.broken), (4, 3));
        assert_eq!(strict.background.traces, 0);
        spans.push(s(5, 1, 0, "work", 5, 0, 1));
        let result = validate(&table(&spans), &config(), i64::MAX, None);
        assert_eq!(result.by_rule.get("consumer_paired"), Some(&1), "a consumer root is checked");
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
