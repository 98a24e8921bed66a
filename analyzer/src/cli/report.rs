//! `analyzer report`: per-hop latencies against targets, as a table, JSON, CSV, markdown or a page.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::ValueEnum;
use hoptrace_analyzer::{analyze_with, drift, report, Config, Extras, Filters};

use super::Scope;

#[derive(clap::Args)]
pub(crate) struct ReportArgs {
    #[command(flatten)]
    pub(crate) scope: Scope,
    /// Only this category (repeatable).
    #[arg(long)]
    pub(crate) category: Vec<String>,
    /// Only hops measured on spans of this service.
    #[arg(long)]
    pub(crate) service: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
    /// Also each hop's p50/p99 per time bucket of this width (1m, 10s, 1h), and whether its p99 drifts
    /// upward over the range.
    #[arg(long, value_parser = bucket_width)]
    pub(crate) over_time: Option<std::time::Duration>,
    /// With --over-time: growth of a hop's fitted p99 over the range beyond which a statistically real
    /// upward trend is reported as drift.
    #[arg(long, value_parser = hoptrace_analyzer::compare::parse_threshold, default_value = "20%")]
    pub(crate) drift_threshold: f64,
    /// Write the report to this file instead of standard output (the HTML report needs one).
    #[arg(short = 'o', long)]
    pub(crate) output: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    Table,
    Json,
    Csv,
    Markdown,
    /// One self-contained page with charts (no network needed to open it).
    Html,
}

pub(crate) fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let config = args.scope.config()?;
    for category in &args.category {
        if !config.categories.iter().any(|c| &c.name == category) {
            let known: Vec<&str> = config.categories.iter().map(|c| c.name.as_str()).collect();
            bail!("no category {category:?}; categories: {}", known.join(", "));
        }
    }
    let store = args.scope.store()?;
    let range = args.scope.range()?;
    let filters = Filters {
        run_id: args.scope.run.clone(),
        categories: args.category,
        service: args.service,
        ..Filters::default()
    };
    let html = matches!(args.format, Format::Html);
    if html && args.output.is_none() {
        bail!("--format html writes a page: give it a file with -o report.html");
    }
    let extras = Extras {
        details: html,
        over_time: args
            .over_time
            .map(|width| drift::Settings { bucket_ns: width.as_nanos() as i64, threshold: args.drift_threshold }),
    };
    let report = analyze_with(&store, range, &config, &filters, extras)?;
    let text = match args.format {
        Format::Table => report::table(&report, args.output.is_none() && std::io::stdout().is_terminal()),
        Format::Json => report::json(&report),
        Format::Csv => report::csv(&report),
        Format::Markdown => report::markdown(&report),
        Format::Html => {
            hoptrace_analyzer::html::render(&report, &|category, variant, hop| targets(&config, category, variant, hop))
        }
    };
    match &args.output {
        None => print!("{text}"),
        Some(path) => std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?,
    }
    args.scope.say_if_empty(report.traces, &store);
    Ok(ExitCode::SUCCESS)
}

fn bucket_width(text: &str) -> Result<std::time::Duration, String> {
    let width = humantime::parse_duration(text).map_err(|e| format!("{text:?}: {e}"))?;
    if width < std::time::Duration::from_millis(1) {
        return Err(format!("{text:?}: a bucket must be at least 1ms wide"));
    }
    Ok(width)
}

/// The target limits of a hop for a variant, drawn on its distribution in the HTML report.
pub(crate) fn targets(
    config: &Config,
    category: &str,
    variant: &str,
    hop: &str,
) -> Vec<(hoptrace_analyzer::config::Percentile, i64)> {
    config
        .categories
        .iter()
        .find(|c| c.name == category)
        .into_iter()
        .flat_map(|c| c.hops.iter())
        .filter(|h| h.name == hop)
        .filter_map(|h| h.target_for(variant))
        .flat_map(|t| t.limits.iter().map(|(p, d)| (*p, d.as_nanos() as i64)))
        .collect()
}
