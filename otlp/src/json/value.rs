//! Values, events and links as JSON values: the form the store keeps nested attribute values in (text)
//! and PostgreSQL keeps attributes, events and links in (jsonb). OTLP/JSON field names; int64 as a decimal
//! string; bytes, which are rare, as an array of numbers.

use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, ArrayValue, KeyValue, KeyValueList};
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use serde_json::{json, Map};

/// The value [`any_value_to_json`] encoded (and OTLP/JSON in general: `intValue` as a string or a number).
pub fn any_value_from_json(json: &serde_json::Value) -> AnyValue {
    let value = if let Some(s) = json.get("stringValue") {
        Some(Value::StringValue(s.as_str().unwrap_or_default().to_owned()))
    } else if let Some(b) = json.get("boolValue") {
        Some(Value::BoolValue(b.as_bool().unwrap_or_default()))
    } else if let Some(i) = json.get("intValue") {
        Some(Value::IntValue(i.as_str().and_then(|s| s.parse().ok()).or_else(|| i.as_i64()).unwrap_or_default()))
    } else if let Some(d) = json.get("doubleValue") {
        // NaN and the infinities have no JSON number; they were written as null.
        Some(Value::DoubleValue(d.as_f64().unwrap_or(f64::NAN)))
    } else if let Some(b) = json.get("bytesValue") {
        let bytes =
            b.as_array().map(|a| a.iter().filter_map(|x| x.as_u64()).map(|x| x as u8).collect()).unwrap_or_default();
        Some(Value::BytesValue(bytes))
    } else if let Some(i) = json.get("stringValueStrindex") {
        Some(Value::StringValueStrindex(i.as_i64().unwrap_or_default() as i32))
    } else if let Some(a) = json.get("arrayValue") {
        let values = a["values"].as_array().map(|v| v.iter().map(any_value_from_json).collect()).unwrap_or_default();
        Some(Value::ArrayValue(ArrayValue { values }))
    } else if let Some(kv) = json.get("kvlistValue") {
        let values = kv["values"]
            .as_array()
            .map(|v| {
                v.iter()
                    .map(|kv| KeyValue {
                        key: kv["key"].as_str().unwrap_or_default().to_owned(),
                        value: Some(any_value_from_json(&kv["value"])),
                        ..Default::default()
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(Value::KvlistValue(KeyValueList { values }))
    } else {
        None
    };
    AnyValue { value }
}

/// The OTLP/JSON encoding of a value (int64 as a decimal string; bytes nested in arrays, which are rare,
/// as an array of numbers).
pub fn any_value_to_json(value: &AnyValue) -> serde_json::Value {
    match &value.value {
        None => json!({}),
        Some(Value::StringValue(s)) => json!({ "stringValue": s }),
        Some(Value::BoolValue(b)) => json!({ "boolValue": b }),
        Some(Value::IntValue(i)) => json!({ "intValue": i.to_string() }),
        Some(Value::DoubleValue(d)) => json!({ "doubleValue": d }),
        Some(Value::BytesValue(b)) => json!({ "bytesValue": b }),
        Some(Value::StringValueStrindex(i)) => json!({ "stringValueStrindex": i }),
        Some(Value::ArrayValue(a)) => {
            json!({ "arrayValue": { "values": a.values.iter().map(any_value_to_json).collect::<Vec<_>>() } })
        }
        Some(Value::KvlistValue(kv)) => json!({ "kvlistValue": { "values": kv.values.iter().map(|kv| json!({
            "key": kv.key,
            "value": kv.value.as_ref().map(any_value_to_json).unwrap_or_else(|| json!({})),
        })).collect::<Vec<_>>() } }),
    }
}

/// Attributes as a JSON object of values, in the order given (a later duplicate key wins).
pub fn attributes_to_json(attributes: &[KeyValue]) -> serde_json::Value {
    let mut map = Map::new();
    for kv in attributes {
        map.insert(kv.key.clone(), kv.value.as_ref().map(any_value_to_json).unwrap_or_else(|| json!({})));
    }
    serde_json::Value::Object(map)
}

/// The attributes [`attributes_to_json`] encoded.
pub fn attributes_from_json(value: &serde_json::Value) -> Vec<KeyValue> {
    value
        .as_object()
        .map(|map| {
            map.iter()
                .map(|(k, v)| KeyValue { key: k.clone(), value: Some(any_value_from_json(v)), ..Default::default() })
                .collect()
        })
        .unwrap_or_default()
}

pub fn event_to_json(e: &Event) -> serde_json::Value {
    json!({"timeUnixNano": e.time_unix_nano.to_string(), "name": e.name, "attributes": attributes_to_json(&e.attributes)})
}

/// The event [`event_to_json`] encoded.
pub fn event_from_json(e: &serde_json::Value) -> Event {
    Event {
        time_unix_nano: e["timeUnixNano"].as_str().and_then(|t| t.parse().ok()).unwrap_or_default(),
        name: e["name"].as_str().unwrap_or_default().to_owned(),
        attributes: attributes_from_json(&e["attributes"]),
        dropped_attributes_count: 0,
    }
}

pub fn link_to_json(l: &Link) -> serde_json::Value {
    json!({
        "traceId": hex::encode(&l.trace_id),
        "spanId": hex::encode(&l.span_id),
        "traceState": l.trace_state,
        "flags": l.flags,
        "attributes": attributes_to_json(&l.attributes),
    })
}

/// The link [`link_to_json`] encoded.
pub fn link_from_json(l: &serde_json::Value) -> Link {
    Link {
        trace_id: hex::decode(l["traceId"].as_str().unwrap_or_default()).unwrap_or_default(),
        span_id: hex::decode(l["spanId"].as_str().unwrap_or_default()).unwrap_or_default(),
        trace_state: l["traceState"].as_str().unwrap_or_default().to_owned(),
        attributes: attributes_from_json(&l["attributes"]),
        dropped_attributes_count: 0,
        flags: l["flags"].as_u64().unwrap_or_default() as u32,
    }
}
