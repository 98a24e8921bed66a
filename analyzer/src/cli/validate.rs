//! `analyzer validate`: is every lifecycle one intact trace?

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::ValueEnum;
use hoptrace_analyzer::load;
use hoptrace_analyzer::validate::{validate_with, MaxBroken};

use super::Scope;

#[derive(clap::Args)]
pub(crate) struct ValidateArgs {
    #[command(flatten)]
    pub(crate) scope: Scope,
    /// Also write the result as JUnit XML (one test case per rule and lifecycle) to this file.
    #[arg(long)]
    pub(crate) junit: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = ValidateFormat::Table)]
    pub(crate) format: ValidateFormat,
    /// Broken traces tolerated before exiting 2: a count (0) or a percentage of those checked (0.1%).
    #[arg(long, default_value = "0")]
    pub(crate) max_broken: MaxBroken,
    /// Traces whose newest span ended less than this long ago are pending, not judged.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub(crate) settle: Duration,
    /// Check every trace, background ones too (traces outside every lifecycle then fail expected_root).
    #[arg(long)]
    pub(crate) strict: bool,
    /// Failures listed in the table (all of them in JSON and JUnit).
    #[arg(long, default_value_t = 50)]
    pub(crate) show: usize,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ValidateFormat {
    Table,
    Json,
}

pub(crate) fn run(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let config = args.scope.config()?;
    let store = args.scope.store()?;
    let range = args.scope.range()?;
    let mut table = load(&store, range, &hoptrace_analyzer::validate::attribute_keys(&config))?;
    hoptrace_analyzer::stitch::prepare(&mut table, &config);
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as i64;
    let settled = now - args.settle.as_nanos() as i64;
    let result = validate_with(&table, &config, settled, args.scope.run.as_deref(), args.strict);
    if let Some(path) = &args.junit {
        std::fs::write(path, result.junit(&config)).with_context(|| format!("writing {}", path.display()))?;
    }
    match args.format {
        ValidateFormat::Table => print!("{}", result.table(args.show)),
        ValidateFormat::Json => print!("{}", result.json()),
    }
    args.scope.say_if_empty(result.traces_checked + result.pending, &store);
    Ok(if result.acceptable(args.max_broken) { ExitCode::SUCCESS } else { ExitCode::from(2) })
}
