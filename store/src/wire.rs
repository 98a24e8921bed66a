//! OTLP trace requests read straight from their protobuf bytes: the collector's path from request to
//! segment.
//!
//! [`scan`] checks a request once — every rule the generated (prost) decoder applies: wire types, lengths,
//! UTF-8 — and keeps each accepted span as a slice of the request's bytes, allocating nothing per span.
//! When the memtable is flushed, [`to_frame`] reads each span a second time, directly into the column
//! builders. Decoding into prost's types instead allocated every key and value, copied them into the
//! columns and freed them again: most of the collector's work per span.
//!
//! What is accepted and what each span holds is what `model::convert` makes of prost's decoding (the last
//! of a repeated scalar wins, repeated messages merge, unknown fields are skipped); the tests hold the two
//! to the same frames and the same errors. Array and key-value-list attribute values, which are rare, are
//! handed to prost whole.

use std::sync::Arc;

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::{ArrayValue, InstrumentationScope, KeyValue, KeyValueList};
use opentelemetry_proto::tonic::resource::v1::Resource;
use polars::prelude::{polars_err, DataFrame, PolarsResult};
use prost::encoding::{check_wire_type, decode_key, decode_varint, skip_field, DecodeContext, WireType};
use prost::{DecodeError, Message};

use crate::columns::{AttributeLists, Scalar, SpanColumns, SpanFields};
use crate::model::{self, Conversion, Origin, SpanId, SpanKey, TraceId};

/// Why a request could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WireError(String);

impl From<DecodeError> for WireError {
    fn from(e: DecodeError) -> Self {
        WireError(e.to_string())
    }
}

type Result<T> = std::result::Result<T, WireError>;

/// An accepted span, still in the bytes of the request it came in.
#[derive(Debug, Clone)]
pub struct WireSpan {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub start_time_unix_nano: u64,
    /// How many attributes the span has, so the flush sizes its builders once.
    attributes: u32,
    /// The span's `Span` message.
    bytes: Bytes,
    origin: Arc<Origin>,
}

impl WireSpan {
    pub fn key(&self) -> SpanKey {
        (self.trace_id, self.span_id)
    }

    /// The order of rows in a segment (see [`model::segment_order`]).
    pub fn segment_order(&self) -> (crate::segment::Hour, TraceId, u64, SpanId) {
        model::segment_order(self.trace_id, self.span_id, self.start_time_unix_nano)
    }
}

/// Checks an `ExportTraceServiceRequest` and returns its accepted spans in request order, with the
/// rejected ones (invalid ids) counted as [`model::convert`] counts them.
pub fn scan(request: &Bytes) -> Result<Conversion<WireSpan>> {
    let mut out = Conversion::default();
    for_each_field(request, |tag, value| {
        if tag == 1 {
            resource_spans(request, value.bytes()?, &mut out)?;
        }
        Ok(())
    })?;
    Ok(out)
}

/// Builds the segment frame of `spans`, in their order.
pub fn to_frame(spans: &[&WireSpan]) -> PolarsResult<DataFrame> {
    let attributes = spans.iter().map(|s| s.attributes as usize).sum();
    let resource_attributes = spans.iter().map(|s| s.origin.resource_attributes.len()).sum();
    let mut columns = SpanColumns::with_capacity(spans.len(), attributes, resource_attributes);
    for s in spans {
        let fields = read_span(&s.bytes, &mut columns)
            .map_err(|e| polars_err!(ComputeError: "a span accepted earlier no longer reads: {e}"))?;
        columns.push_span(&fields, &s.origin);
    }
    columns.finish()
}

fn resource_spans(request: &Bytes, bytes: &[u8], out: &mut Conversion<WireSpan>) -> Result<()> {
    let (resource, scopes) = header_and_items::<Resource>(bytes)?;
    let service_name = model::service_name(&resource.attributes);
    for scope_spans in scopes {
        let (scope, spans) = header_and_items::<InstrumentationScope>(scope_spans)?;
        let origin = Arc::new(Origin {
            service_name: service_name.clone(),
            resource_attributes: resource.attributes.clone(),
            scope_name: scope.name,
            scope_version: scope.version,
        });
        out.rows.reserve(spans.len());
        for span in spans {
            let mut check = Check { attributes: 0, links_valid: true };
            let fields = read_span(span, &mut check)?;
            match model::accept(fields.trace_id, fields.span_id, fields.parent_span_id, check.links_valid) {
                Ok((trace_id, span_id, _)) => out.rows.push(WireSpan {
                    trace_id,
                    span_id,
                    start_time_unix_nano: fields.start_time_unix_nano,
                    attributes: check.attributes,
                    bytes: request.slice_ref(span),
                    origin: Arc::clone(&origin),
                }),
                Err(rejection) => out.rejected.push(rejection),
            }
        }
    }
    Ok(())
}

/// `ResourceSpans` and `ScopeSpans` alike: a header message (field 1: the resource, the scope), repeated
/// items (field 2: the scopes' spans, the spans) and a schema URL (field 3). A header seen twice merges;
/// the items are returned for reading once the whole header is known, wherever it came.
fn header_and_items<H: Message + Default>(bytes: &[u8]) -> Result<(H, Vec<&[u8]>)> {
    let mut header = H::default();
    let mut items = Vec::new();
    for_each_field(bytes, |tag, value| {
        match tag {
            1 => header.merge(value.bytes()?)?,
            2 => items.push(value.bytes()?),
            3 => {
                value.string()?;
            }
            _ => {}
        }
        Ok(())
    })?;
    Ok((header, items))
}

/// Which attribute set an attribute belongs to.
#[derive(Debug, Clone, Copy)]
enum Set {
    Span,
    Event,
    Link,
}

/// An attribute as read: a key and a scalar value, or a whole `KeyValue` message whose value is an array
/// or a key-value list.
enum Attribute<'a> {
    Scalar(&'a str, Scalar<'a>),
    Nested(&'a [u8]),
}

/// Where the parts of a span go as it is read. A span's own fields are returned once it is read; its
/// events and links arrive after their attributes.
trait Visitor<'a> {
    /// Whether the bytes were checked already, by [`scan`]: strings are then taken as UTF-8 unchecked.
    const CHECKED: bool;
    fn attribute(&mut self, set: Set, attribute: Attribute<'a>) -> Result<()>;
    fn event(&mut self, time_unix_nano: u64, name: &'a str);
    fn link(&mut self, trace_id: &'a [u8], span_id: &'a [u8], trace_state: &'a str, flags: u32);
}

/// The check at ingest: counts attributes and checks the links' ids.
struct Check {
    attributes: u32,
    links_valid: bool,
}

impl<'a> Visitor<'a> for Check {
    const CHECKED: bool = false;
    fn attribute(&mut self, set: Set, _: Attribute<'a>) -> Result<()> {
        self.attributes += matches!(set, Set::Span) as u32;
        Ok(())
    }
    fn event(&mut self, _: u64, _: &'a str) {}
    fn link(&mut self, trace_id: &'a [u8], span_id: &'a [u8], _: &'a str, _: u32) {
        self.links_valid &= model::valid_id::<16>(trace_id) && model::valid_id::<8>(span_id);
    }
}

/// The flush: everything into the column builders.
impl<'a> Visitor<'a> for SpanColumns {
    // Only `scan` makes a `WireSpan`, after reading it with `Check`, and its bytes are immutable.
    const CHECKED: bool = true;
    fn attribute(&mut self, set: Set, attribute: Attribute<'a>) -> Result<()> {
        let lists: &mut AttributeLists = match set {
            Set::Span => &mut self.attributes,
            Set::Event => &mut self.events.attributes,
            Set::Link => &mut self.links.attributes,
        };
        match attribute {
            Attribute::Scalar(key, value) => lists.push_scalar(key, value),
            Attribute::Nested(bytes) => {
                let kv = KeyValue::decode(bytes)?;
                lists.push_any(&kv.key, kv.value.as_ref());
            }
        }
        Ok(())
    }
    fn event(&mut self, time_unix_nano: u64, name: &'a str) {
        self.events.push(time_unix_nano, name);
    }
    fn link(&mut self, trace_id: &'a [u8], span_id: &'a [u8], trace_state: &'a str, flags: u32) {
        self.links.push(trace_id, span_id, trace_state, flags);
    }
}

/// Reads a `Span` message: its attributes, events and links into `visitor`, its own fields returned.
fn read_span<'a, V: Visitor<'a>>(bytes: &'a [u8], visitor: &mut V) -> Result<SpanFields<'a>> {
    let mut span = SpanFields {
        trace_id: &[],
        span_id: &[],
        parent_span_id: None,
        trace_state: "",
        flags: 0,
        name: "",
        kind: 0,
        start_time_unix_nano: 0,
        end_time_unix_nano: 0,
        status_code: 0,
        status_message: "",
    };
    for_each_field(bytes, |tag, value| {
        match tag {
            1 => span.trace_id = value.bytes()?,
            2 => span.span_id = value.bytes()?,
            3 => span.trace_state = value.text::<V>()?,
            4 => span.parent_span_id = Some(value.bytes()?).filter(|p| !p.is_empty()),
            5 => span.name = value.text::<V>()?,
            6 => span.kind = enumeration(value.varint()?),
            7 => span.start_time_unix_nano = value.fixed64()?,
            8 => span.end_time_unix_nano = value.fixed64()?,
            9 => visitor.attribute(Set::Span, key_value::<V>(value.bytes()?)?)?,
            11 => read_event(value.bytes()?, visitor)?,
            13 => read_link(value.bytes()?, visitor)?,
            10 | 12 | 14 => value.expect(WireType::Varint)?,
            15 => for_each_field(value.bytes()?, |tag, value| {
                match tag {
                    2 => span.status_message = value.text::<V>()?,
                    3 => span.status_code = enumeration(value.varint()?),
                    _ => {}
                }
                Ok(())
            })?,
            16 => span.flags = value.fixed32()?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(span)
}

/// An OTLP enum (an `int32` on the wire) as the store keeps it: 0..=255.
fn enumeration(varint: u64) -> u8 {
    (varint as i32).clamp(0, 255) as u8
}

fn read_event<'a, V: Visitor<'a>>(bytes: &'a [u8], visitor: &mut V) -> Result<()> {
    let (mut time, mut name) = (0, "");
    for_each_field(bytes, |tag, value| {
        match tag {
            1 => time = value.fixed64()?,
            2 => name = value.text::<V>()?,
            3 => visitor.attribute(Set::Event, key_value::<V>(value.bytes()?)?)?,
            4 => value.expect(WireType::Varint)?,
            _ => {}
        }
        Ok(())
    })?;
    visitor.event(time, name);
    Ok(())
}

fn read_link<'a, V: Visitor<'a>>(bytes: &'a [u8], visitor: &mut V) -> Result<()> {
    let (mut trace_id, mut span_id, mut trace_state, mut flags): (&[u8], &[u8], &str, u32) = (&[], &[], "", 0);
    for_each_field(bytes, |tag, value| {
        match tag {
            1 => trace_id = value.bytes()?,
            2 => span_id = value.bytes()?,
            3 => trace_state = value.text::<V>()?,
            4 => visitor.attribute(Set::Link, key_value::<V>(value.bytes()?)?)?,
            5 => value.expect(WireType::Varint)?,
            6 => flags = value.fixed32()?,
            _ => {}
        }
        Ok(())
    })?;
    visitor.link(trace_id, span_id, trace_state, flags);
    Ok(())
}

/// A `KeyValue` message. Its `value` may come in several pieces, which merge: the last scalar wins.
fn key_value<'a, V: Visitor<'a>>(bytes: &'a [u8]) -> Result<Attribute<'a>> {
    let (mut key, mut scalar, mut nested) = ("", Scalar::Empty, false);
    for_each_field(bytes, |tag, value| {
        match tag {
            1 => key = value.text::<V>()?,
            2 => for_each_field(value.bytes()?, |tag, value| {
                match tag {
                    1 => scalar = Scalar::Str(value.text::<V>()?),
                    2 => scalar = Scalar::Bool(value.varint()? != 0),
                    3 => scalar = Scalar::Int(value.varint()? as i64),
                    4 => scalar = Scalar::Double(f64::from_bits(value.fixed64()?)),
                    // Rare: checked by prost here and decoded by it at the flush.
                    5 | 6 => {
                        let bytes = value.bytes()?;
                        if !V::CHECKED {
                            match tag {
                                5 => drop(ArrayValue::decode(bytes)?),
                                _ => drop(KeyValueList::decode(bytes)?),
                            }
                        }
                        nested = true;
                    }
                    7 => scalar = Scalar::Bytes(value.bytes()?),
                    // A string-table index (profiles only) is kept as the number.
                    8 => scalar = Scalar::Int(i64::from(value.varint()? as i32)),
                    _ => {}
                }
                Ok(())
            })?,
            3 => value.expect(WireType::Varint)?, // `key_strindex`, for the profiles signal only
            _ => {}
        }
        Ok(())
    })?;
    Ok(if nested { Attribute::Nested(bytes) } else { Attribute::Scalar(key, scalar) })
}

/// A field's value as its wire type carries it.
#[derive(Clone, Copy)]
enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Bytes(&'a [u8]),
    Group,
}

impl<'a> Value<'a> {
    fn wire_type(self) -> WireType {
        match self {
            Value::Varint(_) => WireType::Varint,
            Value::Fixed64(_) => WireType::SixtyFourBit,
            Value::Fixed32(_) => WireType::ThirtyTwoBit,
            Value::Bytes(_) => WireType::LengthDelimited,
            Value::Group => WireType::StartGroup,
        }
    }

    fn expect(self, wire_type: WireType) -> Result<()> {
        Ok(check_wire_type(wire_type, self.wire_type())?)
    }

    /// prost's error for a field of the wrong wire type.
    fn mismatch(self, expected: WireType) -> WireError {
        self.expect(expected).expect_err("called for a value of another wire type")
    }

    fn varint(self) -> Result<u64> {
        match self {
            Value::Varint(v) => Ok(v),
            other => Err(other.mismatch(WireType::Varint)),
        }
    }

    fn fixed64(self) -> Result<u64> {
        match self {
            Value::Fixed64(v) => Ok(v),
            other => Err(other.mismatch(WireType::SixtyFourBit)),
        }
    }

    fn fixed32(self) -> Result<u32> {
        match self {
            Value::Fixed32(v) => Ok(v),
            other => Err(other.mismatch(WireType::ThirtyTwoBit)),
        }
    }

    /// Bytes or an embedded message.
    fn bytes(self) -> Result<&'a [u8]> {
        match self {
            Value::Bytes(v) => Ok(v),
            other => Err(other.mismatch(WireType::LengthDelimited)),
        }
    }

    fn string(self) -> Result<&'a str> {
        std::str::from_utf8(self.bytes()?)
            .map_err(|_| WireError("invalid string value: data is not UTF-8 encoded".into()))
    }

    /// A string field as `V` reads it: checked, or taken as it is when `V` reads bytes already checked.
    fn text<V: Visitor<'a>>(self) -> Result<&'a str> {
        if V::CHECKED {
            // SAFETY: `V::CHECKED` visitors read only spans that `scan` checked, this string included.
            Ok(unsafe { std::str::from_utf8_unchecked(self.bytes()?) })
        } else {
            self.string()
        }
    }
}

/// Calls `f` with each field of a message in wire order. Unknown fields are read (and so checked) like
/// known ones; groups, which OTLP does not use, are skipped as prost skips them.
fn for_each_field<'a>(mut buf: &'a [u8], mut f: impl FnMut(u32, Value<'a>) -> Result<()>) -> Result<()> {
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf)?;
        let value = match wire_type {
            WireType::Varint => Value::Varint(decode_varint(&mut buf)?),
            WireType::SixtyFourBit => Value::Fixed64(u64::from_le_bytes(take::<8>(&mut buf)?)),
            WireType::ThirtyTwoBit => Value::Fixed32(u32::from_le_bytes(take::<4>(&mut buf)?)),
            WireType::LengthDelimited => {
                let len = decode_varint(&mut buf)?;
                if len > buf.len() as u64 {
                    return Err(WireError("buffer underflow".into()));
                }
                let (value, rest) = buf.split_at(len as usize);
                buf = rest;
                Value::Bytes(value)
            }
            WireType::StartGroup | WireType::EndGroup => {
                skip_field(wire_type, tag, &mut buf, DecodeContext::default())?;
                Value::Group
            }
        };
        f(tag, value)?;
    }
    Ok(())
}

fn take<const N: usize>(buf: &mut &[u8]) -> Result<[u8; N]> {
    let Some((head, rest)) = buf.split_first_chunk::<N>() else {
        return Err(WireError("buffer underflow".into()));
    };
    *buf = rest;
    Ok(*head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};
    use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
    use proptest::prelude::*;

    /// What prost and `model::convert` make of `bytes`: the frame and the rejections, or that it fails.
    fn by_prost(bytes: &[u8]) -> Option<(DataFrame, Vec<crate::Rejection>)> {
        let request = ExportTraceServiceRequest::decode(bytes).ok()?;
        let conversion = model::convert(request);
        Some((crate::to_frame(&conversion.rows).unwrap(), conversion.rejected))
    }

    /// What this module makes of `bytes`.
    fn by_wire(bytes: &[u8]) -> Option<(DataFrame, Vec<crate::Rejection>)> {
        let bytes = Bytes::copy_from_slice(bytes);
        let scanned = scan(&bytes).ok()?;
        let spans: Vec<&WireSpan> = scanned.rows.iter().collect();
        Some((to_frame(&spans).unwrap(), scanned.rejected))
    }

    fn assert_same(bytes: &[u8]) -> std::result::Result<(), TestCaseError> {
        match (by_prost(bytes), by_wire(bytes)) {
            (None, None) => {}
            (Some((expected, expected_rejected)), Some((frame, rejected))) => {
                prop_assert!(frame.equals_missing(&expected), "frames differ:\n{frame:?}\n{expected:?}");
                prop_assert_eq!(rejected, expected_rejected);
            }
            (expected, got) => prop_assert!(false, "prost ok: {}, wire ok: {}", expected.is_some(), got.is_some()),
        }
        Ok(())
    }

    fn kv(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
    }

    fn value() -> impl Strategy<Value = Option<any_value::Value>> {
        use any_value::Value as V;
        let scalar = prop_oneof![
            "[a-z0-9./ _-]{0,24}".prop_map(V::StringValue),
            any::<bool>().prop_map(V::BoolValue),
            any::<i64>().prop_map(V::IntValue),
            any::<f64>().prop_map(V::DoubleValue),
            proptest::collection::vec(any::<u8>(), 0..8).prop_map(V::BytesValue),
            any::<i32>().prop_map(V::StringValueStrindex),
        ];
        prop_oneof![
            8 => scalar.clone().prop_map(Some),
            1 => Just(None),
            1 => proptest::collection::vec(scalar.clone(), 0..3).prop_map(|values| Some(V::ArrayValue(ArrayValue {
                values: values.into_iter().map(|v| AnyValue { value: Some(v) }).collect(),
            }))),
            1 => proptest::collection::vec(scalar, 0..3).prop_map(|values| Some(V::KvlistValue(KeyValueList {
                values: values.into_iter().enumerate().map(|(i, v)| kv(&format!("k{i}"), v)).collect(),
            }))),
        ]
    }

    fn attributes() -> impl Strategy<Value = Vec<KeyValue>> {
        proptest::collection::vec(("[a-z.]{1,12}", value()), 0..6).prop_map(|kvs| {
            kvs.into_iter().map(|(key, value)| KeyValue { key, value: value.map(|v| AnyValue { value: Some(v) }), ..Default::default() }).collect()
        })
    }

    /// Ids that are valid most of the time, sometimes empty, zero or of the wrong length.
    fn id(n: usize) -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            12 => proptest::collection::vec(any::<u8>(), n..=n),
            1 => Just(Vec::new()),
            1 => Just(vec![0; n]),
            1 => proptest::collection::vec(any::<u8>(), 1..n),
        ]
    }

    fn span() -> impl Strategy<Value = Span> {
        let event = (any::<u64>(), "[a-z ]{0,10}", attributes())
            .prop_map(|(time_unix_nano, name, attributes)| Event { time_unix_nano, name, attributes, ..Default::default() });
        let link = (id(16), id(8), "[a-z=,]{0,8}", attributes(), any::<u32>()).prop_map(|(trace_id, span_id, trace_state, attributes, flags)| {
            Link { trace_id, span_id, trace_state, attributes, flags, ..Default::default() }
        });
        (
            (id(16), id(8), prop_oneof![Just(Vec::new()), id(8)], "[a-z=,]{0,8}", any::<u32>(), "[a-zA-Z /_]{0,20}", -2i32..300),
            (any::<u64>(), any::<u64>(), attributes(), proptest::collection::vec(event, 0..3), proptest::collection::vec(link, 0..3)),
            proptest::option::of(("[a-z ]{0,10}", -1i32..4)),
        )
            .prop_map(|((trace_id, span_id, parent_span_id, trace_state, flags, name, kind), (start, end, attributes, events, links), status)| Span {
                trace_id,
                span_id,
                parent_span_id,
                trace_state,
                flags,
                name,
                kind,
                start_time_unix_nano: start,
                end_time_unix_nano: end,
                attributes,
                events,
                links,
                status: status.map(|(message, code)| Status { message, code }),
                ..Default::default()
            })
    }

    fn request() -> impl Strategy<Value = ExportTraceServiceRequest> {
        let scope = (proptest::option::of(("[a-z]{0,6}", "[0-9.]{0,4}")), proptest::collection::vec(span(), 0..4)).prop_map(|(scope, spans)| ScopeSpans {
            scope: scope.map(|(name, version)| InstrumentationScope { name, version, ..Default::default() }),
            spans,
            ..Default::default()
        });
        let resource = (proptest::option::of(attributes()), proptest::collection::vec(scope, 0..3)).prop_map(|(attributes, scope_spans)| ResourceSpans {
            resource: attributes.map(|mut attributes| {
                attributes.push(kv("service.name", any_value::Value::StringValue("svc".into())));
                Resource { attributes, ..Default::default() }
            }),
            scope_spans,
            ..Default::default()
        });
        proptest::collection::vec(resource, 0..3).prop_map(|resource_spans| ExportTraceServiceRequest { resource_spans })
    }

    /// A length-delimited field.
    fn field(tag: u32, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        prost::encoding::encode_key(tag, WireType::LengthDelimited, &mut out);
        prost::encoding::encode_varint(bytes.len() as u64, &mut out);
        out.extend_from_slice(bytes);
        out
    }

    /// A request of one resource and one scope around the given span message bytes.
    fn around(span: &[u8], resource: &[u8]) -> Vec<u8> {
        let scope_spans = field(2, span);
        // The scopes first, the resource after them: readers must not depend on field order.
        field(1, &[field(2, &scope_spans), field(1, resource)].concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Any request an SDK could send reads into the same frame as through prost.
        #[test]
        fn requests_read_as_prost_reads_them(request in request()) {
            let bytes = request.encode_to_vec();
            prop_assert!(scan(&Bytes::from(bytes.clone())).is_ok());
            assert_same(&bytes)?;
        }

        /// Two encodings of a span concatenated are one span, merged field by field: scalars from the
        /// second, attributes, events and links from both, the status merged.
        #[test]
        fn a_span_in_pieces_merges_as_prost_merges_it(a in span(), b in span(), resource in attributes()) {
            let span = [a.encode_to_vec(), b.encode_to_vec()].concat();
            let resource = Resource { attributes: resource, ..Default::default() }.encode_to_vec();
            assert_same(&around(&span, &resource))?;
        }

        /// A valid request cut short or with a byte changed: accepted or refused exactly when prost
        /// accepts or refuses it, and read the same when accepted.
        #[test]
        fn damaged_requests_fail_as_prost_fails(request in request(), at in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<bool>()) {
            let mut bytes = request.encode_to_vec();
            if !bytes.is_empty() {
                let at = at.index(bytes.len());
                if cut { bytes.truncate(at) } else { bytes[at] = byte }
            }
            assert_same(&bytes)?;
        }

        #[test]
        fn arbitrary_bytes_fail_as_prost_fails(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            assert_same(&bytes)?;
        }
    }

    #[test]
    fn unknown_fields_are_skipped_and_bad_strings_refused() {
        let span = Span { trace_id: vec![1; 16], span_id: vec![2; 8], name: "ok".into(), ..Default::default() };
        let mut bytes = span.encode_to_vec();
        bytes.extend(field(99, b"\xff\xfe not UTF-8, but an unknown field"));
        let request = Bytes::from(around(&bytes, &[]));
        assert_eq!(scan(&request).unwrap().rows.len(), 1);
        assert_same(&request).unwrap();

        let mut bad = span.encode_to_vec();
        bad.extend(field(5, b"\xff\xfe"));
        let error = scan(&Bytes::from(around(&bad, &[]))).unwrap_err();
        assert!(error.to_string().contains("UTF-8"), "{error}");
        assert_same(&around(&bad, &[])).unwrap();

        // A known field with the wrong wire type.
        let mut wrong = span.encode_to_vec();
        prost::encoding::encode_key(7, WireType::Varint, &mut wrong);
        prost::encoding::encode_varint(5, &mut wrong);
        assert!(scan(&Bytes::from(around(&wrong, &[]))).unwrap_err().to_string().contains("wire type"));
        assert_same(&around(&wrong, &[])).unwrap();
    }

    #[test]
    fn spans_keep_their_request_bytes_only() {
        let spans: Vec<Span> = (1..=3u8)
            .map(|i| Span { trace_id: vec![i; 16], span_id: vec![i; 8], start_time_unix_nano: u64::from(i), ..Default::default() })
            .collect();
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans { scope_spans: vec![ScopeSpans { spans: spans.clone(), ..Default::default() }], ..Default::default() }],
        };
        let bytes = Bytes::from(request.encode_to_vec());
        let scanned = scan(&bytes).unwrap();
        assert_eq!(scanned.rows.iter().map(|s| s.key()).collect::<Vec<_>>(), (1..=3u8).map(|i| ([i; 16], [i; 8])).collect::<Vec<_>>());
        for (wire, span) in scanned.rows.iter().zip(&spans) {
            assert_eq!(wire.bytes, span.encode_to_vec());
            assert_eq!(wire.start_time_unix_nano, span.start_time_unix_nano);
        }
    }
}
