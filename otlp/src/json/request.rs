//! OTLP/JSON requests → the protobuf types, as the OTLP specification defines the JSON encoding: lowerCamelCase keys,
//! trace and span ids as hex strings, enums as integers, 64-bit integers as decimal strings (numbers are
//! accepted too), `bytesValue` as base64, and unknown fields ignored.

use base64::Engine;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1 as common;
use opentelemetry_proto::tonic::resource::v1::Resource as PbResource;
use opentelemetry_proto::tonic::trace::v1 as trace;
use serde::de::{self, Deserializer};
use serde::Deserialize;

use crate::{SpanKind, StatusCode};

/// Parses an OTLP/JSON `ExportTraceServiceRequest`. The error names the JSON path and line when it can.
pub fn decode(body: &[u8]) -> Result<ExportTraceServiceRequest, String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let request: Request = Request::deserialize(&mut de).map_err(|e| format!("invalid OTLP/JSON: {e}"))?;
    de.end().map_err(|e| format!("invalid OTLP/JSON: trailing data: {e}"))?;
    Ok(request.into())
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Request {
    resource_spans: Vec<ResourceSpans>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ResourceSpans {
    resource: Option<Resource>,
    scope_spans: Vec<ScopeSpans>,
    schema_url: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Resource {
    attributes: Vec<KeyValue>,
    #[serde(deserialize_with = "uint")]
    dropped_attributes_count: u64,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ScopeSpans {
    scope: Option<Scope>,
    spans: Vec<Span>,
    schema_url: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Scope {
    name: String,
    version: String,
    attributes: Vec<KeyValue>,
    #[serde(deserialize_with = "uint")]
    dropped_attributes_count: u64,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Span {
    #[serde(deserialize_with = "hex_id")]
    trace_id: Vec<u8>,
    #[serde(deserialize_with = "hex_id")]
    span_id: Vec<u8>,
    trace_state: String,
    #[serde(deserialize_with = "hex_id")]
    parent_span_id: Vec<u8>,
    #[serde(deserialize_with = "uint")]
    flags: u64,
    name: String,
    #[serde(deserialize_with = "span_kind")]
    kind: i32,
    #[serde(deserialize_with = "uint")]
    start_time_unix_nano: u64,
    #[serde(deserialize_with = "uint")]
    end_time_unix_nano: u64,
    attributes: Vec<KeyValue>,
    #[serde(deserialize_with = "uint")]
    dropped_attributes_count: u64,
    events: Vec<Event>,
    #[serde(deserialize_with = "uint")]
    dropped_events_count: u64,
    links: Vec<Link>,
    #[serde(deserialize_with = "uint")]
    dropped_links_count: u64,
    status: Option<Status>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Event {
    #[serde(deserialize_with = "uint")]
    time_unix_nano: u64,
    name: String,
    attributes: Vec<KeyValue>,
    #[serde(deserialize_with = "uint")]
    dropped_attributes_count: u64,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Link {
    #[serde(deserialize_with = "hex_id")]
    trace_id: Vec<u8>,
    #[serde(deserialize_with = "hex_id")]
    span_id: Vec<u8>,
    trace_state: String,
    attributes: Vec<KeyValue>,
    #[serde(deserialize_with = "uint")]
    dropped_attributes_count: u64,
    #[serde(deserialize_with = "uint")]
    flags: u64,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Status {
    message: String,
    #[serde(deserialize_with = "status_code")]
    code: i32,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct KeyValue {
    key: String,
    value: Option<AnyValue>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct AnyValue {
    string_value: Option<String>,
    bool_value: Option<bool>,
    #[serde(deserialize_with = "opt_int")]
    int_value: Option<i64>,
    #[serde(deserialize_with = "opt_double")]
    double_value: Option<f64>,
    array_value: Option<ArrayValue>,
    kvlist_value: Option<KvList>,
    #[serde(deserialize_with = "opt_base64")]
    bytes_value: Option<Vec<u8>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ArrayValue {
    values: Vec<AnyValue>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct KvList {
    values: Vec<KeyValue>,
}

/// A 64-bit unsigned integer: a decimal string per the specification, or a JSON number.
#[derive(Deserialize)]
#[serde(untagged)]
enum StrOrNum<T> {
    Num(T),
    Str(String),
}

fn uint<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match Option::<StrOrNum<u64>>::deserialize(d)? {
        None => Ok(0),
        Some(StrOrNum::Num(n)) => Ok(n),
        Some(StrOrNum::Str(s)) => s.parse().map_err(|_| de::Error::custom(format!("{s:?} is not an unsigned integer"))),
    }
}

fn opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Option::<StrOrNum<i64>>::deserialize(d)? {
        None => Ok(None),
        Some(StrOrNum::Num(n)) => Ok(Some(n)),
        Some(StrOrNum::Str(s)) => {
            s.parse().map(Some).map_err(|_| de::Error::custom(format!("{s:?} is not an integer")))
        }
    }
}

fn opt_double<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    match Option::<StrOrNum<f64>>::deserialize(d)? {
        None => Ok(None),
        Some(StrOrNum::Num(n)) => Ok(Some(n)),
        Some(StrOrNum::Str(s)) => match s.as_str() {
            "NaN" => Ok(Some(f64::NAN)),
            "Infinity" => Ok(Some(f64::INFINITY)),
            "-Infinity" => Ok(Some(f64::NEG_INFINITY)),
            _ => s.parse().map(Some).map_err(|_| de::Error::custom(format!("{s:?} is not a number"))),
        },
    }
}

fn opt_base64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
    let Some(s) = Option::<String>::deserialize(d)? else { return Ok(None) };
    base64::engine::general_purpose::STANDARD
        .decode(s.as_bytes())
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(s.as_bytes()))
        .map(Some)
        .map_err(|_| de::Error::custom("bytesValue is not base64"))
}

/// Trace and span ids are hex in OTLP/JSON (not base64 as in the generic protobuf JSON mapping).
fn hex_id<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let s = Option::<String>::deserialize(d)?.unwrap_or_default();
    hex::decode(&s).map_err(|_| de::Error::custom(format!("id {s:?} is not a hex string")))
}

/// An enum given as its number or as its name in the specification (`SPAN_KIND_SERVER`).
fn enum_value<'de, D: Deserializer<'de>>(d: D, by_name: impl Fn(&str) -> Option<u8>) -> Result<i32, D::Error> {
    match Option::<StrOrNum<i32>>::deserialize(d)? {
        None => Ok(0),
        Some(StrOrNum::Num(n)) => Ok(n),
        Some(StrOrNum::Str(s)) => {
            by_name(&s).map(i32::from).ok_or_else(|| de::Error::custom(format!("unknown enum value {s:?}")))
        }
    }
}

fn span_kind<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    enum_value(d, |name| (0..=5).map(SpanKind::from_code).find(|k| k.otlp_name() == name).map(SpanKind::code))
}

fn status_code<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    enum_value(d, |name| (0..=2).find(|&c| StatusCode::from_code(c).otlp_name() == name))
}

fn clamp_u32(n: u64) -> u32 {
    n.min(u32::MAX as u64) as u32
}

impl From<Request> for ExportTraceServiceRequest {
    fn from(r: Request) -> Self {
        ExportTraceServiceRequest { resource_spans: r.resource_spans.into_iter().map(Into::into).collect() }
    }
}

impl From<ResourceSpans> for trace::ResourceSpans {
    fn from(r: ResourceSpans) -> Self {
        trace::ResourceSpans {
            resource: r.resource.map(|r| PbResource {
                attributes: kvs(r.attributes),
                dropped_attributes_count: clamp_u32(r.dropped_attributes_count),
                entity_refs: Vec::new(),
            }),
            scope_spans: r.scope_spans.into_iter().map(Into::into).collect(),
            schema_url: r.schema_url,
        }
    }
}

impl From<ScopeSpans> for trace::ScopeSpans {
    fn from(s: ScopeSpans) -> Self {
        trace::ScopeSpans {
            scope: s.scope.map(|s| common::InstrumentationScope {
                name: s.name,
                version: s.version,
                attributes: kvs(s.attributes),
                dropped_attributes_count: clamp_u32(s.dropped_attributes_count),
            }),
            spans: s.spans.into_iter().map(Into::into).collect(),
            schema_url: s.schema_url,
        }
    }
}

impl From<Span> for trace::Span {
    fn from(s: Span) -> Self {
        trace::Span {
            trace_id: s.trace_id,
            span_id: s.span_id,
            trace_state: s.trace_state,
            parent_span_id: s.parent_span_id,
            flags: clamp_u32(s.flags),
            name: s.name,
            kind: s.kind,
            start_time_unix_nano: s.start_time_unix_nano,
            end_time_unix_nano: s.end_time_unix_nano,
            attributes: kvs(s.attributes),
            dropped_attributes_count: clamp_u32(s.dropped_attributes_count),
            events: s
                .events
                .into_iter()
                .map(|e| trace::span::Event {
                    time_unix_nano: e.time_unix_nano,
                    name: e.name,
                    attributes: kvs(e.attributes),
                    dropped_attributes_count: clamp_u32(e.dropped_attributes_count),
                })
                .collect(),
            dropped_events_count: clamp_u32(s.dropped_events_count),
            links: s
                .links
                .into_iter()
                .map(|l| trace::span::Link {
                    trace_id: l.trace_id,
                    span_id: l.span_id,
                    trace_state: l.trace_state,
                    attributes: kvs(l.attributes),
                    dropped_attributes_count: clamp_u32(l.dropped_attributes_count),
                    flags: clamp_u32(l.flags),
                })
                .collect(),
            dropped_links_count: clamp_u32(s.dropped_links_count),
            status: s.status.map(|st| trace::Status { message: st.message, code: st.code }),
        }
    }
}

fn kvs(list: Vec<KeyValue>) -> Vec<common::KeyValue> {
    list.into_iter()
        .map(|kv| common::KeyValue { key: kv.key, value: kv.value.map(any), ..Default::default() })
        .collect()
}

fn any(v: AnyValue) -> common::AnyValue {
    use common::any_value::Value;
    let value = if let Some(s) = v.string_value {
        Some(Value::StringValue(s))
    } else if let Some(b) = v.bool_value {
        Some(Value::BoolValue(b))
    } else if let Some(i) = v.int_value {
        Some(Value::IntValue(i))
    } else if let Some(d) = v.double_value {
        Some(Value::DoubleValue(d))
    } else if let Some(a) = v.array_value {
        Some(Value::ArrayValue(common::ArrayValue { values: a.values.into_iter().map(any).collect() }))
    } else if let Some(kv) = v.kvlist_value {
        Some(Value::KvlistValue(common::KeyValueList { values: kvs(kv.values) }))
    } else {
        v.bytes_value.map(Value::BytesValue)
    };
    common::AnyValue { value }
}
