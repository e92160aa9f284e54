//! gRPC status codes and how HTTP/2 outcomes map onto them.
//!
//! A call's outcome is a [`Status`]: the `grpc-status` / `grpc-message` /
//! `grpc-status-details-bin` a server sent (in trailers, or in the headers of a
//! trailers-only response), or one derived from what went wrong below gRPC, the way
//! grpc-go derives it: a refused or reset connection is `UNAVAILABLE`, the local timer
//! `DEADLINE_EXCEEDED`, a non-200 HTTP status follows the gRPC HTTP-to-status mapping
//! and an HTTP/2 `RST_STREAM` code follows grpc-go's table.

use std::fmt;

use bytes::Bytes;

/// The 17 gRPC status codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

const CODES: [Code; 17] = [
    Code::Ok,
    Code::Cancelled,
    Code::Unknown,
    Code::InvalidArgument,
    Code::DeadlineExceeded,
    Code::NotFound,
    Code::AlreadyExists,
    Code::PermissionDenied,
    Code::ResourceExhausted,
    Code::FailedPrecondition,
    Code::Aborted,
    Code::OutOfRange,
    Code::Unimplemented,
    Code::Internal,
    Code::Unavailable,
    Code::DataLoss,
    Code::Unauthenticated,
];

impl Code {
    /// The code for a number; out-of-range numbers are `UNKNOWN` (as gRPC treats them).
    pub fn from_u32(n: u32) -> Code {
        CODES.get(n as usize).copied().unwrap_or(Code::Unknown)
    }

    /// The code's canonical name (`UNAVAILABLE`), as grpcio's `StatusCode.name`.
    pub fn name(self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::Cancelled => "CANCELLED",
            Code::Unknown => "UNKNOWN",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Aborted => "ABORTED",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
            Code::DataLoss => "DATA_LOSS",
            Code::Unauthenticated => "UNAUTHENTICATED",
        }
    }

    /// The gRPC code for a non-200 HTTP status (gRPC's "HTTP to gRPC status code mapping").
    pub fn from_http(status: u16) -> Code {
        match status {
            400 => Code::Internal,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 => Code::Unimplemented,
            429 | 502 | 503 | 504 => Code::Unavailable,
            _ => Code::Unknown,
        }
    }

    /// The gRPC code for an HTTP/2 error code received in `RST_STREAM` (grpc-go's table).
    pub fn from_h2_reason(reason: u32) -> Code {
        match reason {
            0x3 | 0xb => Code::ResourceExhausted, // FLOW_CONTROL_ERROR, ENHANCE_YOUR_CALM
            0x7 => Code::Unavailable,             // REFUSED_STREAM
            0x8 => Code::Cancelled,               // CANCEL
            0xc => Code::PermissionDenied,        // INADEQUATE_SECURITY
            _ => Code::Internal,
        }
    }
}

/// A call's failure: code, message and the serialized `google.rpc.Status` details (may be empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub code: Code,
    pub message: String,
    pub details: Bytes,
}

impl Status {
    pub fn new(code: Code, message: impl Into<String>) -> Status {
        Status {
            code,
            message: message.into(),
            details: Bytes::new(),
        }
    }

    /// The status carried by `grpc-status`, `grpc-message` and `grpc-status-details-bin` header
    /// values; `None` when there is no `grpc-status`.
    pub fn from_header_values(
        status: Option<&[u8]>,
        message: Option<&[u8]>,
        details: Option<&[u8]>,
    ) -> Option<Status> {
        let raw = status?;
        let code = std::str::from_utf8(raw)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .map(Code::from_u32)
            .unwrap_or(Code::Unknown);
        Some(Status {
            code,
            message: message.map(percent_decode).unwrap_or_default(),
            details: details
                .and_then(base64_decode)
                .map(Bytes::from)
                .unwrap_or_default(),
        })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.name(), self.message)
    }
}

impl std::error::Error for Status {}

/// `grpc-message` is percent-encoded UTF-8; invalid escapes are kept as they are.
pub fn percent_decode(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' && i + 2 < raw.len() {
            if let (Some(h), Some(l)) = (hex(raw[i + 1]), hex(raw[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Base64 (standard alphabet, padded or not) as gRPC sends `-bin` metadata; `None` when malformed.
pub fn base64_decode(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &c in raw.iter().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// The `grpc-timeout` header value for `timeout`: at most 8 digits and the finest unit that fits.
pub fn encode_timeout(timeout: std::time::Duration) -> String {
    const MAX: u128 = 99_999_999;
    let nanos = timeout.as_nanos();
    for (unit, per) in [
        ("n", 1u128),
        ("u", 1_000),
        ("m", 1_000_000),
        ("S", 1_000_000_000),
        ("M", 60_000_000_000),
    ] {
        let value = nanos.div_ceil(per);
        if value <= MAX {
            return format!("{value}{unit}");
        }
    }
    format!("{}H", nanos.div_ceil(3_600_000_000_000).min(MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn status_from_trailer_values() {
        let s = Status::from_header_values(
            Some(b"8"),
            Some(b"too%20many%25 %E2%9C%93"),
            Some(b"CAgSBGZ1bGw"),
        )
        .unwrap();
        assert_eq!(s.code, Code::ResourceExhausted);
        assert_eq!(s.message, "too many% \u{2713}");
        assert_eq!(&s.details[..], b"\x08\x08\x12\x04full");
        assert!(Status::from_header_values(None, Some(b"x"), None).is_none());
        let odd = Status::from_header_values(Some(b"99"), Some(b"bad%zz%4"), None).unwrap();
        assert_eq!(odd.code, Code::Unknown);
        assert_eq!(odd.message, "bad%zz%4");
        let junk = Status::from_header_values(Some(b"x1"), None, Some(b"!!")).unwrap();
        assert_eq!(junk.code, Code::Unknown);
        assert!(junk.details.is_empty());
    }

    #[test]
    fn base64_padded_and_unpadded() {
        assert_eq!(base64_decode(b"aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode(b"aGVsbG8").unwrap(), b"hello");
        assert_eq!(base64_decode(b"").unwrap(), b"");
        assert!(base64_decode(b"a*b").is_none());
    }

    #[test]
    fn http_and_h2_mappings_follow_grpc() {
        assert_eq!(Code::from_http(503), Code::Unavailable);
        assert_eq!(Code::from_http(429), Code::Unavailable);
        assert_eq!(Code::from_http(404), Code::Unimplemented);
        assert_eq!(Code::from_http(401), Code::Unauthenticated);
        assert_eq!(Code::from_http(400), Code::Internal);
        assert_eq!(Code::from_http(500), Code::Unknown);
        assert_eq!(Code::from_h2_reason(7), Code::Unavailable);
        assert_eq!(Code::from_h2_reason(8), Code::Cancelled);
        assert_eq!(Code::from_h2_reason(2), Code::Internal);
        assert_eq!(Code::from_u32(14).name(), "UNAVAILABLE");
        assert_eq!(Code::from_u32(17), Code::Unknown);
    }

    #[test]
    fn timeouts_use_at_most_eight_digits() {
        assert_eq!(encode_timeout(Duration::from_millis(5000)), "5000000u");
        assert_eq!(encode_timeout(Duration::from_nanos(1500)), "1500n");
        assert_eq!(encode_timeout(Duration::from_secs(3600)), "3600000m");
        assert_eq!(encode_timeout(Duration::from_secs(400_000_000)), "6666667M");
        assert_eq!(encode_timeout(Duration::ZERO), "0n");
    }
}
