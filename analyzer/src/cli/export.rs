//! `analyzer export --to-db`: a run's samples, targets and correlation check as PostgreSQL tables.

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use hoptrace_analyzer::validate::validate;
use hoptrace_analyzer::{load, Filters};

use super::Scope;

#[derive(clap::Args)]
pub(crate) struct ExportArgs {
    #[command(flatten)]
    pub(crate) scope: Scope,
    /// The PostgreSQL database to write to, e.g. postgres://postgres@127.0.0.1:5432/hoptrace.
    #[arg(long = "to-db", value_name = "URL")]
    pub(crate) to_db: String,
    /// Lifecycles that started this recently may still be running: not checked for correlation yet.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub(crate) settle: Duration,
}

pub(crate) fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let config = args.scope.config()?;
    let store = args.scope.store()?;
    let mut keys = hoptrace_analyzer::hops::attribute_keys(&config);
    keys.extend(hoptrace_analyzer::validate::attribute_keys(&config));
    keys.sort();
    keys.dedup();
    let mut table = load(&store, args.scope.range()?, &keys)?;
    let run = args.scope.run.as_deref();
    hoptrace_analyzer::stitch::prepare(&mut table, &config);
    // Validation checks the stored traces; the hops are measured over joined lifecycles.
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as i64;
    let validation = validate(&table, &config, now - args.settle.as_nanos() as i64, run);
    // Health samples are validated (a lifecycle of their own), not measured.
    hoptrace_analyzer::health::take(&mut table, None, None);
    hoptrace_analyzer::join_lifecycles(&mut table, &config);
    let filters = Filters { run_id: args.scope.run.clone(), with_origins: true, ..Filters::default() };
    let extraction = hoptrace_analyzer::hops::extract(&table, &config, &filters);
    args.scope.say_if_empty(extraction.traces, &store);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let export = hoptrace_analyzer::export::export(&args.to_db, &table, &config, &extraction, &validation, run);
    let written = runtime
        .block_on(export)
        .with_context(|| format!("exporting to {}", hoptrace_store::read::redact(&args.to_db)))?;
    let total: usize = extraction.samples.values().map(|s| s.values.len()).sum();
    println!(
        "exported {} new samples ({total} in range, of {} traces), {} targets and the correlation check ({} intact, {} broken) to {}",
        written.samples,
        extraction.traces,
        written.targets,
        validation.intact,
        validation.broken,
        hoptrace_store::read::redact(&args.to_db)
    );
    Ok(ExitCode::SUCCESS)
}
