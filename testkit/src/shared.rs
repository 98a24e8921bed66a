//! The recorded data in the workspace's sibling `shared/` directory (real systems' traces, Jaeger's
//! fixtures): read from there, never copied into the repository. Tests that need it skip with a message
//! when it is absent.

use std::path::PathBuf;

/// `shared/<name>` beside the repository (or under `$HOPTRACE_SHARED`), when it exists; otherwise says on
/// stderr that the calling test is skipped and returns `None`.
pub fn shared(name: &str) -> Option<PathBuf> {
    // The package under test's directory as cargo gives it when running the test, not this crate's at
    // compile time: one build serves several checkouts of the repository.
    let root = match std::env::var_os("HOPTRACE_SHARED") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let package = std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
            PathBuf::from(package).join("../../shared")
        }
    };
    let path = root.join(name);
    if path.exists() {
        Some(path)
    } else {
        eprintln!("skipped: {} is absent (set HOPTRACE_SHARED to the shared data directory)", path.display());
        None
    }
}
