//! What hoptrace's tests and benchmarks share, and nothing a user's build needs: every crate takes it as
//! a dev-dependency only.
//!
//! - [`ScratchDb`]: a PostgreSQL database of a test's own, dropped with it.
//! - [`spans`]: small hand-made spans.
//! - [`golden`]: output compared with a file checked in beside the test (`UPDATE_GOLDEN=1` rewrites it).
//! - [`grpc::RawCodec`]: OTLP/gRPC requests sent as exact bytes.
//! - [`shared`]: recorded data beside the repository (`../shared`), or a skip message.
//! - [`seaweed::Seaweed`]: an S3-compatible server (SeaweedFS) of a test's own.

mod golden;
pub mod grpc;
mod scratch;
pub mod seaweed;
mod shared;
pub mod spans;

pub use golden::golden;
pub use scratch::ScratchDb;
pub use shared::shared;
