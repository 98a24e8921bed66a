//! OTLP trace requests read straight from their protobuf bytes: the collector's path from request to
//! segment.
//!
//! [`scan`] checks a request once — every rule the generated (prost) decoder applies: wire types, lengths,
//! UTF-8 — and keeps each accepted span as a slice of the request's bytes, allocating nothing per span.
//! Whoever stores the spans reads each one a second time with [`WireSpan::read`], straight into its own
//! builders through a [`Visitor`]. Decoding into prost's types instead allocated every key and value,
//! copied them into the columns and freed them again: most of the collector's work per span.
//!
//! What is accepted and what each span holds is what `model::convert` makes of prost's decoding (the last
//! of a repeated scalar wins, repeated messages merge, unknown fields are skipped); the store's tests hold
//! the two to the same frames and the same errors. Array and key-value-list attribute values, which are
//! rare, are handed to prost whole.

use std::sync::Arc;

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::{ArrayValue, InstrumentationScope, KeyValueList};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::encoding::{check_wire_type, decode_key, decode_varint, skip_field, DecodeContext, WireType};
use prost::{DecodeError, Message};

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

    /// How many attributes the span has.
    pub fn attribute_count(&self) -> usize {
        self.attributes as usize
    }

    /// The span's resource and scope.
    pub fn origin(&self) -> &Arc<Origin> {
        &self.origin
    }

    /// The span's `Span` message, as it came in its request.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Reads the span again: its attributes, events and links into `visitor`, its own fields returned.
    /// Strings are taken as they are, unchecked: only [`scan`] makes a `WireSpan`, after checking every
    /// byte of it, and its bytes are immutable.
    pub fn read<'a, V: Visitor<'a>>(&'a self, visitor: &mut V) -> Result<SpanFields<'a>> {
        read_span::<true, V>(&self.bytes, visitor)
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
            scope_attributes: scope.attributes,
        });
        out.rows.reserve(spans.len());
        for span in spans {
            let mut check = Check { attributes: 0, links_valid: true };
            let fields = read_span::<false, _>(span, &mut check)?;
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Set {
    Span,
    Event,
    Link,
}

/// An attribute as read: a key and a scalar value, or a whole `KeyValue` message whose value is an array
/// or a key-value list.
pub enum Attribute<'a> {
    Scalar(&'a str, Scalar<'a>),
    Nested(&'a [u8]),
}

/// An attribute value that is stored as it is or as short text; arrays and key-value lists come whole
/// ([`Attribute::Nested`]).
#[derive(Debug, Clone, Copy)]
pub enum Scalar<'a> {
    Empty,
    Str(&'a str),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(&'a [u8]),
}

/// A span's own fields, borrowed from wherever the span is held.
#[derive(Debug, Clone, Copy)]
pub struct SpanFields<'a> {
    pub trace_id: &'a [u8],
    pub span_id: &'a [u8],
    pub parent_span_id: Option<&'a [u8]>,
    pub trace_state: &'a str,
    pub flags: u32,
    pub name: &'a str,
    /// The OTLP number (see [`crate::SpanKind`]), clamped to 0..=255.
    pub kind: u8,
    pub start_time_unix_nano: u64,
    pub end_time_unix_nano: u64,
    pub status_code: u8,
    pub status_message: &'a str,
    pub dropped: crate::Dropped,
}

/// Where the parts of a span go as it is read. A span's own fields are returned once it is read; its
/// events and links arrive after their attributes.
pub trait Visitor<'a> {
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
    fn attribute(&mut self, set: Set, _: Attribute<'a>) -> Result<()> {
        self.attributes += matches!(set, Set::Span) as u32;
        Ok(())
    }
    fn event(&mut self, _: u64, _: &'a str) {}
    fn link(&mut self, trace_id: &'a [u8], span_id: &'a [u8], _: &'a str, _: u32) {
        self.links_valid &= model::valid_id::<16>(trace_id) && model::valid_id::<8>(span_id);
    }
}

/// Reads a `Span` message: its attributes, events and links into `visitor`, its own fields returned.
/// `CHECKED`: whether [`scan`] checked the bytes already, so strings are taken as UTF-8 unchecked.
fn read_span<'a, const CHECKED: bool, V: Visitor<'a>>(bytes: &'a [u8], visitor: &mut V) -> Result<SpanFields<'a>> {
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
        dropped: crate::Dropped::default(),
    };
    for_each_field(bytes, |tag, value| {
        match tag {
            1 => span.trace_id = value.bytes()?,
            2 => span.span_id = value.bytes()?,
            3 => span.trace_state = value.text::<CHECKED>()?,
            4 => span.parent_span_id = Some(value.bytes()?).filter(|p| !p.is_empty()),
            5 => span.name = value.text::<CHECKED>()?,
            6 => span.kind = enumeration(value.varint()?),
            7 => span.start_time_unix_nano = value.fixed64()?,
            8 => span.end_time_unix_nano = value.fixed64()?,
            9 => visitor.attribute(Set::Span, key_value::<CHECKED>(value.bytes()?)?)?,
            11 => read_event::<CHECKED, V>(value.bytes()?, visitor)?,
            13 => read_link::<CHECKED, V>(value.bytes()?, visitor)?,
            10 => span.dropped.attributes = value.varint()? as u32,
            12 => span.dropped.events = value.varint()? as u32,
            14 => span.dropped.links = value.varint()? as u32,
            15 => for_each_field(value.bytes()?, |tag, value| {
                match tag {
                    2 => span.status_message = value.text::<CHECKED>()?,
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

fn read_event<'a, const CHECKED: bool, V: Visitor<'a>>(bytes: &'a [u8], visitor: &mut V) -> Result<()> {
    let (mut time, mut name) = (0, "");
    for_each_field(bytes, |tag, value| {
        match tag {
            1 => time = value.fixed64()?,
            2 => name = value.text::<CHECKED>()?,
            3 => visitor.attribute(Set::Event, key_value::<CHECKED>(value.bytes()?)?)?,
            4 => value.expect(WireType::Varint)?,
            _ => {}
        }
        Ok(())
    })?;
    visitor.event(time, name);
    Ok(())
}

fn read_link<'a, const CHECKED: bool, V: Visitor<'a>>(bytes: &'a [u8], visitor: &mut V) -> Result<()> {
    let (mut trace_id, mut span_id, mut trace_state, mut flags): (&[u8], &[u8], &str, u32) = (&[], &[], "", 0);
    for_each_field(bytes, |tag, value| {
        match tag {
            1 => trace_id = value.bytes()?,
            2 => span_id = value.bytes()?,
            3 => trace_state = value.text::<CHECKED>()?,
            4 => visitor.attribute(Set::Link, key_value::<CHECKED>(value.bytes()?)?)?,
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
fn key_value<'a, const CHECKED: bool>(bytes: &'a [u8]) -> Result<Attribute<'a>> {
    let (mut key, mut scalar, mut nested) = ("", Scalar::Empty, false);
    for_each_field(bytes, |tag, value| {
        match tag {
            1 => key = value.text::<CHECKED>()?,
            2 => for_each_field(value.bytes()?, |tag, value| {
                match tag {
                    1 => scalar = Scalar::Str(value.text::<CHECKED>()?),
                    2 => scalar = Scalar::Bool(value.varint()? != 0),
                    3 => scalar = Scalar::Int(value.varint()? as i64),
                    4 => scalar = Scalar::Double(f64::from_bits(value.fixed64()?)),
                    // Rare: checked by prost here and decoded by it at the flush.
                    5 | 6 => {
                        let bytes = value.bytes()?;
                        if !CHECKED {
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

    /// A string field: checked, or taken as it is when the bytes were checked already.
    fn text<const CHECKED: bool>(self) -> Result<&'a str> {
        if CHECKED {
            // SAFETY: only `WireSpan::read` reads with `CHECKED`, and a `WireSpan`'s bytes were all
            // checked by `scan` (this string included) and cannot change.
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
