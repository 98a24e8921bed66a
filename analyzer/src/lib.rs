//! hoptrace's analyzer: stored traces → trace trees → per-hop latencies for the benchmark categories.
//!
//! [`analyze`] scans a time range of the store, builds a [`spans::SpanTable`] of just the columns and
//! attributes the categories need, extracts hop samples trace by trace ([`hops`], with clock skew
//! corrected by [`skew`]) and summarises them against the targets ([`report`]). Categories, hop rules
//! and targets are data ([`config`]): the analyzer knows nothing of any particular service.

pub mod baseline;
pub mod compare;
pub mod config;
pub mod critical_path;
pub mod drift;
pub mod export;
pub mod fairness;
pub mod health;
pub mod hops;
pub mod html;
pub mod inspect;
pub mod report;
pub mod rng;
pub mod scaling;
pub mod select;
pub mod skew;
pub mod spans;
pub mod stats;
pub mod stitch;
pub mod synthetic;
pub mod validate;

use hoptrace_store::{Location, TimeRange};

pub use config::Config;
pub use hops::Filters;
pub use report::Report;

/// Reads the spans of `range` from `store` (a data directory or a PostgreSQL URL), keeping the attributes
/// named in `keys`.
pub fn load(store: impl Into<Location>, range: TimeRange, keys: &[String]) -> anyhow::Result<spans::SpanTable> {
    let columns = spans::SpanTable::columns(keys);
    let segments = store.into().segments(range)?;
    let frames = segments.into_iter().map(|segment| hoptrace_store::collect_columns(segment, &columns));
    Ok(spans::SpanTable::from_frames(frames, keys)?)
}

/// Reads the spans of `range` from `store` and reports on them.
pub fn analyze(
    store: impl Into<Location>,
    range: TimeRange,
    config: &Config,
    filters: &Filters,
) -> anyhow::Result<Report> {
    analyze_with(store, range, config, filters, Extras::default())
}

/// What a report can add to the per-hop table.
#[derive(Debug, Clone, Copy, Default)]
pub struct Extras {
    /// The distributions and exemplar traces the HTML report draws.
    pub details: bool,
    /// Each hop's percentiles per time bucket, and its drift verdict.
    pub over_time: Option<drift::Settings>,
}

/// [`analyze`], with the [`Extras`] asked for.
pub fn analyze_with(
    store: impl Into<Location>,
    range: TimeRange,
    config: &Config,
    filters: &Filters,
    extras: Extras,
) -> anyhow::Result<Report> {
    let store = store.into();
    let more: Vec<String> =
        if extras.over_time.is_some() { health::KEYS.map(String::from).to_vec() } else { Vec::new() };
    let threshold = extras.over_time.map(|settings| settings.threshold);
    let (table, excluded, health) = prepared(&store, range, config, &more, (filters.run_id.as_deref(), threshold))?;
    let filters = Filters { with_origins: filters.with_origins || extras.over_time.is_some(), ..filters.clone() };
    let mut extraction = hops::extract(&table, config, &filters);
    let fairness = fairness::fairness(&table, config, &extraction);
    let over_time = extras.over_time.map(|settings| {
        let names = |c: usize, h: usize| (config.categories[c].name.clone(), config.categories[c].hops[h].name.clone());
        drift::over_time(&extraction.samples, names, settings)
    });
    extraction.excluded = excluded;
    extraction.stitched = table.pieces.iter().filter(|&&p| p > 1).count();
    extraction.stitched_traces = table.pieces.iter().filter(|&&p| p > 1).map(|&p| p as usize).sum();
    // Freeing the table (a gigabyte for ten million spans) takes a tenth of a second on one core: the
    // report does not wait for it.
    std::thread::spawn(move || drop(table));
    let (store, run) = (store.to_string(), filters.run_id.clone());
    let mut report = Report::build(config, extraction, store, describe(range), run, extras.details);
    report.fairness = fairness;
    report.over_time = over_time;
    report.health = health;
    Ok(report)
}

/// Runs of one system at different loads compared hop by hop ([`scaling`]).
pub fn analyze_scaling(
    store: impl Into<Location>,
    range: TimeRange,
    config: &Config,
    runs: &[String],
    settings: scaling::Settings,
) -> anyhow::Result<scaling::Scaling> {
    let store = store.into();
    let (table, _, _) = prepared(&store, range, config, &[scaling::CONCURRENCY_KEY.to_owned()], (None, None))?;
    Ok(scaling::compare(&table, config, runs, settings, store.to_string()))
}

/// The spans of `range` with the attributes the analysis reads (and `more`), the health samples taken
/// out (and judged, for a run at a threshold: `health`), the configuration's exclusions applied and its
/// lifecycles joined.
fn prepared(
    store: &Location,
    range: TimeRange,
    config: &Config,
    more: &[String],
    health: (Option<&str>, Option<f64>),
) -> anyhow::Result<(spans::SpanTable, stitch::Excluded, Vec<health::HealthSeries>)> {
    let mut keys = hops::attribute_keys(config);
    for key in more {
        if !keys.contains(key) {
            keys.push(key.clone());
        }
    }
    let mut table = load(store, range, &keys)?;
    let health = health::take(&mut table, health.0, health.1);
    let excluded = stitch::prepare(&mut table, config);
    join_lifecycles(&mut table, config);
    Ok((table, excluded, health))
}

/// Makes the traces of each lifecycle that the configuration's joins tie together one trace of the
/// table (after [`stitch::prepare`]).
pub fn join_lifecycles(table: &mut spans::SpanTable, config: &Config) {
    let slots = stitch::slots(table, config);
    if slots.is_empty() {
        return;
    }
    let groups = stitch::components(table, &slots);
    stitch::gather(table, &groups);
}

fn describe(range: TimeRange) -> report::Range {
    let stamp = |nanos: u64| {
        let time = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(nanos);
        humantime::format_rfc3339_millis(time).to_string()
    };
    let all = TimeRange::all();
    report::Range {
        from: (range.start_unix_nano != all.start_unix_nano).then(|| stamp(range.start_unix_nano)),
        to: (range.end_unix_nano != all.end_unix_nano).then(|| stamp(range.end_unix_nano)),
    }
}
