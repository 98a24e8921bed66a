//! The server backend: spans in PostgreSQL, for a team that already runs one (and for Grafana's
//! PostgreSQL data source). One table, `hoptrace_spans`, range-partitioned by hour of span start so a
//! `--since 1h` read touches one or two partitions; `trace_id` leads the primary key, so the table can be
//! distributed by trace on a sharded PostgreSQL (Citus: `create_distributed_table('hoptrace_spans',
//! 'trace_id')`). Attributes, events and links are jsonb, values in their OTLP/JSON form
//! (`attributes->'task.template'->>'stringValue'`). Batches arrive by COPY into a staging table and are
//! inserted with `ON CONFLICT DO NOTHING`, which drops retried duplicates; a batch is acknowledged once
//! its transaction has committed.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use hoptrace_otlp::json::value::{
    attributes_from_json, attributes_to_json, event_from_json, event_to_json, link_from_json, link_to_json,
};
use hoptrace_otlp::{Origin, SpanRow};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use polars::prelude::*;
use prost::Message;
use serde_json::Value;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, PgConnection, Row};

use super::embedded::{Appended, Batch};
use super::{AppendError, Appending, Backend};
use crate::error::{Result, StoreError};
use crate::read::TimeRange;
use crate::segment::Hour;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS hoptrace_spans (
    trace_id              bytea    NOT NULL,
    span_id               bytea    NOT NULL,
    parent_span_id        bytea,
    trace_state           text,
    flags                 bigint   NOT NULL,
    name                  text     NOT NULL,
    kind                  smallint NOT NULL,
    service_name          text     NOT NULL,
    start_time_unix_nano  bigint   NOT NULL,
    end_time_unix_nano    bigint   NOT NULL,
    status_code           smallint NOT NULL,
    status_message        text,
    attributes            jsonb    NOT NULL,
    events                jsonb    NOT NULL,
    links                 jsonb    NOT NULL,
    resource_attributes   jsonb    NOT NULL,
    scope_name            text,
    scope_version         text,
    scope_attributes      jsonb    NOT NULL DEFAULT '[]',
    dropped_attributes_count bigint NOT NULL DEFAULT 0,
    dropped_events_count  bigint   NOT NULL DEFAULT 0,
    dropped_links_count   bigint   NOT NULL DEFAULT 0,
    PRIMARY KEY (trace_id, span_id, start_time_unix_nano)
) PARTITION BY RANGE (start_time_unix_nano);
-- Tables created before scope attributes were kept.
ALTER TABLE hoptrace_spans ADD COLUMN IF NOT EXISTS scope_attributes jsonb NOT NULL DEFAULT '[]';
-- … and before SDK limits were kept: their rows read as none dropped.
ALTER TABLE hoptrace_spans ADD COLUMN IF NOT EXISTS dropped_attributes_count bigint NOT NULL DEFAULT 0;
ALTER TABLE hoptrace_spans ADD COLUMN IF NOT EXISTS dropped_events_count bigint NOT NULL DEFAULT 0;
ALTER TABLE hoptrace_spans ADD COLUMN IF NOT EXISTS dropped_links_count bigint NOT NULL DEFAULT 0";

/// Taken while creating the schema or a partition, so concurrent collectors do not race.
const DDL_LOCK: i64 = 0x686f_7074_7261_6365; // "hoptrace"

const COLUMNS: &str = "trace_id, span_id, parent_span_id, trace_state, flags, name, kind, service_name, \
    start_time_unix_nano, end_time_unix_nano, status_code, status_message, attributes, events, links, \
    resource_attributes, scope_name, scope_version, scope_attributes, dropped_attributes_count, \
    dropped_events_count, dropped_links_count";

/// Whether a `--store` value names a PostgreSQL database rather than a data directory.
pub fn is_url(store: &str) -> bool {
    store.starts_with("postgres://") || store.starts_with("postgresql://")
}

fn db(e: sqlx::Error) -> StoreError {
    StoreError::Postgres(e.to_string())
}

/// A connection pool to the span tables, with the hours known to have a partition.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    partitions: Arc<Mutex<HashSet<u64>>>,
}

impl PgStore {
    /// Connects, creating the table when absent.
    pub async fn connect(url: &str) -> Result<PgStore> {
        let mut conn = PgConnection::connect(url).await.map_err(db)?;
        let mut tx = conn.begin().await.map_err(db)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(DDL_LOCK).execute(&mut *tx).await.map_err(db)?;
        sqlx::raw_sql(SCHEMA).execute(&mut *tx).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        conn.close().await.map_err(db)?;
        // Each pooled connection gets its staging table once, not once per write.
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::raw_sql("CREATE TEMP TABLE hoptrace_staging (LIKE hoptrace_spans) ON COMMIT DELETE ROWS")
                        .execute(conn)
                        .await
                        .map(drop)
                })
            })
            .connect(url)
            .await
            .map_err(db)?;
        Ok(PgStore { pool, partitions: Arc::default() })
    }

    /// Stores `rows`; returns how many were new (the rest were duplicates of stored spans).
    pub async fn write(&self, rows: &[SpanRow]) -> Result<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        let hours: HashSet<u64> = rows.iter().map(|r| Hour::of_nanos(r.start_time_unix_nano).0).collect();
        for hour in hours {
            self.ensure_partition(hour).await?;
        }
        let mut csv = Vec::with_capacity(rows.len() * 512);
        for row in rows {
            write_csv(&mut csv, row);
        }
        let mut tx = self.pool.begin().await.map_err(db)?;
        let mut copy =
            tx.copy_in_raw(&format!("COPY hoptrace_staging ({COLUMNS}) FROM STDIN (FORMAT csv)")).await.map_err(db)?;
        copy.send(csv).await.map_err(db)?;
        copy.finish().await.map_err(db)?;
        let inserted = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "INSERT INTO hoptrace_spans ({COLUMNS}) SELECT {COLUMNS} FROM hoptrace_staging ON CONFLICT DO NOTHING"
        )))
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        tx.commit().await.map_err(db)?;
        Ok(inserted)
    }

    async fn ensure_partition(&self, hour: u64) -> Result<()> {
        if self.partitions.lock().expect("not poisoned").contains(&hour) {
            return Ok(());
        }
        let start = Hour(hour).start_nanos();
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS hoptrace_spans_h{hour} PARTITION OF hoptrace_spans \
             FOR VALUES FROM ({start}) TO ({})",
            start + 3_600_000_000_000
        );
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(DDL_LOCK).execute(&mut *tx).await.map_err(db)?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut *tx).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        self.partitions.lock().expect("not poisoned").insert(hour);
        Ok(())
    }

    /// The spans that start in `range`, ordered by (start, trace id, span id).
    pub async fn read(&self, range: TimeRange) -> Result<Vec<SpanRow>> {
        let (start, end) =
            (range.start_unix_nano.min(i64::MAX as u64) as i64, range.end_unix_nano.min(i64::MAX as u64) as i64);
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM hoptrace_spans WHERE start_time_unix_nano >= $1 AND start_time_unix_nano < $2 \
             ORDER BY start_time_unix_nano, trace_id, span_id"
        )))
        .bind(start)
        .bind(end)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let mut origins: Origins = HashMap::new();
        rows.iter().map(|r| span_row(r, &mut origins)).collect()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

impl Backend for PgStore {
    fn append(&self, batch: Batch) -> Appending<'_> {
        Box::pin(async move {
            // The database takes decoded rows; the request was checked already, so this decodes.
            let decoded = ExportTraceServiceRequest::decode(batch.request.as_ref())
                .map_err(|e| AppendError::Failed(format!("a checked request no longer decodes: {e}")))?;
            let rows = hoptrace_otlp::convert(decoded).rows;
            let stored =
                self.write(&rows).await.map_err(|e| AppendError::Failed(format!("spans could not be stored: {e}")))?;
            Ok(Appended { stored: stored as usize, duplicates: rows.len() - stored as usize })
        })
    }

    /// Every batch is committed before it is acknowledged: nothing is left to write.
    fn shutdown(&self) -> Result<()> {
        Ok(())
    }
}

/// The origins read so far, by (service, resource attributes, scope name, version, attributes): rows of one
/// origin share it.
type Origins = HashMap<(String, Value, Option<String>, Option<String>, Value), Arc<Origin>>;

/// The spans of `range` at `url` as a frame in the segment schema, for callers outside an async runtime.
pub fn read_frame(url: &str, range: TimeRange) -> Result<DataFrame> {
    // A runtime of its own, on a thread of its own: callable from anywhere, even a runtime's thread.
    let rows = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| StoreError::Postgres(e.to_string()))?;
                runtime.block_on(async {
                    let store = PgStore::connect(url).await?;
                    let rows = store.read(range).await;
                    store.close().await;
                    rows
                })
            })
            .join()
            .expect("the reading thread does not panic")
    })?;
    crate::columns::to_frame(&rows).map_err(|source| StoreError::Parquet { path: "postgres".into(), source })
}

fn span_row(r: &PgRow, origins: &mut Origins) -> Result<SpanRow> {
    let get_bytes = |name: &str| -> Result<Vec<u8>> { r.try_get(name).map_err(db) };
    let json =
        |name: &str| -> Result<Value> { r.try_get::<sqlx::types::Json<Value>, _>(name).map(|j| j.0).map_err(db) };
    let (trace_id, span_id) = (get_bytes("trace_id")?, get_bytes("span_id")?);
    let parent: Option<Vec<u8>> = r.try_get("parent_span_id").map_err(db)?;
    let key = (
        r.try_get::<String, _>("service_name").map_err(db)?,
        json("resource_attributes")?,
        r.try_get::<Option<String>, _>("scope_name").map_err(db)?,
        r.try_get::<Option<String>, _>("scope_version").map_err(db)?,
        json("scope_attributes")?,
    );
    let origin = origins
        .entry(key.clone())
        .or_insert_with(|| {
            Arc::new(Origin {
                service_name: key.0.clone(),
                resource_attributes: attributes_from_json(&key.1),
                scope_name: key.2.clone().unwrap_or_default(),
                scope_version: key.3.clone().unwrap_or_default(),
                scope_attributes: attributes_from_json(&key.4),
            })
        })
        .clone();
    let events = json("events")?.as_array().map(|e| e.iter().map(event_from_json).collect()).unwrap_or_default();
    let links = json("links")?.as_array().map(|l| l.iter().map(link_from_json).collect()).unwrap_or_default();
    Ok(SpanRow {
        trace_id: trace_id.try_into().map_err(|_| StoreError::Postgres("a stored trace id is not 16 bytes".into()))?,
        span_id: span_id.try_into().map_err(|_| StoreError::Postgres("a stored span id is not 8 bytes".into()))?,
        parent_span_id: parent.and_then(|p| p.try_into().ok()),
        trace_state: r.try_get::<Option<String>, _>("trace_state").map_err(db)?.unwrap_or_default(),
        flags: r.try_get::<i64, _>("flags").map_err(db)? as u32,
        name: r.try_get("name").map_err(db)?,
        kind: r.try_get::<i16, _>("kind").map_err(db)? as u8,
        start_time_unix_nano: r.try_get::<i64, _>("start_time_unix_nano").map_err(db)? as u64,
        end_time_unix_nano: r.try_get::<i64, _>("end_time_unix_nano").map_err(db)? as u64,
        status_code: r.try_get::<i16, _>("status_code").map_err(db)? as u8,
        status_message: r.try_get::<Option<String>, _>("status_message").map_err(db)?.unwrap_or_default(),
        attributes: attributes_from_json(&json("attributes")?),
        events,
        links,
        dropped: hoptrace_otlp::Dropped {
            attributes: r.try_get::<i64, _>("dropped_attributes_count").map_err(db)? as u32,
            events: r.try_get::<i64, _>("dropped_events_count").map_err(db)? as u32,
            links: r.try_get::<i64, _>("dropped_links_count").map_err(db)? as u32,
        },
        origin,
    })
}

/// One row of `COPY … (FORMAT csv)`: NULL is an empty unquoted field, every text is quoted.
fn write_csv(out: &mut Vec<u8>, row: &SpanRow) {
    use std::io::Write;
    let text = |out: &mut Vec<u8>, s: &str| {
        out.push(b'"');
        for &b in s.as_bytes() {
            if b == b'"' {
                out.push(b'"');
            }
            out.push(b);
        }
        out.push(b'"');
    };
    let optional = |out: &mut Vec<u8>, s: &str| {
        if !s.is_empty() {
            text(out, s);
        }
    };
    let _ = write!(out, "\\x{},\\x{},", hex::encode(row.trace_id), hex::encode(row.span_id));
    if let Some(parent) = row.parent_span_id {
        let _ = write!(out, "\\x{}", hex::encode(parent));
    }
    out.push(b',');
    optional(out, &row.trace_state);
    let _ = write!(out, ",{},", row.flags);
    text(out, &row.name);
    let _ = write!(out, ",{},", row.kind);
    text(out, &row.origin.service_name);
    let _ = write!(out, ",{},{},{},", row.start_time_unix_nano, row.end_time_unix_nano, row.status_code);
    optional(out, &row.status_message);
    out.push(b',');
    text(out, &attributes_to_json(&row.attributes).to_string());
    out.push(b',');
    let events: Vec<Value> = row.events.iter().map(event_to_json).collect();
    text(out, &Value::Array(events).to_string());
    out.push(b',');
    let links: Vec<Value> = row.links.iter().map(link_to_json).collect();
    text(out, &Value::Array(links).to_string());
    out.push(b',');
    text(out, &attributes_to_json(&row.origin.resource_attributes).to_string());
    out.push(b',');
    optional(out, &row.origin.scope_name);
    out.push(b',');
    optional(out, &row.origin.scope_version);
    out.push(b',');
    text(out, &attributes_to_json(&row.origin.scope_attributes).to_string());
    let dropped = row.dropped;
    let _ = write!(out, ",{},{},{}", dropped.attributes, dropped.events, dropped.links);
    out.push(b'\n');
}
