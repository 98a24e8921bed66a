//! The analyzer's commands: their arguments and bodies, one module each; what every command reads
//! ([`Scope`]) is here.

pub mod baseline;
pub mod export;
pub mod generate;
pub mod inspect;
pub mod report;
pub mod scaling;
pub mod validate;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use hoptrace_analyzer::Config;
use hoptrace_store::{Location, TimeRange};

/// What to read: the store, the time range, the run, the categories file.
#[derive(clap::Args)]
pub(crate) struct Scope {
    #[command(flatten)]
    pub(crate) source: Source,
    /// Only traces of this benchmark run (the `benchmark.run_id` attribute loadgen sets).
    #[arg(long)]
    pub(crate) run: Option<String>,
}

/// The store, the time range and the categories file (a [`Scope`] without its run).
#[derive(clap::Args)]
pub(crate) struct Source {
    /// Spans that started this long ago until now, e.g. 15m, 1h, 2days (default 1h, or all time with --run).
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with_all = ["from", "to"])]
    pub(crate) since: Option<Duration>,
    /// Start of the range, RFC 3339 (2026-11-29T23:00:00Z).
    #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
    pub(crate) from: Option<SystemTime>,
    /// End of the range (exclusive), RFC 3339; default now.
    #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
    pub(crate) to: Option<SystemTime>,
    /// The collector's data directory, a PostgreSQL store (postgres://…), or the bucket collectors upload to (s3://BUCKET[/PREFIX], with the AWS_* variables) [default: $HOPTRACE_DATA or ./hoptrace-data].
    #[arg(long)]
    pub(crate) store: Option<String>,
    /// Categories, hop rules, targets and validation rules (default: the built-in ones).
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
}

impl Scope {
    fn config(&self) -> anyhow::Result<Config> {
        self.source.config()
    }

    fn store(&self) -> anyhow::Result<Location> {
        self.source.store()
    }

    fn range(&self) -> anyhow::Result<TimeRange> {
        self.source.range(self.run.is_some())
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

impl Source {
    /// Just a store (the default one when `None`): for commands that read no spans.
    pub(crate) fn of_store(store: Option<String>) -> Source {
        Source { since: None, from: None, to: None, store, config: None }
    }

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
            Some(text) => Location::parse(text)?,
            None => Location::Dir(
                std::env::var_os("HOPTRACE_DATA").map(PathBuf::from).unwrap_or_else(|| "hoptrace-data".into()),
            ),
        };
        if let Location::Dir(dir) = &store {
            if !dir.is_dir() {
                bail!(
                    "no store at {} (pass --store DIR, the collector's --data-dir, or --store postgres://…)",
                    dir.display()
                );
            }
        }
        Ok(store)
    }

    /// The range asked for; without one, the last hour, or all time when runs select the traces.
    fn range(&self, has_run: bool) -> anyhow::Result<TimeRange> {
        time_range(self.since, self.from, self.to, has_run)
    }
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
