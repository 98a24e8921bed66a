//! `analyzer baseline save|list|delete` and `analyzer compare`: the regression gate.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::bail;
use clap::{Subcommand, ValueEnum};
use hoptrace_analyzer::baseline::{Baseline, Baselines};
use hoptrace_analyzer::compare::Gate;
use hoptrace_analyzer::{load, Filters};
use hoptrace_store::Location;

use super::{Scope, Source};

#[derive(Subcommand)]
pub(crate) enum BaselineCommand {
    /// Measures a run (or a time range) and saves its per-hop samples as baseline NAME (replacing it).
    Save {
        name: String,
        #[command(flatten)]
        scope: Scope,
        /// Where baselines are kept (default: <store>/baselines, or ./hoptrace-baselines for a database).
        #[arg(long)]
        baselines: Option<PathBuf>,
    },
    /// Lists the saved baselines.
    List {
        #[arg(long)]
        store: Option<String>,
        #[arg(long)]
        baselines: Option<PathBuf>,
    },
    /// Deletes baseline NAME.
    Delete {
        name: String,
        #[arg(long)]
        store: Option<String>,
        #[arg(long)]
        baselines: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
pub(crate) struct CompareArgs {
    /// The baseline to compare with.
    #[arg(long)]
    pub(crate) baseline: String,
    #[command(flatten)]
    pub(crate) scope: Scope,
    /// Where baselines are kept (default: <store>/baselines, or ./hoptrace-baselines for a database).
    #[arg(long)]
    pub(crate) baselines: Option<PathBuf>,
    /// A slowdown counts only beyond this (and only when statistically real).
    #[arg(long, default_value = "10%", value_parser = hoptrace_analyzer::compare::parse_threshold)]
    pub(crate) threshold: f64,
    /// And only beyond this absolute change (e.g. 1ms), however certain.
    #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
    pub(crate) min_shift: Duration,
    /// Bootstrap resamples per hop.
    #[arg(long, default_value_t = 400)]
    pub(crate) resamples: usize,
    #[arg(long, value_enum, default_value_t = CompareFormat::Table)]
    pub(crate) format: CompareFormat,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum CompareFormat {
    Table,
    Json,
    Markdown,
}

/// The baselines directory: `--baselines`, else `<store>/baselines` (`./hoptrace-baselines` beside a database).
pub(crate) fn baselines_dir(baselines: Option<PathBuf>, store: &Location) -> Baselines {
    let default = || store.dir().map_or_else(|| PathBuf::from("hoptrace-baselines"), |dir| dir.join("baselines"));
    Baselines { dir: baselines.unwrap_or_else(default) }
}

/// The per-hop samples of the scope, as a baseline named `name`.
pub(crate) fn measure(scope: &Scope, name: &str) -> anyhow::Result<(Baseline, Location)> {
    let config = scope.config()?;
    let store = scope.store()?;
    let range = scope.range()?;
    let mut table = load(&store, range, &hoptrace_analyzer::hops::attribute_keys(&config))?;
    // Health samples are not the system's work.
    hoptrace_analyzer::health::take(&mut table, None, None);
    let filters = Filters { run_id: scope.run.clone(), ..Filters::default() };
    let extraction = hoptrace_analyzer::hops::extract(&table, &config, &filters);
    scope.say_if_empty(extraction.traces, &store);
    let source = match (&scope.run, scope.source.since) {
        (Some(run), _) => format!("run {run}"),
        (None, Some(since)) => format!(
            "the {} before {}",
            humantime::format_duration(since),
            humantime::format_rfc3339_seconds(SystemTime::now())
        ),
        (None, None) => "a time range".to_owned(),
    };
    Ok((Baseline::from_extraction(name, source, &config, &extraction), store))
}

pub(crate) fn run(command: BaselineCommand) -> anyhow::Result<ExitCode> {
    match command {
        BaselineCommand::Save { name, scope, baselines } => {
            let (baseline, store) = measure(&scope, &name)?;
            if baseline.hops.is_empty() {
                bail!("nothing to save: no hop of any category has a sample in this range");
            }
            let path = baselines_dir(baselines, &store).save(&baseline)?;
            let samples: usize = baseline.hops.iter().map(|h| h.count).sum();
            println!(
                "saved baseline {name:?}: {} hops, {samples} samples, from {} ({})",
                baseline.hops.len(),
                baseline.source,
                path.display()
            );
        }
        BaselineCommand::List { store, baselines } => {
            let store = Source::of_store(store).store()?;
            let all = baselines_dir(baselines, &store).list()?;
            if all.is_empty() {
                println!("no baselines yet (analyzer baseline save NAME --run ID)");
            }
            for b in all {
                let samples: usize = b.hops.iter().map(|h| h.count).sum();
                println!(
                    "{:<24} {}  {:>3} hops  {:>9} samples  {}",
                    b.name,
                    b.created,
                    b.hops.len(),
                    samples,
                    b.source
                );
            }
        }
        BaselineCommand::Delete { name, store, baselines } => {
            baselines_dir(baselines, &Source::of_store(store).store()?).delete(&name)?;
            println!("deleted baseline {name:?}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn compare(args: CompareArgs) -> anyhow::Result<ExitCode> {
    let store = args.scope.store()?;
    let before = baselines_dir(args.baselines.clone(), &store).load(&args.baseline)?;
    let (after, _) = measure(&args.scope, "current")?;
    let gate = Gate {
        threshold: args.threshold,
        min_shift_ns: args.min_shift.as_nanos() as i64,
        resamples: args.resamples.max(20),
    };
    let result = hoptrace_analyzer::compare::compare(&before, &after, gate);
    print!(
        "{}",
        match args.format {
            CompareFormat::Table => result.table(),
            CompareFormat::Json => result.json(),
            CompareFormat::Markdown => result.markdown(),
        }
    );
    Ok(if result.regressions > 0 { ExitCode::from(2) } else { ExitCode::SUCCESS })
}
