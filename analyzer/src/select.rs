//! Selectors compiled against a span table: name patterns resolved to the table's interned names once,
//! attribute keys to columns, so testing a span is a few array reads.

use hoptrace_otlp::SpanKind;

use crate::config::{NamePattern, Selector};
use crate::spans::{SpanTable, NONE};

/// Compiled selectors, a selector's parent condition always before it.
#[derive(Default)]
pub struct Selectors {
    list: Vec<CompiledSelector>,
    /// Per name id, the selectors whose name condition it meets, as bit words (built by `finish`).
    name_masks: Vec<u64>,
}

/// Which spans of a trace match which selectors: one bit per (span, selector).
#[derive(Default)]
pub struct Matches {
    words: usize,
    bits: Vec<u64>,
}

impl Matches {
    pub fn get(&self, span: usize, selector: usize) -> bool {
        self.bits[span * self.words + selector / 64] & (1 << (selector % 64)) != 0
    }

    fn set(&mut self, span: usize, selector: usize, on: bool) {
        let word = &mut self.bits[span * self.words + selector / 64];
        if on {
            *word |= 1 << (selector % 64);
        } else {
            *word &= !(1 << (selector % 64));
        }
    }
}

struct CompiledSelector {
    /// Indexed by string id: whether the span name matches. `None`: any name.
    names: Option<Vec<bool>>,
    kind: Option<SpanKind>,
    /// Service string id; [`NONE`] when the service never occurs (so nothing matches).
    service: Option<u32>,
    attributes: Vec<(usize, Value)>,
    parent: Option<usize>,
}

/// An attribute condition: one string id, or (for a value with `*`) which string ids the glob matches.
enum Value {
    Exact(u32),
    Glob(Vec<bool>),
}

impl Selectors {
    /// Compiles `selector` (and its parent conditions) and returns its number.
    pub fn add(&mut self, table: &SpanTable, selector: &Selector) -> usize {
        let parent = selector.parent.as_ref().map(|p| self.add(table, p));
        let glob = |pattern: &NamePattern| -> Vec<bool> {
            (0..table.strings.len() as u32).map(|id| pattern.matches(table.strings.resolve(id))).collect()
        };
        let names = selector.name.as_ref().map(glob);
        let service = selector.service.as_ref().map(|s| table.strings.get(s).unwrap_or(NONE));
        let attributes = selector
            .attributes
            .iter()
            .map(|(key, value)| {
                let slot = table.key_slot(key).expect("the table keeps every attribute a selector reads");
                let value = match value.contains('*') {
                    true => Value::Glob(glob(&NamePattern::new(value))),
                    false => Value::Exact(table.strings.get(value).unwrap_or(NONE)),
                };
                (slot, value)
            })
            .collect();
        self.list.push(CompiledSelector { names, kind: selector.kind, service, attributes, parent });
        self.list.len() - 1
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    fn words(&self) -> usize {
        self.list.len().div_ceil(64).max(1)
    }

    /// Precomputes, for every name in the table, which selectors it can match: call after the last `add`.
    pub fn finish(&mut self, table: &SpanTable) {
        let words = self.words();
        self.name_masks = vec![0; table.strings.len() * words];
        for (k, selector) in self.list.iter().enumerate() {
            for name in 0..table.strings.len() {
                if selector.names.as_ref().is_none_or(|names| names[name]) {
                    self.name_masks[name * words + k / 64] |= 1 << (k % 64);
                }
            }
        }
    }

    /// Tests the spans `base..base + n` (whose parents, as positions in the trace, are `parent`) against
    /// every selector. Only selectors whose name condition a span meets are tried on it.
    pub fn evaluate(&self, t: &SpanTable, base: usize, n: usize, parent: &[u32], out: &mut Matches) {
        let words = self.words();
        out.words = words;
        out.bits.clear();
        out.bits.resize(n * words, 0);
        for i in 0..n {
            let name = t.name[base + i] as usize;
            for w in 0..words {
                let mut candidates = self.name_masks[name * words + w];
                while candidates != 0 {
                    let k = w * 64 + candidates.trailing_zeros() as usize;
                    candidates &= candidates - 1;
                    if self.matches_rest(k, t, base + i) {
                        out.set(i, k, true);
                    }
                }
            }
        }
        // Parent conditions, in selector order: a parent condition's own selector is finished first.
        for (k, selector) in self.list.iter().enumerate() {
            let Some(p) = selector.parent else { continue };
            for (i, &up) in parent.iter().enumerate().take(n) {
                if out.get(i, k) && (up == NONE || !out.get(up as usize, p)) {
                    out.set(i, k, false);
                }
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The selector the parent of a span matching `k` must match.
    pub fn parent(&self, k: usize) -> Option<usize> {
        self.list[k].parent
    }

    /// Whether `row` matches selector `k` on its own fields (the parent condition is the caller's).
    pub fn matches_own(&self, k: usize, t: &SpanTable, row: usize) -> bool {
        self.list[k].names.as_ref().is_none_or(|names| names[t.name[row] as usize]) && self.matches_rest(k, t, row)
    }

    fn matches_rest(&self, k: usize, t: &SpanTable, row: usize) -> bool {
        let s = &self.list[k];
        s.kind.is_none_or(|kind| kind == t.kind[row])
            && s.service.is_none_or(|service| service == t.service[row])
            && s.attributes.iter().all(|(slot, value)| {
                let id = t.attributes[*slot][row];
                match value {
                    // A value that occurs nowhere is NONE, as an absent attribute is: it matches no span.
                    Value::Exact(wanted) => *wanted != NONE && id == *wanted,
                    Value::Glob(matches) => matches.get(id as usize).copied().unwrap_or(false),
                }
            })
    }
}

/// The attribute keys a selector reads, its parents' included.
pub fn keys_of(selector: &Selector, keys: &mut Vec<String>) {
    keys.extend(selector.attributes.iter().map(|(k, _)| k.clone()));
    if let Some(parent) = &selector.parent {
        keys_of(parent, keys);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use hoptrace_testkit::spans::{row, text};

    /// Attribute conditions: exact, a glob, and a value no span carries, which matches no span (not the
    /// spans without the attribute).
    #[test]
    fn attribute_values_match_exactly_or_by_glob_and_an_unseen_value_matches_nothing() {
        let span = |id: u8, module: Option<&str>| {
            let mut r = row(1, id);
            r.attributes = module.map(|m| vec![text("module", m)]).unwrap_or_default();
            r
        };
        let rows = [span(1, Some("h2::codec")), span(2, Some("h2::proto")), span(3, Some("app")), span(4, None)];
        let mut frame = hoptrace_store::to_frame(&rows).unwrap();
        let table = SpanTable::from_frame(&mut frame, &["module".to_owned()]).unwrap();
        let matching = |value: &str| -> Vec<usize> {
            let text = format!(
                "[[category]]\nname = \"c\"\n[[category.hop]]\nname = \"h\"\nmeasure = \"duration\"\nspan = {{ attributes = {{ module = \"{value}\" }} }}"
            );
            let config = Config::parse(&text).unwrap();
            let crate::config::Measure::Duration(selector) = &config.categories[0].hops[0].measure else {
                unreachable!()
            };
            let mut selectors = Selectors::default();
            let k = selectors.add(&table, selector);
            selectors.finish(&table);
            (0..table.len()).filter(|&r| selectors.matches_own(k, &table, r)).collect()
        };
        assert_eq!(matching("app"), [2]);
        assert_eq!(matching("h2::*"), [0, 1]);
        assert_eq!(matching("*"), [0, 1, 2]);
        assert_eq!(matching("grpc"), Vec::<usize>::new());
    }
}
