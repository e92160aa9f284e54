//! The Python binding of the exporters: `dataplane._native.Channel`.
//!
//! `Channel.export(path, data, timeout, loop, callback)` copies the request bytes, runs
//! the call on the data path runtime (compressing, sending and waiting without the
//! interpreter lock) and, when it ends, schedules `callback(code, message, details,
//! response)` on the asyncio `loop` (code 0 is OK). It returns a `Call` whose `cancel()`
//! drops the call: the stream is reset (`RST_STREAM`) and the callback never runs.

use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::bridge::LoopHandle;
use crate::client::frame::PooledBuf;
use crate::client::{Channel, ChannelConfig, Compression, Keepalive, Pem, TlsSettings};

/// One backend's gRPC channel.
#[pyclass(name = "Channel", module = "dataplane._native", frozen)]
pub(crate) struct PyChannel {
    pub(crate) channel: Arc<Channel>,
}

fn pem(file: Option<String>, inline: Option<String>) -> Pem {
    match (file, inline) {
        (_, Some(text)) if !text.is_empty() => Pem::Inline(text.into_bytes()),
        (Some(path), _) if !path.is_empty() => Pem::File(path),
        _ => Pem::None,
    }
}

fn seconds(value: Option<f64>) -> PyResult<Option<Duration>> {
    value
        .filter(|v| *v > 0.0)
        .map(|v| {
            Duration::try_from_secs_f64(v).map_err(|e| PyValueError::new_err(format!("{v}: {e}")))
        })
        .transpose()
}

#[pymethods]
impl PyChannel {
    /// Opens a channel to `endpoint` (`host:port`); raises ValueError for settings it cannot use
    /// (a bad level, unreadable or malformed TLS files, bad header names).
    #[new]
    #[pyo3(signature = (
        endpoint, *, compression = "none", level = 0, insecure = true, ca_file = None, ca_pem = None,
        cert_file = None, cert_pem = None, key_file = None, key_pem = None,
        include_system_ca_certs_pool = false, system_ca_files = Vec::new(), server_name_override = None,
        insecure_skip_verify = false, min_version = String::new(), max_version = String::new(),
        reload_interval = None, headers = Vec::new(), authority = String::new(),
        user_agent = String::new(), wait_for_ready = false, keepalive_time = None,
        keepalive_timeout = None, keepalive_permit_without_stream = false,
        write_buffer_size = None, read_buffer_size = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        endpoint: String,
        compression: &str,
        level: i32,
        insecure: bool,
        ca_file: Option<String>,
        ca_pem: Option<String>,
        cert_file: Option<String>,
        cert_pem: Option<String>,
        key_file: Option<String>,
        key_pem: Option<String>,
        include_system_ca_certs_pool: bool,
        system_ca_files: Vec<String>,
        server_name_override: Option<String>,
        insecure_skip_verify: bool,
        min_version: String,
        max_version: String,
        reload_interval: Option<f64>,
        headers: Vec<(String, String)>,
        authority: String,
        user_agent: String,
        wait_for_ready: bool,
        keepalive_time: Option<f64>,
        keepalive_timeout: Option<f64>,
        keepalive_permit_without_stream: bool,
        write_buffer_size: Option<usize>,
        read_buffer_size: Option<usize>,
    ) -> PyResult<Self> {
        let mut cfg = ChannelConfig::new(endpoint);
        cfg.compression = Compression::parse(compression)
            .ok_or_else(|| PyValueError::new_err(format!("unknown compression {compression:?}")))?;
        cfg.level = level;
        if !insecure {
            cfg.tls = Some(TlsSettings {
                ca: pem(ca_file, ca_pem),
                cert: pem(cert_file, cert_pem),
                key: pem(key_file, key_pem),
                include_system_ca_certs_pool,
                system_ca_files,
                server_name_override: server_name_override.filter(|s| !s.is_empty()),
                insecure_skip_verify,
                min_version,
                max_version,
            });
            cfg.reload_interval = seconds(reload_interval)?;
        }
        cfg.headers = headers;
        cfg.authority = authority;
        cfg.user_agent = user_agent;
        cfg.wait_for_ready = wait_for_ready;
        cfg.keepalive = Keepalive {
            time: seconds(keepalive_time)?,
            timeout: seconds(keepalive_timeout)?,
            permit_without_stream: keepalive_permit_without_stream,
        };
        cfg.write_buffer_size = write_buffer_size;
        cfg.read_buffer_size = read_buffer_size;
        let channel = Channel::open(cfg).map_err(PyValueError::new_err)?;
        Ok(PyChannel {
            channel: Arc::new(channel),
        })
    }

    /// Starts one unary call; see the module documentation.
    /// `local_timeout` (default: `timeout`) is the local timer; `timeout` is sent as `grpc-timeout`.
    #[pyo3(signature = (path, data, timeout, event_loop, callback, local_timeout = None))]
    fn export(
        &self,
        path: String,
        data: &Bound<'_, PyBytes>,
        timeout: Option<f64>,
        event_loop: &Bound<'_, PyAny>,
        callback: Py<PyAny>,
        local_timeout: Option<f64>,
    ) -> PyResult<PyCall> {
        let timeout = seconds(timeout)?;
        let local_timeout = match local_timeout {
            Some(_) => seconds(local_timeout)?,
            None => timeout,
        };
        let handle = LoopHandle::new(event_loop)?;
        // A pooled buffer: a fresh ~100 KB allocation per call would be mapped (and faulted) anew.
        let mut message = PooledBuf::take();
        message.vec().extend_from_slice(data.as_bytes());
        let channel = self.channel.clone();
        let task = crate::runtime::handle().spawn(async move {
            let outcome = channel
                .export_timed(&path, message.as_ref(), timeout, local_timeout)
                .await;
            drop(message);
            // Hand over on a blocking-pool thread: waiting for the interpreter lock must never
            // stall the runtime's workers (other calls, keepalive pings).
            drop(tokio::task::spawn_blocking(move || {
                crate::bridge::attach(|py| {
                    let (code, text, details, response) = match outcome {
                        Ok(response) => (0u8, String::new(), Vec::new(), response),
                        Err(s) => (s.code as u8, s.message, s.details.to_vec(), Vec::new()),
                    };
                    let Ok(code) = code.into_pyobject(py);
                    let Ok(text) = text.into_pyobject(py);
                    let args = [
                        code.into_any(),
                        text.into_any(),
                        PyBytes::new(py, &details).into_any(),
                        PyBytes::new(py, &response).into_any(),
                    ];
                    handle.call_soon(py, &callback, &args);
                    drop(callback);
                    drop(handle);
                })
            }));
        });
        Ok(PyCall {
            abort: task.abort_handle(),
        })
    }

    /// `connecting`, `ready`, `transient_failure` or `closed`.
    #[getter]
    fn state(&self) -> &'static str {
        self.channel.state()
    }

    /// Stops connecting; calls in flight finish on the connection they use, new calls fail.
    fn close(&self) {
        self.channel.close();
    }
}

/// A call in flight.
#[pyclass(name = "ExportCall", module = "dataplane._native", frozen)]
struct PyCall {
    abort: tokio::task::AbortHandle,
}

#[pymethods]
impl PyCall {
    /// Cancels the call (the backend sees the stream reset); its callback never runs.
    fn cancel(&self) {
        self.abort.abort();
    }

    #[getter]
    fn done(&self) -> bool {
        self.abort.is_finished()
    }
}

/// For `atexit`: stop handing results to Python and wait (up to `timeout` seconds, without
/// the interpreter lock) for hand-overs under way, so no runtime thread is inside Python
/// when the interpreter finalizes.
#[pyfunction]
#[pyo3(signature = (timeout = 2.0))]
fn quiesce(py: Python<'_>, timeout: f64) {
    crate::bridge::quiesce(py, Duration::from_secs_f64(timeout.clamp(0.0, 60.0)));
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(quiesce, m)?)?;
    m.add_class::<PyChannel>()?;
    m.add_class::<PyCall>()?;
    Ok(())
}
