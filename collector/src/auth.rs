//! Optional bearer-token authentication (`[auth] token_file`), as the OpenTelemetry Collector's
//! `bearertokenauth` extension does it: OTLP/gRPC, OTLP/HTTP and the Jaeger query API admit a request only
//! with `Authorization: Bearer <token>` naming one of the file's tokens. `/health` and `/metrics` stay open
//! for load balancers and scrapers; they say how much arrived, not what.
//!
//! The file holds one token per line (blank lines and `#` comments ignored), so a token can be rotated by
//! adding the new one, moving the clients, then removing the old one. It is read once, at start.

use std::path::Path;
use std::sync::Arc;

use http::header::AUTHORIZATION;
use http::HeaderMap;

/// The tokens a request may present.
#[derive(Clone)]
pub struct Tokens(Arc<Vec<Vec<u8>>>);

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} held)", self.0.len())
    }
}

/// Why a request was turned away; the message the client sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    Missing,
    Wrong,
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Denied::Missing => "this collector requires an Authorization: Bearer <token> header",
            Denied::Wrong => "the bearer token is not one this collector accepts",
        })
    }
}

impl Tokens {
    pub fn load(path: &Path) -> Result<Tokens, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
        Tokens::parse(&text).map_err(|e| format!("token file {}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Tokens, String> {
        let mut tokens = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let token = line.trim();
            if token.is_empty() || token.starts_with('#') {
                continue;
            }
            // What a header can carry after "Bearer ": visible ASCII, no spaces.
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!("line {}: a token is visible ASCII without spaces", i + 1));
            }
            tokens.push(token.as_bytes().to_vec());
        }
        if tokens.is_empty() {
            return Err("holds no token (one per line)".into());
        }
        Ok(Tokens(Arc::new(tokens)))
    }

    /// `Bearer <the first token>`, for a client of such a collector (forwarding).
    pub fn bearer(&self) -> http::HeaderValue {
        let value = [b"Bearer ".as_slice(), &self.0[0]].concat();
        http::HeaderValue::from_bytes(&value).expect("tokens are visible ASCII")
    }

    /// Whether `headers` present one of the tokens. The scheme is matched without regard to case (RFC 9110).
    pub fn admit(&self, headers: &HeaderMap) -> Result<(), Denied> {
        let value = headers.get(AUTHORIZATION).ok_or(Denied::Missing)?.as_bytes();
        let (scheme, presented) = value.split_at_checked(7).ok_or(Denied::Wrong)?;
        if !scheme.eq_ignore_ascii_case(b"bearer ") {
            return Err(Denied::Wrong);
        }
        let presented = presented.trim_ascii();
        // Every token is compared in full, so the time taken tells nothing of how close a guess came.
        let matched = self.0.iter().fold(false, |found, token| found | same(token, presented));
        matched.then_some(()).ok_or(Denied::Wrong)
    }
}

/// Byte equality in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(authorization: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = authorization {
            h.insert(AUTHORIZATION, a.parse().unwrap());
        }
        h
    }

    #[test]
    fn admits_any_listed_token_and_nothing_else() {
        let tokens = Tokens::parse("# rotated 2026-12\nold-token\n\n  new-token  \n").unwrap();
        assert_eq!(tokens.admit(&headers(Some("Bearer old-token"))), Ok(()));
        assert_eq!(tokens.admit(&headers(Some("bearer new-token"))), Ok(()));
        assert_eq!(tokens.admit(&headers(None)), Err(Denied::Missing));
        for wrong in ["Bearer old-toke", "Bearer old-token2", "Basic b2xkLXRva2Vu", "Bearer ", "Bearer", "old-token"] {
            assert_eq!(tokens.admit(&headers(Some(wrong))), Err(Denied::Wrong), "{wrong:?}");
        }
    }

    #[test]
    fn a_file_without_tokens_or_with_a_spaced_one_is_refused() {
        assert!(Tokens::parse("# only a comment\n\n").unwrap_err().contains("no token"));
        assert!(Tokens::parse("good\nbad token\n").unwrap_err().contains("line 2"));
    }
}
