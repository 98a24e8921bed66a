//! `analyzer inspect`: what a store holds, to write a config from (`docs/your-system.md`).

use std::collections::HashSet;
use std::process::ExitCode;

use clap::ValueEnum;
use hoptrace_analyzer::inspect::{inspect, render};

use super::Scope;

#[derive(clap::Args)]
pub(crate) struct InspectArgs {
    #[command(flatten)]
    pub(crate) scope: Scope,
    #[arg(long, value_enum, default_value = "table")]
    pub(crate) format: Format,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    Table,
    Json,
}

/// The range's spans are held in memory while they are counted: inspect a sample (`--since 10m`, a run).
pub(crate) fn run(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let store = args.scope.store()?;
    let frame = store.scan(args.scope.range()?)?.collect()?;
    let mut spans = hoptrace_store::records(&frame)?;
    if let Some(run) = &args.scope.run {
        let traces: HashSet<String> = spans
            .iter()
            .filter(|s| s.attribute(hoptrace_analyzer::hops::RUN_ID_KEY).is_some_and(|r| r == run))
            .map(|s| s.trace_id.clone())
            .collect();
        spans.retain(|s| traces.contains(&s.trace_id));
    }
    let inventory = inspect(&spans);
    args.scope.say_if_empty(inventory.traces, &store);
    match args.format {
        Format::Table => print!("{}", render(&inventory)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&inventory)?),
    }
    // Freeing every span's attribute maps took a fifth of the command; the process ends here anyway.
    std::mem::forget(spans);
    Ok(ExitCode::SUCCESS)
}
