//! The flush's path: spans still in their request's bytes read straight into the column builders.

use hoptrace_otlp::wire::{Attribute, Set, Visitor, WireError, WireSpan};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use polars::prelude::{polars_err, DataFrame, PolarsResult};
use prost::Message;

use super::{AttributeLists, SpanColumns};

/// Builds the segment frame of `spans`, in their order.
pub fn from_wire(spans: &[&WireSpan]) -> PolarsResult<DataFrame> {
    let attributes = spans.iter().map(|s| s.attribute_count()).sum();
    let resource_attributes = spans.iter().map(|s| s.origin().resource_attributes.len()).sum();
    let mut columns = SpanColumns::with_capacity(spans.len(), attributes, resource_attributes);
    for s in spans {
        let fields = s
            .read(&mut columns)
            .map_err(|e| polars_err!(ComputeError: "a span accepted earlier no longer reads: {e}"))?;
        columns.push_span(&fields, s.origin());
    }
    columns.finish()
}

/// Everything into the column builders.
impl<'a> Visitor<'a> for SpanColumns {
    fn attribute(&mut self, set: Set, attribute: Attribute<'a>) -> Result<(), WireError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use hoptrace_otlp::wire::scan;
    use hoptrace_otlp::{convert, Rejection};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, InstrumentationScope, KeyValueList};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
    use proptest::prelude::*;
    use prost::encoding::WireType;

    /// What prost and `convert` make of `bytes`: the frame and the rejections, or that it fails.
    fn by_prost(bytes: &[u8]) -> Option<(DataFrame, Vec<Rejection>)> {
        let request = ExportTraceServiceRequest::decode(bytes).ok()?;
        let conversion = convert(request);
        Some((crate::to_frame(&conversion.rows).unwrap(), conversion.rejected))
    }

    /// What this module makes of `bytes`.
    fn by_wire(bytes: &[u8]) -> Option<(DataFrame, Vec<Rejection>)> {
        let bytes = Bytes::copy_from_slice(bytes);
        let scanned = scan(&bytes).ok()?;
        let spans: Vec<&WireSpan> = scanned.rows.iter().collect();
        Some((from_wire(&spans).unwrap(), scanned.rejected))
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
            kvs.into_iter()
                .map(|(key, value)| KeyValue {
                    key,
                    value: value.map(|v| AnyValue { value: Some(v) }),
                    ..Default::default()
                })
                .collect()
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
        let event = (any::<u64>(), "[a-z ]{0,10}", attributes()).prop_map(|(time_unix_nano, name, attributes)| Event {
            time_unix_nano,
            name,
            attributes,
            ..Default::default()
        });
        let link = (id(16), id(8), "[a-z=,]{0,8}", attributes(), any::<u32>()).prop_map(
            |(trace_id, span_id, trace_state, attributes, flags)| Link {
                trace_id,
                span_id,
                trace_state,
                attributes,
                flags,
                ..Default::default()
            },
        );
        (
            (
                id(16),
                id(8),
                prop_oneof![Just(Vec::new()), id(8)],
                "[a-z=,]{0,8}",
                any::<u32>(),
                "[a-zA-Z /_]{0,20}",
                -2i32..300,
            ),
            (
                any::<u64>(),
                any::<u64>(),
                attributes(),
                proptest::collection::vec(event, 0..3),
                proptest::collection::vec(link, 0..3),
            ),
            proptest::option::of(("[a-z ]{0,10}", -1i32..4)),
            (0u32..3, 0u32..200, 0u32..3),
        )
            .prop_map(
                |(
                    (trace_id, span_id, parent_span_id, trace_state, flags, name, kind),
                    (start, end, attributes, events, links),
                    status,
                    (dropped_attributes_count, dropped_events_count, dropped_links_count),
                )| Span {
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
                    dropped_attributes_count,
                    dropped_events_count,
                    dropped_links_count,
                },
            )
    }

    fn request() -> impl Strategy<Value = ExportTraceServiceRequest> {
        let scope = (
            proptest::option::of(("[a-z]{0,6}", "[0-9.]{0,4}", attributes())),
            proptest::collection::vec(span(), 0..4),
        )
            .prop_map(|(scope, spans)| ScopeSpans {
                scope: scope.map(|(name, version, attributes)| InstrumentationScope {
                    name,
                    version,
                    attributes,
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            });
        let resource = (proptest::option::of(attributes()), proptest::collection::vec(scope, 0..3)).prop_map(
            |(attributes, scope_spans)| ResourceSpans {
                resource: attributes.map(|mut attributes| {
                    attributes.push(kv("service.name", any_value::Value::StringValue("svc".into())));
                    Resource { attributes, ..Default::default() }
                }),
                scope_spans,
                ..Default::default()
            },
        );
        proptest::collection::vec(resource, 0..3)
            .prop_map(|resource_spans| ExportTraceServiceRequest { resource_spans })
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
            .map(|i| Span {
                trace_id: vec![i; 16],
                span_id: vec![i; 8],
                start_time_unix_nano: u64::from(i),
                ..Default::default()
            })
            .collect();
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans { spans: spans.clone(), ..Default::default() }],
                ..Default::default()
            }],
        };
        let bytes = Bytes::from(request.encode_to_vec());
        let scanned = scan(&bytes).unwrap();
        assert_eq!(
            scanned.rows.iter().map(|s| s.key()).collect::<Vec<_>>(),
            (1..=3u8).map(|i| ([i; 16], [i; 8])).collect::<Vec<_>>()
        );
        for (wire, span) in scanned.rows.iter().zip(&spans) {
            assert_eq!(wire.bytes(), &span.encode_to_vec());
            assert_eq!(wire.start_time_unix_nano, span.start_time_unix_nano);
        }
    }
}
