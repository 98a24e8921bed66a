//! `worker`: claims workflow steps whose handlers are Rust from the step queue and runs them.

use std::net::SocketAddr;

use clap::Parser;
use hoptrace_services::worker::{self, Args, Executor};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let flags = Args::parse().flags;
    worker::main("worker", SocketAddr::from(([127, 0, 0, 1], 8081)), flags, Executor::Rust).await
}
