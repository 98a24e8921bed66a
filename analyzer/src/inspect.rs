//! What a store holds, to write a config from (`analyzer inspect`): per service the span names with their
//! kind, count, p50/p99 duration and parents; every attribute key with its cardinality and example values;
//! the keys whose values recur across traces (candidate correlation keys, for stitching lifecycles whose
//! context was lost); and the traces' roots.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use hoptrace_otlp::SpanKind;
use hoptrace_store::SpanRecord;
use rustc_hash::FxHashMap;
use serde::Serialize;

/// A value is followed into at most this many traces: enough to tell a correlation key from a constant.
const TRACES_PER_VALUE: usize = 64;
/// A correlation key's shared values are in few traces each (the pieces of one lifecycle): at most this
/// many at the median. Values in many traces are enums, code locations, constants.
const TRACES_PER_KEY_VALUE: usize = 16;
/// An identifier takes many values: fewer is an enum (a state, a flag).
const MIN_DISTINCT: usize = 10;
/// And most of its values are shared: at least this fraction. Measurements (durations, sizes) share a
/// value now and then by chance.
const SHARED_FRACTION: f64 = 0.25;
/// Example values listed per attribute key.
const EXAMPLES: usize = 3;
/// Parents listed per span name.
const PARENTS: usize = 3;

#[derive(Debug, Serialize)]
pub struct Inventory {
    pub spans: usize,
    pub traces: usize,
    pub first_start_unix_nano: u64,
    pub last_end_unix_nano: u64,
    pub operations: Vec<Operation>,
    pub attributes: Vec<AttributeKey>,
    pub correlation_keys: Vec<CorrelationKey>,
    pub roots: Vec<Root>,
    pub limits: Limits,
}

/// Spans the sender's SDK cut at its limits (OTLP's `dropped_*_count`): their attributes, events or links
/// are incomplete, so a hop or key read from them may be missing.
#[derive(Debug, Default, Serialize)]
pub struct Limits {
    pub spans_dropping_attributes: usize,
    pub spans_dropping_events: usize,
    pub spans_dropping_links: usize,
    /// Spans stored before the counts were kept.
    pub spans_unknown: usize,
}

/// One span name of one service.
#[derive(Debug, Serialize)]
pub struct Operation {
    pub service: String,
    pub name: String,
    pub kind: String,
    pub count: usize,
    pub p50_ns: u64,
    pub p99_ns: u64,
    /// The most frequent parents (`service name`, or `(root)` / `(parent not stored)`), with counts.
    pub parents: Vec<(String, usize)>,
}

/// One attribute key of one attribute set (`span`, `event`, `link`, `resource`, `scope`).
#[derive(Debug, Serialize)]
pub struct AttributeKey {
    pub set: &'static str,
    pub key: String,
    /// Spans carrying it (for events and links: spans with one that carries it, once per distinct value).
    pub spans: usize,
    pub distinct: usize,
    pub examples: Vec<String>,
    pub services: Vec<String>,
}

/// An attribute key whose values recur across traces: a lifecycle split into several traces can be joined
/// on it.
#[derive(Debug, Serialize)]
pub struct CorrelationKey {
    pub set: &'static str,
    pub key: String,
    pub distinct: usize,
    /// Values found in more than one trace.
    pub shared_values: usize,
    /// Traces per shared value: the median and the most (counted up to [`TRACES_PER_VALUE`]).
    pub median_traces_per_value: usize,
    pub max_traces_per_value: usize,
    pub services: Vec<String>,
}

/// The traces rooted in one span name (or with no root span stored).
#[derive(Debug, Serialize)]
pub struct Root {
    pub service: String,
    pub name: String,
    pub traces: usize,
    pub spans_p50: usize,
    pub spans_max: usize,
    pub duration_p50_ns: u64,
}

/// Attribute statistics by set, then key.
type Keys = FxHashMap<&'static str, FxHashMap<String, KeyStats>>;

/// One span name's durations and parents (by name, with counts).
type OperationStats = (Vec<u64>, HashMap<String, usize>);

#[derive(Default)]
struct KeyStats {
    spans: usize,
    services: BTreeSet<String>,
    /// Each value's traces (the first [`TRACES_PER_VALUE`]) and spans carrying it, in order seen.
    values: FxHashMap<String, (Vec<u32>, usize)>,
    first_seen: Vec<String>,
}

impl KeyStats {
    /// Spans are added trace by trace, so a value's traces arrive in order: the last one tells a new trace.
    fn add(&mut self, value: &str, trace: u32, service: &str) {
        if !self.services.contains(service) {
            self.services.insert(service.to_owned());
        }
        match self.values.get_mut(value) {
            Some((traces, spans)) => {
                *spans += 1;
                if traces.len() < TRACES_PER_VALUE && traces.last() != Some(&trace) {
                    traces.push(trace);
                }
            }
            None => {
                self.values.insert(value.to_owned(), (vec![trace], 1));
                if self.first_seen.len() < EXAMPLES {
                    self.first_seen.push(value.to_owned());
                }
            }
        }
    }
}

/// The inventory of `spans` (any order).
pub fn inspect(spans: &[SpanRecord]) -> Inventory {
    let mut trace_index: FxHashMap<&str, u32> = FxHashMap::default();
    let mut by_trace: Vec<Vec<&SpanRecord>> = Vec::new();
    for span in spans {
        let next = trace_index.len() as u32;
        let index = *trace_index.entry(span.trace_id.as_str()).or_insert(next);
        if index as usize == by_trace.len() {
            by_trace.push(Vec::new());
        }
        by_trace[index as usize].push(span);
    }

    let mut operations: BTreeMap<(String, String, u8), OperationStats> = BTreeMap::new();
    let mut keys: Keys = FxHashMap::default();
    let mut roots: BTreeMap<(String, String), Vec<(usize, u64)>> = BTreeMap::new();
    for (trace, spans) in by_trace.iter().enumerate() {
        let trace = trace as u32;
        let names: HashMap<&str, &SpanRecord> = spans.iter().map(|s| (s.span_id.as_str(), *s)).collect();
        for span in spans {
            let parent = match span.parent_span_id.as_deref() {
                None => "(root)".to_owned(),
                Some(id) => match names.get(id) {
                    Some(p) => format!("{} {}", p.service_name, p.name),
                    None => "(parent not stored)".to_owned(),
                },
            };
            let op = operations.entry((span.service_name.clone(), span.name.clone(), span.kind)).or_default();
            op.0.push(span.end_time_unix_nano.saturating_sub(span.start_time_unix_nano));
            *op.1.entry(parent).or_default() += 1;

            let service = span.service_name.as_str();
            let note = |keys: &mut Keys, set: &'static str, key: &str, value: &str| {
                let of_set = keys.entry(set).or_default();
                match of_set.get_mut(key) {
                    Some(stats) => stats.add(value, trace, service),
                    None => of_set.entry(key.to_owned()).or_default().add(value, trace, service),
                }
            };
            for (k, v) in &span.attributes {
                note(&mut keys, "span", k, &v.text);
            }
            // Per span, not per event: a key on many of one span's events counts the span once.
            let mut nested: BTreeMap<(&'static str, &str), BTreeSet<&str>> = BTreeMap::new();
            for event in &span.events {
                for (k, v) in &event.attributes {
                    nested.entry(("event", k)).or_default().insert(&v.text);
                }
            }
            for link in &span.links {
                for (k, v) in &link.attributes {
                    nested.entry(("link", k)).or_default().insert(&v.text);
                }
            }
            for ((set, key), values) in nested {
                for value in values {
                    note(&mut keys, set, key, value);
                }
            }
            for (k, v) in &span.resource_attributes {
                note(&mut keys, "resource", k, &v.text);
            }
            for (k, v) in &span.scope_attributes {
                note(&mut keys, "scope", k, &v.text);
            }
        }
        let root =
            spans.iter().filter(|s| s.parent_span_id.is_none()).min_by_key(|s| (s.start_time_unix_nano, &s.span_id));
        let key =
            root.map_or(("(no root)".to_owned(), "(no root)".to_owned()), |r| (r.service_name.clone(), r.name.clone()));
        let first = spans.iter().map(|s| s.start_time_unix_nano).min().unwrap_or(0);
        let last = spans.iter().map(|s| s.end_time_unix_nano).max().unwrap_or(0);
        roots.entry(key).or_default().push((spans.len(), last.saturating_sub(first)));
    }
    // Spans per key, from the values' span counts (for events and links, a span with two values of the
    // key counts twice); keys in (set, key) order.
    let keys: BTreeMap<(&'static str, String), KeyStats> = keys
        .into_iter()
        .flat_map(|(set, of_set)| of_set.into_iter().map(move |(key, stats)| ((set, key), stats)))
        .map(|(at, mut stats)| {
            stats.spans = stats.values.values().map(|(_, spans)| spans).sum();
            (at, stats)
        })
        .collect();

    let operations = operations
        .into_iter()
        .map(|((service, name, kind), (mut durations, parents))| {
            durations.sort_unstable();
            let mut parents: Vec<(String, usize)> = parents.into_iter().collect();
            parents.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            parents.truncate(PARENTS);
            Operation {
                service,
                name,
                kind: SpanKind::from_code(kind).name().unwrap_or("unspecified").to_owned(),
                count: durations.len(),
                p50_ns: hoptrace_text::nearest_rank(&durations, 0.50).unwrap_or(0),
                p99_ns: hoptrace_text::nearest_rank(&durations, 0.99).unwrap_or(0),
                parents,
            }
        })
        .collect();
    let mut correlation_keys = Vec::new();
    let attributes = keys
        .into_iter()
        .map(|((set, key), stats)| {
            let mut spread: Vec<usize> =
                stats.values.values().map(|(traces, _)| traces.len()).filter(|&n| n > 1).collect();
            spread.sort_unstable();
            let services: Vec<String> = stats.services.iter().cloned().collect();
            let (shared, distinct) = (spread.len(), stats.values.len());
            let median = hoptrace_text::nearest_rank(&spread, 0.5).unwrap_or(0);
            // A constant (one value everywhere, like the environment) joins everything: not a key.
            let identifies = distinct >= MIN_DISTINCT && shared as f64 >= SHARED_FRACTION * distinct as f64;
            if shared > 0 && identifies && median <= TRACES_PER_KEY_VALUE {
                correlation_keys.push(CorrelationKey {
                    set,
                    key: key.clone(),
                    distinct,
                    shared_values: shared,
                    median_traces_per_value: median,
                    max_traces_per_value: spread.last().copied().unwrap_or(0),
                    services: services.clone(),
                });
            }
            AttributeKey {
                set,
                key,
                spans: stats.spans,
                distinct: stats.values.len(),
                examples: stats.first_seen,
                services,
            }
        })
        .collect();
    correlation_keys.sort_by(|a, b| {
        (b.services.len(), b.shared_values)
            .cmp(&(a.services.len(), a.shared_values))
            .then_with(|| (a.set, &a.key).cmp(&(b.set, &b.key)))
    });
    let mut roots: Vec<Root> = roots
        .into_iter()
        .map(|((service, name), traces)| {
            let mut sizes: Vec<usize> = traces.iter().map(|t| t.0).collect();
            let mut durations: Vec<u64> = traces.iter().map(|t| t.1).collect();
            sizes.sort_unstable();
            durations.sort_unstable();
            Root {
                service,
                name,
                traces: traces.len(),
                spans_p50: hoptrace_text::nearest_rank(&sizes, 0.50).unwrap_or(0),
                spans_max: sizes.last().copied().unwrap_or(0),
                duration_p50_ns: hoptrace_text::nearest_rank(&durations, 0.50).unwrap_or(0),
            }
        })
        .collect();
    roots.sort_by(|a, b| b.traces.cmp(&a.traces).then_with(|| (&a.service, &a.name).cmp(&(&b.service, &b.name))));
    let mut limits = Limits::default();
    for span in spans {
        match span.dropped {
            None => limits.spans_unknown += 1,
            Some(d) => {
                limits.spans_dropping_attributes += usize::from(d.attributes > 0);
                limits.spans_dropping_events += usize::from(d.events > 0);
                limits.spans_dropping_links += usize::from(d.links > 0);
            }
        }
    }
    Inventory {
        limits,
        spans: spans.len(),
        traces: by_trace.len(),
        first_start_unix_nano: spans.iter().map(|s| s.start_time_unix_nano).min().unwrap_or(0),
        last_end_unix_nano: spans.iter().map(|s| s.end_time_unix_nano).max().unwrap_or(0),
        operations,
        attributes,
        correlation_keys,
        roots,
    }
}

/// The inventory as tables for people: one section each, widest columns cut.
pub fn render(inventory: &Inventory) -> String {
    use hoptrace_text::{duration, Align, Table};
    let mut out = String::new();
    let at =
        |nanos: u64| humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_nanos(nanos));
    out.push_str(&format!(
        "{} spans in {} traces, {} to {}\n",
        inventory.spans,
        inventory.traces,
        at(inventory.first_start_unix_nano),
        at(inventory.last_end_unix_nano)
    ));
    let ms = |ns: u64| duration(ns as i64);
    // One line per row: whitespace (a SQL statement's newlines) collapsed, long text cut.
    let cut = |text: &str, width: usize| -> String {
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.chars().count() <= width {
            text
        } else {
            text.chars().take(width - 1).collect::<String>() + "…"
        }
    };

    let limits = &inventory.limits;
    out.push_str(&format!(
        "spans cut at the SDK's limits: {} dropped attributes, {} dropped events, {} dropped links{}\n",
        limits.spans_dropping_attributes,
        limits.spans_dropping_events,
        limits.spans_dropping_links,
        if limits.spans_unknown > 0 {
            format!(" ({} spans stored before these were kept)", limits.spans_unknown)
        } else {
            String::new()
        }
    ));

    out.push_str("\nSpans by service\n");
    let mut table =
        Table::new(&[Align::Left, Align::Left, Align::Left, Align::Right, Align::Right, Align::Right, Align::Left])
            .indent("  ");
    table.row(["service", "span", "kind", "count", "p50", "p99", "parents"]);
    for op in &inventory.operations {
        let parents: Vec<String> = op.parents.iter().map(|(p, n)| format!("{} ×{n}", cut(p, 48))).collect();
        table.row([
            op.service.clone(),
            cut(&op.name, 48),
            op.kind.clone(),
            op.count.to_string(),
            ms(op.p50_ns),
            ms(op.p99_ns),
            parents.join(", "),
        ]);
    }
    out.push_str(&table.render());

    out.push_str("\nAttributes\n");
    let mut table =
        Table::new(&[Align::Left, Align::Left, Align::Right, Align::Right, Align::Left, Align::Left]).indent("  ");
    table.row(["set", "key", "spans", "distinct", "examples", "services"]);
    for key in &inventory.attributes {
        let examples: Vec<String> = key.examples.iter().map(|e| cut(e, 40)).collect();
        table.row([
            key.set.to_owned(),
            cut(&key.key, 40),
            key.spans.to_string(),
            key.distinct.to_string(),
            examples.join(" | "),
            key.services.join(", "),
        ]);
    }
    out.push_str(&table.render());

    out.push_str("\nCandidate correlation keys (most values shared by a few traces each)\n");
    if inventory.correlation_keys.is_empty() {
        out.push_str("  none\n");
    } else {
        let mut table =
            Table::new(&[Align::Left, Align::Left, Align::Right, Align::Right, Align::Right, Align::Left]).indent("  ");
        table.row(["set", "key", "distinct", "shared", "traces/value", "services"]);
        for key in &inventory.correlation_keys {
            table.row([
                key.set.to_owned(),
                cut(&key.key, 40),
                key.distinct.to_string(),
                key.shared_values.to_string(),
                format!("{} (max {})", key.median_traces_per_value, key.max_traces_per_value),
                key.services.join(", "),
            ]);
        }
        out.push_str(&table.render());
    }

    out.push_str("\nTrace roots\n");
    let mut table =
        Table::new(&[Align::Left, Align::Left, Align::Right, Align::Right, Align::Right, Align::Right]).indent("  ");
    table.row(["service", "root span", "traces", "spans p50", "spans max", "duration p50"]);
    for root in &inventory.roots {
        table.row([
            root.service.clone(),
            cut(&root.name, 48),
            root.traces.to_string(),
            root.spans_p50.to_string(),
            root.spans_max.to_string(),
            ms(root.duration_p50_ns),
        ]);
    }
    out.push_str(&table.render());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hoptrace_store::{AttributeValue, Attributes, EventRecord};

    fn span(
        trace: &str,
        id: &str,
        parent: Option<&str>,
        service: &str,
        name: &str,
        attrs: &[(&str, &str)],
    ) -> SpanRecord {
        let attributes: Attributes = attrs
            .iter()
            .map(|(k, v)| {
                (k.to_string(), AttributeValue { kind: hoptrace_store::schema::AttrType::String, text: v.to_string() })
            })
            .collect();
        SpanRecord {
            trace_id: trace.into(),
            span_id: id.into(),
            parent_span_id: parent.map(str::to_owned),
            trace_state: None,
            flags: 0,
            name: name.into(),
            kind: 1,
            service_name: service.into(),
            start_time_unix_nano: 1_000,
            end_time_unix_nano: 3_000,
            status_code: 0,
            status_message: None,
            attributes,
            events: Vec::new(),
            links: Vec::new(),
            resource_attributes: Attributes::new(),
            scope_name: None,
            scope_version: None,
            scope_attributes: Attributes::new(),
            dropped: Some(Default::default()),
        }
    }

    /// Two services whose context is lost at a queue: the message id joins their traces; the environment
    /// (the same everywhere), a task id on one trace only and a flag of two values are no keys.
    #[test]
    fn keys_shared_across_traces_are_correlation_candidates() {
        let mut spans = Vec::new();
        for i in 0..10 {
            let (orchestration, worker, id) = (format!("o{i}"), format!("w{i}"), i.to_string());
            spans.push(span(&orchestration, "r", None, "orchestration", "request", &[("task", &id), ("env", "test")]));
            let mut send = span(&orchestration, "s", Some("r"), "orchestration", "send", &[("msg_id", &id)]);
            send.events.push(EventRecord {
                time_unix_nano: 2_000,
                name: "sent".into(),
                attributes: send.attributes.clone(),
            });
            spans.push(send);
            let flag = if i % 2 == 0 { "true" } else { "false" };
            spans.push(span(
                &worker,
                "a",
                None,
                "worker",
                "archive",
                &[("msg_id", &id), ("env", "test"), ("flag", flag)],
            ));
        }
        spans.push(span("t", "d", Some("gone"), "worker", "poll", &[]));
        let inventory = inspect(&spans);
        assert_eq!((inventory.spans, inventory.traces), (31, 21));
        let keys: Vec<(&str, &str)> = inventory.correlation_keys.iter().map(|k| (k.set, k.key.as_str())).collect();
        assert_eq!(keys, [("span", "msg_id")], "env is a constant, flag an enum, the event's ids in one trace each");
        let send = inventory.operations.iter().find(|o| o.name == "send").unwrap();
        assert_eq!(send.parents, [("orchestration request".to_owned(), 10)]);
        let poll = inventory.operations.iter().find(|o| o.name == "poll").unwrap();
        assert_eq!(poll.parents, [("(parent not stored)".to_owned(), 1)]);
        let roots: Vec<(&str, usize)> = inventory.roots.iter().map(|r| (r.name.as_str(), r.traces)).collect();
        assert_eq!(roots, [("request", 10), ("archive", 10), ("(no root)", 1)], "by traces, then service");
        let event_key = inventory.attributes.iter().find(|a| a.set == "event" && a.key == "msg_id").unwrap();
        assert_eq!(
            (event_key.spans, event_key.distinct, event_key.services.as_slice()),
            (10, 10, ["orchestration".to_owned()].as_slice())
        );
    }
}
