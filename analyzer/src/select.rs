//! Selectors compiled against a span table: name patterns resolved to the table's interned names once,
//! attribute keys to columns, so testing a span is a few array reads.

use crate::config::Selector;
use crate::spans::{SpanTable, NONE};

/// Compiled selectors, a selector's parent condition always before it.
#[derive(Default)]
pub struct Selectors {
    list: Vec<CompiledSelector>,
}

struct CompiledSelector {
    /// Indexed by string id: whether the span name matches. `None`: any name.
    names: Option<Vec<bool>>,
    kind: Option<u8>,
    /// Service string id; [`NONE`] when the service never occurs (so nothing matches).
    service: Option<u32>,
    attributes: Vec<(usize, u32)>,
    parent: Option<usize>,
}

impl Selectors {
    /// Compiles `selector` (and its parent conditions) and returns its number.
    pub fn add(&mut self, table: &SpanTable, selector: &Selector) -> usize {
        let parent = selector.parent.as_ref().map(|p| self.add(table, p));
        let names = selector.name.as_ref().map(|pattern| {
            (0..table.strings.len() as u32).map(|id| pattern.matches(table.strings.resolve(id))).collect()
        });
        let service = selector.service.as_ref().map(|s| table.strings.get(s).unwrap_or(NONE));
        let attributes = selector
            .attributes
            .iter()
            .map(|(key, value)| {
                let slot = table.key_slot(key).expect("the table keeps every attribute a selector reads");
                (slot, table.strings.get(value).unwrap_or(NONE))
            })
            .collect();
        self.list.push(CompiledSelector { names, kind: selector.kind, service, attributes, parent });
        self.list.len() - 1
    }

    pub fn len(&self) -> usize {
        self.list.len()
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
        let s = &self.list[k];
        s.names.as_ref().is_none_or(|names| names[t.name[row] as usize])
            && s.kind.is_none_or(|kind| kind == t.kind[row])
            && s.service.is_none_or(|service| service == t.service[row])
            && s.attributes.iter().all(|&(slot, value)| t.attributes[slot][row] == value)
    }
}

/// The attribute keys a selector reads, its parents' included.
pub fn keys_of(selector: &Selector, keys: &mut Vec<String>) {
    keys.extend(selector.attributes.iter().map(|(k, _)| k.clone()));
    if let Some(parent) = &selector.parent {
        keys_of(parent, keys);
    }
}
