//! Lifecycles assembled from several traces, for systems whose trace context is lost on the way (at a
//! queue, say): spans that give equal values of a join key belong to one lifecycle, and so, transitively,
//! do their traces. Also the spans a configuration excludes, removed before anything else looks.
//!
//! The order of work: [`prepare`] drops excluded spans and computes each join's value per span into a
//! column `join:NAME` of the table; [`components`] groups traces by those values; [`gather`] makes each
//! group of several traces one trace of the table (its rows copied together), which the hop extraction
//! then measures like any other, pairing `gap`s by key where no parent or link connects the two sides.

use crate::config::{Config, Join, Selector};
use crate::select::{keys_of, Matches, Selectors};
use crate::spans::{FxMap, SpanTable, TraceIndex, NONE};

/// The column of the table that holds join `name`'s values.
pub fn column(name: &str) -> String {
    format!("join:{name}")
}

/// Separates the parts of a composite value (a unit separator: no part of a real value contains it).
const PART_SEPARATOR: char = '\u{1f}';

/// A join value as a person reads it: its parts separated by `/`.
pub fn display(value: &str) -> String {
    value.replace(PART_SEPARATOR, "/")
}

/// The table keys the joins and exclusions read: each part's field and their selectors' attributes.
pub fn attribute_keys(config: &Config) -> Vec<String> {
    let mut keys = Vec::new();
    for join in &config.joins {
        for source in &join.sources {
            keys.extend(source.parts.iter().map(|p| p.field()));
            if let Some(span) = &source.span {
                keys_of(span, &mut keys);
            }
        }
    }
    for selector in &config.exclude {
        keys_of(selector, &mut keys);
    }
    keys
}

/// What [`prepare`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Excluded {
    pub spans: usize,
    /// Traces of excluded spans only.
    pub traces: usize,
}

/// Removes the spans `config` excludes and computes every join's values.
pub fn prepare(table: &mut SpanTable, config: &Config) -> Excluded {
    let excluded = exclude(table, &config.exclude);
    for join in &config.joins {
        compute(table, join);
    }
    excluded
}

/// Which rows match any of `selectors` (a selector's parent condition included), traces one by one.
fn matching_rows(table: &SpanTable, selectors: &[&Selector]) -> Vec<Vec<bool>> {
    let mut compiled = Selectors::default();
    let numbers: Vec<usize> = selectors.iter().map(|s| compiled.add(table, s)).collect();
    compiled.finish(table);
    let mut out = vec![vec![false; table.len()]; selectors.len()];
    let (mut index, mut parent, mut matches) = (TraceIndex::default(), Vec::new(), Matches::default());
    for rows in &table.traces {
        index.build(table, rows.clone());
        parent.clear();
        parent
            .extend(rows.clone().map(|r| if table.parent_id[r] == 0 { NONE } else { index.local(table.parent_id[r]) }));
        compiled.evaluate(table, rows.start, rows.len(), &parent, &mut matches);
        for (k, &number) in numbers.iter().enumerate() {
            for i in 0..rows.len() {
                if matches.get(i, number) {
                    out[k][rows.start + i] = true;
                }
            }
        }
    }
    out
}

fn exclude(table: &mut SpanTable, selectors: &[Selector]) -> Excluded {
    if selectors.is_empty() {
        return Excluded::default();
    }
    let hit = matching_rows(table, &selectors.iter().collect::<Vec<_>>());
    let spans = table.traces.iter().map(|rows| rows.clone().filter(|&r| hit.iter().any(|h| h[r])).count()).sum();
    let traces_before = table.traces.len();
    table.retain(|row| !hit.iter().any(|h| h[row]));
    Excluded { spans, traces: traces_before - table.traces.len() }
}

/// Fills column `join:NAME` with each span's value of `join`: from the first source whose selector the
/// span matches and whose parts it carries, all of them.
fn compute(table: &mut SpanTable, join: &Join) {
    let selectors: Vec<&Selector> = join.sources.iter().filter_map(|s| s.span.as_ref()).collect();
    let mut matching = matching_rows(table, &selectors).into_iter();
    // Per source: the rows its selector matches (all when it has none) and the column of each part.
    type Source = (Option<Vec<bool>>, Vec<Option<usize>>);
    let sources: Vec<Source> = join
        .sources
        .iter()
        .map(|source| {
            let rows = source.span.as_ref().map(|_| matching.next().expect("one answer per selector"));
            (rows, source.parts.iter().map(|p| table.key_slot(&p.field())).collect())
        })
        .collect();
    let mut values = vec![NONE; table.len()];
    let mut text = String::new();
    for rows in table.traces.clone() {
        for row in rows {
            for (selected, slots) in &sources {
                if selected.as_ref().is_some_and(|s| !s[row]) {
                    continue;
                }
                let parts: Option<Vec<u32>> = slots
                    .iter()
                    .map(|slot| {
                        let id = table.attributes[(*slot)?][row];
                        (id != NONE).then_some(id)
                    })
                    .collect();
                let Some(parts) = parts else { continue };
                values[row] = match parts.as_slice() {
                    [one] => *one,
                    _ => {
                        text.clear();
                        for (i, &part) in parts.iter().enumerate() {
                            if i > 0 {
                                text.push(PART_SEPARATOR);
                            }
                            text.push_str(table.strings.resolve(part));
                        }
                        table.strings.intern(&text)
                    }
                };
                break;
            }
        }
    }
    let name = column(&join.name);
    match table.key_slot(&name) {
        Some(slot) => table.attributes[slot] = values,
        None => {
            table.keys.push(name);
            table.attributes.push(values);
        }
    }
}

/// Traces grouped by shared join values: each group is one lifecycle's traces (or one trace alone).
/// Flat, so a store of a million unjoined traces costs two vectors, not a million.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Components {
    /// Every group's traces in turn: group `g` is `members[offsets[g]..offsets[g + 1]]`, ordered by their
    /// earliest span's start. Groups are ordered by their first trace number, so unjoined traces keep the
    /// table's order.
    members: Vec<u32>,
    offsets: Vec<u32>,
    /// The group of each trace.
    pub group_of: Vec<u32>,
}

impl Components {
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Group `g`'s traces, the earliest first.
    pub fn group(&self, g: usize) -> &[u32] {
        &self.members[self.offsets[g] as usize..self.offsets[g + 1] as usize]
    }

    pub fn groups(&self) -> impl Iterator<Item = &[u32]> {
        (0..self.len()).map(|g| self.group(g))
    }
}

/// Groups the traces of `table` that share a value of any of the join columns `slots`.
pub fn components(table: &SpanTable, slots: &[usize]) -> Components {
    let n = table.traces.len();
    let mut parent: Vec<u32> = (0..n as u32).collect();
    fn root(parent: &mut [u32], mut x: u32) -> u32 {
        while parent[x as usize] != x {
            parent[x as usize] = parent[parent[x as usize] as usize];
            x = parent[x as usize];
        }
        x
    }
    for &slot in slots {
        // The first trace seen with each value; later ones are joined to it.
        let mut first: FxMap<u32, u32> = FxMap::default();
        for (trace, rows) in table.traces.iter().enumerate() {
            for row in rows.clone() {
                let value = table.attributes[slot][row];
                if value == NONE {
                    continue;
                }
                let seen = *first.entry(value).or_insert(trace as u32);
                let (a, b) = (root(&mut parent, seen), root(&mut parent, trace as u32));
                if a != b {
                    parent[a.max(b) as usize] = a.min(b);
                }
            }
        }
    }
    // A group's root is its smallest trace number: numbering groups in trace order numbers each group
    // when its first trace comes.
    let mut group_of = vec![0u32; n];
    let mut sizes: Vec<u32> = Vec::new();
    for trace in 0..n {
        let r = root(&mut parent, trace as u32) as usize;
        let group = if r == trace {
            sizes.push(0);
            sizes.len() as u32 - 1
        } else {
            group_of[r]
        };
        group_of[trace] = group;
        sizes[group as usize] += 1;
    }
    let mut offsets = Vec::with_capacity(sizes.len() + 1);
    offsets.push(0u32);
    for size in &sizes {
        offsets.push(offsets.last().expect("starts with 0") + size);
    }
    let mut fill: Vec<u32> = offsets[..sizes.len()].to_vec();
    let mut members = vec![0u32; n];
    for (trace, &group) in group_of.iter().enumerate() {
        members[fill[group as usize] as usize] = trace as u32;
        fill[group as usize] += 1;
    }
    let start = |t: u32| table.traces[t as usize].clone().map(|r| table.start[r]).min().unwrap_or(i64::MAX);
    for g in 0..sizes.len() {
        if sizes[g] > 1 {
            members[offsets[g] as usize..offsets[g + 1] as usize].sort_by_key(|&t| (start(t), t));
        }
    }
    Components { members, offsets, group_of }
}

/// The join columns of `config` in `table`.
pub fn slots(table: &SpanTable, config: &Config) -> Vec<usize> {
    config.joins.iter().filter_map(|j| table.key_slot(&column(&j.name))).collect()
}

/// Makes each group of several traces one trace of the table: its rows copied together to the end, its
/// id the first trace's, [`SpanTable::pieces`] how many traces it was assembled from.
pub fn gather(table: &mut SpanTable, components: &Components) {
    if components.len() == table.traces.len() {
        return;
    }
    let mut traces = Vec::with_capacity(components.len());
    let mut ids = Vec::with_capacity(components.len());
    let mut pieces = Vec::with_capacity(components.len());
    for group in components.groups() {
        let first = group[0] as usize;
        ids.push(table.trace_ids[first]);
        pieces.push(group.len() as u32);
        if group.len() == 1 {
            traces.push(table.traces[first].clone());
            continue;
        }
        let from = table.len();
        for &trace in group {
            table.append_rows(table.traces[trace as usize].clone());
        }
        traces.push(from..table.len());
    }
    table.traces = traces;
    table.trace_ids = ids;
    table.pieces = pieces;
}

#[cfg(test)]
mod tests {
    use super::*;
    use hoptrace_testkit::spans::{row, text as attribute};

    /// Three pieces of one lifecycle, joined by a task id and by a message (queue + an id that one side
    /// has as an attribute and the other only in its event's text), and an unrelated trace.
    #[test]
    fn traces_sharing_a_value_are_one_group_transitively_composite_values_included() {
        use opentelemetry_proto::tonic::trace::v1::span::Event;
        let mut send = row(1, 1);
        send.name = "send".into();
        send.attributes = vec![attribute("task", "t1"), attribute("queue", "q")];
        send.events = vec![Event { name: "sent to q with ID: 7".into(), ..Default::default() }];
        let mut receive = row(2, 2);
        receive.name = "receive".into();
        receive.attributes = vec![attribute("queue", "q"), attribute("id", "7")];
        let mut later = row(3, 3);
        later.name = "finish".into();
        later.attributes = vec![attribute("task", "t1")];
        let mut other = row(4, 4);
        other.name = "receive".into();
        other.attributes = vec![attribute("queue", "q"), attribute("id", "8")];
        let mut frame = hoptrace_store::to_frame(&[send, receive, later, other]).unwrap();
        let config = Config::parse(
            r#"
            [[category]]
            name = "c"
            [[category.hop]]
            name = "h"
            measure = "duration"
            span = { name = "send" }
            [[join]]
            name = "task"
            [[join.source]]
            parts = [{ attribute = "task" }]
            [[join]]
            name = "message"
            [[join.source]]
            span = { name = "send" }
            parts = [{ attribute = "queue" }, { event_text = 'with ID: (\d+)' }]
            [[join.source]]
            span = { name = "receive" }
            parts = [{ attribute = "queue" }, { attribute = "id" }]
            "#,
        )
        .unwrap();
        let mut table = SpanTable::from_frame(&mut frame, &attribute_keys(&config)).unwrap();
        prepare(&mut table, &config);
        let message = table.key_slot("join:message").unwrap();
        let values: Vec<String> = (0..4)
            .map(|r| match table.attributes[message][r] {
                NONE => "-".into(),
                id => display(table.strings.resolve(id)),
            })
            .collect();
        assert_eq!(values, ["q/7", "q/7", "-", "q/8"]);
        let groups = components(&table, &slots(&table, &config));
        assert_eq!(groups.groups().collect::<Vec<_>>(), [&[0, 1, 2][..], &[3][..]]);
        assert_eq!(groups.group_of, [0, 0, 0, 1]);
        gather(&mut table, &groups);
        assert_eq!(table.traces.len(), 2);
        assert_eq!(table.pieces, [3, 1]);
        let names: Vec<&str> = table.traces[0].clone().map(|r| table.strings.resolve(table.name[r])).collect();
        assert_eq!(names, ["send", "receive", "finish"]);
    }

    #[test]
    fn excluded_spans_are_gone_and_traces_of_nothing_else_with_them() {
        let span = |trace: u8, id: u8, module: &str| {
            let mut r = row(trace, id);
            r.attributes = vec![attribute("code.module.name", module)];
            r
        };
        let rows =
            [span(1, 1, "h2::codec"), span(1, 2, "h2::proto::streams"), span(2, 1, "app"), span(2, 2, "h2::codec")];
        let mut frame = hoptrace_store::to_frame(&rows).unwrap();
        let config = Config::parse(
            r#"
            exclude = [{ attributes = { "code.module.name" = "h2::*" } }]
            [[category]]
            name = "c"
            [[category.hop]]
            name = "h"
            measure = "duration"
            span = { name = "x" }
            "#,
        )
        .unwrap();
        let mut table = SpanTable::from_frame(&mut frame, &attribute_keys(&config)).unwrap();
        assert_eq!(prepare(&mut table, &config), Excluded { spans: 3, traces: 1 });
        assert_eq!(table.traces.len(), 1);
        assert_eq!(table.trace_ids, [[2; 16]]);
        let kept: Vec<usize> = table.traces[0].clone().collect();
        assert_eq!(kept.len(), 1);
        assert_eq!(table.strings.resolve(table.attributes[0][kept[0]]), "app");
    }
}
