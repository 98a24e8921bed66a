//! Rows → one columnar [`DataFrame`] in the segment schema (see `docs/storage.md`).
//!
//! Built directly as Arrow arrays: nested lists of typed attribute structs cannot be expressed through
//! polars' row-wise constructors without copying every value twice.

use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use polars::prelude::{polars_err, Column, DataFrame, PlSmallStr, PolarsResult, Series};
use base64::Engine;
use polars_arrow::array::{
    Array, BinaryViewArray, ListArray, MutableBinaryViewArray, PrimitiveArray, StructArray, Utf8ViewArray,
};
use polars_arrow::datatypes::{ArrowDataType, Field};
use polars_arrow::offset::OffsetsBuffer;

use crate::model::SpanRow;
use crate::schema::{self, AttrType};

fn field(name: &str, dtype: ArrowDataType) -> Field {
    Field::new(PlSmallStr::from(name), dtype, true)
}

fn list_of(dtype: ArrowDataType) -> ArrowDataType {
    ArrowDataType::LargeList(Box::new(field("item", dtype)))
}

/// Builds an attribute set's three parallel list columns (see [`schema::AttributeColumns`]): every value
/// as text, its OTLP type beside it.
#[derive(Default)]
struct AttributeLists {
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

    fn push(&mut self, attributes: &[KeyValue]) {
        for kv in attributes {
            self.push_value(&kv.key, kv.value.as_ref());
        }
        self.offsets.push(self.ty.len() as i64);
    }

    fn push_value(&mut self, key: &str, value: Option<&AnyValue>) {
        use std::fmt::Write;
        self.key.push_value(key);
        self.scratch.clear();
        let s = &mut self.scratch;
        let ty = match value.and_then(|v| v.value.as_ref()) {
            None => {
                self.ty.push(AttrType::Empty as u8);
                self.value.push_null();
                return;
            }
            Some(Value::StringValue(v)) => {
                self.ty.push(AttrType::String as u8);
                self.value.push_value(v);
                return;
            }
            Some(Value::BoolValue(v)) => {
                s.push_str(if *v { "true" } else { "false" });
                AttrType::Bool
            }
            Some(Value::IntValue(v)) => {
                let _ = write!(s, "{v}");
                AttrType::Int
            }
            // A string-table index only has meaning inside the profiles signal; keep the number.
            Some(Value::StringValueStrindex(v)) => {
                let _ = write!(s, "{v}");
                AttrType::Int
            }
            Some(Value::DoubleValue(v)) => {
                let _ = write!(s, "{v:?}");
                AttrType::Double
            }
            Some(Value::BytesValue(v)) => {
                s.push_str(&base64::engine::general_purpose::STANDARD.encode(v));
                AttrType::Bytes
            }
            Some(Value::ArrayValue(_)) => {
                s.push_str(&schema::any_value_to_json(value.unwrap()).to_string());
                AttrType::Array
            }
            Some(Value::KvlistValue(_)) => {
                s.push_str(&schema::any_value_to_json(value.unwrap()).to_string());
                AttrType::KvList
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

#[derive(Default)]
struct EventLists {
    offsets: Vec<i64>,
    time: Vec<u64>,
    name: MutableBinaryViewArray<str>,
    attributes: Option<AttributeLists>,
}

#[derive(Default)]
struct LinkLists {
    offsets: Vec<i64>,
    trace_id: MutableBinaryViewArray<[u8]>,
    span_id: MutableBinaryViewArray<[u8]>,
    trace_state: MutableBinaryViewArray<str>,
    flags: Vec<u32>,
    attributes: Option<AttributeLists>,
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

/// Encodes rows into a DataFrame with the segment schema, in the rows' order.
pub fn to_frame<'a, I>(rows: I) -> PolarsResult<DataFrame>
where
    I: IntoIterator<Item = &'a SpanRow>,
    I::IntoIter: ExactSizeIterator + Clone,
{
    let rows = rows.into_iter();
    let n = rows.len();
    // Counted first: builders that grow while filled copy themselves over and over into fresh pages.
    let values = |set: fn(&SpanRow) -> usize| rows.clone().map(set).sum::<usize>();
    let mut trace_id = MutableBinaryViewArray::<[u8]>::with_capacity(n);
    let mut span_id = MutableBinaryViewArray::<[u8]>::with_capacity(n);
    let mut parent = MutableBinaryViewArray::<[u8]>::with_capacity(n);
    let mut trace_state = MutableBinaryViewArray::<str>::with_capacity(n);
    let mut flags = Vec::with_capacity(n);
    let mut name = MutableBinaryViewArray::<str>::with_capacity(n);
    let mut kind = Vec::with_capacity(n);
    let mut service = MutableBinaryViewArray::<str>::with_capacity(n);
    let mut start = Vec::with_capacity(n);
    let mut end = Vec::with_capacity(n);
    let mut status_code = Vec::with_capacity(n);
    let mut status_message = MutableBinaryViewArray::<str>::with_capacity(n);
    let mut attributes = AttributeLists::with_capacity(n, values(|r| r.attributes.len()));
    let mut events = EventLists { offsets: vec![0], attributes: Some(AttributeLists::new()), ..Default::default() };
    let mut links = LinkLists { offsets: vec![0], attributes: Some(AttributeLists::new()), ..Default::default() };
    let mut resource_attributes = AttributeLists::with_capacity(n, values(|r| r.origin.resource_attributes.len()));
    let mut scope_name = MutableBinaryViewArray::<str>::with_capacity(n);
    let mut scope_version = MutableBinaryViewArray::<str>::with_capacity(n);

    for row in rows {
        trace_id.push_value(row.trace_id);
        span_id.push_value(row.span_id);
        parent.push(row.parent_span_id);
        trace_state.push(non_empty(&row.trace_state));
        flags.push(row.flags);
        name.push_value(&row.name);
        kind.push(row.kind);
        service.push_value(&row.origin.service_name);
        start.push(row.start_time_unix_nano);
        end.push(row.end_time_unix_nano);
        status_code.push(row.status_code);
        status_message.push(non_empty(&row.status_message));
        attributes.push(&row.attributes);
        let event_attrs = events.attributes.as_mut().unwrap();
        for e in &row.events {
            events.time.push(e.time_unix_nano);
            events.name.push_value(&e.name);
            event_attrs.push(&e.attributes);
        }
        events.offsets.push(events.time.len() as i64);
        let link_attrs = links.attributes.as_mut().unwrap();
        for l in &row.links {
            links.trace_id.push_value(&l.trace_id);
            links.span_id.push_value(&l.span_id);
            links.trace_state.push(non_empty(&l.trace_state));
            links.flags.push(l.flags);
            link_attrs.push(&l.attributes);
        }
        links.offsets.push(links.flags.len() as i64);
        resource_attributes.push(&row.origin.resource_attributes);
        scope_name.push(non_empty(&row.origin.scope_name));
        scope_version.push(non_empty(&row.origin.scope_version));
    }

    let event_values = struct_of(
        events.time.len(),
        vec![
            (schema::EVENT_TIME, PrimitiveArray::from_vec(events.time).boxed()),
            (schema::EVENT_NAME, utf8(events.name)),
        ],
        events.attributes.take().unwrap(),
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
        links.attributes.take().unwrap(),
    );

    let mut arrays: Vec<(&str, Box<dyn Array>)> = vec![
        (schema::TRACE_ID, binary(trace_id)),
        (schema::SPAN_ID, binary(span_id)),
        (schema::PARENT_SPAN_ID, binary(parent)),
        (schema::TRACE_STATE, utf8(trace_state)),
        (schema::FLAGS, PrimitiveArray::from_vec(flags).boxed()),
        (schema::NAME, utf8(name)),
        (schema::KIND, PrimitiveArray::from_vec(kind).boxed()),
        (schema::SERVICE_NAME, utf8(service)),
        (schema::START_TIME, PrimitiveArray::from_vec(start).boxed()),
        (schema::END_TIME, PrimitiveArray::from_vec(end).boxed()),
        (schema::STATUS_CODE, PrimitiveArray::from_vec(status_code).boxed()),
        (schema::STATUS_MESSAGE, utf8(status_message)),
    ];
    arrays.extend(attributes.finish(schema::ATTRIBUTES));
    arrays.push((schema::EVENTS, list(events.offsets, event_values.boxed()).boxed()));
    arrays.push((schema::LINKS, list_with(link_offsets.clone(), link_values.boxed()).boxed()));
    arrays.push((schema::LINK_SPAN_IDS, list_with(link_offsets, link_span_ids).boxed()));
    arrays.extend(resource_attributes.finish(schema::RESOURCE_ATTRIBUTES));
    arrays.push((schema::SCOPE_NAME, utf8(scope_name)));
    arrays.push((schema::SCOPE_VERSION, utf8(scope_version)));
    let columns = arrays
        .into_iter()
        .map(|(name, array)| Series::from_arrow(PlSmallStr::from(name), array).map(Column::from))
        .collect::<PolarsResult<Vec<_>>>()?;
    DataFrame::new(n, columns)
}

/// Adds the columns that segments written before them lack, derived from what those segments hold, so
/// every frame read from the store has the current schema: `link_span_ids` from `links`.
pub fn upgrade(frame: &mut DataFrame) -> PolarsResult<()> {
    if frame.column(schema::LINK_SPAN_IDS).is_ok() {
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
