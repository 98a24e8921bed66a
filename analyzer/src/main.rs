//! `analyzer`: per-hop latency reports from the hoptrace store.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand, ValueEnum};
use hoptrace_analyzer::baseline::{Baseline, Baselines};
use hoptrace_analyzer::compare::Gate;
use hoptrace_analyzer::validate::{validate, MaxBroken};
use hoptrace_analyzer::{analyze_with, load, report, Config, Filters};
use hoptrace_store::{Location, TimeRange};


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
    /// Checks that every lifecycle is one intact trace: one expected root, no orphans, producers and
    /// consumers paired, one trace per correlation key, the expected structure. Exits 0 when intact,
    /// 2 when more traces are broken than --max-broken allows, 1 on a usage or I/O error.
    Validate(ValidateArgs),
    /// Saves, lists and deletes baselines: the per-hop samples of a run, kept under a name.
    #[command(subcommand)]
    Baseline(BaselineCommand),
    /// Compares a run with a baseline, hop by hop; exits 2 when a hop got slower beyond --threshold and
    /// the slowdown is statistically real, 0 otherwise, 1 on a usage or I/O error.
    Compare(CompareArgs),
    /// Writes the per-hop samples of a run (or a time range) and the targets into PostgreSQL tables for
    /// dashboards (hoptrace_hop_samples, hoptrace_hop_targets; created when absent). Exits 0, or 1 on a
    /// usage, I/O or database error.
    Export(ExportArgs),
    /// Writes synthetic traces shaped like the reference workflow system into a store, to try the
    /// report without running anything (and to benchmark it).
    Generate(GenerateArgs),
}

#[derive(Subcommand)]
enum BaselineCommand {
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
struct CompareArgs {
    /// The baseline to compare with.
    #[arg(long)]
    baseline: String,
    #[command(flatten)]
    scope: Scope,
    /// Where baselines are kept (default: <store>/baselines, or ./hoptrace-baselines for a database).
    #[arg(long)]
    baselines: Option<PathBuf>,
    /// A slowdown counts only beyond this (and only when statistically real).
    #[arg(long, default_value = "10%", value_parser = hoptrace_analyzer::compare::parse_threshold)]
    threshold: f64,
    /// And only beyond this absolute change (e.g. 1ms), however certain.
    #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
    min_shift: Duration,
    /// Bootstrap resamples per hop.
    #[arg(long, default_value_t = 400)]
    resamples: usize,
    #[arg(long, value_enum, default_value_t = CompareFormat::Table)]
    format: CompareFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum CompareFormat {
    Table,
    Json,
    Markdown,
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

/// What to read: the store, the time range, the run, the categories file.
#[derive(clap::Args)]
struct Scope {
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
    /// The collector's data directory, or a PostgreSQL store (postgres://…) [default: $HOPTRACE_DATA or ./hoptrace-data].
    #[arg(long)]
    store: Option<String>,
    /// Categories, hop rules, targets and validation rules (default: the built-in ones).
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ExportArgs {
    #[command(flatten)]
    scope: Scope,
    /// The PostgreSQL database to write to, e.g. postgres://postgres@127.0.0.1:5432/hoptrace.
    #[arg(long = "to-db", value_name = "URL")]
    to_db: String,
    /// Lifecycles that started this recently may still be running: not checked for correlation yet.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    settle: Duration,
}

#[derive(clap::Args)]
struct ReportArgs {
    #[command(flatten)]
    scope: Scope,
    /// Only this category (repeatable).
    #[arg(long)]
    category: Vec<String>,
    /// Only hops measured on spans of this service.
    #[arg(long)]
    service: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Write the report to this file instead of standard output (the HTML report needs one).
    #[arg(short = 'o', long)]
    output: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ValidateArgs {
    #[command(flatten)]
    scope: Scope,
    /// Also write the result as JUnit XML (one test case per rule and lifecycle) to this file.
    #[arg(long)]
    junit: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = ValidateFormat::Table)]
    format: ValidateFormat,
    /// Broken traces tolerated before exiting 2: a count (0) or a percentage of those checked (0.1%).
    #[arg(long, default_value = "0")]
    max_broken: MaxBroken,
    /// Traces whose newest span ended less than this long ago are pending, not judged.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    settle: Duration,
    /// Failures listed in the table (all of them in JSON and JUnit).
    #[arg(long, default_value_t = 50)]
    show: usize,
}

#[derive(Clone, Copy, ValueEnum)]
enum ValidateFormat {
    Table,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
    Csv,
    Markdown,
    /// One self-contained page with charts (no network needed to open it).
    Html,
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
        Command::Validate(args) => validate_command(args),
        Command::Export(args) => export_command(args),
        Command::Generate(args) => generate_command(args),
        Command::Baseline(command) => baseline_command(command),
        Command::Compare(args) => compare_command(args),
    }
}

impl Scope {
    fn config(&self) -> anyhow::Result<Config> {
        match &self.config {
            None => Ok(Config::built_in()),
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                Ok(Config::parse(&text).with_context(|| format!("in {}", path.display()))?)
            }
        }
    }

    fn store(&self) -> anyhow::Result<Location> {
        let store = match &self.store {
            Some(text) => Location::parse(text),
            None => Location::Dir(std::env::var_os("HOPTRACE_DATA").map(PathBuf::from).unwrap_or_else(|| "hoptrace-data".into())),
        };
        if let Location::Dir(dir) = &store {
            if !dir.is_dir() {
                bail!("no store at {} (pass --store DIR, the collector's --data-dir, or --store postgres://…)", dir.display());
            }
        }
        Ok(store)
    }

    fn range(&self) -> anyhow::Result<TimeRange> {
        time_range(self.since, self.from, self.to, self.run.is_some())
    }

    /// Says on stderr that nothing was found, so an empty result is not mistaken for a good one.
    fn say_if_empty(&self, traces: usize, store: &Location) {
        if traces == 0 {
            let what = match &self.run {
                Some(run) => format!("no traces of run {run:?}"),
                None => "no spans".to_owned(),
            };
            eprintln!("{what} in {store} for this range; widen it with --since or --from/--to");
        }
    }
}

fn report_command(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let config = args.scope.config()?;
    for category in &args.category {
        if !config.categories.iter().any(|c| &c.name == category) {
            let known: Vec<&str> = config.categories.iter().map(|c| c.name.as_str()).collect();
            bail!("no category {category:?}; categories: {}", known.join(", "));
        }
    }
    let store = args.scope.store()?;
    let range = args.scope.range()?;
    let filters = Filters { run_id: args.scope.run.clone(), categories: args.category, service: args.service, ..Filters::default() };
    let html = matches!(args.format, Format::Html);
    if html && args.output.is_none() {
        bail!("--format html writes a page: give it a file with -o report.html");
    }
    let report = analyze_with(&store, range, &config, &filters, html)?;
    let text = match args.format {
        Format::Table => report::table(&report, args.output.is_none() && std::io::stdout().is_terminal()),
        Format::Json => report::json(&report),
        Format::Csv => report::csv(&report),
        Format::Markdown => report::markdown(&report),
        Format::Html => hoptrace_analyzer::html::render(&report, &|category, variant, hop| targets(&config, category, variant, hop)),
    };
    match &args.output {
        None => print!("{text}"),
        Some(path) => std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?,
    }
    args.scope.say_if_empty(report.traces, &store);
    Ok(ExitCode::SUCCESS)
}

/// The target limits of a hop for a variant, drawn on its distribution in the HTML report.
fn targets(config: &Config, category: &str, variant: &str, hop: &str) -> Vec<(hoptrace_analyzer::config::Percentile, i64)> {
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

fn validate_command(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let config = args.scope.config()?;
    let store = args.scope.store()?;
    let range = args.scope.range()?;
    let table = load(&store, range, &hoptrace_analyzer::validate::attribute_keys(&config))?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as i64;
    let result = validate(&table, &config, now - args.settle.as_nanos() as i64, args.scope.run.as_deref());
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

/// The baselines directory: `--baselines`, else `<store>/baselines` (`./hoptrace-baselines` beside a database).
fn baselines_dir(baselines: Option<PathBuf>, store: &Location) -> Baselines {
    let default = || store.dir().map_or_else(|| PathBuf::from("hoptrace-baselines"), |dir| dir.join("baselines"));
    Baselines { dir: baselines.unwrap_or_else(default) }
}

/// The per-hop samples of the scope, as a baseline named `name`.
fn measure(scope: &Scope, name: &str) -> anyhow::Result<(Baseline, Location)> {
    let config = scope.config()?;
    let store = scope.store()?;
    let range = scope.range()?;
    let table = load(&store, range, &hoptrace_analyzer::hops::attribute_keys(&config))?;
    let filters = Filters { run_id: scope.run.clone(), ..Filters::default() };
    let extraction = hoptrace_analyzer::hops::extract(&table, &config, &filters);
    scope.say_if_empty(extraction.traces, &store);
    let source = match (&scope.run, scope.since) {
        (Some(run), _) => format!("run {run}"),
        (None, Some(since)) => format!("the {} before {}", humantime::format_duration(since), humantime::format_rfc3339_seconds(SystemTime::now())),
        (None, None) => "a time range".to_owned(),
    };
    Ok((Baseline::from_extraction(name, source, &config, &extraction), store))
}

fn baseline_command(command: BaselineCommand) -> anyhow::Result<ExitCode> {
    match command {
        BaselineCommand::Save { name, scope, baselines } => {
            let (baseline, store) = measure(&scope, &name)?;
            if baseline.hops.is_empty() {
                bail!("nothing to save: no hop of any category has a sample in this range");
            }
            let path = baselines_dir(baselines, &store).save(&baseline)?;
            let samples: usize = baseline.hops.iter().map(|h| h.count).sum();
            println!("saved baseline {name:?}: {} hops, {samples} samples, from {} ({})", baseline.hops.len(), baseline.source, path.display());
        }
        BaselineCommand::List { store, baselines } => {
            let scope = Scope { since: None, from: None, to: None, run: None, store, config: None };
            let store = scope.store()?;
            let all = baselines_dir(baselines, &store).list()?;
            if all.is_empty() {
                println!("no baselines yet (analyzer baseline save NAME --run ID)");
            }
            for b in all {
                let samples: usize = b.hops.iter().map(|h| h.count).sum();
                println!("{:<24} {}  {:>3} hops  {:>9} samples  {}", b.name, b.created, b.hops.len(), samples, b.source);
            }
        }
        BaselineCommand::Delete { name, store, baselines } => {
            let scope = Scope { since: None, from: None, to: None, run: None, store, config: None };
            baselines_dir(baselines, &scope.store()?).delete(&name)?;
            println!("deleted baseline {name:?}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn compare_command(args: CompareArgs) -> anyhow::Result<ExitCode> {
    let store = args.scope.store()?;
    let before = baselines_dir(args.baselines.clone(), &store).load(&args.baseline)?;
    let (after, _) = measure(&args.scope, "current")?;
    let gate = Gate { threshold: args.threshold, min_shift_ns: args.min_shift.as_nanos() as i64, resamples: args.resamples.max(20) };
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

fn export_command(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let config = args.scope.config()?;
    let store = args.scope.store()?;
    let mut keys = hoptrace_analyzer::hops::attribute_keys(&config);
    keys.extend(hoptrace_analyzer::validate::attribute_keys(&config));
    keys.sort();
    keys.dedup();
    let table = load(&store, args.scope.range()?, &keys)?;
    let run = args.scope.run.as_deref();
    let filters = Filters { run_id: args.scope.run.clone(), with_origins: true, ..Filters::default() };
    let extraction = hoptrace_analyzer::hops::extract(&table, &config, &filters);
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as i64;
    let validation = validate(&table, &config, now - args.settle.as_nanos() as i64, run);
    args.scope.say_if_empty(extraction.traces, &store);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let export = hoptrace_analyzer::export::export(&args.to_db, &table, &config, &extraction, &validation, run);
    let written = runtime.block_on(export).with_context(|| format!("exporting to {}", hoptrace_store::location::redact(&args.to_db)))?;
    let total: usize = extraction.samples.values().map(|s| s.values.len()).sum();
    println!(
        "exported {} new samples ({total} in range, of {} traces), {} targets and the correlation check ({} intact, {} broken) to {}",
        written.samples,
        extraction.traces,
        written.targets,
        validation.intact,
        validation.broken,
        hoptrace_store::location::redact(&args.to_db)
    );
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
