//! OTLP's span kinds and status codes: the numbers on the wire and in the store, and the names people
//! write in configs and read in Jaeger.

/// A span's kind, as OTLP numbers it. The store keeps the number a client sent (0..=255); numbers OTLP
/// does not define read as [`SpanKind::Unspecified`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(u8)]
pub enum SpanKind {
    #[default]
    Unspecified = 0,
    Internal = 1,
    Server = 2,
    Client = 3,
    Producer = 4,
    Consumer = 5,
}

impl SpanKind {
    /// Every kind a span can be given, in OTLP's order.
    pub const ALL: [SpanKind; 5] =
        [SpanKind::Internal, SpanKind::Server, SpanKind::Client, SpanKind::Producer, SpanKind::Consumer];

    pub fn from_code(code: u8) -> SpanKind {
        match code {
            1 => SpanKind::Internal,
            2 => SpanKind::Server,
            3 => SpanKind::Client,
            4 => SpanKind::Producer,
            5 => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        }
    }

    pub fn code(self) -> u8 {
        self as u8
    }

    /// The lower-case name (`server`, …) that configs and Jaeger's `spanKind` use; unspecified has none.
    pub fn name(self) -> Option<&'static str> {
        match self {
            SpanKind::Unspecified => None,
            SpanKind::Internal => Some("internal"),
            SpanKind::Server => Some("server"),
            SpanKind::Client => Some("client"),
            SpanKind::Producer => Some("producer"),
            SpanKind::Consumer => Some("consumer"),
        }
    }

    /// The kind of a lower-case name.
    pub fn from_name(name: &str) -> Option<SpanKind> {
        SpanKind::ALL.into_iter().find(|k| k.name() == Some(name))
    }

    /// The enum's name in OTLP/JSON (`SPAN_KIND_SERVER`), which JSON senders may use instead of the number.
    pub fn otlp_name(self) -> &'static str {
        match self {
            SpanKind::Unspecified => "SPAN_KIND_UNSPECIFIED",
            SpanKind::Internal => "SPAN_KIND_INTERNAL",
            SpanKind::Server => "SPAN_KIND_SERVER",
            SpanKind::Client => "SPAN_KIND_CLIENT",
            SpanKind::Producer => "SPAN_KIND_PRODUCER",
            SpanKind::Consumer => "SPAN_KIND_CONSUMER",
        }
    }
}

/// A span's status code, as OTLP numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum StatusCode {
    #[default]
    Unset = 0,
    Ok = 1,
    Error = 2,
}

impl StatusCode {
    pub fn from_code(code: u8) -> StatusCode {
        match code {
            1 => StatusCode::Ok,
            2 => StatusCode::Error,
            _ => StatusCode::Unset,
        }
    }

    /// `OK` or `ERROR` (Jaeger's `otel.status_code` tag); unset has none.
    pub fn name(self) -> Option<&'static str> {
        match self {
            StatusCode::Unset => None,
            StatusCode::Ok => Some("OK"),
            StatusCode::Error => Some("ERROR"),
        }
    }

    /// The enum's name in OTLP/JSON.
    pub fn otlp_name(self) -> &'static str {
        match self {
            StatusCode::Unset => "STATUS_CODE_UNSET",
            StatusCode::Ok => "STATUS_CODE_OK",
            StatusCode::Error => "STATUS_CODE_ERROR",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_names_round_trip() {
        for kind in SpanKind::ALL {
            assert_eq!(SpanKind::from_code(kind.code()), kind);
            assert_eq!(SpanKind::from_name(kind.name().unwrap()), Some(kind));
        }
        assert_eq!(SpanKind::from_code(9), SpanKind::Unspecified);
        assert_eq!(SpanKind::from_name("SERVER"), None);
        assert_eq!(SpanKind::Server.otlp_name(), "SPAN_KIND_SERVER");
        assert_eq!(StatusCode::from_code(2).name(), Some("ERROR"));
        assert_eq!(StatusCode::from_code(7), StatusCode::Unset);
    }
}
