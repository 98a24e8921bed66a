//! The OTLP receivers: gRPC (`TraceService/Export`) and HTTP (`POST /v1/traces`, with `/health` and
//! `/metrics`), and the body rules they share. Both hand checked requests to the one [`crate::pipeline`].

pub mod body;
pub mod grpc;
pub mod http;
