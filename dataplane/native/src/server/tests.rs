//! The receivers end to end over loopback: a hyper client against a running [`Server`]
//! with a recording [`Handler`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Write;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use ::http::{HeaderMap, Request as HttpRequest, Response};
use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use super::{code, Answer, Budget, Handler, Refusal, Reply, Request, Server, Transport};

/// (signal, data, is_json, has a deadline) of a request handed over.
type Seen = (&'static str, Vec<u8>, bool, bool);

#[derive(Default)]
struct Recorder {
    /// Answer at once (true) or keep the replies (false).
    answer: bool,
    requests: Mutex<Vec<Seen>>,
    replies: Mutex<HashMap<u64, Reply>>,
    cancelled: Mutex<Vec<u64>>,
    refused: Mutex<Vec<(&'static str, &'static str, bool)>>,
}

impl Handler for Recorder {
    fn request(&self, r: Request) {
        self.requests.lock().unwrap().push((
            r.signal,
            r.data.to_vec(),
            r.is_json,
            r.deadline.is_some(),
        ));
        if self.answer {
            r.reply.send(Answer::new(code::OK, 200, ""));
        } else {
            self.replies.lock().unwrap().insert(r.id, r.reply);
        }
    }
    fn cancelled(&self, id: u64) {
        self.cancelled.lock().unwrap().push(id);
    }
    fn refused(&self, r: Refusal) {
        self.refused
            .lock()
            .unwrap()
            .push((r.signal, r.reason, r.data.is_some()));
    }
}

fn start(transport: Transport, limit: usize, budget: u64, answer: bool) -> (Server, Arc<Recorder>) {
    let (server, recorder, _) = start_with_budget(transport, limit, budget, answer);
    (server, recorder)
}

fn start_with_budget(
    transport: Transport,
    limit: usize,
    budget: u64,
    answer: bool,
) -> (Server, Arc<Recorder>, Arc<Budget>) {
    let recorder = Arc::new(Recorder {
        answer,
        ..Default::default()
    });
    let budget = Budget::new(budget);
    let server = Server::start(
        transport,
        "127.0.0.1:0".parse().unwrap(),
        limit,
        budget.clone(),
        recorder.clone(),
    )
    .unwrap();
    (server, recorder, budget)
}

async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

type BoxedBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn h2(server: &Server) -> hyper::client::conn::http2::SendRequest<BoxedBody> {
    let io = TokioIo::new(TcpStream::connect(server.local_addr()).await.unwrap());
    let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

/// A request body that sends its first bytes, then never ends.
struct Stalled(Option<Bytes>);

impl Body for Stalled {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut().0.take() {
            Some(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
            None => Poll::Pending,
        }
    }
}

fn framed(compressed: bool, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![u8::from(compressed)];
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

fn grpc_request(path: &str, headers: &[(&str, &str)], body: BoxedBody) -> HttpRequest<BoxedBody> {
    let mut b = HttpRequest::post(format!("http://localhost{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(body).unwrap()
}

fn full(data: Vec<u8>) -> BoxedBody {
    Full::new(Bytes::from(data)).boxed()
}

/// (grpc-status, grpc-message) from headers or trailers.
async fn grpc_status(resp: Response<Incoming>) -> (u32, String) {
    let (parts, body) = resp.into_parts();
    let trailers = body
        .collect()
        .await
        .unwrap()
        .trailers()
        .cloned()
        .unwrap_or_default();
    let get = |h: &HeaderMap, k: &str| h.get(k).map(|v| v.to_str().unwrap().to_string());
    let status = get(&parts.headers, "grpc-status")
        .or_else(|| get(&trailers, "grpc-status"))
        .expect("a grpc-status");
    let message = get(&parts.headers, "grpc-message")
        .or_else(|| get(&trailers, "grpc-message"))
        .unwrap_or_default();
    (status.parse().unwrap(), message)
}

const TRACES: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

#[tokio::test]
async fn grpc_messages_in_every_encoding_are_handed_over_decoded() {
    let (server, rec) = start(Transport::Grpc, 1 << 20, 1 << 30, true);
    let mut send = h2(&server).await;
    let data = b"an OTLP request, or so".repeat(50);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&data).unwrap();
    let mut framed_snappy = snap::write::FrameEncoder::new(Vec::new());
    framed_snappy.write_all(&data).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("identity", framed(false, &data)),
        ("gzip", framed(true, &gz.finish().unwrap())),
        (
            "zstd",
            framed(true, &zstd::encode_all(&data[..], 1).unwrap()),
        ),
        ("snappy", framed(true, &framed_snappy.into_inner().unwrap())),
    ];
    for (encoding, body) in cases {
        let req = grpc_request(
            TRACES,
            &[("grpc-encoding", encoding), ("grpc-timeout", "5S")],
            full(body),
        );
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(grpc_status(resp).await, (0, String::new()), "{encoding}");
    }
    let requests = rec.requests.lock().unwrap();
    assert_eq!(requests.len(), 4);
    for (signal, got, is_json, has_deadline) in requests.iter() {
        assert_eq!(
            (*signal, got, *is_json, *has_deadline),
            ("traces", &data, false, true)
        );
    }
}

#[tokio::test]
async fn an_oversize_grpc_message_is_refused_from_its_header_and_counted() {
    let (server, rec) = start(Transport::Grpc, 1000, 1 << 30, true);
    let mut send = h2(&server).await;
    let mut header = framed(false, &[]);
    header[1..5].copy_from_slice(&(1u32 << 30).to_be_bytes());
    // The rest of the gigabyte never comes: the answer must not wait for it.
    let req = grpc_request(TRACES, &[], Stalled(Some(Bytes::from(header))).boxed());
    let (status, message) = grpc_status(send.send_request(req).await.unwrap()).await;
    assert_eq!(status, code::RESOURCE_EXHAUSTED, "{message}");
    // A small body that decompresses past the limit: also too large.
    let bomb = zstd::encode_all(&vec![0u8; 100_000][..], 3).unwrap();
    let req = grpc_request(
        TRACES,
        &[("grpc-encoding", "zstd")],
        full(framed(true, &bomb)),
    );
    assert_eq!(
        grpc_status(send.send_request(req).await.unwrap()).await.0,
        code::RESOURCE_EXHAUSTED
    );
    assert_eq!(
        *rec.refused.lock().unwrap(),
        vec![
            ("traces", "too_large", false),
            ("traces", "too_large", false)
        ]
    );
    assert!(rec.requests.lock().unwrap().is_empty());
}

#[tokio::test]
async fn unknown_methods_and_encodings_are_unimplemented() {
    let (server, rec) = start(Transport::Grpc, 1000, 1 << 30, true);
    let mut send = h2(&server).await;
    let req = grpc_request("/x.Y/Z", &[], full(framed(false, b"")));
    assert_eq!(
        grpc_status(send.send_request(req).await.unwrap()).await.0,
        code::UNIMPLEMENTED
    );
    let req = grpc_request(TRACES, &[("grpc-encoding", "br")], full(framed(true, b"x")));
    let (status, message) = grpc_status(send.send_request(req).await.unwrap()).await;
    assert_eq!(status, code::UNIMPLEMENTED);
    assert!(message.contains("zstd"), "{message}");
    assert_eq!(
        *rec.refused.lock().unwrap(),
        vec![("traces", "unsupported_encoding", false)]
    );
}

#[tokio::test]
async fn a_message_over_the_memory_budget_is_unavailable_and_counted_with_its_data() {
    let (server, rec) = start(Transport::Grpc, 1000, 10, true);
    let mut send = h2(&server).await;
    let req = grpc_request(TRACES, &[], full(framed(false, &[1u8; 100])));
    assert_eq!(
        grpc_status(send.send_request(req).await.unwrap()).await.0,
        code::UNAVAILABLE
    );
    assert_eq!(
        *rec.refused.lock().unwrap(),
        vec![("traces", "memory_limit", true)]
    );
}

#[tokio::test]
async fn a_grpc_deadline_answers_deadline_exceeded_and_cancels_the_request() {
    let (server, rec) = start(Transport::Grpc, 1000, 1 << 30, false);
    let mut send = h2(&server).await;
    let req = grpc_request(
        TRACES,
        &[("grpc-timeout", "200m")],
        full(framed(false, b"x")),
    );
    let (status, _) = grpc_status(send.send_request(req).await.unwrap()).await;
    assert_eq!(status, code::DEADLINE_EXCEEDED);
    until("the cancellation", || {
        rec.cancelled.lock().unwrap().len() == 1
    })
    .await;
    // The answer that comes too late is refused: the handler learns the client is gone.
    let id = rec.cancelled.lock().unwrap()[0];
    let reply = rec.replies.lock().unwrap().remove(&id).unwrap();
    assert!(!reply.send(Answer::new(code::OK, 200, "")));
}

#[tokio::test]
async fn a_reset_grpc_stream_cancels_the_request() {
    let (server, rec) = start(Transport::Grpc, 1000, 1 << 30, false);
    let mut send = h2(&server).await;
    let req = grpc_request(TRACES, &[], full(framed(false, b"x")));
    let call = tokio::spawn(send.send_request(req));
    until("the request", || rec.replies.lock().unwrap().len() == 1).await;
    call.abort(); // the client gives up: RST_STREAM(CANCEL)
    until("the cancellation", || {
        rec.cancelled.lock().unwrap().len() == 1
    })
    .await;
}

async fn h1(server: &Server) -> hyper::client::conn::http1::SendRequest<BoxedBody> {
    let io = TokioIo::new(TcpStream::connect(server.local_addr()).await.unwrap());
    let (send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    send
}

fn post(path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> HttpRequest<BoxedBody> {
    let mut b = HttpRequest::post(format!("http://localhost{path}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(full(body)).unwrap()
}

#[tokio::test]
async fn http_bodies_are_checked_then_handed_over_decoded() {
    let (server, rec) = start(Transport::Http, 1000, 1 << 30, true);
    let mut send = h1(&server).await;
    let proto = [("content-type", "application/x-protobuf")];
    let data = vec![7u8; 500];
    let zstd_body = zstd::encode_all(&data[..], 1).unwrap();
    let cases: Vec<(HttpRequest<BoxedBody>, u16)> = vec![
        (post("/v1/logs", &proto, data.clone()), 200),
        (
            post(
                "/v1/logs",
                &[("content-type", "application/json; charset=utf-8")],
                b"{}".to_vec(),
            ),
            200,
        ),
        (
            post(
                "/v1/traces",
                &[proto[0], ("content-encoding", "zstd")],
                zstd_body,
            ),
            200,
        ),
        (
            post("/v1/traces", &[("content-type", "text/plain")], vec![]),
            415,
        ),
        (post("/v1/traces", &proto, vec![0; 1001]), 413),
        (
            post(
                "/v1/traces",
                &[proto[0], ("content-encoding", "br")],
                vec![1],
            ),
            415,
        ),
        (
            post(
                "/v1/traces",
                &[proto[0], ("content-encoding", "gzip")],
                vec![1, 2],
            ),
            400,
        ),
        (post("/v2/traces", &proto, vec![]), 404),
    ];
    for (req, want) in cases {
        let what = format!("{} {:?}", req.uri(), req.headers());
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status().as_u16(), want, "{what}");
        resp.into_body().collect().await.unwrap();
    }
    let requests = rec.requests.lock().unwrap();
    let got: Vec<_> = requests
        .iter()
        .map(|(s, d, j, dl)| (*s, d.len(), *j, *dl))
        .collect();
    assert_eq!(
        got,
        vec![
            ("logs", 500, false, false),
            ("logs", 2, true, false),
            ("traces", 500, false, false)
        ]
    );
    let reasons: Vec<_> = rec.refused.lock().unwrap().iter().map(|r| r.1).collect();
    assert_eq!(
        reasons,
        vec![
            "unsupported_media_type",
            "too_large",
            "unsupported_encoding",
            "malformed"
        ]
    );
}

#[tokio::test]
async fn an_http_body_that_does_not_fit_the_budget_is_503_before_it_is_read() {
    let (server, rec) = start(Transport::Http, 1 << 20, 1000, true);
    let mut send = h1(&server).await;
    let req = post(
        "/v1/traces",
        &[("content-type", "application/x-protobuf")],
        vec![0; 600],
    );
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert_eq!(rec.refused.lock().unwrap()[0].1, "memory_limit");
}

#[tokio::test]
async fn an_http_client_that_disconnects_cancels_its_request_and_releases_its_charge() {
    let (server, rec, budget) = start_with_budget(Transport::Http, 1000, 1 << 30, false);
    let io = TokioIo::new(TcpStream::connect(server.local_addr()).await.unwrap());
    let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    let conn = tokio::spawn(conn);
    let req = post(
        "/v1/traces",
        &[("content-type", "application/x-protobuf")],
        vec![1; 10],
    );
    let call = tokio::spawn(async move { send.send_request(req).await });
    until("the request", || rec.replies.lock().unwrap().len() == 1).await;
    assert_eq!(budget.used(), 30); // the body, the request and its parts, while handled
    call.abort();
    conn.abort(); // closes the socket
    until("the cancellation", || {
        rec.cancelled.lock().unwrap().len() == 1
    })
    .await;
    until("the charge to be released", || budget.used() == 0).await;
}

#[tokio::test]
async fn stop_closes_the_listener_at_once_and_waits_for_requests_in_flight() {
    let (mut server, rec) = start(Transport::Grpc, 1000, 1 << 30, false);
    let addr = server.local_addr();
    let mut send = h2(&server).await;
    let req = grpc_request(TRACES, &[], full(framed(false, b"x")));
    let call = tokio::spawn(send.send_request(req));
    until("the request", || rec.replies.lock().unwrap().len() == 1).await;
    let done = server.stop(Duration::from_secs(30)).unwrap();
    until("the listener to close", || {
        std::net::TcpStream::connect(addr).is_err()
    })
    .await;
    // The request in flight still gets its answer, then the server is done.
    let reply = rec.replies.lock().unwrap().drain().next().unwrap().1;
    assert!(reply.send(Answer::new(code::OK, 200, "")));
    let resp = call.await.unwrap().unwrap();
    assert_eq!(grpc_status(resp).await.0, code::OK);
    tokio::time::timeout(Duration::from_secs(10), done)
        .await
        .unwrap()
        .unwrap();
    assert!(rec.cancelled.lock().unwrap().is_empty());
}

#[tokio::test]
async fn otlp_http_is_served_over_h2c_too() {
    let (server, rec) = start(Transport::Http, 1000, 1 << 30, true);
    let mut send = h2(&server).await;
    let req = post(
        "/v1/metrics",
        &[("content-type", "application/x-protobuf")],
        vec![5; 20],
    );
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(rec.requests.lock().unwrap()[0].0, "metrics");
}

#[tokio::test]
async fn one_grpc_connection_gets_at_most_32_calls_in_progress() {
    let (server, rec) = start(Transport::Grpc, 1000, 1 << 30, false);
    let mut send = h2(&server).await;
    // One call first: by its answer the client knows the server's SETTINGS. (Streams opened
    // before that are refused with REFUSED_STREAM, which gRPC clients retry transparently.)
    let first =
        tokio::spawn(send.send_request(grpc_request(TRACES, &[], full(framed(false, b"x")))));
    until("the first call", || rec.replies.lock().unwrap().len() == 1).await;
    for reply in rec.replies.lock().unwrap().drain().map(|(_, r)| r) {
        assert!(reply.send(Answer::new(code::OK, 200, "")));
    }
    assert_eq!(grpc_status(first.await.unwrap().unwrap()).await.0, code::OK);
    let mut calls = Vec::new();
    for _ in 0..40 {
        let mut send = send.clone();
        let req = grpc_request(TRACES, &[], full(framed(false, b"x")));
        calls.push(tokio::spawn(async move {
            send.ready().await.unwrap();
            let resp = send.send_request(req).await.unwrap();
            grpc_status(resp).await.0 // consumed: the stream is done on both sides
        }));
    }
    until("32 calls in progress", || {
        rec.replies.lock().unwrap().len() == 32
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await; // (the 8 others wait in the client)
    assert_eq!(rec.replies.lock().unwrap().len(), 32);
    // Answering frees the streams: the waiting calls go on.
    let replies: Vec<Reply> = rec
        .replies
        .lock()
        .unwrap()
        .drain()
        .map(|(_, r)| r)
        .collect();
    for reply in replies {
        assert!(reply.send(Answer::new(code::OK, 200, "")));
    }
    until("the other 8", || rec.replies.lock().unwrap().len() == 8).await;
    for reply in rec.replies.lock().unwrap().drain().map(|(_, r)| r) {
        assert!(reply.send(Answer::new(code::OK, 200, "")));
    }
    for call in calls {
        assert_eq!(call.await.unwrap(), code::OK);
    }
}
