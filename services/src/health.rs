//! Process health over a run: at a fixed interval, the resident memory of the system's processes on this
//! machine, the database's open connections and each queue's depth. Every sample is a trace of the run
//! (a `health sample` root with one child per measurement: `health.series`, `health.value`,
//! `health.unit`), so it travels the same pipeline as the spans it explains, is selected by the same
//! `--run`, and needs no second file beside the store.

use std::time::Duration;

use hoptrace_instrumentation::Hop;
use opentelemetry::{Context, KeyValue};
use sqlx::PgPool;
use tokio::sync::watch;

/// The span of one sample, and of each measurement in it.
pub const SAMPLE_SPAN: &str = "health sample";
pub const MEASUREMENT_SPAN: &str = "health measurement";

/// One measurement: what it is of, its value, its unit (UCUM, as OpenTelemetry's metrics name them).
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    pub series: String,
    pub value: i64,
    pub unit: &'static str,
}

/// Samples every `interval` until `stop` turns true, the processes named `processes` (their command
/// names, as `/proc/PID/comm` has them) and the database behind `pool`.
pub async fn sample(
    pool: PgPool,
    processes: Vec<String>,
    interval: Duration,
    run: Context,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.changed() => return,
        }
        let mut measurements = process_memory(&processes);
        match database(&pool).await {
            Ok(more) => measurements.extend(more),
            Err(err) => tracing::warn!("health sample: reading the database's connections and queues: {err}"),
        }
        let root = Hop::internal(&run, SAMPLE_SPAN);
        for m in measurements {
            let span = Hop::internal(root.context(), MEASUREMENT_SPAN);
            span.set_attribute(KeyValue::new("health.series", m.series));
            span.set_attribute(KeyValue::new("health.value", m.value));
            span.set_attribute(KeyValue::new("health.unit", m.unit));
        }
    }
}

/// The resident set of each process on this machine whose command name is one of `names`, as
/// `{name}/{instance} rss` (the instance from its `service.instance.id`, else its pid).
pub fn process_memory(names: &[String]) -> Vec<Measurement> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut out: Vec<Measurement> = entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let dir = entry.path();
            let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
            let name = comm.trim();
            if !names.iter().any(|n| n == name) {
                return None;
            }
            let status = std::fs::read_to_string(dir.join("status")).ok()?;
            let rss_kb: i64 = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()?;
            let instance = instance_id(&std::fs::read(dir.join("environ")).unwrap_or_default())
                .unwrap_or_else(|| format!("pid {pid}"));
            Some(Measurement { series: format!("{name}/{instance} rss"), value: rss_kb * 1024, unit: "By" })
        })
        .collect();
    out.sort_by(|a, b| a.series.cmp(&b.series));
    out
}

/// `service.instance.id` from a process's environment (`OTEL_RESOURCE_ATTRIBUTES`), NUL-separated.
fn instance_id(environ: &[u8]) -> Option<String> {
    environ.split(|&b| b == 0).find_map(|entry| {
        let attributes = std::str::from_utf8(entry.strip_prefix(b"OTEL_RESOURCE_ATTRIBUTES=")?).ok()?;
        attributes.split(',').find_map(|kv| Some(kv.trim().strip_prefix("service.instance.id=")?.to_owned()))
    })
}

/// Open connections to the database (all clients, `pg_stat_activity`) and each PGMQ queue's depth.
pub async fn database(pool: &PgPool) -> Result<Vec<Measurement>, sqlx::Error> {
    let connections: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
            .fetch_one(pool)
            .await?;
    let mut out = vec![Measurement { series: "database connections".into(), value: connections, unit: "{connection}" }];
    let queues: Vec<(String, i64)> =
        sqlx::query_as("SELECT queue_name, queue_length FROM pgmq.metrics_all() ORDER BY queue_name")
            .fetch_all(pool)
            .await?;
    out.extend(queues.into_iter().map(|(queue, depth)| Measurement {
        series: format!("{queue} depth"),
        value: depth,
        unit: "{message}",
    }));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_instance_comes_from_the_resource_attributes_in_the_environment() {
        let environ = b"PATH=/bin\0OTEL_RESOURCE_ATTRIBUTES=deployment=x,service.instance.id=worker-3\0HOME=/\0";
        assert_eq!(instance_id(environ).as_deref(), Some("worker-3"));
        assert_eq!(instance_id(b"PATH=/bin\0"), None);
    }

    #[test]
    fn this_process_memory_is_read_from_proc() {
        let me = std::fs::read_to_string("/proc/self/comm").unwrap().trim().to_owned();
        let found = process_memory(std::slice::from_ref(&me));
        let mine = found.iter().find(|m| m.series.contains(&format!("pid {}", std::process::id())));
        let mine = mine.unwrap_or_else(|| panic!("{me}: {found:?}"));
        assert!(mine.value > 1 << 20, "{mine:?}");
        assert_eq!(mine.unit, "By");
    }
}
