//! Faults the services can be told to make, so tests (and users) can check that `analyzer validate`
//! catches broken trace correlation. Switched on with `HOPTRACE_FAULTS=name[,name…]`; off by default.

use std::sync::OnceLock;

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

/// Reads `HOPTRACE_FAULTS`; an unknown name is an error naming the known ones.
pub fn from_env() -> anyhow::Result<()> {
    let mut faults = Vec::new();
    for name in std::env::var("HOPTRACE_FAULTS").unwrap_or_default().split(',').map(str::trim).filter(|n| !n.is_empty()) {
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
    Ok(())
}

pub fn active(fault: Fault) -> bool {
    ACTIVE.get().is_some_and(|faults| faults.contains(&fault))
}
