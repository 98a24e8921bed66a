//! `analyzer`: per-hop latency reports from the hoptrace store.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand, ValueEnum};
use hoptrace_analyzer::{analyze, report, Config, Filters};
use hoptrace_store::TimeRange;


#[derive(Parser)]
#[command(version, about = "Where the time goes, hop by hop: latency reports from stored traces")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Per category and variant, each hop's count, p50, p95, p99, max and mean against its target.
    /// Exits 0 (targets failing are shown, not fatal) or 1 on a usage or I/O error.
    Report(ReportArgs),
    /// Writes synthetic traces shaped like the reference workflow system into a store, to try the
    /// report without running anything (and to benchmark it).
    Generate(GenerateArgs),
}

#[derive(clap::Args)]
struct GenerateArgs {
    /// The store directory to write (segments are added to what is there).
    #[arg(long)]
    store: PathBuf,
    /// Tasks to generate (one trace each).
    #[arg(long, default_value_t = 1000)]
    tasks: usize,
    /// Steps per task: linear templates of this length (default: linear_3 and linear_10 in turn).
    #[arg(long)]
    steps: Option<usize>,
    /// Seed of the generator: the same seed writes the same traces.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// The benchmark.run_id of every trace.
    #[arg(long, default_value = "synthetic")]
    run_id: String,
}

#[derive(clap::Args)]
struct ReportArgs {
    /// Spans that started this long ago until now, e.g. 15m, 1h, 2days (default 1h, or all time with --run).
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with_all = ["from", "to"])]
    since: Option<Duration>,
    /// Start of the range, RFC 3339 (2026-11-29T23:00:00Z).
    #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
    from: Option<SystemTime>,
    /// End of the range (exclusive), RFC 3339; default now.
    #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
    to: Option<SystemTime>,
    /// Only traces of this benchmark run (the `benchmark.run_id` attribute loadgen sets).
    #[arg(long)]
    run: Option<String>,
    /// Only this category (repeatable).
    #[arg(long)]
    category: Vec<String>,
    /// Only hops measured on spans of this service.
    #[arg(long)]
    service: Option<String>,
    /// The collector's data directory (default $HOPTRACE_DATA or ./hoptrace-data).
    #[arg(long)]
    store: Option<PathBuf>,
    /// Categories, hop rules and targets (default: the built-in categories).
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
    Csv,
    Markdown,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Report(args) => report_command(args),
        Command::Generate(args) => generate_command(args),
    }
}

fn report_command(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let config = match &args.config {
        None => Config::built_in(),
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            Config::parse(&text).with_context(|| format!("in {}", path.display()))?
        }
    };
    for category in &args.category {
        if !config.categories.iter().any(|c| &c.name == category) {
            let known: Vec<&str> = config.categories.iter().map(|c| c.name.as_str()).collect();
            bail!("no category {category:?}; categories: {}", known.join(", "));
        }
    }
    let store = args
        .store
        .or_else(|| std::env::var_os("HOPTRACE_DATA").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("hoptrace-data"));
    if !store.is_dir() {
        bail!("no store at {} (pass --store DIR, the collector's --data-dir)", store.display());
    }
    let range = time_range(args.since, args.from, args.to, args.run.is_some())?;
    let filters = Filters { run_id: args.run, categories: args.category, service: args.service };
    let report = analyze(&store, range, &config, &filters)?;
    let text = match args.format {
        Format::Table => report::table(&report, std::io::stdout().is_terminal()),
        Format::Json => report::json(&report),
        Format::Csv => report::csv(&report),
        Format::Markdown => report::markdown(&report),
    };
    print!("{text}");
    if report.traces == 0 {
        let what = match &filters.run_id {
            Some(run) => format!("no traces of run {run:?}"),
            None => "no spans".to_owned(),
        };
        eprintln!("{what} in {} for this range; widen it with --since or --from/--to", store.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn generate_command(args: GenerateArgs) -> anyhow::Result<ExitCode> {
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

fn time_range(
    since: Option<Duration>,
    from: Option<SystemTime>,
    to: Option<SystemTime>,
    has_run: bool,
) -> anyhow::Result<TimeRange> {
    let nanos = |t: SystemTime| t.duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let now = SystemTime::now();
    Ok(match (since, from, to) {
        (Some(since), _, _) => TimeRange::last(since, now),
        (None, None, None) if has_run => TimeRange::all(),
        (None, None, None) => TimeRange::last(Duration::from_secs(3600), now),
        (None, from, to) => {
            let range = TimeRange {
                start_unix_nano: from.map_or(0, nanos),
                end_unix_nano: to.map_or(TimeRange::all().end_unix_nano, nanos),
            };
            if range.start_unix_nano >= range.end_unix_nano {
                bail!("--from must be before --to");
            }
            range
        }
    })
}
