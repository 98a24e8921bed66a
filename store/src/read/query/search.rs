//! Trace search with Jaeger's semantics: a trace matches when one of its spans satisfies every condition,
//! and a queried tag holds on a span when it is found among the span's attributes, its scope's, its
//! resource's, its events' or its links' (`resource.`-prefixed keys only on the resource; a few keys name a
//! span field instead, see [`field_tag`]). Jaeger's storage-integration suite is the reference
//! (`collector/tests/jaeger_suite.rs`).

use std::collections::{HashMap, HashSet};

use hoptrace_otlp::{SpanKind, StatusCode};
use polars::prelude::*;
use polars_arrow::array::{ListArray, StructArray, Utf8ViewArray};
use polars_arrow::offset::OffsetsBuffer;

use super::{collect, load, Result};
use crate::read::catalog::{value_fingerprint, RowGroup};
use crate::read::{Catalog, SpanRecord, TimeRange};
use crate::schema::{self, AttributeColumns};

/// Spans of one trace may start up to this long before or after the span a search matched; whole traces
/// are read from the matched range widened by it.
const TRACE_SPREAD_NANOS: u64 = 3_600_000_000_000;

/// A trace search: traces holding at least one span that matches every given condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Search {
    /// The span's service; `None` for any.
    pub service: Option<String>,
    pub operation: Option<String>,
    /// Tags the same span must carry, as text (`true`, `123`, `72.5`).
    pub tags: Vec<(String, String)>,
    pub min_duration_nanos: Option<u64>,
    pub max_duration_nanos: Option<u64>,
    /// Bounds the matching span's start.
    pub range: TimeRange,
    /// At most this many traces, the most recent match first.
    pub limit: usize,
}

/// A queried key that names a span field rather than an attribute, and whether the span's field holds
/// `value`. `None` when `key` is an ordinary attribute key.
///
/// As Jaeger reads them: `span.kind` is a kind's name in any case (`server`), anything else meaning
/// unspecified; `span.status` (and v1's `otel.status_code`) `ok` or `error` in any case, anything else
/// meaning unset; `error` is `true` for an error status and `false` for any other; `scope.name` and
/// `scope.version` are the instrumentation scope's.
fn field_tag(key: &str, value: &str, span: &FieldRow<'_>) -> Option<bool> {
    Some(match key {
        "span.kind" => {
            let named = SpanKind::ALL.into_iter().find(|k| k.name().is_some_and(|n| n.eq_ignore_ascii_case(value)));
            named.unwrap_or(SpanKind::Unspecified) == span.kind
        }
        "span.status" | "otel.status_code" => {
            let named = [StatusCode::Ok, StatusCode::Error]
                .into_iter()
                .find(|s| s.name().is_some_and(|n| n.eq_ignore_ascii_case(value)));
            named.unwrap_or(StatusCode::Unset) == span.status
        }
        "error" => match value {
            "true" => span.status == StatusCode::Error,
            "false" => span.status != StatusCode::Error,
            _ => false,
        },
        "scope.name" => span.scope_name == Some(value),
        "scope.version" => span.scope_version == Some(value),
        _ => return None,
    })
}

/// The span fields a [`field_tag`] reads.
struct FieldRow<'a> {
    kind: SpanKind,
    status: StatusCode,
    scope_name: Option<&'a str>,
    scope_version: Option<&'a str>,
}

/// The traces matching `search`, most recent match first, each with all its spans.
///
/// In the embedded store, row groups are read newest first (by their start-time statistics) and the search
/// stops once `limit` traces have a match later than anything left to read; a row group whose attribute
/// values (learnt the first time a tagged search reads it) hold no queried value is not read at all.
pub fn find_traces(store: &Catalog, search: &Search) -> Result<Vec<Vec<SpanRecord>>> {
    let mut latest = Latest::default();
    match store.segments(search.range).map_err(|e| e.to_string())? {
        Some(segments) => {
            let wanted = values_wanted(&search.tags);
            let mut groups: Vec<RowGroup<'_>> = segments
                .iter()
                .flat_map(|s| s.row_groups())
                .filter(|rg| rg.overlaps(search.range) && rg.may_hold_values(&wanted))
                .collect();
            groups.sort_by_key(|rg| std::cmp::Reverse(rg.max_start()));
            for rg in groups {
                if latest.settled(search.limit, rg.max_start()) {
                    break;
                }
                let columns: Vec<&str> = columns(search, |c| rg.has_column(c)).collect();
                let mut frame = rg.read(&columns).map_err(|e| e.to_string())?;
                if !search.tags.is_empty() {
                    rg.learn_values(&attribute_values(&frame).map_err(|e| e.to_string())?);
                }
                frame = collect(frame.lazy().filter(filter(search)))?;
                latest.add(frame, search).map_err(|e| e.to_string())?;
            }
        }
        None => {
            let scanned = store.location().scan(search.range).map_err(|e| e.to_string())?;
            let frame =
                collect(scanned.filter(filter(search)).select(columns(search, |_| true).map(col).collect::<Vec<_>>()))?;
            latest.add(frame, search).map_err(|e| e.to_string())?;
        }
    }
    let ranked = latest.top(search.limit);
    let wanted: HashSet<Vec<u8>> = ranked.iter().map(|(_, id)| id.clone()).collect();
    let widened = TimeRange {
        start_unix_nano: search.range.start_unix_nano.saturating_sub(TRACE_SPREAD_NANOS),
        end_unix_nano: search.range.end_unix_nano.saturating_add(TRACE_SPREAD_NANOS),
    };
    let mut traces = load(store, &wanted, widened)?;
    Ok(ranked.iter().filter_map(|(_, id)| traces.remove(&hex::encode(id))).collect())
}

/// The span conditions other than tags, as a polars filter.
fn filter(search: &Search) -> Expr {
    let (start, end) = (col(schema::START_TIME), col(schema::END_TIME));
    let (lo, hi) = (search.range.start_unix_nano.min(i64::MAX as u64), search.range.end_unix_nano.min(i64::MAX as u64));
    let mut filter = start.clone().gt_eq(lit(lo)).and(start.clone().lt(lit(hi)));
    if let Some(service) = &search.service {
        filter = filter.and(col(schema::SERVICE_NAME).eq(lit(service.as_str())));
    }
    if let Some(op) = &search.operation {
        filter = filter.and(col(schema::NAME).eq(lit(op.as_str())));
    }
    if let Some(min) = search.min_duration_nanos {
        filter = filter.and(end.clone().gt_eq(start.clone() + lit(min)));
    }
    if let Some(max) = search.max_duration_nanos {
        filter = filter.and(end.lt_eq(start + lit(max)));
    }
    filter
}

/// The columns a search reads: ids, times and names, and what tags are matched on (those `present`).
fn columns(search: &Search, present: impl Fn(&str) -> bool) -> impl Iterator<Item = &'static str> {
    let base = [schema::TRACE_ID, schema::START_TIME, schema::END_TIME, schema::SERVICE_NAME, schema::NAME];
    let tags: &[&str] = if search.tags.is_empty() { &[] } else { Matcher::COLUMNS };
    base.into_iter().chain(tags.iter().copied().filter(move |c| present(c)))
}

/// The fingerprints of the queried key/values a row group must hold one of each of: ordinary keys, and
/// `resource.` keys as the resource's key. Keys naming a span field have none.
fn values_wanted(tags: &[(String, String)]) -> Vec<u64> {
    let probe =
        FieldRow { kind: SpanKind::Unspecified, status: StatusCode::Unset, scope_name: None, scope_version: None };
    tags.iter()
        .filter(|(k, v)| field_tag(k, v, &probe).is_none())
        .map(|(k, v)| value_fingerprint(k.strip_prefix("resource.").unwrap_or(k), v))
        .collect()
}

/// The latest matching span start of each trace found so far.
#[derive(Default)]
struct Latest(HashMap<Vec<u8>, u64>);

impl Latest {
    /// Notes the spans of `frame` (filtered by everything but tags) that carry the search's tags.
    fn add(&mut self, mut frame: DataFrame, search: &Search) -> PolarsResult<()> {
        frame.rechunk_mut();
        let ids = frame.column(schema::TRACE_ID)?.binary()?.clone();
        let starts = frame.column(schema::START_TIME)?.u64()?.clone();
        let matcher = if search.tags.is_empty() { None } else { Some(Matcher::new(&frame)?) };
        for (row, (id, at)) in ids.iter().zip(starts.iter()).enumerate() {
            let (Some(id), Some(at)) = (id, at) else { continue };
            if matcher.as_ref().is_some_and(|m| !m.matches(row, &search.tags)) {
                continue;
            }
            match self.0.get_mut(id) {
                Some(t) => *t = (*t).max(at),
                None => {
                    self.0.insert(id.to_vec(), at);
                }
            }
        }
        Ok(())
    }

    /// Whether the best `limit` traces are final when nothing left starts after `next_max_start`.
    fn settled(&self, limit: usize, next_max_start: u64) -> bool {
        if self.0.len() < limit {
            return false;
        }
        let mut times: Vec<u64> = self.0.values().copied().collect();
        let (_, kth, _) = times.select_nth_unstable_by(limit - 1, |a, b| b.cmp(a));
        next_max_start < *kth
    }

    /// The best `limit` as (latest match, trace id), most recent first.
    fn top(self, limit: usize) -> Vec<(u64, Vec<u8>)> {
        let mut ranked: Vec<(u64, Vec<u8>)> = self.0.into_iter().map(|(id, at)| (at, id)).collect();
        ranked.sort_by(|a, b| b.cmp(a));
        ranked.truncate(limit);
        ranked
    }
}

/// The columns [`attribute_values`] reads.
pub(crate) const ATTRIBUTE_COLUMNS: &[&str] = Matcher::COLUMNS;

/// The fingerprints of every attribute key/value of a frame's spans, distinct: what a row group holds.
pub(crate) fn attribute_values(frame: &DataFrame) -> PolarsResult<Vec<u64>> {
    Ok(Matcher::new(frame)?.values())
}

/// Tags matched in place on a frame's Arrow arrays: no row is materialised.
struct Matcher {
    kinds: UInt8Chunked,
    statuses: UInt8Chunked,
    scope_names: StringChunked,
    scope_versions: StringChunked,
    resource: Option<AttributeSet>,
    /// Where an ordinary key is looked for: the span's, scope's, resource's, events' and links' attributes.
    anywhere: Vec<AttributeSet>,
}

impl Matcher {
    const COLUMNS: &'static [&'static str] = &[
        schema::KIND,
        schema::STATUS_CODE,
        schema::SCOPE_NAME,
        schema::SCOPE_VERSION,
        schema::ATTRIBUTES.keys,
        schema::ATTRIBUTES.values,
        schema::SCOPE_ATTRIBUTES.keys,
        schema::SCOPE_ATTRIBUTES.values,
        schema::RESOURCE_ATTRIBUTES.keys,
        schema::RESOURCE_ATTRIBUTES.values,
        schema::EVENTS,
        schema::LINKS,
    ];

    /// Over a rechunked frame holding [`Self::COLUMNS`].
    fn new(frame: &DataFrame) -> PolarsResult<Matcher> {
        let resource = AttributeSet::of_spans(frame, schema::RESOURCE_ATTRIBUTES)?;
        let mut anywhere: Vec<AttributeSet> = [schema::ATTRIBUTES, schema::SCOPE_ATTRIBUTES]
            .into_iter()
            .filter_map(|set| AttributeSet::of_spans(frame, set).transpose())
            .collect::<PolarsResult<_>>()?;
        anywhere.extend(resource.clone());
        for items in [schema::EVENTS, schema::LINKS] {
            anywhere.extend(AttributeSet::of_items(frame, items)?);
        }
        Ok(Matcher {
            kinds: frame.column(schema::KIND)?.u8()?.clone(),
            statuses: frame.column(schema::STATUS_CODE)?.u8()?.clone(),
            scope_names: frame.column(schema::SCOPE_NAME)?.str()?.clone(),
            scope_versions: frame.column(schema::SCOPE_VERSION)?.str()?.clone(),
            resource,
            anywhere,
        })
    }

    /// The fingerprints of every key/value the frame's spans carry, in any attribute set, sorted.
    fn values(&self) -> Vec<u64> {
        let mut out: Vec<u64> = self.anywhere.iter().flat_map(AttributeSet::fingerprints).collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Whether the span in `row` carries every tag.
    fn matches(&self, row: usize, tags: &[(String, String)]) -> bool {
        let fields = FieldRow {
            kind: SpanKind::from_code(self.kinds.get(row).unwrap_or_default()),
            status: StatusCode::from_code(self.statuses.get(row).unwrap_or_default()),
            scope_name: self.scope_names.get(row),
            scope_version: self.scope_versions.get(row),
        };
        tags.iter().all(|(key, value)| {
            if let Some(key) = key.strip_prefix("resource.") {
                return self.resource.as_ref().is_some_and(|set| set.holds(row, key, value));
            }
            field_tag(key, value, &fields).unwrap_or_else(|| self.anywhere.iter().any(|set| set.holds(row, key, value)))
        })
    }
}

/// One attribute set of every span of a frame, as its Arrow arrays: the keys and values (as text), the
/// offsets of each owner's attributes, and for a set of events or links the offsets of each span's items.
#[derive(Clone)]
struct AttributeSet {
    items: Option<OffsetsBuffer<i64>>,
    offsets: OffsetsBuffer<i64>,
    keys: Utf8ViewArray,
    values: Utf8ViewArray,
}

impl AttributeSet {
    /// The set kept per span in the frame's `set` columns; `None` when the frame (an older segment) has none.
    fn of_spans(frame: &DataFrame, set: AttributeColumns) -> PolarsResult<Option<AttributeSet>> {
        let list = |name: &str| -> PolarsResult<Option<ListArray<i64>>> {
            let Ok(column) = frame.column(name) else { return Ok(None) };
            Ok(column.list()?.downcast_iter().next().cloned())
        };
        let (Some(keys), Some(values)) = (list(set.keys)?, list(set.values)?) else { return Ok(None) };
        Ok(Self::from_lists(None, &keys, &values))
    }

    /// The attributes of the events or links (`items`, a list of structs) of each span.
    fn of_items(frame: &DataFrame, items: &str) -> PolarsResult<Option<AttributeSet>> {
        let Some(lists) = frame.column(items)?.list()?.downcast_iter().next().cloned() else { return Ok(None) };
        let Some(structs) = lists.values().as_any().downcast_ref::<StructArray>() else { return Ok(None) };
        let field = |name: &str| {
            let at = structs.fields().iter().position(|f| f.name.as_str() == name)?;
            structs.values()[at].as_any().downcast_ref::<ListArray<i64>>().cloned()
        };
        let (Some(keys), Some(values)) = (field(schema::ATTRIBUTES.keys), field(schema::ATTRIBUTES.values)) else {
            return Ok(None);
        };
        Ok(Self::from_lists(Some(lists.offsets().clone()), &keys, &values))
    }

    fn from_lists(items: Option<OffsetsBuffer<i64>>, keys: &ListArray<i64>, values: &ListArray<i64>) -> Option<Self> {
        let text = |list: &ListArray<i64>| list.values().as_any().downcast_ref::<Utf8ViewArray>().cloned();
        Some(AttributeSet { items, offsets: keys.offsets().clone(), keys: text(keys)?, values: text(values)? })
    }

    /// The fingerprint of every key/value in the set.
    fn fingerprints(&self) -> impl Iterator<Item = u64> + '_ {
        let (first, last) = (*self.offsets.first() as usize, *self.offsets.last() as usize);
        (first..last).filter_map(|i| Some(value_fingerprint(self.keys.value(i), self.values.get(i)?)))
    }

    /// Whether the span in `row` (one of its events or links, for such a set) has `key` = `value`.
    fn holds(&self, row: usize, key: &str, value: &str) -> bool {
        let owners = match &self.items {
            Some(items) if row < items.len_proxy() => {
                let (a, b) = items.start_end(row);
                a..b
            }
            None if row < self.offsets.len_proxy() => row..row + 1,
            _ => return false,
        };
        owners.into_iter().any(|owner| {
            let (a, b) = self.offsets.start_end(owner);
            (a..b).any(|i| self.keys.value(i) == key && self.values.get(i) == Some(value))
        })
    }
}
