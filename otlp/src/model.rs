//! The span model between OTLP and the columnar segments: one [`SpanRow`] per accepted span.
//!
//! Conversion from prost's decoding of a request lives here, together with the id rules that the wire
//! reader ([`crate::wire`]) applies too: every path from bytes to stored spans accepts the same spans.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, KeyValue};
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};

pub type TraceId = [u8; 16];
pub type SpanId = [u8; 8];

/// The dedup key of a span: (trace id, span id).
pub type SpanKey = (TraceId, SpanId);

/// What a resource and its instrumentation scope say about every span under them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Origin {
    pub service_name: String,
    pub resource_attributes: Vec<KeyValue>,
    pub scope_name: String,
    pub scope_version: String,
    pub scope_attributes: Vec<KeyValue>,
}

/// How many attributes, events and links the sender's SDK dropped from a span at its limits (OTLP's
/// `dropped_*_count`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    pub attributes: u32,
    pub events: u32,
    pub links: u32,
}

/// One span, owning the parts moved out of the decoded OTLP message.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRow {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_span_id: Option<SpanId>,
    pub trace_state: String,
    pub flags: u32,
    pub name: String,
    pub kind: u8,
    pub start_time_unix_nano: u64,
    pub end_time_unix_nano: u64,
    pub status_code: u8,
    pub status_message: String,
    pub attributes: Vec<KeyValue>,
    pub events: Vec<Event>,
    pub links: Vec<Link>,
    pub dropped: Dropped,
    pub origin: Arc<Origin>,
}

impl SpanRow {
    pub fn key(&self) -> SpanKey {
        (self.trace_id, self.span_id)
    }
}

/// Why a span was rejected. Rejected spans are counted in OTLP `partial_success`; the rest are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    InvalidTraceId,
    InvalidSpanId,
    InvalidParentSpanId,
    InvalidLink,
}

impl Rejection {
    pub fn describe(self) -> &'static str {
        match self {
            Rejection::InvalidTraceId => "trace_id must be 16 bytes and not all zero",
            Rejection::InvalidSpanId => "span_id must be 8 bytes and not all zero",
            Rejection::InvalidParentSpanId => "parent_span_id must be empty or 8 bytes and not all zero",
            Rejection::InvalidLink => "a link's trace_id/span_id must be 16/8 bytes and not all zero",
        }
    }
}

/// The outcome of converting one OTLP request: accepted rows in request order, and the rejections.
#[derive(Debug)]
pub struct Conversion<R = SpanRow> {
    pub rows: Vec<R>,
    pub rejected: Vec<Rejection>,
}

impl<R> Default for Conversion<R> {
    fn default() -> Self {
        Conversion { rows: Vec::new(), rejected: Vec::new() }
    }
}

impl Rejection {
    /// The `partial_success.error_message` for a request's rejections, if there are any.
    pub fn message(rejected: &[Rejection]) -> Option<String> {
        let first = rejected.first()?;
        Some(format!("{} span(s) rejected: {} (first reason shown)", rejected.len(), first.describe()))
    }
}

fn id<const N: usize>(bytes: &[u8]) -> Option<[u8; N]> {
    let id: [u8; N] = bytes.try_into().ok()?;
    (id != [0u8; N]).then_some(id)
}

/// Whether `bytes` is an id of `N` bytes that are not all zero.
pub fn valid_id<const N: usize>(bytes: &[u8]) -> bool {
    id::<N>(bytes).is_some()
}

/// The rules for a span's ids: its trace and span id, an empty or valid parent, valid link ids.
pub fn accept(
    trace_id: &[u8],
    span_id: &[u8],
    parent_span_id: Option<&[u8]>,
    links_valid: bool,
) -> Result<(TraceId, SpanId, Option<SpanId>), Rejection> {
    let trace_id = id::<16>(trace_id).ok_or(Rejection::InvalidTraceId)?;
    let span_id = id::<8>(span_id).ok_or(Rejection::InvalidSpanId)?;
    let parent_span_id = match parent_span_id.filter(|p| !p.is_empty()) {
        None => None,
        Some(parent) => Some(id::<8>(parent).ok_or(Rejection::InvalidParentSpanId)?),
    };
    if !links_valid {
        return Err(Rejection::InvalidLink);
    }
    Ok((trace_id, span_id, parent_span_id))
}

/// The `service.name` resource attribute, or OTLP's `unknown_service`.
pub fn service_name(resource_attributes: &[KeyValue]) -> String {
    resource_attributes
        .iter()
        .find(|kv| kv.key == crate::SERVICE_NAME)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_else(|| crate::UNKNOWN_SERVICE.to_owned())
}

/// Converts a decoded request into rows, moving strings and attributes out of it (no copies).
pub fn convert(request: ExportTraceServiceRequest) -> Conversion {
    let mut out = Conversion::default();
    for resource_spans in request.resource_spans {
        let resource_attributes = resource_spans.resource.map(|r| r.attributes).unwrap_or_default();
        let service_name = service_name(&resource_attributes);
        for scope_spans in resource_spans.scope_spans {
            let scope = scope_spans.scope.unwrap_or_default();
            let origin = Arc::new(Origin {
                service_name: service_name.clone(),
                resource_attributes: resource_attributes.clone(),
                scope_name: scope.name,
                scope_version: scope.version,
                scope_attributes: scope.attributes,
            });
            out.rows.reserve(scope_spans.spans.len());
            for span in scope_spans.spans {
                match convert_span(span, &origin) {
                    Ok(row) => out.rows.push(row),
                    Err(rejection) => out.rejected.push(rejection),
                }
            }
        }
    }
    out
}

fn convert_span(span: opentelemetry_proto::tonic::trace::v1::Span, origin: &Arc<Origin>) -> Result<SpanRow, Rejection> {
    let links_valid = span.links.iter().all(|l| valid_id::<16>(&l.trace_id) && valid_id::<8>(&l.span_id));
    let (trace_id, span_id, parent_span_id) =
        accept(&span.trace_id, &span.span_id, Some(&span.parent_span_id), links_valid)?;
    let status = span.status.unwrap_or_default();
    Ok(SpanRow {
        trace_id,
        span_id,
        parent_span_id,
        trace_state: span.trace_state,
        flags: span.flags,
        name: span.name,
        kind: span.kind.clamp(0, 255) as u8,
        start_time_unix_nano: span.start_time_unix_nano,
        end_time_unix_nano: span.end_time_unix_nano,
        status_code: status.code.clamp(0, 255) as u8,
        status_message: status.message,
        attributes: span.attributes,
        events: span.events,
        links: span.links,
        dropped: Dropped {
            attributes: span.dropped_attributes_count,
            events: span.dropped_events_count,
            links: span.dropped_links_count,
        },
        origin: Arc::clone(origin),
    })
}
