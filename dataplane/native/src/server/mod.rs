//! The OTLP receivers (gRPC and HTTP) on the data path runtime.
//!
//! The *transport* lives here: listening, HTTP/1.1 and HTTP/2 (h2c), gRPC framing, body
//! limits, decompression and the memory budget's charge. What to do with a request that
//! passed those checks is a [`Handler`]'s business: today `py_server` hands it to Python's
//! asyncio loop; later a native router can implement the same trait.
//!
//! Every request ends in exactly one of three ways, each told to the handler:
//! - refused by the transport ([`Handler::refused`]; the transport answers the client);
//! - handed over ([`Handler::request`]), then answered through its [`Reply`];
//! - handed over, then abandoned before the answer (the client closed its connection or
//!   reset its stream, or its gRPC deadline passed): [`Handler::cancelled`].

pub mod decompress;
pub mod grpc;
pub mod http;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::budget::{Budget, Held};

/// HTTP/2 streams one gRPC client connection may have open (MAX_CONCURRENT_STREAMS): gRPC reads
/// a whole message before it is charged, so this bounds what one connection can make us buffer.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 32;

/// The signals, by their names in Python (`traces`, `logs`, `metrics`).
pub const SIGNALS: [&str; 3] = ["traces", "logs", "metrics"];

/// Which protocol a receiver speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Grpc,
    Http,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::Http => "http",
        }
    }
}

/// gRPC status codes the receivers answer with.
pub mod code {
    pub const OK: u32 = 0;
    pub const INVALID_ARGUMENT: u32 = 3;
    pub const DEADLINE_EXCEEDED: u32 = 4;
    pub const RESOURCE_EXHAUSTED: u32 = 8;
    pub const UNIMPLEMENTED: u32 = 12;
    pub const INTERNAL: u32 = 13;
    pub const UNAVAILABLE: u32 = 14;
}

/// The handler's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub grpc_code: u32,
    pub http_status: u16,
    pub message: String,
}

impl Answer {
    pub fn new(grpc_code: u32, http_status: u16, message: impl Into<String>) -> Answer {
        Answer {
            grpc_code,
            http_status,
            message: message.into(),
        }
    }
}

/// Where the answer to one request goes. `send` is false when the client is gone already.
#[derive(Debug)]
pub struct Reply(oneshot::Sender<Answer>);

impl Reply {
    pub fn send(self, answer: Answer) -> bool {
        self.0.send(answer).is_ok()
    }

    /// Wait until the client is gone (its request was abandoned, or its deadline passed).
    pub async fn closed(&mut self) {
        self.0.closed().await;
    }
}

/// A request that passed the transport's checks, decompressed.
#[derive(Debug)]
pub struct Request {
    /// Unique per process; [`Handler::cancelled`] names it.
    pub id: u64,
    pub signal: &'static str,
    pub transport: Transport,
    pub data: Bytes,
    /// An OTLP/JSON body (HTTP only); protobuf otherwise.
    pub is_json: bool,
    /// The client's deadline (gRPC `grpc-timeout`).
    pub deadline: Option<Instant>,
    pub reply: Reply,
}

/// A request the transport refused itself (already answered).
#[derive(Debug)]
pub struct Refusal {
    pub signal: &'static str,
    pub transport: Transport,
    pub reason: &'static str,
    pub detail: String,
    /// The request, when its items can be counted (it was read and decoded).
    pub data: Option<Bytes>,
}

/// What to do with requests: the native pipeline's router (`pipeline::Router`), or Python
/// (`py_server`, for OTLP/JSON bodies and data planes whose orchestration runs in Python).
pub trait Handler: Send + Sync + 'static {
    /// Handle one request and answer through `request.reply`.
    fn request(&self, request: Request);
    /// Request `id`'s client went away (or its deadline passed) before the answer.
    fn cancelled(&self, id: u64);
    /// Count a request the transport refused.
    fn refused(&self, refusal: Refusal);
}

/// What every connection of one receiver shares.
pub(crate) struct Shared {
    pub transport: Transport,
    /// max_recv_msg_size (gRPC) or max_request_body_size (HTTP), in bytes.
    pub limit: usize,
    pub budget: Arc<Budget>,
    pub handler: Arc<dyn Handler>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Shared {
    pub fn refuse(
        &self,
        signal: &'static str,
        reason: &'static str,
        detail: String,
        data: Option<Bytes>,
    ) {
        self.handler.refused(Refusal {
            signal,
            transport: self.transport,
            reason,
            detail,
            data,
        });
    }

    /// Hand a request over and wait for its answer; `None` when the deadline passed first.
    /// Dropping the returned future (the client went away) tells the handler too.
    pub async fn hand_over(
        &self,
        signal: &'static str,
        data: Bytes,
        is_json: bool,
        deadline: Option<Instant>,
        _held: Held,
    ) -> Option<Answer> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.handler.request(Request {
            id,
            signal,
            transport: self.transport,
            data,
            is_json,
            deadline,
            reply: Reply(tx),
        });
        let mut pending = Pending {
            id,
            handler: &*self.handler,
            open: true,
        };
        let answer = match deadline {
            Some(deadline) => tokio::select! {
                answer = rx => answer.ok(),
                _ = tokio::time::sleep_until(deadline) => return None,
            },
            None => rx.await.ok(),
        };
        pending.open = false;
        Some(answer.unwrap_or_else(|| {
            Answer::new(
                code::INTERNAL,
                500,
                "the request was dropped without an answer",
            )
        }))
    }
}

/// A handed-over request not answered yet: dropped open, it tells the handler.
struct Pending<'a> {
    id: u64,
    handler: &'a dyn Handler,
    open: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.open {
            self.handler.cancelled(self.id);
        }
    }
}

/// How a receiver is stopping: 0 serving, 1 draining (not listening), 2 aborting connections.
type Phase = watch::Sender<u8>;

/// A running receiver.
pub struct Server {
    local_addr: SocketAddr,
    phase: Arc<Phase>,
    done: Option<oneshot::Receiver<()>>,
}

impl Server {
    /// Listen on `addr` (port 0: any) and serve on the data path runtime.
    pub fn start(
        transport: Transport,
        addr: SocketAddr,
        limit: usize,
        budget: Arc<Budget>,
        handler: Arc<dyn Handler>,
    ) -> std::io::Result<Server> {
        let std_listener = std::net::TcpListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        let local_addr = std_listener.local_addr()?;
        let rt = crate::runtime::handle();
        let listener = {
            let _guard = rt.enter();
            TcpListener::from_std(std_listener)?
        };
        let shared = Arc::new(Shared {
            transport,
            limit,
            budget,
            handler,
        });
        let (phase, phase_rx) = watch::channel(0u8);
        let (done_tx, done) = oneshot::channel();
        rt.spawn(async move {
            serve(listener, shared, phase_rx).await;
            let _ = done_tx.send(());
        });
        Ok(Server {
            local_addr,
            phase: Arc::new(phase),
            done: Some(done),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stop listening now; connections finish their requests, for at most `grace` (then they
    /// are closed). The returned receiver fires once every connection is gone.
    pub fn stop(&mut self, grace: Duration) -> Option<oneshot::Receiver<()>> {
        let _ = self.phase.send(1);
        let phase = self.phase.clone();
        crate::runtime::handle().spawn(async move {
            tokio::time::sleep(grace).await;
            let _ = phase.send(2);
        });
        self.done.take()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.phase.send(2);
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, mut phase: watch::Receiver<u8>) {
    let graceful = GracefulShutdown::new();
    let connections = phase.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    // Out of file descriptors and the like: breathe, then go on serving.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let io = TokioIo::new(stream);
                let abort = connections.clone();
                match shared.transport {
                    Transport::Grpc => {
                        let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
                            .serve_connection(io, grpc::service(shared.clone()));
                        tokio::spawn(until_aborted(graceful.watch(conn), abort));
                    }
                    Transport::Http => {
                        // Header names as clients of the Python receiver saw them (Content-Type).
                        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .title_case_headers(true);
                        let conn = builder
                            .serve_connection(io, http::service(shared.clone()))
                            .into_owned();
                        tokio::spawn(until_aborted(graceful.watch(conn), abort));
                    }
                }
            }
            _ = reached(&mut phase, 1) => break,
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = reached(&mut phase, 2) => {
            // The connections' own tasks drop them (and their requests) at the same signal;
            // give them a moment to do it.
            tokio::task::yield_now().await;
        }
    }
}

async fn until_aborted<F: std::future::Future>(conn: F, mut phase: watch::Receiver<u8>) {
    tokio::select! {
        _ = conn => {}
        _ = reached(&mut phase, 2) => {}
    }
}

/// Wait until the phase is at least `at` (or the server is gone).
async fn reached(phase: &mut watch::Receiver<u8>, at: u8) {
    let _ = phase.wait_for(|p| *p >= at).await;
}

/// A request header as text ("" when absent or not visible ASCII).
pub(crate) fn header(headers: &::http::HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

#[cfg(test)]
mod tests;
