//! Stored spans one row at a time, with ids in hex and attribute values as their stored text and type: the
//! shape a test, a trace viewer or a small tool wants. Bulk analysis stays on the columns.

use std::collections::BTreeMap;

use polars::prelude::*;

use crate::schema::{self, AttrType, AttributeColumns};

/// Attribute values by key.
pub type Attributes = BTreeMap<String, AttributeValue>;

/// One attribute value as stored: its text (see [`AttrType`] for how each type is written) and its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeValue {
    pub kind: AttrType,
    pub text: String,
}

/// One stored span.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRecord {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub trace_state: Option<String>,
    pub flags: u32,
    pub name: String,
    /// The OTLP span kind number ([`hoptrace_otlp::SpanKind::from_code`]).
    pub kind: u8,
    pub service_name: String,
    pub start_time_unix_nano: u64,
    pub end_time_unix_nano: u64,
    /// OTLP status code: 0 unset, 1 ok, 2 error.
    pub status_code: u8,
    pub status_message: Option<String>,
    pub attributes: Attributes,
    pub events: Vec<EventRecord>,
    pub links: Vec<LinkRecord>,
    pub resource_attributes: Attributes,
    pub scope_name: Option<String>,
    pub scope_version: Option<String>,
    pub scope_attributes: Attributes,
    /// What the sender's SDK dropped at its limits; `None` where the segment predates these counts.
    pub dropped: Option<hoptrace_otlp::Dropped>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub time_unix_nano: u64,
    pub name: String,
    pub attributes: Attributes,
}

/// A link to another span.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkRecord {
    pub trace_id: String,
    pub span_id: String,
    pub attributes: Attributes,
}

impl LinkRecord {
    /// A link attribute's value as text.
    pub fn attribute_text(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(|v| v.text.as_str())
    }
}

impl SpanRecord {
    /// A span attribute's value as text.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(|v| v.text.as_str())
    }

    /// A resource attribute's value as text.
    pub fn resource_attribute(&self, key: &str) -> Option<&str> {
        self.resource_attributes.get(key).map(|v| v.text.as_str())
    }
}

/// Every row of a frame read with [`crate::scan`], in frame order.
pub fn records(frame: &DataFrame) -> PolarsResult<Vec<SpanRecord>> {
    let binary = |name: &str| frame.column(name).and_then(|c| c.binary().cloned());
    let text = |name: &str| frame.column(name).and_then(|c| c.str().cloned());
    let (trace_ids, span_ids, parents) =
        (binary(schema::TRACE_ID)?, binary(schema::SPAN_ID)?, binary(schema::PARENT_SPAN_ID)?);
    let (names, services, trace_states) =
        (text(schema::NAME)?, text(schema::SERVICE_NAME)?, text(schema::TRACE_STATE)?);
    let (status_messages, scope_names, scope_versions) =
        (text(schema::STATUS_MESSAGE)?, text(schema::SCOPE_NAME)?, text(schema::SCOPE_VERSION)?);
    let flags = frame.column(schema::FLAGS)?.u32()?.clone();
    let kinds = frame.column(schema::KIND)?.u8()?.clone();
    let statuses = frame.column(schema::STATUS_CODE)?.u8()?.clone();
    let starts = frame.column(schema::START_TIME)?.u64()?.clone();
    let ends = frame.column(schema::END_TIME)?.u64()?.clone();
    let events = frame.column(schema::EVENTS)?.list()?.clone();
    let links = frame.column(schema::LINKS)?.list()?.clone();
    let owned = |s: Option<&str>| s.map(str::to_owned);
    let counts = |name: &str| frame.column(name).ok().and_then(|c| c.u32().ok().cloned());
    let dropped =
        match (counts(schema::DROPPED_ATTRIBUTES), counts(schema::DROPPED_EVENTS), counts(schema::DROPPED_LINKS)) {
            (Some(a), Some(e), Some(l)) => Some([a, e, l]),
            _ => None,
        };
    (0..frame.height())
        .map(|row| {
            Ok(SpanRecord {
                trace_id: hex(trace_ids.get(row)),
                span_id: hex(span_ids.get(row)),
                parent_span_id: parents.get(row).map(|p| hex(Some(p))),
                trace_state: owned(trace_states.get(row)),
                flags: flags.get(row).unwrap_or_default(),
                name: names.get(row).unwrap_or_default().to_owned(),
                kind: kinds.get(row).unwrap_or_default(),
                service_name: services.get(row).unwrap_or_default().to_owned(),
                start_time_unix_nano: starts.get(row).unwrap_or_default(),
                end_time_unix_nano: ends.get(row).unwrap_or_default(),
                status_code: statuses.get(row).unwrap_or_default(),
                status_message: owned(status_messages.get(row)),
                attributes: attribute_row(frame.columns(), schema::ATTRIBUTES, row)?,
                events: nested(&events, row, |items, i| {
                    Ok(EventRecord {
                        time_unix_nano: items[0].u64()?.get(i).unwrap_or_default(),
                        name: items[1].str()?.get(i).unwrap_or_default().to_owned(),
                        attributes: attribute_row(items, schema::ATTRIBUTES, i)?,
                    })
                })?,
                links: nested(&links, row, |items, i| {
                    Ok(LinkRecord {
                        trace_id: hex(items[0].binary()?.get(i)),
                        span_id: hex(items[1].binary()?.get(i)),
                        attributes: attribute_row(items, schema::ATTRIBUTES, i)?,
                    })
                })?,
                resource_attributes: attribute_row(frame.columns(), schema::RESOURCE_ATTRIBUTES, row)?,
                scope_name: owned(scope_names.get(row)),
                scope_version: owned(scope_versions.get(row)),
                scope_attributes: attribute_row(frame.columns(), schema::SCOPE_ATTRIBUTES, row)?,
                // Null in the rows of older segments a scan read together with newer ones: unknown.
                dropped: dropped.as_ref().and_then(|[a, e, l]| {
                    Some(hoptrace_otlp::Dropped { attributes: a.get(row)?, events: e.get(row)?, links: l.get(row)? })
                }),
            })
        })
        .collect()
}

/// The items of one row of a list-of-structs column (events, links), each built by `item` from the
/// struct's fields (as columns, in schema order) and the item's index.
fn nested<T>(
    list: &ListChunked,
    row: usize,
    item: impl Fn(&[Column], usize) -> PolarsResult<T>,
) -> PolarsResult<Vec<T>> {
    let Some(series) = list.get_as_series(row) else { return Ok(Vec::new()) };
    if series.is_empty() {
        return Ok(Vec::new());
    }
    let fields: Vec<Column> = series.struct_()?.fields_as_series().into_iter().map(Column::from).collect();
    (0..series.len()).map(|i| item(&fields, i)).collect()
}

/// One row's attribute set from the three parallel lists named by `set`, found by name among `columns`; a
/// set its segment's writer did not keep yet (scope attributes) is empty.
fn attribute_row(columns: &[Column], set: AttributeColumns, row: usize) -> PolarsResult<Attributes> {
    let list = |name: &str| -> PolarsResult<Option<Series>> {
        match columns.iter().find(|c| c.name().as_str() == name) {
            Some(column) => Ok(column.list()?.get_as_series(row)),
            None => Ok(None),
        }
    };
    let (Some(keys), Some(types), Some(values)) = (list(set.keys)?, list(set.types)?, list(set.values)?) else {
        return Ok(Attributes::new());
    };
    let (keys, types, values) = (keys.str()?.clone(), types.u8()?.clone(), values.str()?.clone());
    Ok((0..keys.len())
        .filter_map(|i| {
            let kind = AttrType::from_code(types.get(i).unwrap_or_default());
            Some((keys.get(i)?.to_owned(), AttributeValue { kind, text: values.get(i).unwrap_or_default().to_owned() }))
        })
        .collect())
}

fn hex(bytes: Option<&[u8]>) -> String {
    bytes.map(hex::encode).unwrap_or_default()
}
