//! Faults and delays the services can be told to inject, so tests (and users) can check what hoptrace
//! makes of them: broken trace correlation for `analyzer validate` (`HOPTRACE_FAULTS=name[,name…]`), and
//! a slower hop for `analyzer compare` (`HOPTRACE_DELAY=hop=duration[,…]`, e.g. `handler=20ms`). Both are
//! off by default and read once at start-up; an unknown name is an error.

use std::sync::OnceLock;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The worker ignores the trace context in the message headers: each step starts a new trace.
    WorkerDropsContext,
    /// Notify payloads carry no trace context: receptions start traces of their own.
    NotifyDropsContext,
    /// The worker parents each handler span to a span it never sends.
    OrphanSpan,
}

const NAMES: [(&str, Fault); 3] = [
    ("worker_drops_context", Fault::WorkerDropsContext),
    ("notify_drops_context", Fault::NotifyDropsContext),
    ("orphan_span", Fault::OrphanSpan),
];

static ACTIVE: OnceLock<Vec<Fault>> = OnceLock::new();

/// A hop that can be made slower on purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delayed {
    /// Inside the worker's `execute {handler}` span, before the handler runs.
    Handler,
    /// Inside the worker's claim (`receive step_queue`), after the read.
    Claim,
    /// Inside the orchestrator's `process result_queue`, before the result is recorded.
    ResultProcessing,
}

const DELAYED: [(&str, Delayed); 3] =
    [("handler", Delayed::Handler), ("claim", Delayed::Claim), ("result_processing", Delayed::ResultProcessing)];

static DELAYS: OnceLock<Vec<(Delayed, Duration)>> = OnceLock::new();

/// The delay injected into `hop`, if any.
pub fn delay(hop: Delayed) -> Option<Duration> {
    DELAYS.get()?.iter().find(|(h, _)| *h == hop).map(|(_, d)| *d)
}

fn delays_from_env() -> anyhow::Result<Vec<(Delayed, Duration)>> {
    let mut delays = Vec::new();
    for item in std::env::var("HOPTRACE_DELAY").unwrap_or_default().split(',').map(str::trim).filter(|i| !i.is_empty())
    {
        let known: Vec<&str> = DELAYED.iter().map(|(n, _)| *n).collect();
        let Some((name, duration)) = item.split_once('=') else {
            anyhow::bail!("HOPTRACE_DELAY: {item:?} is not hop=duration (hops: {})", known.join(", "));
        };
        let Some((_, hop)) = DELAYED.iter().find(|(n, _)| *n == name.trim()) else {
            anyhow::bail!("HOPTRACE_DELAY: unknown hop {name:?}; hops: {}", known.join(", "));
        };
        let duration = humantime::parse_duration(duration.trim())
            .map_err(|_| anyhow::anyhow!("HOPTRACE_DELAY: {duration:?} is not a duration such as \"20ms\""))?;
        delays.push((*hop, duration));
    }
    Ok(delays)
}

/// Reads `HOPTRACE_FAULTS` and `HOPTRACE_DELAY`; an unknown name is an error naming the known ones.
pub fn from_env() -> anyhow::Result<()> {
    let mut faults = Vec::new();
    for name in std::env::var("HOPTRACE_FAULTS").unwrap_or_default().split(',').map(str::trim).filter(|n| !n.is_empty())
    {
        match NAMES.iter().find(|(known, _)| *known == name) {
            Some((_, fault)) => faults.push(*fault),
            None => {
                let known: Vec<&str> = NAMES.iter().map(|(n, _)| *n).collect();
                anyhow::bail!("HOPTRACE_FAULTS: unknown fault {name:?}; faults: {}", known.join(", "));
            }
        }
    }
    if !faults.is_empty() {
        tracing::warn!("injecting faults: {faults:?}");
    }
    let _ = ACTIVE.set(faults);
    let delays = delays_from_env()?;
    if !delays.is_empty() {
        tracing::warn!("injecting delays: {delays:?}");
    }
    let _ = DELAYS.set(delays);
    Ok(())
}

pub fn active(fault: Fault) -> bool {
    ACTIVE.get().is_some_and(|faults| faults.contains(&fault))
}
