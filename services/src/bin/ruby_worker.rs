//! `ruby-worker`: claims workflow steps whose handlers are Ruby (`ruby_noop`, …) from the step queue and
//! runs them in an embedded Ruby VM (services/ruby/handlers.rb). Same flags, queue and spans as `worker`.

use std::net::SocketAddr;

use clap::Parser;
use hoptrace_services::ruby::RubyVm;
use hoptrace_services::worker::{self, Args, Executor};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let flags = Args::parse().flags;
    // The VM first: Ruby installs signal handlers as it starts, and the service's own go in after them.
    let vm = RubyVm::start()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(worker::main("ruby-worker", SocketAddr::from(([127, 0, 0, 1], 8082)), flags, Executor::Ruby(vm)))
}
