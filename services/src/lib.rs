//! The reference workflow system hoptrace measures: an orchestrator (HTTP API, ready-step discovery,
//! result processing, task completion), workers that claim steps from a PGMQ queue and run their
//! handlers (in Rust, or in Ruby on the Ruby worker), and a load generator for the six benchmark
//! categories.
//!
//! Work crosses processes only through PostgreSQL: a PGMQ message (its `headers` carry the trace context)
//! announced by a `pg_notify` event (its payload carries the trace context too). Every hop opens its span
//! through `hoptrace-instrumentation`, so one task is one trace from `POST /v1/tasks` to `complete task`.

pub mod coordination;
pub mod database;
pub mod faults;
pub mod handlers;
pub mod health;
pub mod loadgen;
pub mod orchestration;
pub mod queue;
pub mod ruby;
pub mod service;
pub mod templates;
pub mod worker;
