//! Stored spans one row at a time, with ids in hex and attribute values as their stored text: the shape
//! a test or a small tool wants. Bulk analysis stays on the columns.

use std::collections::BTreeMap;

use polars::prelude::*;

use crate::schema::{self, AttributeColumns};

/// One stored span.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRecord {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub name: String,
    /// OTLP span kind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer.
    pub kind: u8,
    pub service_name: String,
    pub start_time_unix_nano: u64,
    pub end_time_unix_nano: u64,
    pub status_code: u8,
    pub attributes: BTreeMap<String, String>,
    pub resource_attributes: BTreeMap<String, String>,
    /// Linked spans as (trace id, span id).
    pub links: Vec<(String, String)>,
}

impl SpanRecord {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// Every row of a frame read with [`crate::scan`], in frame order.
pub fn records(frame: &DataFrame) -> PolarsResult<Vec<SpanRecord>> {
    let binary = |name: &str| frame.column(name).and_then(|c| c.binary().cloned());
    let text = |name: &str| frame.column(name).and_then(|c| c.str().cloned());
    let (trace_ids, span_ids, parents) = (binary(schema::TRACE_ID)?, binary(schema::SPAN_ID)?, binary(schema::PARENT_SPAN_ID)?);
    let (names, services) = (text(schema::NAME)?, text(schema::SERVICE_NAME)?);
    let kinds = frame.column(schema::KIND)?.u8()?.clone();
    let statuses = frame.column(schema::STATUS_CODE)?.u8()?.clone();
    let starts = frame.column(schema::START_TIME)?.u64()?.clone();
    let ends = frame.column(schema::END_TIME)?.u64()?.clone();
    let links = frame.column(schema::LINKS)?.list()?.clone();
    (0..frame.height())
        .map(|row| {
            let link_list = match links.get_as_series(row) {
                Some(series) if !series.is_empty() => {
                    let items = series.struct_()?.clone();
                    let ids = |name: &str| items.field_by_name(name).and_then(|s| s.binary().cloned());
                    let (t, s) = (ids(schema::TRACE_ID)?, ids(schema::SPAN_ID)?);
                    (0..items.len())
                        .map(|i| (hex(t.get(i)), hex(s.get(i))))
                        .collect()
                }
                _ => Vec::new(),
            };
            Ok(SpanRecord {
                trace_id: hex(trace_ids.get(row)),
                span_id: hex(span_ids.get(row)),
                parent_span_id: parents.get(row).map(|p| hex(Some(p))),
                name: names.get(row).unwrap_or_default().to_owned(),
                kind: kinds.get(row).unwrap_or_default(),
                service_name: services.get(row).unwrap_or_default().to_owned(),
                start_time_unix_nano: starts.get(row).unwrap_or_default(),
                end_time_unix_nano: ends.get(row).unwrap_or_default(),
                status_code: statuses.get(row).unwrap_or_default(),
                attributes: attribute_map(frame, schema::ATTRIBUTES, row)?,
                resource_attributes: attribute_map(frame, schema::RESOURCE_ATTRIBUTES, row)?,
                links: link_list,
            })
        })
        .collect()
}

fn attribute_map(frame: &DataFrame, set: AttributeColumns, row: usize) -> PolarsResult<BTreeMap<String, String>> {
    let list = |name: &str| -> PolarsResult<Option<Series>> { Ok(frame.column(name)?.list()?.get_as_series(row)) };
    let (Some(keys), Some(values)) = (list(set.keys)?, list(set.values)?) else { return Ok(BTreeMap::new()) };
    let (keys, values) = (keys.str()?.clone(), values.str()?.clone());
    Ok((0..keys.len())
        .filter_map(|i| Some((keys.get(i)?.to_owned(), values.get(i).unwrap_or_default().to_owned())))
        .collect())
}

fn hex(bytes: Option<&[u8]>) -> String {
    bytes.map(hex::encode).unwrap_or_default()
}
