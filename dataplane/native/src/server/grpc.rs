//! OTLP/gRPC: the three Export methods over HTTP/2 (h2c), one length-prefixed message each.
//!
//! A message is read until its 5-byte header says how long it is; one declared longer than
//! the limit is refused at once (RESOURCE_EXHAUSTED, `too_large`) without reading it. Then it
//! is decompressed (`grpc-encoding`: identity, gzip, deflate, zstd, snappy; the Go
//! collector's gRPC `snappy` is the framed format), bounded by the same limit, and charged to
//! the memory budget (UNAVAILABLE, `memory_limit`, when it does not fit). `grpc-timeout`
//! becomes the request's deadline. Every answer carries `grpc-status`/`grpc-message`
//! trailers; success is an empty Export*ServiceResponse.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::Service;
use tokio::time::Instant;

use super::decompress::{decode, DecompressError, Encoding};
use super::{code, Shared};
use crate::budget::Held;

/// The Export method paths, by signal (as `dataplane/exporter.py` METHODS).
pub const METHODS: [(&str, &str); 3] = [
    (
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        "traces",
    ),
    (
        "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        "logs",
    ),
    (
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        "metrics",
    ),
];

const ACCEPT_ENCODING: &str = "identity,gzip,deflate,zstd,snappy";

/// A unary gRPC response body: at most one message, then trailers.
#[derive(Debug, Default)]
pub struct GrpcBody {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Body for GrpcBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(data) = this.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }
}

/// `grpc-message`: percent-encoded outside printable ASCII (and `%` itself).
pub fn encode_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for &b in message.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn status_headers(headers: &mut HeaderMap, grpc_code: u32, message: &str) {
    headers.insert("grpc-status", HeaderValue::from(grpc_code));
    if !message.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&encode_message(message)) {
            headers.insert("grpc-message", v);
        }
    }
}

/// The response for a status: success is one empty message and trailers; anything else is
/// trailers-only (the status in the response headers, no body).
pub fn response(grpc_code: u32, message: &str) -> Response<GrpcBody> {
    let mut builder = Response::builder()
        .status(200)
        .header("content-type", "application/grpc");
    if grpc_code != code::OK {
        builder = builder.header("grpc-accept-encoding", ACCEPT_ENCODING);
        let mut resp = builder.body(GrpcBody::default()).expect("static headers");
        status_headers(resp.headers_mut(), grpc_code, message);
        return resp;
    }
    let mut trailers = HeaderMap::new();
    status_headers(&mut trailers, code::OK, "");
    builder
        .body(GrpcBody {
            data: Some(Bytes::from_static(&[0, 0, 0, 0, 0])),
            trailers: Some(trailers),
        })
        .expect("static headers")
}

/// `grpc-timeout`: up to 8 digits and a unit (H, M, S, m, u, n).
pub fn parse_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Why reading a message failed.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    /// The declared length exceeds the limit (nothing more was read).
    TooLarge(usize),
    /// The stream ended before a whole message (or failed).
    Incomplete,
}

/// Read one length-prefixed message: (compressed flag, payload); stops reading at its end.
pub async fn read_message<B>(body: &mut B, limit: usize) -> Result<(bool, Bytes), ReadError>
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut buf = BytesMut::new();
    let mut want: Option<(bool, usize)> = None;
    loop {
        if want.is_none() && buf.len() >= 5 {
            let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            if len > limit {
                return Err(ReadError::TooLarge(len));
            }
            let compressed = buf[0] & 1 == 1;
            buf.advance(5);
            buf.reserve(len.saturating_sub(buf.len()));
            want = Some((compressed, len));
        }
        if let Some((compressed, len)) = want {
            if buf.len() >= len {
                buf.truncate(len);
                return Ok((compressed, buf.freeze()));
            }
        }
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    buf.extend_from_slice(&data);
                }
            }
            Some(Err(_)) | None => return Err(ReadError::Incomplete),
        }
    }
}

pub(crate) fn service(
    shared: Arc<Shared>,
) -> impl Service<
    Request<Incoming>,
    Response = Response<GrpcBody>,
    Error = Infallible,
    Future = impl std::future::Future<Output = Result<Response<GrpcBody>, Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |req: Request<Incoming>| {
        let shared = shared.clone();
        async move { Ok(handle(&shared, req).await) }
    })
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<GrpcBody> {
    let Some(&(_, signal)) = METHODS.iter().find(|(path, _)| *path == req.uri().path()) else {
        return response(
            code::UNIMPLEMENTED,
            &format!("unknown method {}", req.uri().path()),
        );
    };
    let encoding_name = super::header(req.headers(), "grpc-encoding");
    let encoding = match Encoding::parse(&encoding_name) {
        Ok(e) => e,
        Err(err) => {
            let message = format!(
                "unsupported grpc-encoding {encoding_name:?} (supported: {ACCEPT_ENCODING})"
            );
            shared.refuse(signal, "unsupported_encoding", message.clone(), None);
            let _ = err;
            return response(code::UNIMPLEMENTED, &message);
        }
    };
    let deadline =
        parse_timeout(&super::header(req.headers(), "grpc-timeout")).map(|t| Instant::now() + t);
    let limit = shared.limit;
    let mut body = req.into_body();
    let read = read_message(&mut body, limit);
    let read = match deadline {
        Some(d) => match tokio::time::timeout_at(d, read).await {
            Ok(r) => r,
            Err(_) => {
                shared.refuse(
                    signal,
                    "deadline_exceeded",
                    "the deadline passed while the request was being received".into(),
                    None,
                );
                return response(code::DEADLINE_EXCEEDED, "deadline exceeded");
            }
        },
        None => read.await,
    };
    drop(body);
    let (compressed, payload) = match read {
        Ok(m) => m,
        Err(ReadError::TooLarge(size)) => {
            let message = format!("request of {size} bytes exceeds the limit of {limit} bytes");
            shared.refuse(signal, "too_large", message.clone(), None);
            return response(code::RESOURCE_EXHAUSTED, &message);
        }
        Err(ReadError::Incomplete) => {
            let message = "the request stream ended before a whole message".to_string();
            shared.refuse(signal, "malformed", message.clone(), None);
            return response(code::INVALID_ARGUMENT, &message);
        }
    };
    let data = if !compressed {
        payload.clone() // the read buffer itself: no copy
    } else if encoding == Encoding::Identity {
        let message = "a compressed message without grpc-encoding".to_string();
        shared.refuse(signal, "malformed", message.clone(), None);
        return response(code::INVALID_ARGUMENT, &message);
    } else {
        match decode(&payload, encoding, limit) {
            Ok(d) => Bytes::from(d),
            Err(DecompressError::TooLarge(_)) => {
                let message = format!("decompressed request exceeds the limit of {limit} bytes");
                shared.refuse(signal, "too_large", message.clone(), None);
                return response(code::RESOURCE_EXHAUSTED, &message);
            }
            Err(err) => {
                let message = err.to_string();
                shared.refuse(signal, "malformed", message.clone(), None);
                return response(code::INVALID_ARGUMENT, &message);
            }
        }
    };
    drop(payload);
    let mut held = Held::empty(&shared.budget);
    if !held.try_grow(data.len() as u64) {
        let budget = &shared.budget;
        let message = format!(
            "memory budget exhausted ({} of {} MiB of buffered data in use); retry later",
            budget.used() >> 20,
            budget.limit() >> 20
        );
        shared.refuse(signal, "memory_limit", message.clone(), Some(data));
        return response(code::UNAVAILABLE, &message);
    }
    match shared.hand_over(signal, data, false, deadline, held).await {
        Some(answer) => response(answer.grpc_code, &answer.message),
        None => response(code::DEADLINE_EXCEEDED, "deadline exceeded"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A request body arriving in the given chunks.
    struct Chunks(VecDeque<Bytes>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.get_mut().0.pop_front().map(|c| Ok(Frame::data(c))))
        }
    }

    fn frames(chunks: Vec<Vec<u8>>) -> Chunks {
        Chunks(chunks.into_iter().map(Bytes::from).collect())
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn framed(compressed: bool, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![u8::from(compressed)];
        v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn a_message_split_across_frames_is_read_whole() {
        let wire = framed(true, b"hello world");
        let chunks = vec![wire[..3].to_vec(), wire[3..8].to_vec(), wire[8..].to_vec()];
        let mut body = frames(chunks);
        let (c, p) = block_on(read_message(&mut body, 100)).unwrap();
        assert!(c);
        assert_eq!(&p[..], b"hello world");
    }

    #[test]
    fn a_declared_length_over_the_limit_is_refused_unread() {
        let mut header = framed(false, &[]);
        header[1..5].copy_from_slice(&(1u32 << 30).to_be_bytes());
        let mut body = frames(vec![header]); // the 1 GiB never comes: we must not wait for it
        assert_eq!(
            block_on(read_message(&mut body, 1 << 20)),
            Err(ReadError::TooLarge(1 << 30))
        );
    }

    #[test]
    fn a_stream_that_ends_early_is_incomplete() {
        let wire = framed(false, b"hello");
        let mut body = frames(vec![wire[..7].to_vec()]);
        assert_eq!(
            block_on(read_message(&mut body, 100)),
            Err(ReadError::Incomplete)
        );
    }

    #[test]
    fn timeouts_and_messages_are_encoded_as_grpc_says() {
        assert_eq!(parse_timeout("1500m"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_timeout("123456789S"), None);
        assert_eq!(parse_timeout("x"), None);
        assert_eq!(encode_message("50% ok\n"), "50%25 ok%0A");
    }

    #[test]
    fn success_is_an_empty_message_and_ok_trailers_errors_are_trailers_only() {
        let ok = response(code::OK, "");
        assert_eq!(ok.body().data.as_deref(), Some(&[0u8; 5][..]));
        assert_eq!(ok.body().trailers.as_ref().unwrap()["grpc-status"], "0");
        let err = response(code::UNAVAILABLE, "full");
        assert!(err.body().is_end_stream());
        assert_eq!(err.headers()["grpc-status"], "14");
        assert_eq!(err.headers()["grpc-message"], "full");
    }
}
