//! `analyzer scaling`: runs at different loads side by side, and the hop whose latency grows most with
//! load named as the contention bottleneck.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::ValueEnum;
use hoptrace_analyzer::scaling::{self, Load, Settings};

use super::Source;

#[derive(clap::Args)]
pub(crate) struct ScalingArgs {
    #[command(flatten)]
    pub(crate) source: Source,
    /// A run to compare (its `benchmark.run_id`); at least two, e.g. --run w1-c4 --run w2-c4 --run w5-c4.
    #[arg(long = "run", required = true)]
    pub(crate) runs: Vec<String>,
    /// What latency is fitted against: tasks in flight (Little's law, from the spans), worker instances,
    /// or throughput.
    #[arg(long, value_enum, default_value_t = Against::InFlight)]
    pub(crate) against: Against,
    /// Growth of a hop's fitted p50 over the sweep beyond which a real growth is called contention.
    #[arg(long, value_parser = hoptrace_analyzer::compare::parse_threshold, default_value = "20%")]
    pub(crate) threshold: f64,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
    /// Write to this file instead of standard output (the HTML page needs one).
    #[arg(short = 'o', long)]
    pub(crate) output: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Against {
    InFlight,
    Workers,
    Throughput,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    Table,
    Json,
    Markdown,
    /// One self-contained page with a chart per hop.
    Html,
}

pub(crate) fn run(args: ScalingArgs) -> anyhow::Result<ExitCode> {
    let mut runs: Vec<String> = Vec::new();
    for run in &args.runs {
        if !runs.contains(run) {
            runs.push(run.clone());
        }
    }
    if runs.len() < 2 {
        bail!("scaling compares runs: give at least two different --run");
    }
    if matches!(args.format, Format::Html) && args.output.is_none() {
        bail!("--format html writes a page: give it a file with -o scaling.html");
    }
    let config = args.source.config()?;
    let store = args.source.store()?;
    let load = match args.against {
        Against::InFlight => Load::InFlight,
        Against::Workers => Load::Workers,
        Against::Throughput => Load::Throughput,
    };
    let settings = Settings { load, threshold: args.threshold };
    let comparison = hoptrace_analyzer::analyze_scaling(&store, args.source.range(true)?, &config, &runs, settings)?;
    let missing: Vec<&str> = comparison.runs.iter().filter(|r| r.traces == 0).map(|r| r.run.as_str()).collect();
    if !missing.is_empty() {
        bail!("no traces of run {} in {store} for this range", missing.join(", "));
    }
    let text = match args.format {
        Format::Table => scaling::table(&comparison),
        Format::Json => scaling::json(&comparison),
        Format::Markdown => scaling::markdown(&comparison),
        Format::Html => hoptrace_analyzer::html::scaling(&comparison),
    };
    match &args.output {
        None => print!("{text}"),
        Some(path) => std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?,
    }
    Ok(ExitCode::SUCCESS)
}
