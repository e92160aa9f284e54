//! Exporting to tier-2 backends: unary gRPC calls over HTTP/2 on the data path runtime.
//!
//! A [`Channel`] is one backend endpoint. It keeps one HTTP/2 connection (hyper's client;
//! plaintext h2c or TLS with ALPN `h2`, see [`tls`]) and multiplexes every call on it. A
//! background task on the runtime connects, reconnects with backoff (250 ms growing to
//! 5 s, as gRPC's reconnect options were set before) and, with `reload_interval`, moves
//! to a fresh connection (re-reading the TLS files) while the old one finishes its calls.
//!
//! [`Channel::export`] sends one already serialized request: it frames and compresses
//! the message itself ([`frame`]), sets the metadata (`grpc-timeout`, user agent,
//! configured headers) and returns the response message or a [`Status`] ([`status`]).
//! It is a plain async function: the Python binding (`py_client`) runs it on the
//! runtime and hands the outcome to asyncio; a native caller awaits it directly.
//! Dropping its future cancels the call (the stream is reset: `RST_STREAM(CANCEL)`).
//!
//! `wait_for_ready: false` fails a call at once with `UNAVAILABLE` while the channel is
//! in backoff after a failed connection attempt (a first attempt in progress is waited
//! for); `true` waits for a connection until the call's timeout.

pub mod frame;
pub mod status;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::time::{sleep, timeout_at, Instant};

pub use frame::Compression;
pub use status::{Code, Status};
pub use tls::{Pem, TlsSettings};

/// Reconnect backoff: first delay, growth, cap and jitter (gRPC's connection backoff).
const INITIAL_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const BACKOFF_MULTIPLIER: f64 = 1.6;
const BACKOFF_JITTER: f64 = 0.2;
/// A connection attempt (TCP + TLS + HTTP/2 handshake) gives up after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Largest response message accepted (grpc.max_receive_message_length before).
const MAX_RESPONSE: usize = 16 << 20;

/// HTTP/2 PING keepalive (`protocol.otlp.keepalive`).
#[derive(Clone, Debug, Default)]
pub struct Keepalive {
    pub time: Option<Duration>,
    pub timeout: Option<Duration>,
    pub permit_without_stream: bool,
}

/// A channel's settings: the `protocol.otlp` template applied to one endpoint.
#[derive(Clone, Debug)]
pub struct ChannelConfig {
    /// `host:port` to connect to.
    pub endpoint: String,
    /// `None`: plaintext (h2c, `tls.insecure: true`).
    pub tls: Option<TlsSettings>,
    /// `tls.reload_interval`: new connections re-read the TLS files; a connection older
    /// than this is replaced (its calls finish on it).
    pub reload_interval: Option<Duration>,
    pub compression: Compression,
    pub level: i32,
    /// Metadata sent with every call (lower-case names).
    pub headers: Vec<(String, String)>,
    /// `:authority`; empty: the endpoint.
    pub authority: String,
    pub user_agent: String,
    pub wait_for_ready: bool,
    pub keepalive: Keepalive,
    pub write_buffer_size: Option<usize>,
    pub read_buffer_size: Option<usize>,
}

impl ChannelConfig {
    pub fn new(endpoint: impl Into<String>) -> ChannelConfig {
        ChannelConfig {
            endpoint: endpoint.into(),
            tls: None,
            reload_interval: None,
            compression: Compression::None,
            level: 0,
            headers: Vec::new(),
            authority: String::new(),
            user_agent: String::new(),
            wait_for_ready: false,
            keepalive: Keepalive::default(),
            write_buffer_size: None,
            read_buffer_size: None,
        }
    }
}

type Body = Full<Bytes>;

/// Where the channel's connection stands.
#[derive(Clone)]
enum State {
    /// A connection attempt is under way.
    Connecting,
    Ready(SendRequest<Body>),
    /// The last attempt failed; the next one comes after the backoff.
    Failed(Status),
    Closed,
}

/// What every call needs, built once per channel.
struct Prepared {
    scheme_authority: String,
    headers: http::HeaderMap,
    compression: Compression,
    level: i32,
    wait_for_ready: bool,
}

/// A gRPC channel to one backend. Cheap to share behind an `Arc`; closed when dropped.
pub struct Channel {
    prepared: Arc<Prepared>,
    state: watch::Receiver<State>,
    closer: watch::Sender<State>,
    closing: Arc<Notify>,
}

impl Channel {
    /// Opens the channel: checks the settings (TLS files are read now) and starts connecting
    /// on the data path runtime.
    pub fn open(config: ChannelConfig) -> Result<Channel, String> {
        let level = config.compression.check_level(config.level)?;
        let (host, _port) = split_host_port(&config.endpoint)
            .ok_or_else(|| format!("endpoint {:?} is not host:port", config.endpoint))?;
        let tls = match &config.tls {
            Some(settings) => {
                // Unusable TLS files do not stop the channel: every connection attempt fails with
                // UNAVAILABLE naming the problem (and the files are read again on the next one).
                let client = settings.client_config().ok();
                let name = settings.server_name(if config.authority.is_empty() {
                    host
                } else {
                    split_host_port(&config.authority).map_or(config.authority.as_str(), |h| h.0)
                })?;
                Some((client, name))
            }
            None => None,
        };
        let authority = if config.authority.is_empty() {
            config.endpoint.clone()
        } else {
            config.authority.clone()
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let prepared = Prepared {
            scheme_authority: format!("{scheme}://{authority}"),
            headers: call_headers(&config)?,
            compression: config.compression,
            level,
            wait_for_ready: config.wait_for_ready,
        };
        let _: Uri = prepared
            .scheme_authority
            .parse()
            .map_err(|e| format!("authority {authority:?}: {e}"))?;
        let (tx, rx) = watch::channel(State::Connecting);
        let closing = Arc::new(Notify::new());
        crate::runtime::handle().spawn(drive(config, tls, tx.clone(), closing.clone()));
        Ok(Channel {
            prepared: Arc::new(prepared),
            state: rx,
            closer: tx,
            closing,
        })
    }

    /// The connection state, for diagnostics: `connecting`, `ready`, `transient_failure`, `closed`.
    pub fn state(&self) -> &'static str {
        match &*self.state.borrow() {
            State::Connecting => "connecting",
            State::Ready(_) => "ready",
            State::Failed(_) => "transient_failure",
            State::Closed => "closed",
        }
    }

    /// Stops connecting and drops the connection; calls still running keep their stream
    /// until they finish (the connection closes after the last one), new calls fail.
    pub fn close(&self) {
        self.closer.send_replace(State::Closed);
        self.closing.notify_one();
    }

    /// One unary call of `path` with the serialized request `message`; `timeout` bounds the
    /// whole call (waiting for a connection included) and is sent as `grpc-timeout`.
    /// Returns the response message.
    pub async fn export(
        &self,
        path: &str,
        message: &[u8],
        timeout: Option<Duration>,
    ) -> Result<Vec<u8>, Status> {
        self.export_timed(path, message, timeout, timeout).await
    }

    /// [`Channel::export`] with the local timer apart from `grpc-timeout`: a caller whose own
    /// client's deadline bounds the call lets that client's cancellation win the race against
    /// the backstop timer by giving it a little slack (the backend still sees the deadline).
    pub async fn export_timed(
        &self,
        path: &str,
        message: &[u8],
        timeout: Option<Duration>,
        local_timeout: Option<Duration>,
    ) -> Result<Vec<u8>, Status> {
        let deadline = local_timeout.map(|t| Instant::now() + t);
        let body = frame::encode(message, self.prepared.compression, self.prepared.level)
            .map_err(|e| Status::new(Code::Internal, format!("cannot compress: {e}")))?;
        let call = self.call(path, body, timeout);
        match deadline {
            Some(at) => timeout_at(at, call).await.unwrap_or_else(|_| {
                Err(Status::new(
                    Code::DeadlineExceeded,
                    "deadline exceeded (local timer)",
                ))
            }),
            None => call.await,
        }
    }

    async fn call(
        &self,
        path: &str,
        body: Bytes,
        timeout: Option<Duration>,
    ) -> Result<Vec<u8>, Status> {
        let mut sender = self.ready().await?;
        let uri = format!("{}{}", self.prepared.scheme_authority, path);
        let mut request = Request::post(uri)
            .body(Full::new(body))
            .map_err(|e| Status::new(Code::Internal, format!("bad request: {e}")))?;
        *request.headers_mut() = self.prepared.headers.clone();
        if let Some(t) = timeout {
            if let Ok(v) = HeaderValue::from_str(&status::encode_timeout(t)) {
                request.headers_mut().insert("grpc-timeout", v);
            }
        }
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| transport_status(&e))?;
        read_response(response).await
    }

    /// A sender on a live connection, per `wait_for_ready`.
    async fn ready(&self) -> Result<SendRequest<Body>, Status> {
        let mut rx = self.state.clone();
        loop {
            {
                let state = rx.borrow_and_update();
                match &*state {
                    State::Ready(s) if !s.is_closed() => return Ok(s.clone()),
                    State::Failed(status) if !self.prepared.wait_for_ready => {
                        return Err(status.clone())
                    }
                    State::Closed => {
                        return Err(Status::new(Code::Unavailable, "the channel is closed"))
                    }
                    _ => {}
                }
            }
            if rx.changed().await.is_err() {
                return Err(Status::new(Code::Unavailable, "the channel is closed"));
            }
        }
    }
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("target", &self.prepared.scheme_authority)
            .field("state", &self.state())
            .finish()
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        self.close();
    }
}

fn call_headers(config: &ChannelConfig) -> Result<http::HeaderMap, String> {
    let mut h = http::HeaderMap::new();
    h.insert("content-type", HeaderValue::from_static("application/grpc"));
    h.insert("te", HeaderValue::from_static("trailers"));
    let version = env!("CARGO_PKG_VERSION");
    let ua = if config.user_agent.is_empty() {
        format!("ringleader-grpc/{version}")
    } else {
        format!("{} ringleader-grpc/{version}", config.user_agent)
    };
    h.insert(
        "user-agent",
        HeaderValue::from_str(&ua).map_err(|e| format!("user_agent: {e}"))?,
    );
    if let Some(enc) = config.compression.encoding() {
        h.insert("grpc-encoding", HeaderValue::from_static(enc));
    }
    h.insert(
        "grpc-accept-encoding",
        HeaderValue::from_static("identity,gzip,deflate,zstd,snappy"),
    );
    for (name, value) in &config.headers {
        let n = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
            .map_err(|e| format!("header {name:?}: {e}"))?;
        let v = HeaderValue::from_str(value).map_err(|e| format!("header {name:?}: {e}"))?;
        h.append(n, v);
    }
    Ok(h)
}

async fn read_response(response: http::Response<hyper::body::Incoming>) -> Result<Vec<u8>, Status> {
    let (parts, mut body) = response.into_parts();
    let headers = &parts.headers;
    let grpc_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/grpc"));
    if parts.status != http::StatusCode::OK || !grpc_type {
        // Not a gRPC answer (a proxy's error page, a plain HTTP server): map the HTTP status.
        let code = if parts.status == http::StatusCode::OK {
            Code::Unknown
        } else {
            Code::from_http(parts.status.as_u16())
        };
        return Err(Status::new(
            code,
            format!(
                "unexpected HTTP status {} (content-type {:?}) from the backend",
                parts.status,
                headers
                    .get("content-type")
                    .map(|v| v.to_str().unwrap_or("?"))
            ),
        ));
    }
    // Trailers-only: the status is in the headers.
    if let Some(status) = status_in(headers) {
        return match status.code {
            Code::Ok => Ok(Vec::new()),
            _ => Err(status),
        };
    }
    let encoding = headers
        .get("grpc-encoding")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut data = Vec::new();
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| transport_status(&e))?;
        match frame.into_data() {
            Ok(chunk) => {
                if data.len() + chunk.len() > MAX_RESPONSE + 5 {
                    return Err(Status::new(
                        Code::ResourceExhausted,
                        format!("response over {MAX_RESPONSE} bytes"),
                    ));
                }
                data.extend_from_slice(&chunk);
            }
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers = Some(t);
                }
            }
        }
    }
    let status = trailers.as_ref().and_then(status_in).ok_or_else(|| {
        Status::new(
            Code::Internal,
            "the backend closed the stream without a grpc-status",
        )
    })?;
    if status.code != Code::Ok {
        return Err(status);
    }
    frame::decode_response(&data, encoding.as_deref(), MAX_RESPONSE)
        .map_err(|m| Status::new(Code::Internal, m))
}

fn status_in(headers: &http::HeaderMap) -> Option<Status> {
    Status::from_header_values(
        headers.get("grpc-status").map(HeaderValue::as_bytes),
        headers.get("grpc-message").map(HeaderValue::as_bytes),
        headers
            .get("grpc-status-details-bin")
            .map(HeaderValue::as_bytes),
    )
}

/// The status for a failure below gRPC (connection, HTTP/2 stream), as grpc-go maps them.
fn transport_status(err: &hyper::Error) -> Status {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(h2e) = e.downcast_ref::<h2::Error>() {
            if let (Some(reason), true) = (h2e.reason(), h2e.is_reset() && h2e.is_remote()) {
                return Status::new(
                    Code::from_h2_reason(u32::from(reason)),
                    format!("stream reset by the backend: {reason}"),
                );
            }
        }
        source = e.source();
    }
    Status::new(Code::Unavailable, format!("connection error: {err}"))
}

/// `host:port` -> (host, port); IPv6 hosts in brackets.
fn split_host_port(endpoint: &str) -> Option<(&str, u16)> {
    let (host, port) = endpoint.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return None;
    }
    Some((host, port))
}

type TlsParts = (
    Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    tokio_rustls::rustls::pki_types::ServerName<'static>,
);

/// Publishes `state` unless the channel was closed (closed is final).
fn publish(tx: &watch::Sender<State>, state: State) {
    tx.send_if_modified(|current| {
        if matches!(current, State::Closed) {
            return false;
        }
        *current = state;
        true
    });
}

/// The channel's background task: connect, serve, reconnect with backoff, until closed. On close
/// the current connection is left to finish the calls it carries (it ends with the last one).
async fn drive(
    config: ChannelConfig,
    tls: Option<TlsParts>,
    tx: watch::Sender<State>,
    closing: Arc<Notify>,
) {
    tokio::select! {
        _ = closing.notified() => {}
        _ = serve(config, tls, &tx) => {}
    }
    tx.send_replace(State::Closed);
}

async fn serve(config: ChannelConfig, mut tls: Option<TlsParts>, tx: &watch::Sender<State>) {
    let mut backoff = INITIAL_BACKOFF;
    loop {
        publish(tx, State::Connecting);
        if let (Some(settings), Some(parts)) = (&config.tls, tls.as_mut()) {
            // The files are read again for a new connection with reload_interval, and until
            // they could be read once.
            if parts.0.is_none() || config.reload_interval.is_some() {
                match settings.client_config() {
                    Ok(fresh) => parts.0 = Some(fresh),
                    Err(e) if parts.0.is_none() => {
                        publish(
                            tx,
                            State::Failed(Status::new(
                                Code::Unavailable,
                                format!("TLS settings for {}: {e}", config.endpoint),
                            )),
                        );
                        sleep(jittered(backoff)).await;
                        backoff = backoff.mul_f64(BACKOFF_MULTIPLIER).min(MAX_BACKOFF);
                        continue;
                    }
                    Err(_) => {} // keep the files read last time
                }
            }
        }
        let attempt = tokio::time::timeout(CONNECT_TIMEOUT, connect(&config, tls.as_ref())).await;
        let result = attempt.unwrap_or_else(|_| {
            Err(Status::new(
                Code::Unavailable,
                format!("connecting to {}: timed out", config.endpoint),
            ))
        });
        match result {
            Ok((sender, connection)) => {
                backoff = INITIAL_BACKOFF;
                publish(tx, State::Ready(sender));
                // The connection runs on its own task: when the channel closes, it still carries its
                // calls to the end (it closes once the last sender is dropped).
                let mut connection = tokio::spawn(connection);
                match config.reload_interval {
                    Some(every) if config.tls.is_some() => {
                        tokio::select! {
                            _ = &mut connection => {}
                            _ = sleep(every) => continue, // a fresh connection; the old one drains
                        }
                    }
                    _ => {
                        let _ = connection.await;
                    }
                }
                // The connection ended (backend gone, GOAWAY, keepalive timeout): reconnect now.
            }
            Err(status) => {
                publish(tx, State::Failed(status));
                sleep(jittered(backoff)).await;
                backoff = backoff.mul_f64(BACKOFF_MULTIPLIER).min(MAX_BACKOFF);
            }
        }
    }
}

fn jittered(d: Duration) -> Duration {
    // A cheap pseudo-random factor in [1 - jitter, 1 + jitter]: spread reconnects of many channels.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    let unit = f64::from(nanos % 1000) / 999.0;
    d.mul_f64(1.0 - BACKOFF_JITTER + 2.0 * BACKOFF_JITTER * unit)
}

type Connection = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// HTTP/2 over an established stream (TCP or TLS): the request sender and the connection's driver.
async fn handshake<S>(
    builder: &http2::Builder<TokioExecutor>,
    stream: S,
    endpoint: &str,
) -> Result<(SendRequest<Body>, Connection), Status>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = builder
        .handshake::<_, Body>(TokioIo::new(stream))
        .await
        .map_err(|e| {
            Status::new(
                Code::Unavailable,
                format!("HTTP/2 handshake with {endpoint}: {e}"),
            )
        })?;
    Ok((
        sender,
        Box::pin(async move {
            let _ = conn.await;
        }),
    ))
}

async fn connect(
    config: &ChannelConfig,
    tls: Option<&TlsParts>,
) -> Result<(SendRequest<Body>, Connection), Status> {
    let unavailable = |what: String| Status::new(Code::Unavailable, what);
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(config.endpoint.as_str())
        .await
        .map_err(|e| unavailable(format!("resolving {}: {e}", config.endpoint)))?
        .collect();
    let mut last = format!("{} resolves to no address", config.endpoint);
    let mut stream = None;
    for addr in addrs {
        match tcp_connect(addr, config).await {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = format!("connecting to {addr}: {e}"),
        }
    }
    let stream = stream.ok_or_else(|| unavailable(last))?;
    let _ = stream.set_nodelay(true);
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder.timer(TokioTimer::new());
    if let Some(time) = config.keepalive.time {
        builder.keep_alive_interval(time);
        builder.keep_alive_while_idle(config.keepalive.permit_without_stream);
        if let Some(timeout) = config.keepalive.timeout {
            builder.keep_alive_timeout(timeout);
        }
    }
    if let Some(size) = config.write_buffer_size {
        builder.max_send_buf_size(size.max(16 * 1024));
    }
    match tls {
        None => handshake(&builder, stream, &config.endpoint).await,
        Some((client, name)) => {
            let client = client
                .clone()
                .ok_or_else(|| unavailable("TLS settings not loaded".into()))?;
            let connector = tokio_rustls::TlsConnector::from(client);
            let tls_stream = connector
                .connect(name.clone(), stream)
                .await
                .map_err(|e| unavailable(format!("TLS handshake with {}: {e}", config.endpoint)))?;
            let alpn = tls_stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
            if alpn.as_deref() != Some(b"h2") {
                return Err(unavailable(format!(
                    "{} did not negotiate HTTP/2 (ALPN h2) over TLS",
                    config.endpoint
                )));
            }
            handshake(&builder, tls_stream, &config.endpoint).await
        }
    }
}

async fn tcp_connect(addr: SocketAddr, config: &ChannelConfig) -> std::io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // write/read_buffer_size: the socket buffers (best effort, as gRPC's options were).
    if let Some(size) = config.write_buffer_size {
        let _ = socket.set_send_buffer_size(u32::try_from(size).unwrap_or(u32::MAX));
    }
    if let Some(size) = config.read_buffer_size {
        let _ = socket.set_recv_buffer_size(u32::try_from(size).unwrap_or(u32::MAX));
    }
    socket.connect(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_splitting() {
        assert_eq!(split_host_port("a.b:4317"), Some(("a.b", 4317)));
        assert_eq!(split_host_port("[::1]:4317"), Some(("::1", 4317)));
        assert_eq!(split_host_port("a.b"), None);
        assert_eq!(split_host_port(":1"), None);
    }

    #[test]
    fn a_bad_level_or_endpoint_refuses_to_open() {
        let mut cfg = ChannelConfig::new("127.0.0.1:1");
        cfg.compression = Compression::Gzip;
        cfg.level = 12;
        assert!(Channel::open(cfg).unwrap_err().contains("gzip"));
        assert!(Channel::open(ChannelConfig::new("nohost")).is_err());
    }

    /// A response body of fixed frames (data, then trailers).
    struct Frames(std::collections::VecDeque<http_body::Frame<Bytes>>);

    impl http_body::Body for Frames {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            std::task::Poll::Ready(self.0.pop_front().map(Ok))
        }
    }

    /// An h2c server answering every request with `answer()`; returns its address.
    fn server(answer: fn() -> http::Response<Frames>) -> SocketAddr {
        let rt = crate::runtime::handle();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        rt.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let service = hyper::service::service_fn(
                    move |req: Request<hyper::body::Incoming>| async move {
                        let _ = req.into_body().collect().await;
                        Ok::<_, std::convert::Infallible>(answer())
                    },
                );
                tokio::spawn(
                    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        addr
    }

    fn grpc_response(
        headers: &[(&'static str, &'static str)],
        data: &[u8],
        trailers: &[(&'static str, &'static str)],
    ) -> http::Response<Frames> {
        let mut frames = std::collections::VecDeque::new();
        if !data.is_empty() {
            frames.push_back(http_body::Frame::data(Bytes::copy_from_slice(data)));
        }
        if !trailers.is_empty() {
            let mut map = http::HeaderMap::new();
            for (k, v) in trailers {
                map.insert(*k, HeaderValue::from_static(v));
            }
            frames.push_back(http_body::Frame::trailers(map));
        }
        let mut response = http::Response::new(Frames(frames));
        for (k, v) in headers {
            response
                .headers_mut()
                .insert(*k, HeaderValue::from_static(v));
        }
        response
    }

    fn call(addr: SocketAddr) -> Result<Vec<u8>, Status> {
        let channel = Channel::open(ChannelConfig::new(addr.to_string())).unwrap();
        crate::runtime::handle().block_on(channel.export(
            "/x.Y/Export",
            b"request",
            Some(Duration::from_secs(20)),
        ))
    }

    #[test]
    fn a_non_grpc_http_answer_maps_its_status() {
        let addr = server(|| {
            let mut r = grpc_response(&[("content-type", "text/plain")], b"busy", &[]);
            *r.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
            r
        });
        assert_eq!(call(addr).unwrap_err().code, Code::Unavailable);
        let addr = server(|| {
            let mut r = grpc_response(&[("content-type", "text/html")], b"", &[]);
            *r.status_mut() = http::StatusCode::NOT_FOUND;
            r
        });
        assert_eq!(call(addr).unwrap_err().code, Code::Unimplemented);
        let addr = server(|| grpc_response(&[("content-type", "text/html")], b"<html>", &[]));
        assert_eq!(call(addr).unwrap_err().code, Code::Unknown);
    }

    #[test]
    fn a_trailers_only_answer_carries_the_status_in_its_headers() {
        let addr = server(|| {
            grpc_response(
                &[
                    ("content-type", "application/grpc"),
                    ("grpc-status", "8"),
                    ("grpc-message", "too%20big"),
                    ("grpc-status-details-bin", "CAg"),
                ],
                b"",
                &[],
            )
        });
        let status = call(addr).unwrap_err();
        assert_eq!(
            (status.code, status.message.as_str(), &status.details[..]),
            (Code::ResourceExhausted, "too big", &b"\x08\x08"[..])
        );
    }

    #[test]
    fn a_compressed_message_and_trailers_make_a_response() {
        let addr = server(|| {
            // gzip of "ok" in a compressed frame, then grpc-status 0 in the trailers.
            const FRAME: &[u8] = &[
                1, 0, 0, 0, 22, 0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 0xcb, 0xcf, 6, 0, 0x47,
                0xdd, 0xdc, 0x79, 2, 0, 0, 0,
            ];
            grpc_response(
                &[
                    ("content-type", "application/grpc+proto"),
                    ("grpc-encoding", "gzip"),
                ],
                FRAME,
                &[("grpc-status", "0")],
            )
        });
        assert_eq!(call(addr).unwrap(), b"ok");
        let addr =
            server(|| grpc_response(&[("content-type", "application/grpc")], b"\0\0\0\0\0", &[]));
        assert_eq!(call(addr).unwrap_err().code, Code::Internal); // no grpc-status at all
        let addr = server(|| {
            grpc_response(
                &[("content-type", "application/grpc")],
                b"",
                &[("grpc-status", "14"), ("grpc-message", "draining")],
            )
        });
        let status = call(addr).unwrap_err();
        assert_eq!(
            (status.code, status.message.as_str()),
            (Code::Unavailable, "draining")
        );
    }

    #[test]
    fn a_refused_connection_fails_fast_with_unavailable() {
        // Bind and drop a listener: its port refuses connections.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let channel = Channel::open(ChannelConfig::new(format!("127.0.0.1:{port}"))).unwrap();
        let rt = crate::runtime::handle();
        let status = rt
            .block_on(channel.export("/x/Y", b"", Some(Duration::from_secs(10))))
            .unwrap_err();
        assert_eq!(status.code, Code::Unavailable, "{status}");
        let mut cfg = ChannelConfig::new(format!("127.0.0.1:{port}"));
        cfg.wait_for_ready = true;
        let waiting = Channel::open(cfg).unwrap();
        let status = rt
            .block_on(waiting.export("/x/Y", b"", Some(Duration::from_millis(600))))
            .unwrap_err();
        assert_eq!(status.code, Code::DeadlineExceeded, "{status}");
        channel.close();
        assert_eq!(channel.state(), "closed");
    }
}
