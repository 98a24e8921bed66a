//! Reading an OTLP/HTTP request body: content encoding, the size limit after decompression, and the
//! content type. Kept free of any server types so the fuzz target can drive it directly.

use std::io::Read;

use bytes::Bytes;
use hoptrace_otlp::Rejection;
use hoptrace_store::Batch;
use prost::Message;

/// The payload encodings of OTLP/HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Protobuf,
    Json,
}

impl Format {
    /// From a `Content-Type` header value; parameters such as `charset` are ignored.
    pub fn from_content_type(value: &str) -> Option<Format> {
        match value.split(';').next().unwrap_or("").trim().to_ascii_lowercase().as_str() {
            "application/x-protobuf" | "application/protobuf" => Some(Format::Protobuf),
            "application/json" => Some(Format::Json),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        }
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("request body exceeds {limit} bytes after decompression")]
    TooLarge { limit: usize },
    #[error("unsupported Content-Encoding {0:?}; use gzip or none")]
    UnsupportedEncoding(String),
    #[error("{0}")]
    Invalid(String),
}

/// Undoes `Content-Encoding`, reading at most `limit` bytes of output, so a small gzip bomb costs at most
/// `limit` bytes of memory before it is refused.
pub fn decompress(encoding: Option<&str>, body: &[u8], limit: usize) -> Result<Vec<u8>, BodyError> {
    if body.len() > limit {
        return Err(BodyError::TooLarge { limit });
    }
    match encoding.map(|e| e.trim().to_ascii_lowercase()) {
        None => Ok(body.to_vec()),
        Some(e) if e.is_empty() || e == "identity" => Ok(body.to_vec()),
        Some(e) if e == "gzip" || e == "x-gzip" => {
            let mut out = Vec::with_capacity((body.len() * 4).min(limit));
            flate2::read::MultiGzDecoder::new(body)
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| BodyError::Invalid(format!("gzip body cannot be decompressed: {e}")))?;
            if out.len() > limit {
                return Err(BodyError::TooLarge { limit });
            }
            Ok(out)
        }
        Some(e) => Err(BodyError::UnsupportedEncoding(e)),
    }
}

/// A checked request: its accepted spans with the protobuf encoding they point into (which the
/// write-ahead log stores), and the spans it rejected.
pub struct Decoded {
    pub batch: Batch,
    pub rejected: Vec<Rejection>,
}

/// Checks an uncompressed body in the given format. A JSON body is decoded and encoded as protobuf, so
/// both formats are stored (and checked) the same way.
pub fn decode(format: Format, body: Vec<u8>) -> Result<Decoded, BodyError> {
    let protobuf = match format {
        Format::Protobuf => Bytes::from(body),
        Format::Json => Bytes::from(hoptrace_otlp::json::decode(&body).map_err(BodyError::Invalid)?.encode_to_vec()),
    };
    let (batch, rejected) =
        Batch::scan(protobuf).map_err(|e| BodyError::Invalid(format!("invalid OTLP protobuf: {e}")))?;
    Ok(Decoded { batch, rejected })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn gzip_bomb_is_refused_without_inflating_it() {
        let bomb = gzip(&vec![0u8; 64 << 20]);
        assert!(bomb.len() < 100_000);
        assert_eq!(decompress(Some("gzip"), &bomb, 1 << 20), Err(BodyError::TooLarge { limit: 1 << 20 }));
    }

    #[test]
    fn limits_apply_to_plain_and_gzip_bodies() {
        assert_eq!(decompress(None, &[1; 11], 10), Err(BodyError::TooLarge { limit: 10 }));
        assert_eq!(decompress(Some("gzip"), &gzip(&[7; 100]), 100).unwrap(), vec![7; 100]);
        assert_eq!(decompress(Some("gzip"), &gzip(&[7; 101]), 100), Err(BodyError::TooLarge { limit: 100 }));
        assert!(matches!(decompress(Some("gzip"), b"not gzip", 10), Err(BodyError::Invalid(_))));
        assert!(matches!(decompress(Some("br"), b"x", 10), Err(BodyError::UnsupportedEncoding(_))));
    }

    #[test]
    fn content_types() {
        assert_eq!(Format::from_content_type("application/json; charset=utf-8"), Some(Format::Json));
        assert_eq!(Format::from_content_type("Application/X-Protobuf"), Some(Format::Protobuf));
        assert_eq!(Format::from_content_type("text/plain"), None);
    }

    proptest::proptest! {
        /// Arbitrary bytes, in either format, plain or claimed gzip: an error or a request, never a panic.
        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512), json: bool, gzip: bool) {
            let format = if json { Format::Json } else { Format::Protobuf };
            if let Ok(raw) = decompress(gzip.then_some("gzip"), &body, 1 << 16) {
                let _ = decode(format, raw);
            }
        }

        /// A hand-checked JSON request cut anywhere is either still valid or a 400-class error.
        #[test]
        fn truncated_json_is_an_invalid_argument(cut in 0usize..2_000) {
            let full = include_bytes!("../../tests/requests/full.json");
            let cut = cut.min(full.len());
            match decode(Format::Json, full[..cut].to_vec()) {
                Ok(_) => proptest::prop_assert!(full[cut..].iter().all(u8::is_ascii_whitespace)),
                Err(e) => proptest::prop_assert!(matches!(e, BodyError::Invalid(m) if m.starts_with("invalid OTLP/JSON"))),
            }
        }
    }
}
