//! `analyzer generate`: synthetic traces shaped like the reference system, written into a store.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::bail;

#[derive(clap::Args)]
pub(crate) struct GenerateArgs {
    /// The store directory to write (segments are added to what is there).
    #[arg(long)]
    pub(crate) store: PathBuf,
    /// Tasks to generate (one trace each).
    #[arg(long, default_value_t = 1000)]
    pub(crate) tasks: usize,
    /// Steps per task: linear templates of this length (default: linear_3 and linear_10 in turn).
    #[arg(long)]
    pub(crate) steps: Option<usize>,
    /// Seed of the generator: the same seed writes the same traces.
    #[arg(long, default_value_t = 7)]
    pub(crate) seed: u64,
    /// The benchmark.run_id of every trace.
    #[arg(long, default_value = "synthetic")]
    pub(crate) run_id: String,
}

pub(crate) fn run(args: GenerateArgs) -> anyhow::Result<ExitCode> {
    use hoptrace_analyzer::synthetic::{generate, Scenario};
    let defaults = Scenario::default();
    let templates = match args.steps {
        Some(0) => bail!("--steps must be at least 1"),
        Some(n) => vec![(format!("linear_{n}"), n)],
        None => defaults.templates.clone(),
    };
    // Recent enough for `report --since`, and clear of earlier runs in the same store.
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64;
    let span = args.tasks as u64 * defaults.task_interval_ns;
    let scenario = Scenario {
        seed: args.seed,
        tasks: args.tasks,
        templates,
        run_id: args.run_id,
        start_unix_nano: now.saturating_sub(span + 60_000_000_000),
        first_segment: now / 1_000_000,
        segment_spans: 500_000,
        ..defaults
    };
    let (_, truth) = generate(&scenario, Some(&args.store))?;
    println!("wrote {} traces, {} spans into {}", truth.traces, truth.spans, args.store.display());
    Ok(ExitCode::SUCCESS)
}
