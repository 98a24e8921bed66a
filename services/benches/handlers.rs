//! The seed's direct-call baseline for the handler-overhead category: one `simple_calculation` step
//! three ways — the Rust handler's work called directly, the Rust handler through the worker's dispatch
//! (handler by name, its async `run`), and the Ruby handler through FFI (the call to the VM thread, into
//! Ruby and back, as the Ruby worker makes it) — then each as a ratio of the direct call.
//!
//! `cargo bench --profile dev --workspace --bench handlers`; under `cargo test` each runs once.

use std::time::Duration;

use criterion::Criterion;
use hoptrace_services::handlers::{self, Handler};
use hoptrace_services::ruby::{Call, RubyVm};
use opentelemetry::Context;
use serde_json::{json, Value};
use uuid::Uuid;

fn input() -> Value {
    json!({"context": {"value": 6}, "inputs": {}})
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // Never connected: neither handler here queries.
    let pool = runtime.block_on(async {
        sqlx::postgres::PgPoolOptions::new().connect_lazy("postgres://postgres@127.0.0.1:5432/postgres").unwrap()
    });
    let vm = RubyVm::start().expect("the Ruby VM starts");
    let (task, input) = (Uuid::new_v4(), input());
    let expected = json!({"value": 36});
    let call = |handler| Call {
        handler,
        step_name: "step_1".into(),
        task_uuid: task,
        input: input.clone(),
        timeout: Duration::from_secs(10),
        parent: Context::new(),
        pool: pool.clone(),
    };

    let mut group = c.benchmark_group("simple_calculation");
    group.bench_function("rust direct", |b| b.iter(|| handlers::simple_calculation(std::hint::black_box(&input))));
    group.bench_function("rust through dispatch", |b| {
        b.iter(|| {
            let handler = Handler::from_name(std::hint::black_box("simple_calculation")).unwrap();
            runtime.block_on(handler.run(&pool, task, &input))
        })
    });
    group.bench_function("ruby through ffi", |b| {
        b.iter(|| {
            let handler = Handler::from_name(std::hint::black_box("ruby_simple_calculation")).unwrap();
            runtime.block_on(vm.call(call(handler)))
        })
    });
    group.finish();
    // Each way gives the same answer.
    assert_eq!(handlers::simple_calculation(&input).unwrap(), expected);
    let handler = Handler::from_name("ruby_simple_calculation").unwrap();
    assert_eq!(runtime.block_on(vm.call(call(handler))).unwrap(), expected);
}

fn main() {
    // Criterion's files under the build's target directory, wherever the bench runs from.
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("criterion");
    let mut criterion = Criterion::default().output_directory(&dir).configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
    ratios(&dir.join("simple_calculation"));
}

/// Each way's mean as a ratio of the direct call's, from criterion's own estimates of this run.
fn ratios(dir: &std::path::Path) {
    let mean = |bench: &str| -> Option<f64> {
        let path = dir.join(bench).join("new/estimates.json");
        let estimates: Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
        estimates["mean"]["point_estimate"].as_f64()
    };
    let Some(direct) = mean("rust direct") else {
        return; // under `cargo test` criterion writes no estimates
    };
    println!("\nmean per call, and as a ratio of the direct call:");
    for bench in ["rust direct", "rust through dispatch", "ruby through ffi"] {
        if let Some(ns) = mean(bench) {
            println!("  {bench:<22} {:>10.0} ns  {:>8.1}×", ns, ns / direct);
        }
    }
}
