//! `analyzer`: per-hop latency reports from the hoptrace store.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

use cli::baseline::{BaselineCommand, CompareArgs};
use cli::export::ExportArgs;
use cli::generate::GenerateArgs;
use cli::inspect::InspectArgs;
use cli::report::ReportArgs;
use cli::scaling::ScalingArgs;
use cli::validate::ValidateArgs;

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
    /// Runs at different loads side by side (each hop's p50 per run, fitted against tasks in flight,
    /// workers or throughput), and the hop whose latency grows most with load named as the contention
    /// bottleneck. Exits 0, or 1 on a usage or I/O error.
    Scaling(ScalingArgs),
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
    /// What a store holds, to write a config from: per service the span names with kind, count, p50/p99
    /// and parents; every attribute key with its cardinality and examples; candidate correlation keys
    /// (values found in more than one trace); the traces' roots. Exits 0, or 1 on a usage or I/O error.
    Inspect(InspectArgs),
    /// Writes synthetic traces shaped like the reference workflow system into a store, to try the
    /// report without running anything (and to benchmark it).
    Generate(GenerateArgs),
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
        Command::Report(args) => cli::report::run(args),
        Command::Validate(args) => cli::validate::run(args),
        Command::Scaling(args) => cli::scaling::run(args),
        Command::Export(args) => cli::export::run(args),
        Command::Inspect(args) => cli::inspect::run(args),
        Command::Generate(args) => cli::generate::run(args),
        Command::Baseline(command) => cli::baseline::run(command),
        Command::Compare(args) => cli::baseline::compare(args),
    }
}
