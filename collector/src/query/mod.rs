//! The Jaeger query API, served from the store: the HTTP endpoints the Jaeger UI and Grafana's Jaeger data
//! source call, in both of Jaeger's dialects — v1 (`/api/services`, `/api/traces`, … with Jaeger's JSON,
//! [`v1`]) and v3 (`/api/v3/…` with OTLP/JSON, [`v3`]). Answers are gzipped when the client accepts it.
//! Spans appear once they are in a segment, so at most one flush interval after they were acknowledged.
//! With bearer tokens configured ([`crate::auth`]), every endpoint asks for one.

mod gzip;
mod v1;
mod v3;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine;
use hoptrace_otlp::SpanKind;
use hoptrace_store::read::query::Result as ReadResult;
use hoptrace_store::read::Catalog;
use hoptrace_store::Location;
use serde_json::Value;

use crate::auth::Tokens;

/// A search without a limit returns at most this many traces.
const DEFAULT_LIMIT: usize = 100;

pub fn router(store: Location, tokens: Option<Tokens>) -> Router {
    let routes = v1::routes().merge(v3::routes());
    let routes = match tokens {
        Some(tokens) => routes.route_layer(axum::middleware::from_fn_with_state(tokens, authenticate)),
        None => routes,
    };
    routes.layer(axum::middleware::from_fn(gzip::compress)).with_state(Arc::new(Catalog::new(store)))
}

/// 401 in the envelope of the dialect asked, unless the request bears an accepted token.
async fn authenticate(State(tokens): State<Tokens>, request: Request, next: Next) -> Response {
    let Err(denied) = tokens.admit(request.headers()) else { return next.run(request).await };
    let error = QueryError { status: StatusCode::UNAUTHORIZED, message: denied.to_string() };
    let mut response = match request.uri().path().starts_with("/api/v3/") {
        true => v3::V3Error(error).into_response(),
        false => v1::V1Error(error).into_response(),
    };
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

type Store = State<Arc<Catalog>>;

/// A failed query: its HTTP status and message. Each dialect answers it in its own envelope.
#[derive(Debug)]
struct QueryError {
    status: StatusCode,
    message: String,
}

fn bad_request(message: impl Into<String>) -> QueryError {
    QueryError { status: StatusCode::BAD_REQUEST, message: message.into() }
}

fn not_found(message: impl Into<String>) -> QueryError {
    QueryError { status: StatusCode::NOT_FOUND, message: message.into() }
}

/// Runs a store read off the async runtime.
async fn read<T: Send + 'static>(
    store: Arc<Catalog>,
    f: impl FnOnce(&Catalog) -> ReadResult<T> + Send + 'static,
) -> Result<T, QueryError> {
    let internal = |message: String| QueryError { status: StatusCode::INTERNAL_SERVER_ERROR, message };
    tokio::task::spawn_blocking(move || f(&store)).await.map_err(|e| internal(e.to_string()))?.map_err(internal)
}

/// Query parameters in order; a key may repeat (`tag=a:1&tag=b:2`).
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(query: Option<String>) -> Result<Params, QueryError> {
        let pairs = serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
            .map_err(|e| bad_request(format!("malformed query string: {e}")))?;
        Ok(Params(pairs))
    }

    /// The value of `key`; an empty value counts as absent.
    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, v)| k == key && !v.is_empty()).map(|(_, v)| v.as_str())
    }

    fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> {
        self.0.iter().filter(move |(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn required(&self, key: &str) -> Result<&str, QueryError> {
        self.get(key).ok_or_else(|| bad_request(format!("parameter '{key}' is required")))
    }

    /// The first of `names` given (a parameter and its aliases, canonical name first), with the name used.
    fn any_of<'a>(&'a self, names: &[&'a str]) -> Option<(&'a str, &'a str)> {
        names.iter().find_map(|&name| Some((name, self.get(name)?)))
    }
}

/// The span kind named by the first of `names` given (`server`, …), or `None` for any kind.
fn span_kind(params: &Params, names: &[&str]) -> Result<Option<SpanKind>, QueryError> {
    let Some((name, value)) = params.any_of(names) else { return Ok(None) };
    let kind = SpanKind::from_name(&value.to_ascii_lowercase())
        .ok_or_else(|| bad_request(format!("malformed parameter {name}: unknown span kind {value:?}")))?;
    Ok(Some(kind))
}

/// Tags as a JSON object (v1's `tags`, v3's `query.attributes`), each value as text: strings as they are,
/// numbers and booleans as JSON writes them (`123`, `72.5`, `true`), which is how stored values read.
fn tags_from_json(name: &str, json: &str) -> Result<Vec<(String, String)>, QueryError> {
    let map: serde_json::Map<String, Value> = serde_json::from_str(json)
        .map_err(|e| bad_request(format!("malformed parameter {name}: not a JSON object of strings: {e}")))?;
    map.into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            Value::Number(_) | Value::Bool(_) => Ok((k, v.to_string())),
            other => Err(bad_request(format!("malformed parameter {name}: {k} is {other}, not a string"))),
        })
        .collect()
}

/// A trace id: hex, up to 32 digits (shorter ids are zero-padded on the left, as Jaeger does), or the 16
/// bytes in base64 (as protobuf's JSON writes bytes).
fn parse_trace_id(text: &str) -> Result<[u8; 16], QueryError> {
    let invalid = || bad_request(format!("{text:?} is not a trace id (up to 32 hex digits, or 16 bytes in base64)"));
    if text.is_empty() {
        return Err(invalid());
    }
    let mut id = [0u8; 16];
    if text.len() <= 32 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode_to_slice(format!("{text:0>32}"), &mut id).map_err(|_| invalid())?;
        return Ok(id);
    }
    let engines = [&base64::engine::general_purpose::STANDARD, &base64::engine::general_purpose::URL_SAFE];
    let bytes = engines.iter().find_map(|e| e.decode(text).ok()).ok_or_else(invalid)?;
    id = bytes.try_into().map_err(|_| invalid())?;
    Ok(id)
}

/// A Go duration as Jaeger's `minDuration`/`maxDuration` use: `500us`, `1.5ms`, `2s`, `1m30s`; in nanoseconds.
pub fn parse_go_duration(text: &str) -> Result<u64, String> {
    let invalid = || format!("{text:?} is not a duration such as \"1.5ms\" or \"2s\"");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| !c.is_ascii_digit() && c != '.').ok_or_else(invalid)?;
        let number: f64 = rest[..number_end].parse().map_err(|_| invalid())?;
        rest = &rest[number_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(invalid()),
        };
        total += number * scale;
        rest = &rest[unit_end..];
    }
    Ok(total.round() as u64)
}

/// Times given below this are milliseconds: as microseconds they would fall before 1973-03-03, as
/// milliseconds before 5138, so no span's time is read in the wrong unit.
const MILLIS_BELOW: u64 = 100_000_000_000_000;

/// `value` microseconds since the epoch, or milliseconds when it is below [`MILLIS_BELOW`], in nanoseconds.
fn since_epoch_nanos(value: u64) -> u64 {
    if value < MILLIS_BELOW {
        value.saturating_mul(1_000_000)
    } else {
        value.saturating_mul(1_000)
    }
}

fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1.5ms"), Ok(1_500_000));
        assert_eq!(parse_go_duration("500us"), Ok(500_000));
        assert_eq!(parse_go_duration("1m30s"), Ok(90_000_000_000));
        assert_eq!(parse_go_duration("7ns"), Ok(7));
        assert!(parse_go_duration("5").is_err());
        assert!(parse_go_duration("fast").is_err());
        assert!(parse_go_duration("").is_err());
    }

    #[test]
    fn times_are_microseconds_or_grafanas_milliseconds() {
        // 2026-11-30T00:00:00Z in each unit.
        assert_eq!(since_epoch_nanos(1_764_460_800_000_000), 1_764_460_800_000_000_000);
        assert_eq!(since_epoch_nanos(1_764_460_800_000), 1_764_460_800_000_000_000);
        assert_eq!(since_epoch_nanos(0), 0);
    }

    #[test]
    fn trace_ids_are_padded_and_checked() {
        assert_eq!(
            parse_trace_id("ff").ok(),
            Some({
                let mut id = [0; 16];
                id[15] = 0xff;
                id
            })
        );
        assert!(parse_trace_id("xyz").is_err());
        // Protobuf's JSON form of the same 16 bytes.
        assert_eq!(parse_trace_id("AAAAAAAAAAAAAAAAAAAA/w==").ok(), parse_trace_id("ff").ok());
        assert!(parse_trace_id("AAA=").is_err(), "two bytes are no trace id");
        assert!(parse_trace_id(&"a".repeat(33)).is_err());
    }
}
