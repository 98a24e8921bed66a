//! Small hand-made spans for unit tests.
#![cfg(test)]

use std::sync::Arc;

use crate::model::{Origin, SpanRow};

pub fn row(trace: u8, span: u8) -> SpanRow {
    SpanRow {
        trace_id: [trace.max(1); 16],
        span_id: [span.max(1); 8],
        parent_span_id: None,
        trace_state: String::new(),
        flags: 1,
        name: format!("span {span}"),
        kind: 2,
        start_time_unix_nano: 1_000 + span as u64,
        end_time_unix_nano: 2_000 + span as u64,
        status_code: 0,
        status_message: String::new(),
        attributes: Vec::new(),
        events: Vec::new(),
        links: Vec::new(),
        origin: Arc::new(Origin { service_name: "svc".into(), ..Default::default() }),
    }
}
