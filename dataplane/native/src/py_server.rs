//! The Python binding of the receivers: `dataplane._native.Receiver`, `Call`, `Budget`,
//! `decompress`.
//!
//! A `Receiver` serves on the data path runtime; for each request that passed the transport's
//! checks it takes the interpreter lock once and schedules `on_request(call)` on the asyncio
//! loop. Python answers with `call.respond(...)`. Abandoned requests are reported with
//! `on_cancel(call_id)`, refusals the transport answered itself with
//! `on_refused(signal, transport, reason, detail, data_or_None)`, both through the loop.

use std::net::ToSocketAddrs;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use tokio::time::Instant;

use crate::bridge::LoopHandle;
use crate::budget::PyBudget;
use crate::server::decompress::{decompress as native_decompress, DecompressError};
use crate::server::{Answer, Handler, Refusal, Reply, Request, Server, Transport};

pyo3::create_exception!(
    _native,
    DecompressFailure,
    PyValueError,
    "args: (kind, message); kind is 'unsupported', 'corrupt' or 'too_large'."
);

/// `decompress(body, encoding, limit) -> bytes`: the native decoder the receivers use,
/// bounded by `limit`. Raises `DecompressFailure(kind, message)`.
#[pyfunction]
fn decompress<'py>(
    py: Python<'py>,
    body: &[u8],
    encoding: &str,
    limit: usize,
) -> PyResult<Bound<'py, PyBytes>> {
    match py.detach(|| native_decompress(body, encoding, limit)) {
        Ok(out) => Ok(PyBytes::new(py, &out)),
        Err(err) => {
            let kind = match err {
                DecompressError::Unsupported(_) => "unsupported",
                DecompressError::Corrupt(_) => "corrupt",
                DecompressError::TooLarge(_) => "too_large",
            };
            Err(DecompressFailure::new_err((kind, err.to_string())))
        }
    }
}

/// One request handed to Python.
#[pyclass(name = "Call", module = "dataplane._native", frozen)]
pub(crate) struct PyCall {
    #[pyo3(get)]
    pub(crate) id: u64,
    #[pyo3(get)]
    pub(crate) signal: &'static str,
    #[pyo3(get)]
    pub(crate) transport: &'static str,
    #[pyo3(get)]
    data: Py<PyBytes>,
    #[pyo3(get)]
    is_json: bool,
    pub(crate) deadline: Option<Instant>,
    pub(crate) reply: Mutex<Option<Reply>>,
}

#[pymethods]
impl PyCall {
    /// Seconds left until the client's deadline (now), or None without one.
    #[getter]
    fn timeout(&self) -> Option<f64> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()).as_secs_f64())
    }

    /// Answer the request; False when its client is gone already (or it was answered).
    fn respond(&self, grpc_code: u32, http_status: u16, message: &str) -> bool {
        let reply = self.reply.lock().map(|mut r| r.take()).unwrap_or(None);
        match reply {
            Some(reply) => reply.send(Answer::new(grpc_code, http_status, message)),
            None => false,
        }
    }
}

struct PyHandler {
    event_loop: LoopHandle,
    on_request: Py<PyAny>,
    on_cancel: Py<PyAny>,
    on_refused: Py<PyAny>,
}

impl Handler for PyHandler {
    fn request(&self, request: Request) {
        crate::bridge::attach(|py| {
            let call = PyCall {
                id: request.id,
                signal: request.signal,
                transport: request.transport.name(),
                data: PyBytes::new(py, &request.data).unbind(),
                is_json: request.is_json,
                deadline: request.deadline,
                reply: Mutex::new(Some(request.reply)),
            };
            drop(request.data);
            if let Ok(call) = Bound::new(py, call) {
                self.event_loop
                    .call_soon(py, &self.on_request, &[call.into_any()]);
            }
        });
    }

    fn cancelled(&self, id: u64) {
        crate::bridge::attach(|py| {
            let id = pyo3::types::PyInt::new(py, id).into_any();
            self.event_loop.call_soon(py, &self.on_cancel, &[id]);
        });
    }

    fn refused(&self, refusal: Refusal) {
        crate::bridge::attach(|py| {
            let data = match &refusal.data {
                Some(d) => PyBytes::new(py, d).into_any(),
                None => py.None().into_bound(py),
            };
            let text = |s: &str| pyo3::types::PyString::new(py, s).into_any();
            let args = [
                text(refusal.signal),
                text(refusal.transport.name()),
                text(refusal.reason),
                text(&refusal.detail),
                data,
            ];
            self.event_loop.call_soon(py, &self.on_refused, &args);
        });
    }
}

/// `Receiver(kind, host, port, limit, budget, loop, on_request, on_cancel, on_refused,
/// pipeline=None)`: an OTLP receiver (`kind` "grpc" or "http") listening at once. With a
/// `pipeline`, requests are handled natively and only OTLP/JSON bodies reach `on_request`.
#[pyclass(name = "Receiver", module = "dataplane._native")]
struct PyReceiver {
    server: Server,
    event_loop: LoopHandle,
}

#[pymethods]
impl PyReceiver {
    #[new]
    #[pyo3(signature = (kind, host, port, limit, budget, event_loop, on_request, on_cancel, on_refused, pipeline = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        kind: &str,
        host: &str,
        port: u16,
        limit: usize,
        budget: &PyBudget,
        event_loop: &Bound<'_, PyAny>,
        on_request: Py<PyAny>,
        on_cancel: Py<PyAny>,
        on_refused: Py<PyAny>,
        pipeline: Option<&crate::py_pipeline::PyPipeline>,
    ) -> PyResult<Self> {
        let transport = match kind {
            "grpc" => Transport::Grpc,
            "http" => Transport::Http,
            other => return Err(PyValueError::new_err(format!("unknown receiver {other:?}"))),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host = if host.is_empty() { "0.0.0.0" } else { host };
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(|e| PyOSError::new_err(format!("cannot resolve {host}: {e}")))?
            .next()
            .ok_or_else(|| PyOSError::new_err(format!("cannot resolve {host}")))?;
        let python = Arc::new(PyHandler {
            event_loop: LoopHandle::new(event_loop)?,
            on_request,
            on_cancel,
            on_refused,
        });
        // With the native pipeline, Python sees only OTLP/JSON bodies (it converts them).
        let handler: Arc<dyn Handler> = match pipeline {
            Some(p) => Arc::new(crate::pipeline::Router {
                core: p.core.clone(),
                json: python,
            }),
            None => python,
        };
        let budget = budget.inner.clone();
        let server = py
            .detach(|| Server::start(transport, addr, limit, budget, handler))
            .map_err(|e| {
                PyOSError::new_err(format!(
                    "cannot listen on {addr} for OTLP/{}: {e}",
                    kind.to_uppercase()
                ))
            })?;
        Ok(PyReceiver {
            server,
            event_loop: LoopHandle::new(event_loop)?,
        })
    }

    /// The port it listens on.
    #[getter]
    fn port(&self) -> u16 {
        self.server.local_addr().port()
    }

    /// Stop listening now; connections keep `grace` seconds for their requests, then are
    /// closed. `on_stopped()` is scheduled on the loop once every connection is gone.
    fn stop(&mut self, grace: f64, on_stopped: Py<PyAny>) {
        let done = self.server.stop(Duration::from_secs_f64(grace.max(0.0)));
        let event_loop = self.event_loop.clone_handle();
        crate::runtime::handle().spawn(async move {
            if let Some(done) = done {
                let _ = done.await;
            }
            crate::bridge::attach(|py| event_loop.call_soon(py, &on_stopped, &[]));
        });
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyBudget>()?;
    m.add_class::<PyCall>()?;
    m.add_class::<PyReceiver>()?;
    m.add_function(wrap_pyfunction!(decompress, m)?)?;
    m.add("DecompressFailure", m.py().get_type::<DecompressFailure>())?;
    Ok(())
}
