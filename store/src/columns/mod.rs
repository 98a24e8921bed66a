//! Spans → one columnar [`DataFrame`] in the segment schema (see `docs/storage.md`).
//!
//! Built directly as Arrow arrays: nested lists of typed attribute structs cannot be expressed through
//! polars' row-wise constructors without copying every value twice. [`SpanColumns`] is the one builder;
//! spans reach it as decoded rows ([`to_frame`]) or straight from their OTLP bytes ([`from_wire`]).

use base64::Engine;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use polars::prelude::{polars_err, Column, DataFrame, PlSmallStr, PolarsResult, Series};
use polars_arrow::array::{
    Array, BinaryViewArray, ListArray, MutableBinaryViewArray, PrimitiveArray, StructArray, Utf8ViewArray,
};
use polars_arrow::datatypes::{ArrowDataType, Field};
use polars_arrow::offset::OffsetsBuffer;

use hoptrace_otlp::json::value::any_value_to_json;
use hoptrace_otlp::wire::{Scalar, SpanFields};
use hoptrace_otlp::{Origin, SpanRow};

use crate::schema::{self, AttrType};

mod wire;

pub use wire::from_wire;

fn field(name: &str, dtype: ArrowDataType) -> Field {
    Field::new(PlSmallStr::from(name), dtype, true)
}

fn list_of(dtype: ArrowDataType) -> ArrowDataType {
    ArrowDataType::LargeList(Box::new(field("item", dtype)))
}

/// Builds an attribute set's three parallel list columns (see [`schema::AttributeColumns`]): every value
/// as text, its OTLP type beside it. Values are pushed one at a time and each set ends with [`Self::close`].
#[derive(Default)]
pub(crate) struct AttributeLists {
    offsets: Vec<i64>,
    key: MutableBinaryViewArray<str>,
    ty: Vec<u8>,
    value: MutableBinaryViewArray<str>,
    scratch: String,
}

impl AttributeLists {
    fn new() -> Self {
        Self::with_capacity(0, 0)
    }

    /// Room for `rows` sets holding `values` values in all, so that no builder grows while filled.
    fn with_capacity(rows: usize, values: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        AttributeLists {
            offsets,
            key: MutableBinaryViewArray::with_capacity(values),
            ty: Vec::with_capacity(values),
            value: MutableBinaryViewArray::with_capacity(values),
            scratch: String::new(),
        }
    }

    /// One whole set.
    fn push(&mut self, attributes: &[KeyValue]) {
        for kv in attributes {
            self.push_any(&kv.key, kv.value.as_ref());
        }
        self.close();
    }

    /// Ends the current set.
    pub(crate) fn close(&mut self) {
        self.offsets.push(self.ty.len() as i64);
    }

    pub(crate) fn push_any(&mut self, key: &str, value: Option<&AnyValue>) {
        let scalar = match value.and_then(|v| v.value.as_ref()) {
            None => Scalar::Empty,
            Some(Value::StringValue(v)) => Scalar::Str(v),
            Some(Value::BoolValue(v)) => Scalar::Bool(*v),
            Some(Value::IntValue(v)) => Scalar::Int(*v),
            // A string-table index only has meaning inside the profiles signal; keep the number.
            Some(Value::StringValueStrindex(v)) => Scalar::Int(i64::from(*v)),
            Some(Value::DoubleValue(v)) => Scalar::Double(*v),
            Some(Value::BytesValue(v)) => Scalar::Bytes(v),
            Some(Value::ArrayValue(_)) => return self.push_json(key, AttrType::Array, value.unwrap()),
            Some(Value::KvlistValue(_)) => return self.push_json(key, AttrType::KvList, value.unwrap()),
        };
        self.push_scalar(key, scalar);
    }

    fn push_json(&mut self, key: &str, ty: AttrType, value: &AnyValue) {
        self.key.push_value(key);
        self.ty.push(ty as u8);
        self.value.push_value(any_value_to_json(value).to_string());
    }

    pub(crate) fn push_scalar(&mut self, key: &str, value: Scalar<'_>) {
        use std::fmt::Write;
        self.key.push_value(key);
        self.scratch.clear();
        let s = &mut self.scratch;
        let ty = match value {
            Scalar::Empty => {
                self.ty.push(AttrType::Empty as u8);
                self.value.push_null();
                return;
            }
            Scalar::Str(v) => {
                self.ty.push(AttrType::String as u8);
                self.value.push_value(v);
                return;
            }
            Scalar::Bool(v) => {
                s.push_str(if v { "true" } else { "false" });
                AttrType::Bool
            }
            Scalar::Int(v) => {
                let _ = write!(s, "{v}");
                AttrType::Int
            }
            Scalar::Double(v) => {
                let _ = write!(s, "{v:?}");
                AttrType::Double
            }
            Scalar::Bytes(v) => {
                base64::engine::general_purpose::STANDARD.encode_string(v, s);
                AttrType::Bytes
            }
        };
        self.ty.push(ty as u8);
        self.value.push_value(&self.scratch);
    }

    /// The keys, types and values lists, in the order of [`schema::AttributeColumns`]'s fields.
    fn finish(self, names: schema::AttributeColumns) -> [(&'static str, Box<dyn Array>); 3] {
        let offsets = || OffsetsBuffer::try_from(self.offsets.clone()).expect("offsets are built monotonically");
        [
            (names.keys, list_with(offsets(), Utf8ViewArray::from(self.key.freeze()).boxed()).boxed()),
            (names.types, list_with(offsets(), PrimitiveArray::from_vec(self.ty).boxed()).boxed()),
            (names.values, list_with(offsets(), Utf8ViewArray::from(self.value.freeze()).boxed()).boxed()),
        ]
    }
}

fn list(offsets: Vec<i64>, values: Box<dyn Array>) -> ListArray<i64> {
    list_with(OffsetsBuffer::try_from(offsets).expect("offsets are built monotonically"), values)
}

fn list_with(offsets: OffsetsBuffer<i64>, values: Box<dyn Array>) -> ListArray<i64> {
    ListArray::new(list_of(values.dtype().clone()), offsets, values, None)
}

/// The events of every span: an event's attributes are pushed into `attributes`, then the event itself.
pub(crate) struct EventLists {
    offsets: Vec<i64>,
    time: Vec<u64>,
    name: MutableBinaryViewArray<str>,
    pub(crate) attributes: AttributeLists,
}

impl EventLists {
    /// One event, after its attributes; closes their set.
    pub(crate) fn push(&mut self, time_unix_nano: u64, name: &str) {
        self.time.push(time_unix_nano);
        self.name.push_value(name);
        self.attributes.close();
    }
}

/// The links of every span: a link's attributes are pushed into `attributes`, then the link itself.
pub(crate) struct LinkLists {
    offsets: Vec<i64>,
    trace_id: MutableBinaryViewArray<[u8]>,
    span_id: MutableBinaryViewArray<[u8]>,
    trace_state: MutableBinaryViewArray<str>,
    flags: Vec<u32>,
    pub(crate) attributes: AttributeLists,
}

impl LinkLists {
    /// One link, after its attributes; closes their set.
    pub(crate) fn push(&mut self, trace_id: &[u8], span_id: &[u8], trace_state: &str, flags: u32) {
        self.trace_id.push_value(trace_id);
        self.span_id.push_value(span_id);
        self.trace_state.push(non_empty(trace_state));
        self.flags.push(flags);
        self.attributes.close();
    }
}

fn utf8(values: MutableBinaryViewArray<str>) -> Box<dyn Array> {
    Utf8ViewArray::from(values.freeze()).boxed()
}

fn binary(values: MutableBinaryViewArray<[u8]>) -> Box<dyn Array> {
    BinaryViewArray::from(values.freeze()).boxed()
}

/// A struct array of `fields` followed by an attribute set's three lists.
fn struct_of(len: usize, mut fields: Vec<(&'static str, Box<dyn Array>)>, attributes: AttributeLists) -> StructArray {
    fields.extend(attributes.finish(schema::ATTRIBUTES));
    let dtype = ArrowDataType::Struct(fields.iter().map(|(name, a)| field(name, a.dtype().clone())).collect());
    StructArray::new(dtype, len, fields.into_iter().map(|(_, a)| a).collect(), None)
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// The builders of every column of the segment schema.
pub(crate) struct SpanColumns {
    rows: usize,
    trace_id: MutableBinaryViewArray<[u8]>,
    span_id: MutableBinaryViewArray<[u8]>,
    parent: MutableBinaryViewArray<[u8]>,
    trace_state: MutableBinaryViewArray<str>,
    flags: Vec<u32>,
    name: MutableBinaryViewArray<str>,
    kind: Vec<u8>,
    service: MutableBinaryViewArray<str>,
    start: Vec<u64>,
    end: Vec<u64>,
    status_code: Vec<u8>,
    status_message: MutableBinaryViewArray<str>,
    pub(crate) attributes: AttributeLists,
    pub(crate) events: EventLists,
    pub(crate) links: LinkLists,
    resource_attributes: AttributeLists,
    scope_name: MutableBinaryViewArray<str>,
    scope_version: MutableBinaryViewArray<str>,
    scope_attributes: AttributeLists,
    dropped: [Vec<u32>; 3],
}

impl SpanColumns {
    /// Room for `rows` spans with `attributes` span attributes and `resource_attributes` resource
    /// attributes in all. Counted first: builders that grow while filled copy themselves over and over.
    pub(crate) fn with_capacity(rows: usize, attributes: usize, resource_attributes: usize) -> Self {
        SpanColumns {
            rows: 0,
            trace_id: MutableBinaryViewArray::with_capacity(rows),
            span_id: MutableBinaryViewArray::with_capacity(rows),
            parent: MutableBinaryViewArray::with_capacity(rows),
            trace_state: MutableBinaryViewArray::with_capacity(rows),
            flags: Vec::with_capacity(rows),
            name: MutableBinaryViewArray::with_capacity(rows),
            kind: Vec::with_capacity(rows),
            service: MutableBinaryViewArray::with_capacity(rows),
            start: Vec::with_capacity(rows),
            end: Vec::with_capacity(rows),
            status_code: Vec::with_capacity(rows),
            status_message: MutableBinaryViewArray::with_capacity(rows),
            attributes: AttributeLists::with_capacity(rows, attributes),
            events: EventLists {
                offsets: vec![0],
                time: Vec::new(),
                name: MutableBinaryViewArray::new(),
                attributes: AttributeLists::new(),
            },
            links: LinkLists {
                offsets: vec![0],
                trace_id: MutableBinaryViewArray::new(),
                span_id: MutableBinaryViewArray::new(),
                trace_state: MutableBinaryViewArray::new(),
                flags: Vec::new(),
                attributes: AttributeLists::new(),
            },
            resource_attributes: AttributeLists::with_capacity(rows, resource_attributes),
            scope_name: MutableBinaryViewArray::with_capacity(rows),
            scope_version: MutableBinaryViewArray::with_capacity(rows),
            scope_attributes: AttributeLists::with_capacity(rows, 0),
            dropped: std::array::from_fn(|_| Vec::with_capacity(rows)),
        }
    }

    /// Ends a span whose attributes, events and links have been pushed: its own fields and its origin.
    pub(crate) fn push_span(&mut self, span: &SpanFields<'_>, origin: &Origin) {
        self.rows += 1;
        self.trace_id.push_value(span.trace_id);
        self.span_id.push_value(span.span_id);
        self.parent.push(span.parent_span_id);
        self.trace_state.push(non_empty(span.trace_state));
        self.flags.push(span.flags);
        self.name.push_value(span.name);
        self.kind.push(span.kind);
        self.service.push_value(&origin.service_name);
        self.start.push(span.start_time_unix_nano);
        self.end.push(span.end_time_unix_nano);
        self.status_code.push(span.status_code);
        self.status_message.push(non_empty(span.status_message));
        self.attributes.close();
        self.events.offsets.push(self.events.time.len() as i64);
        self.links.offsets.push(self.links.flags.len() as i64);
        self.resource_attributes.push(&origin.resource_attributes);
        self.scope_name.push(non_empty(&origin.scope_name));
        self.scope_version.push(non_empty(&origin.scope_version));
        self.scope_attributes.push(&origin.scope_attributes);
        let [attributes, events, links] = &mut self.dropped;
        attributes.push(span.dropped.attributes);
        events.push(span.dropped.events);
        links.push(span.dropped.links);
    }

    /// One decoded row.
    fn push_row(&mut self, row: &SpanRow) {
        for kv in &row.attributes {
            self.attributes.push_any(&kv.key, kv.value.as_ref());
        }
        for e in &row.events {
            for kv in &e.attributes {
                self.events.attributes.push_any(&kv.key, kv.value.as_ref());
            }
            self.events.push(e.time_unix_nano, &e.name);
        }
        for l in &row.links {
            for kv in &l.attributes {
                self.links.attributes.push_any(&kv.key, kv.value.as_ref());
            }
            self.links.push(&l.trace_id, &l.span_id, &l.trace_state, l.flags);
        }
        let fields = SpanFields {
            trace_id: &row.trace_id,
            span_id: &row.span_id,
            parent_span_id: row.parent_span_id.as_ref().map(|p| p.as_slice()),
            trace_state: &row.trace_state,
            flags: row.flags,
            name: &row.name,
            kind: row.kind,
            start_time_unix_nano: row.start_time_unix_nano,
            end_time_unix_nano: row.end_time_unix_nano,
            status_code: row.status_code,
            status_message: &row.status_message,
            dropped: row.dropped,
        };
        self.push_span(&fields, &row.origin);
    }

    /// The frame of every span pushed, in push order.
    pub(crate) fn finish(self) -> PolarsResult<DataFrame> {
        let SpanColumns { rows, events, links, attributes, resource_attributes, scope_attributes, dropped, .. } = self;
        let event_values = struct_of(
            events.time.len(),
            vec![
                (schema::EVENT_TIME, PrimitiveArray::from_vec(events.time).boxed()),
                (schema::EVENT_NAME, utf8(events.name)),
            ],
            events.attributes,
        );
        let link_span_ids = binary(links.span_id);
        let link_offsets = OffsetsBuffer::try_from(links.offsets).expect("offsets are built monotonically");
        let link_values = struct_of(
            links.flags.len(),
            vec![
                (schema::TRACE_ID, binary(links.trace_id)),
                (schema::SPAN_ID, link_span_ids.clone()),
                (schema::TRACE_STATE, utf8(links.trace_state)),
                (schema::FLAGS, PrimitiveArray::from_vec(links.flags).boxed()),
            ],
            links.attributes,
        );

        let mut arrays: Vec<(&str, Box<dyn Array>)> = vec![
            (schema::TRACE_ID, binary(self.trace_id)),
            (schema::SPAN_ID, binary(self.span_id)),
            (schema::PARENT_SPAN_ID, binary(self.parent)),
            (schema::TRACE_STATE, utf8(self.trace_state)),
            (schema::FLAGS, PrimitiveArray::from_vec(self.flags).boxed()),
            (schema::NAME, utf8(self.name)),
            (schema::KIND, PrimitiveArray::from_vec(self.kind).boxed()),
            (schema::SERVICE_NAME, utf8(self.service)),
            (schema::START_TIME, PrimitiveArray::from_vec(self.start).boxed()),
            (schema::END_TIME, PrimitiveArray::from_vec(self.end).boxed()),
            (schema::STATUS_CODE, PrimitiveArray::from_vec(self.status_code).boxed()),
            (schema::STATUS_MESSAGE, utf8(self.status_message)),
        ];
        arrays.extend(attributes.finish(schema::ATTRIBUTES));
        arrays.push((schema::EVENTS, list(events.offsets, event_values.boxed()).boxed()));
        arrays.push((schema::LINKS, list_with(link_offsets.clone(), link_values.boxed()).boxed()));
        arrays.push((schema::LINK_SPAN_IDS, list_with(link_offsets, link_span_ids).boxed()));
        arrays.extend(resource_attributes.finish(schema::RESOURCE_ATTRIBUTES));
        arrays.push((schema::SCOPE_NAME, utf8(self.scope_name)));
        arrays.push((schema::SCOPE_VERSION, utf8(self.scope_version)));
        arrays.extend(scope_attributes.finish(schema::SCOPE_ATTRIBUTES));
        let [attributes, events, links] = dropped;
        arrays.push((schema::DROPPED_ATTRIBUTES, PrimitiveArray::from_vec(attributes).boxed()));
        arrays.push((schema::DROPPED_EVENTS, PrimitiveArray::from_vec(events).boxed()));
        arrays.push((schema::DROPPED_LINKS, PrimitiveArray::from_vec(links).boxed()));
        let columns = arrays
            .into_iter()
            .map(|(name, array)| Series::from_arrow(PlSmallStr::from(name), array).map(Column::from))
            .collect::<PolarsResult<Vec<_>>>()?;
        DataFrame::new(rows, columns)
    }
}

/// Encodes rows into a DataFrame with the segment schema, in the rows' order.
pub fn to_frame<'a, I>(rows: I) -> PolarsResult<DataFrame>
where
    I: IntoIterator<Item = &'a SpanRow>,
    I::IntoIter: ExactSizeIterator + Clone,
{
    let rows = rows.into_iter();
    let values = |set: fn(&SpanRow) -> usize| rows.clone().map(set).sum::<usize>();
    let mut columns = SpanColumns::with_capacity(
        rows.len(),
        values(|r| r.attributes.len()),
        values(|r| r.origin.resource_attributes.len()),
    );
    for row in rows {
        columns.push_row(row);
    }
    columns.finish()
}

/// Adds the columns that segments written before them lack, derived from what those segments hold, so
/// every frame read from the store has the current schema: `link_span_ids` from `links`, empty scope
/// attributes and null (unknown) dropped counts (older writers did not keep them).
pub fn upgrade(frame: &mut DataFrame) -> PolarsResult<()> {
    let before = frame.width();
    add_missing(frame)?;
    if frame.width() != before {
        // Added columns go in their schema place, so frames of old and new segments stack.
        let order: Vec<PlSmallStr> = to_frame(std::iter::empty())?
            .get_column_names()
            .into_iter()
            .filter(|name| frame.column(name).is_ok())
            .cloned()
            .collect();
        *frame = frame.select(order)?;
    }
    Ok(())
}

fn add_missing(frame: &mut DataFrame) -> PolarsResult<()> {
    if frame.column(schema::SCOPE_ATTRIBUTES.keys).is_err() {
        let mut empty = AttributeLists::with_capacity(frame.height(), 0);
        for _ in 0..frame.height() {
            empty.close();
        }
        for (name, array) in empty.finish(schema::SCOPE_ATTRIBUTES) {
            frame.with_column(Column::from(Series::from_arrow(PlSmallStr::from(name), array)?))?;
        }
    }
    for name in [schema::DROPPED_ATTRIBUTES, schema::DROPPED_EVENTS, schema::DROPPED_LINKS] {
        if frame.column(name).is_err() {
            let unknown = Series::full_null(PlSmallStr::from(name), frame.height(), &polars::prelude::DataType::UInt32);
            frame.with_column(Column::from(unknown))?;
        }
    }
    if frame.column(schema::LINK_SPAN_IDS).is_ok() || frame.column(schema::LINKS).is_err() {
        return Ok(());
    }
    let links = frame.column(schema::LINKS)?.as_materialized_series().clone();
    let chunks = links
        .chunks()
        .iter()
        .map(|chunk| {
            let lists = chunk.as_any().downcast_ref::<ListArray<i64>>();
            let items = lists.and_then(|l| l.values().as_any().downcast_ref::<StructArray>());
            let span_ids = items.and_then(|items| {
                let at = items.fields().iter().position(|f| f.name.as_str() == schema::SPAN_ID)?;
                Some(items.values()[at].clone())
            });
            match (lists, span_ids) {
                (Some(lists), Some(span_ids)) => Ok(list_with(lists.offsets().clone(), span_ids).boxed()),
                _ => Err(polars_err!(SchemaMismatch: "{} is not a list of structs with a {}", schema::LINKS, schema::SPAN_ID)),
            }
        })
        .collect::<PolarsResult<Vec<_>>>()?;
    let derived = Series::try_from((PlSmallStr::from(schema::LINK_SPAN_IDS), chunks))?;
    let at = frame.get_column_index(schema::LINKS).expect("read above") + 1;
    frame.insert_column(at, Column::from(derived))?;
    Ok(())
}
