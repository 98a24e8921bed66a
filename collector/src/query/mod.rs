//! The Jaeger query API, served from the store: the HTTP endpoints Grafana's Jaeger data source and the
//! Jaeger UI call (`/api/services`, operations, trace search, one trace, dependencies), with Jaeger's JSON.
//! Spans appear once they are in a segment, so at most one flush interval after they were acknowledged.

pub mod jaeger;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hoptrace_otlp::SpanKind;
use hoptrace_store::read::query::{self as search, Search};
use hoptrace_store::{Location, TimeRange};
use serde_json::{json, Value};

/// Without `start`, a search looks this far back from `end`.
const DEFAULT_LOOKBACK: Duration = Duration::from_secs(3600);
/// Without `lookback`, the dependency graph covers this much time before `endTs`.
const DEFAULT_DEPENDENCY_LOOKBACK: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_LIMIT: usize = 100;

pub fn router(store: Location) -> Router {
    Router::new()
        .route("/api/services", get(services))
        .route("/api/services/{service}/operations", get(service_operations))
        .route("/api/operations", get(operations))
        .route("/api/traces", get(find_traces))
        .route("/api/traces/{trace_id}", get(trace))
        .route("/api/dependencies", get(dependencies))
        .with_state(Arc::new(store))
}

type Store = State<Arc<Location>>;

/// A failed query, answered in Jaeger's error envelope.
struct QueryError(StatusCode, String);

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        (self.0, Json(jaeger::error(self.0.as_u16(), &self.1))).into_response()
    }
}

fn bad_request(msg: impl Into<String>) -> QueryError {
    QueryError(StatusCode::BAD_REQUEST, msg.into())
}

/// Runs a store read off the async runtime.
async fn read<T: Send + 'static>(
    store: Arc<Location>,
    f: impl FnOnce(&Location) -> search::Result<T> + Send + 'static,
) -> Result<T, QueryError> {
    let internal = |msg: String| QueryError(StatusCode::INTERNAL_SERVER_ERROR, msg);
    tokio::task::spawn_blocking(move || f(&store)).await.map_err(|e| internal(e.to_string()))?.map_err(internal)
}

fn list(values: Vec<Value>) -> Json<Value> {
    let total = values.len();
    Json(jaeger::envelope(Value::Array(values), total))
}

async fn services(State(store): Store) -> Result<Json<Value>, QueryError> {
    let names = read(store, search::services).await?;
    Ok(list(names.into_iter().map(Value::from).collect()))
}

async fn service_operations(State(store): Store, Path(service): Path<String>) -> Result<Json<Value>, QueryError> {
    let ops = read(store, move |dir| search::operations(dir, &service, None)).await?;
    let mut names: Vec<String> = ops.into_iter().map(|(name, _)| name).collect();
    names.dedup();
    Ok(list(names.into_iter().map(Value::from).collect()))
}

async fn operations(State(store): Store, RawQuery(query): RawQuery) -> Result<Json<Value>, QueryError> {
    let params = Params::parse(query)?;
    let service = params.required("service")?.to_owned();
    let kind = match params.get("spanKind").filter(|k| !k.is_empty()) {
        None => None,
        Some(name) => Some(SpanKind::from_name(name).ok_or_else(|| bad_request(format!("unknown spanKind {name:?}")))?),
    };
    let ops = read(store, move |dir| search::operations(dir, &service, kind)).await?;
    Ok(list(
        ops.into_iter().map(|(name, kind)| json!({ "name": name, "spanKind": kind.name().unwrap_or("") })).collect(),
    ))
}

async fn find_traces(State(store): Store, RawQuery(query): RawQuery) -> Result<Json<Value>, QueryError> {
    let search = Params::parse(query)?.search()?;
    let traces = read(store, move |dir| search::find_traces(dir, &search)).await?;
    Ok(list(traces.into_iter().map(jaeger::trace).collect()))
}

async fn trace(
    State(store): Store,
    Path(trace_id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, QueryError> {
    let id = parse_trace_id(&trace_id)?;
    let params = Params::parse(query)?;
    let range = TimeRange {
        start_unix_nano: params.micros("start")?.unwrap_or(0),
        end_unix_nano: params.micros("end")?.map_or(TimeRange::all().end_unix_nano, |e| e + 1),
    };
    let spans = read(store, move |dir| search::trace(dir, id, range)).await?;
    if spans.is_empty() {
        return Err(QueryError(StatusCode::NOT_FOUND, "trace not found".into()));
    }
    Ok(list(vec![jaeger::trace(spans)]))
}

async fn dependencies(State(store): Store, RawQuery(query): RawQuery) -> Result<Json<Value>, QueryError> {
    let params = Params::parse(query)?;
    let millis = |name: &str| -> Result<Option<u64>, QueryError> {
        params
            .get(name)
            .filter(|v| !v.is_empty())
            .map(|v| v.parse().map_err(|_| bad_request(format!("{name} must be milliseconds, not {v:?}"))))
            .transpose()
    };
    let end = millis("endTs")?.map_or_else(now_nanos, |ms| ms * 1_000_000);
    let lookback = millis("lookback")?.map_or(DEFAULT_DEPENDENCY_LOOKBACK.as_nanos() as u64, |ms| ms * 1_000_000);
    let range = TimeRange { start_unix_nano: end.saturating_sub(lookback), end_unix_nano: end + 1 };
    let calls = read(store, move |dir| search::dependencies(dir, range)).await?;
    Ok(list(
        calls
            .into_iter()
            .map(|(parent, child, n)| json!({ "parent": parent, "child": child, "callCount": n }))
            .collect(),
    ))
}

/// Query parameters in order; a key may repeat (`tag=a:1&tag=b:2`).
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(query: Option<String>) -> Result<Params, QueryError> {
        let pairs = serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
            .map_err(|e| bad_request(format!("malformed query string: {e}")))?;
        Ok(Params(pairs))
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn required(&self, key: &str) -> Result<&str, QueryError> {
        self.get(key).filter(|v| !v.is_empty()).ok_or_else(|| bad_request(format!("parameter '{key}' is required")))
    }

    /// A time since the epoch (Jaeger's `start`/`end`), as nanoseconds: microseconds, as Jaeger defines
    /// them, or milliseconds, which Grafana's Jaeger data source sends for a trace by id with its "trace
    /// ID time params" option on. A value below [`MILLIS_BELOW`] is read as milliseconds.
    fn micros(&self, key: &str) -> Result<Option<u64>, QueryError> {
        self.get(key)
            .filter(|v| !v.is_empty())
            .map(|v| v.parse::<u64>().map(since_epoch_nanos))
            .transpose()
            .map_err(|_| bad_request(format!("{key} must be microseconds (or milliseconds) since the epoch")))
    }

    fn duration(&self, key: &str) -> Result<Option<u64>, QueryError> {
        self.get(key)
            .filter(|v| !v.is_empty())
            .map(|v| parse_go_duration(v).map_err(|e| bad_request(format!("{key}: {e}"))))
            .transpose()
    }

    fn search(&self) -> Result<Search, QueryError> {
        let service = self.required("service")?.to_owned();
        let operation = self.get("operation").filter(|o| !o.is_empty() && *o != "all").map(str::to_owned);
        let mut tags: Vec<(String, String)> = Vec::new();
        if let Some(json) = self.get("tags").filter(|t| !t.is_empty()) {
            let map: serde_json::Map<String, Value> =
                serde_json::from_str(json).map_err(|e| bad_request(format!("tags must be a JSON object: {e}")))?;
            for (k, v) in map {
                let text = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                tags.push((k, text));
            }
        }
        for tag in self.0.iter().filter(|(k, _)| k == "tag").map(|(_, v)| v) {
            let (k, v) = tag.split_once(':').ok_or_else(|| bad_request(format!("tag {tag:?} must be key:value")))?;
            tags.push((k.to_owned(), v.to_owned()));
        }
        let end = self.micros("end")?.unwrap_or_else(now_nanos);
        let start = match self.micros("start")? {
            Some(start) => start,
            None => {
                let lookback = self.duration("lookback").ok().flatten().unwrap_or(DEFAULT_LOOKBACK.as_nanos() as u64);
                end.saturating_sub(lookback)
            }
        };
        if start > end {
            return Err(bad_request("start must not be after end"));
        }
        let limit = match self.get("limit").filter(|l| !l.is_empty()) {
            None => DEFAULT_LIMIT,
            Some(l) => l.parse().map_err(|_| bad_request(format!("limit must be a number, not {l:?}")))?,
        };
        let (min, max) = (self.duration("minDuration")?, self.duration("maxDuration")?);
        if let (Some(min), Some(max)) = (min, max) {
            if min > max {
                return Err(bad_request("minDuration must not exceed maxDuration"));
            }
        }
        Ok(Search {
            service,
            operation,
            tags,
            min_duration_nanos: min,
            max_duration_nanos: max,
            range: TimeRange { start_unix_nano: start, end_unix_nano: end + 1 },
            limit: if limit == 0 { DEFAULT_LIMIT } else { limit },
        })
    }
}

/// A trace id in hex, up to 32 digits (shorter ids are zero-padded on the left, as Jaeger does).
fn parse_trace_id(text: &str) -> Result<[u8; 16], QueryError> {
    let invalid = || bad_request(format!("{text:?} is not a trace id (up to 32 hex digits)"));
    if text.is_empty() || text.len() > 32 {
        return Err(invalid());
    }
    let padded = format!("{text:0>32}");
    let mut id = [0u8; 16];
    hex::decode_to_slice(&padded, &mut id).map_err(|_| invalid())?;
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
        assert!(parse_trace_id(&"a".repeat(33)).is_err());
    }
}
