//! Shared by the export tests (each its own test binary, as they set process-wide OTEL_* variables).
#![allow(dead_code)]

use hoptrace_collector::{Collector, Config};
use hoptrace_store::{SpanRecord, TimeRange};

pub struct Sink {
    pub collector: Collector,
    pub dir: tempfile::TempDir,
}

pub async fn sink() -> Sink {
    let dir = tempfile::tempdir().unwrap();
    Sink { collector: Collector::start(Config::ephemeral(dir.path())).await.unwrap(), dir }
}

impl Sink {
    pub async fn spans(self) -> Vec<SpanRecord> {
        self.collector.stop().await.unwrap();
        let frame = hoptrace_store::scan(self.dir.path(), TimeRange::all()).unwrap().collect().unwrap();
        hoptrace_store::records(&frame).unwrap()
    }
}
