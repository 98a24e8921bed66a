//! Per-hop samples into PostgreSQL, for dashboards: one row per sample (when its span started, its value,
//! the trace it came from, so a panel can link to the trace), one row per target limit, and one row per
//! export with the correlation check of the same spans. Re-exporting the same spans adds no sample twice. The tables are created when absent; their shape is in `docs/dashboards.md`.

use sqlx::{Connection, PgConnection};

use crate::config::Config;
use crate::hops::Extraction;
use crate::spans::SpanTable;
use crate::validate::Validation;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS hoptrace_hop_samples (
    time      timestamptz      NOT NULL,
    run_id    text             NOT NULL DEFAULT '',
    category  text             NOT NULL,
    variant   text             NOT NULL DEFAULT '',
    hop       text             NOT NULL,
    value_ms  double precision NOT NULL,
    trace_id  text             NOT NULL,
    ordinal   integer          NOT NULL  -- the sample's number among its trace's samples of this hop
);
CREATE UNIQUE INDEX IF NOT EXISTS hoptrace_hop_samples_key
    ON hoptrace_hop_samples (trace_id, category, variant, hop, ordinal);
CREATE INDEX IF NOT EXISTS hoptrace_hop_samples_time ON hoptrace_hop_samples (category, time);
CREATE TABLE IF NOT EXISTS hoptrace_hop_targets (
    category   text             NOT NULL,
    variant    text             NOT NULL DEFAULT '',
    hop        text             NOT NULL,
    percentile text             NOT NULL,
    target_ms  double precision NOT NULL,
    PRIMARY KEY (category, variant, hop, percentile)
);
CREATE TABLE IF NOT EXISTS hoptrace_correlation (
    time            timestamptz NOT NULL,
    run_id          text        NOT NULL DEFAULT '',
    traces_checked  bigint      NOT NULL,
    intact          bigint      NOT NULL,
    broken          bigint      NOT NULL,
    pending         bigint      NOT NULL,
    broken_by_rule  jsonb       NOT NULL
);";

/// Rows per INSERT: binds stay well under PostgreSQL's limit, and a batch is a few MB.
const BATCH: usize = 10_000;

/// What an export wrote.
#[derive(Debug, PartialEq, Eq)]
pub struct Exported {
    /// Samples newly written (re-exported ones are skipped).
    pub samples: u64,
    pub targets: u64,
}

/// Writes the samples of `extraction` (taken from `table`), the targets of `config` and the `validation` of
/// the same spans, tagging them with `run_id` (empty when none).
pub async fn export(
    url: &str,
    table: &SpanTable,
    config: &Config,
    extraction: &Extraction,
    validation: &Validation,
    run_id: Option<&str>,
) -> anyhow::Result<Exported> {
    let mut conn = PgConnection::connect(url).await?;
    let mut tx = conn.begin().await?;
    sqlx::raw_sql(SCHEMA).execute(&mut *tx).await?;
    let mut written = Exported { samples: 0, targets: 0 };
    for ((c, variant, h), samples) in &extraction.samples {
        let category = &config.categories[*c];
        let hop = &category.hops[*h].name;
        let variant = variant.as_deref().unwrap_or("");
        // Numbered per trace, so a re-export recognises each sample however many share a start or a value.
        let mut seen: std::collections::HashMap<u32, i32> = std::collections::HashMap::new();
        let ordinals: Vec<i32> = samples
            .origins
            .iter()
            .map(|o| {
                let n = seen.entry(o.trace).or_default();
                *n += 1;
                *n
            })
            .collect();
        let chunks = samples.values.chunks(BATCH).zip(samples.origins.chunks(BATCH)).zip(ordinals.chunks(BATCH));
        for ((values, origins), ordinals) in chunks {
            let value_ms: Vec<f64> = values.iter().map(|&v| v as f64 / 1e6).collect();
            let start_us: Vec<i64> = origins.iter().map(|o| o.at / 1_000).collect();
            let trace_ids: Vec<String> = origins.iter().map(|o| table.trace_id_hex(o.trace as usize)).collect();
            let result = sqlx::query(
                "INSERT INTO hoptrace_hop_samples (time, run_id, category, variant, hop, value_ms, trace_id, ordinal) \
                 SELECT timestamptz 'epoch' + s.us * interval '1 microsecond', $1, $2, $3, $4, s.v, s.t, s.o \
                 FROM unnest($5::bigint[], $6::float8[], $7::text[], $8::int[]) AS s(us, v, t, o) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(run_id.unwrap_or(""))
            .bind(&category.name)
            .bind(variant)
            .bind(hop)
            .bind(&start_us)
            .bind(&value_ms)
            .bind(&trace_ids)
            .bind(ordinals)
            .execute(&mut *tx)
            .await?;
            written.samples += result.rows_affected();
        }
    }
    for category in &config.categories {
        for hop in &category.hops {
            let defaults = hop.target.iter().map(|t| ("", t));
            for (variant, target) in defaults.chain(hop.targets.iter().map(|(v, t)| (v.as_str(), t))) {
                for (percentile, limit) in &target.limits {
                    let result = sqlx::query(
                        "INSERT INTO hoptrace_hop_targets (category, variant, hop, percentile, target_ms) \
                         VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT (category, variant, hop, percentile) DO UPDATE SET target_ms = EXCLUDED.target_ms",
                    )
                    .bind(&category.name)
                    .bind(variant)
                    .bind(&hop.name)
                    .bind(percentile.label())
                    .bind(limit.as_secs_f64() * 1e3)
                    .execute(&mut *tx)
                    .await?;
                    written.targets += result.rows_affected();
                }
            }
        }
    }
    // The check is plotted at the start of the latest span it saw.
    let latest_us = table.start.iter().max().map_or(0, |&ns| ns / 1_000);
    sqlx::query(
        "INSERT INTO hoptrace_correlation (time, run_id, traces_checked, intact, broken, pending, broken_by_rule) \
         VALUES (timestamptz 'epoch' + $1 * interval '1 microsecond', $2, $3, $4, $5, $6, $7)",
    )
    .bind(latest_us)
    .bind(run_id.unwrap_or(""))
    .bind(validation.traces_checked as i64)
    .bind(validation.intact as i64)
    .bind(validation.broken as i64)
    .bind(validation.pending as i64)
    .bind(sqlx::types::Json(&validation.by_rule))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(written)
}
