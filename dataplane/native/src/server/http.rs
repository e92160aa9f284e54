//! OTLP/HTTP: `POST /v1/traces|logs|metrics` over HTTP/1.1 or h2c, protobuf or JSON bodies.
//!
//! Checked in this order, each refusal answered with a `google.rpc.Status` body (protobuf, or
//! JSON for JSON requests): the Content-Type (415 `unsupported_media_type`), the declared
//! Content-Length (413 `too_large`, before reading), the memory budget (503 `memory_limit`
//! with `Retry-After: 1`; the body is charged *before* it is read), the body read up to
//! `max_request_body_size` (413), its Content-Encoding (415 `unsupported_encoding`, 400
//! `malformed`, 413 when it decodes past the limit). Other paths: 404; other methods: 405.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::Service;

use super::decompress::{decode, DecompressError, Encoding};
use super::{code, Shared};
use crate::budget::Held;

/// The signal a path names.
pub fn signal_of(path: &str) -> Option<&'static str> {
    match path {
        "/v1/traces" => Some("traces"),
        "/v1/logs" => Some("logs"),
        "/v1/metrics" => Some("metrics"),
        _ => None,
    }
}

fn varint(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A google.rpc.Status, the error body OTLP/HTTP specifies.
pub fn status_body(grpc_code: u32, message: &str, as_json: bool) -> Vec<u8> {
    if as_json {
        return format!(
            "{{\"code\": {grpc_code}, \"message\": {}}}",
            json_string(message)
        )
        .into_bytes();
    }
    let mut out = vec![0x08];
    varint(u64::from(grpc_code), &mut out);
    out.push(0x12);
    varint(message.len() as u64, &mut out);
    out.extend_from_slice(message.as_bytes());
    out
}

fn content_type(as_json: bool) -> &'static str {
    if as_json {
        "application/json"
    } else {
        "application/x-protobuf"
    }
}

/// The answer as an HTTP response (success: an empty Export*ServiceResponse).
pub fn response(
    status: u16,
    grpc_code: u32,
    message: &str,
    as_json: bool,
) -> Response<Full<Bytes>> {
    let body = if status == 200 {
        if as_json {
            b"{}".to_vec()
        } else {
            Vec::new()
        }
    } else {
        status_body(grpc_code, message, as_json)
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = resp.headers_mut();
    headers.insert(
        "content-type",
        HeaderValue::from_static(content_type(as_json)),
    );
    if status == 503 {
        headers.insert("retry-after", HeaderValue::from_static("1"));
    }
    resp
}

fn plain(status: u16, text: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *resp.status_mut() = http::StatusCode::from_u16(status).expect("a valid status");
    resp.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

pub(crate) fn service(
    shared: Arc<Shared>,
) -> impl Service<
    Request<Incoming>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl std::future::Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |req: Request<Incoming>| {
        let shared = shared.clone();
        async move { Ok(handle(&shared, req).await) }
    })
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let Some(signal) = signal_of(req.uri().path()) else {
        return plain(404, "404: Not Found");
    };
    if req.method() != Method::POST {
        return plain(405, "405: Method Not Allowed");
    }
    let raw_type = super::header(req.headers(), "content-type");
    let media = raw_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let as_json = media == "application/json";
    if !as_json && media != "application/x-protobuf" {
        let message = format!("unsupported Content-Type {media:?}");
        shared.refuse(signal, "unsupported_media_type", media.clone(), None);
        return response(415, code::INVALID_ARGUMENT, &message, false);
    }
    let refuse = |status: u16, grpc_code: u32, reason: &'static str, message: String| {
        shared.refuse(signal, reason, message.clone(), None);
        response(status, grpc_code, &message, as_json)
    };
    let limit = shared.limit;
    let length: Option<u64> = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    if let Some(n) = length {
        if n > limit as u64 {
            return refuse(
                413,
                code::RESOURCE_EXHAUSTED,
                "too_large",
                format!("request of {n} bytes exceeds the limit of {limit} bytes"),
            );
        }
    }
    let encoding_name = super::header(req.headers(), "content-encoding");
    let encoded = !matches!(
        encoding_name.trim().to_ascii_lowercase().as_str(),
        "" | "identity"
    );
    // The body and what it becomes (decompressed up to the limit, the request and its parts)
    // are charged before it is read: a request that does not fit is refused unread. (An
    // estimate for compressed and JSON bodies, corrected once they are decoded.)
    let estimate = match length {
        None => 2 * limit as u64,
        Some(n) if as_json || encoded => 4 * n,
        Some(n) => 2 * n,
    };
    let mut held = Held::empty(&shared.budget);
    let memory_refusal = |shared: &Shared| {
        let budget = &shared.budget;
        format!(
            "memory budget exhausted ({} of {} MiB of buffered data in use); retry later",
            budget.used() >> 20,
            budget.limit() >> 20
        )
    };
    if !held.try_grow(estimate) {
        return refuse(
            503,
            code::UNAVAILABLE,
            "memory_limit",
            memory_refusal(shared),
        );
    }
    let body = match Limited::new(req.into_body(), limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => {
            return refuse(
                413,
                code::RESOURCE_EXHAUSTED,
                "too_large",
                format!("request body exceeds the limit of {limit} bytes"),
            );
        }
        // The client went away while sending: nobody to answer.
        Err(_) => return plain(400, "400: incomplete request body"),
    };
    let data = match Encoding::parse(&encoding_name) {
        Ok(Encoding::Identity) => body.clone(), // no copy
        Ok(encoding) => match decode(&body, encoding, limit) {
            Ok(d) => Bytes::from(d),
            Err(err) => return decompress_refusal(&refuse, err),
        },
        Err(err) => return decompress_refusal(&refuse, err),
    };
    drop(body);
    let needed = 3 * data.len() as u64; // the decoded body, the request and its parts
    if needed > held.bytes() && !held.try_grow(needed - held.bytes()) {
        return refuse(
            503,
            code::UNAVAILABLE,
            "memory_limit",
            memory_refusal(shared),
        );
    }
    match shared.hand_over(signal, data, as_json, None, held).await {
        Some(a) => response(a.http_status, a.grpc_code, &a.message, as_json),
        None => response(504, code::DEADLINE_EXCEEDED, "deadline exceeded", as_json),
    }
}

fn decompress_refusal(
    refuse: &impl Fn(u16, u32, &'static str, String) -> Response<Full<Bytes>>,
    err: DecompressError,
) -> Response<Full<Bytes>> {
    let message = err.to_string();
    match err {
        DecompressError::Unsupported(_) => {
            refuse(415, code::INVALID_ARGUMENT, "unsupported_encoding", message)
        }
        DecompressError::TooLarge(_) => refuse(413, code::RESOURCE_EXHAUSTED, "too_large", message),
        DecompressError::Corrupt(_) => refuse(400, code::INVALID_ARGUMENT, "malformed", message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_bodies_are_google_rpc_status() {
        assert_eq!(status_body(14, "full", false), b"\x08\x0e\x12\x04full");
        assert_eq!(
            status_body(3, "bad \"x\"\n", true),
            br#"{"code": 3, "message": "bad \"x\"\u000a"}"#
        );
    }

    #[test]
    fn a_503_says_when_to_retry() {
        let r = response(503, code::UNAVAILABLE, "full", false);
        assert_eq!(r.headers()["retry-after"], "1");
        assert_eq!(r.headers()["content-type"], "application/x-protobuf");
        let ok = response(200, code::OK, "", true);
        assert_eq!(ok.headers()["content-type"], "application/json");
    }

    #[test]
    fn only_the_three_paths_are_signals() {
        assert_eq!(signal_of("/v1/logs"), Some("logs"));
        assert_eq!(signal_of("/v1/traces/"), None);
    }
}
