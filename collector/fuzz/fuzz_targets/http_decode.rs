//! The OTLP/HTTP decode path on arbitrary bytes: content encoding, the size limit, protobuf or JSON
//! decoding, then the span validation the store applies. Nothing may panic, whatever the bytes.
#![no_main]

use hoptrace_collector::receiver::body::{decode, decompress, Format};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let format = if selector & 1 == 0 { Format::Protobuf } else { Format::Json };
    let encoding = if selector & 2 == 0 { None } else { Some("gzip") };
    if let Ok(raw) = decompress(encoding, body, 1 << 20) {
        let _ = decode(format, raw);
    }
});
