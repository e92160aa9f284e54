//! The Python binding of the native pipeline: `dataplane._native.Pipeline` and `Backend`.
//!
//! Python creates the pipeline with its settings and an `on_events(events)` callback, adds
//! a `Backend` per endpoint (with its `Channel`), swaps routes with `set_route(table,
//! backends)`, retires backends and drains at shutdown (each with a callback scheduled on
//! the asyncio loop when done), and reads the counters at scrape time. Events (refusals,
//! drops, at-least-once cases, re-routes, unhealthy backends, log lines) are batched by one
//! thread of their own and handed to the loop as a list of tuples, so the data path's
//! threads never wait for the interpreter lock.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use crate::bridge::LoopHandle;
use crate::budget::PyBudget;
use crate::pipeline::backend::{Backend, BackendConfig, HealthConfig};
use crate::pipeline::events::{Event, Events};
use crate::pipeline::queue::{BackendQueue, QueueConfig, Sizer};
use crate::pipeline::retry::RetryPolicy;
use crate::pipeline::{Core, PipelineConfig, Route};
use crate::py_client::PyChannel;
use crate::py_server::PyCall;
use crate::python::PyRingTable;
use crate::server::{Request, Transport, SIGNALS};
use crate::split::{Key, Signal};

/// Events wait here until Python takes them: scheduled on the loop once per batch, and taken
/// at every scrape too, so a count is never behind an answer the client already has.
struct PyEvents {
    pending: std::sync::Mutex<Vec<Event>>,
    scheduled: std::sync::atomic::AtomicBool,
    wake: std::sync::Mutex<mpsc::Sender<()>>,
}

impl Events for PyEvents {
    fn emit(&self, event: Event) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event);
        if !self
            .scheduled
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            if let Ok(wake) = self.wake.lock() {
                let _ = wake.send(());
            }
        }
    }
}

impl PyEvents {
    fn take(&self) -> Vec<Event> {
        self.scheduled
            .store(false, std::sync::atomic::Ordering::Release);
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

fn event_tuple<'py>(py: Python<'py>, event: Event) -> PyResult<Bound<'py, PyTuple>> {
    match event {
        Event::Refused {
            signal,
            reason,
            items,
            detail,
            transport,
        } => ("refused", signal, reason, items, detail, transport).into_pyobject(py),
        Event::Failed {
            endpoint,
            signal,
            reason,
            items,
            detail,
        } => ("failed", endpoint, signal, reason, items, detail).into_pyobject(py),
        Event::AtLeastOnce {
            signal,
            reason,
            items,
            detail,
        } => ("at_least_once", signal, reason, items, detail).into_pyobject(py),
        Event::Rerouted { signal, items } => ("rerouted", signal, items).into_pyobject(py),
        Event::Unhealthy {
            endpoint,
            reason,
            stalled,
            failures,
        } => ("unhealthy", endpoint, reason, stalled, failures).into_pyobject(py),
        Event::Info(line) => ("info", line).into_pyobject(py),
        Event::Warning(line) => ("warning", line).into_pyobject(py),
    }
}

/// One thread schedules `on_events()` on the loop whenever events are waiting (the data
/// path's threads never wait for the interpreter lock); it ends with the pipeline.
fn schedule_events(wake: mpsc::Receiver<()>, event_loop: LoopHandle, callback: Py<PyAny>) {
    while wake.recv().is_ok() {
        crate::bridge::attach(|py| event_loop.call_soon(py, &callback, &[]));
    }
}

/// Schedule `callback()` on the loop from a blocking-pool thread (waiting for the interpreter
/// lock must never stall the runtime's workers).
fn notify(event_loop: LoopHandle, callback: Py<PyAny>) {
    drop(tokio::task::spawn_blocking(move || {
        crate::bridge::attach(move |py| {
            event_loop.call_soon(py, &callback, &[]);
            drop(callback);
            drop(event_loop);
        });
    }));
}

fn duration(seconds: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(seconds.max(0.0))
        .map_err(|e| PyValueError::new_err(format!("{seconds}: {e}")))
}

/// `Pipeline(keys, max_request_size, block_on_overflow, budget, loop, on_events)`: `keys`
/// maps each enabled signal to its routing key (one the wire splitter serves).
#[pyclass(name = "Pipeline", module = "dataplane._native", frozen)]
pub(crate) struct PyPipeline {
    pub(crate) core: Arc<Core>,
    events: Arc<PyEvents>,
    event_loop: LoopHandle,
}

#[pymethods]
impl PyPipeline {
    #[new]
    fn new(
        keys: Vec<(String, String)>,
        max_request_size: usize,
        block_on_overflow: bool,
        budget: &PyBudget,
        event_loop: &Bound<'_, PyAny>,
        on_events: Py<PyAny>,
    ) -> PyResult<Self> {
        let mut parsed: [Option<Key>; 3] = [None; 3];
        for (signal, key) in keys {
            let sig = Signal::parse(&signal)
                .ok_or_else(|| PyValueError::new_err(format!("unknown signal {signal:?}")))?;
            let k = Key::parse(sig, &key).ok_or_else(|| {
                PyValueError::new_err(format!(
                    "the native pipeline cannot route {signal} by {key}"
                ))
            })?;
            let idx = SIGNALS.iter().position(|s| *s == signal).unwrap_or(0);
            parsed[idx] = Some(k);
        }
        let (tx, rx) = mpsc::channel();
        let handle = LoopHandle::new(event_loop)?;
        std::thread::Builder::new()
            .name("ringleader-events".into())
            .spawn(move || schedule_events(rx, handle, on_events))
            .map_err(|e| PyValueError::new_err(format!("cannot start the event thread: {e}")))?;
        let events = Arc::new(PyEvents {
            pending: std::sync::Mutex::new(Vec::new()),
            scheduled: std::sync::atomic::AtomicBool::new(false),
            wake: std::sync::Mutex::new(tx),
        });
        let cfg = PipelineConfig {
            keys: parsed,
            max_request_size: max_request_size.max(1),
            block_on_overflow,
        };
        Ok(PyPipeline {
            core: Core::new(cfg, budget.inner.clone(), events.clone()),
            events,
            event_loop: LoopHandle::new(event_loop)?,
        })
    }

    /// Start a backend: its queue and consumers over `channel`.
    /// `retry` is (enabled, initial, randomization, multiplier, max_interval, max_elapsed);
    /// `ejection` is (enabled, window, consecutive_failures).
    #[pyo3(signature = (endpoint, channel, *, sizer, queue_size, num_consumers, coalesce_max_size,
        coalesce_max_delay, timeout, retry, ejection, latency_buckets_ms))]
    #[allow(clippy::too_many_arguments)]
    fn add_backend(
        &self,
        py: Python<'_>,
        endpoint: String,
        channel: &PyChannel,
        sizer: &str,
        queue_size: u64,
        num_consumers: usize,
        coalesce_max_size: usize,
        coalesce_max_delay: f64,
        timeout: Option<f64>,
        retry: (bool, f64, f64, f64, f64, f64),
        ejection: (bool, f64, u32),
        latency_buckets_ms: Vec<f64>,
    ) -> PyResult<PyBackend> {
        let sizer = match sizer {
            "requests" => Sizer::Requests,
            "items" => Sizer::Items,
            "bytes" => Sizer::Bytes,
            other => return Err(PyValueError::new_err(format!("unknown sizer {other:?}"))),
        };
        let queue = BackendQueue::new(
            QueueConfig {
                sizer,
                queue_size,
                num_consumers,
                coalesce_max_size,
                coalesce_max_delay: duration(coalesce_max_delay)?,
            },
            self.core.budget.clone(),
        );
        let cfg = BackendConfig {
            timeout: timeout.filter(|t| *t > 0.0).map(duration).transpose()?,
            retry: RetryPolicy {
                enabled: retry.0,
                initial_interval: retry.1,
                randomization_factor: retry.2,
                multiplier: retry.3,
                max_interval: retry.4,
                max_elapsed_time: retry.5,
            },
            health: HealthConfig {
                enabled: ejection.0,
                window: duration(ejection.1)?,
                consecutive_failures: ejection.2,
            },
            latency_buckets_ms,
        };
        let core = self.core.clone();
        let chan = channel.channel.clone();
        let backend = py.detach(|| {
            let _guard = crate::runtime::handle().enter();
            let backend = Backend::start(&core, endpoint, chan, queue, cfg);
            core.add_backend(backend.clone());
            backend
        });
        Ok(PyBackend { backend })
    }

    /// Swap the route: `table` None means no backend; else `backends[i]` owns index `i`.
    fn set_route(
        &self,
        py: Python<'_>,
        table: Option<&PyRingTable>,
        backends: Vec<PyRef<'_, PyBackend>>,
    ) {
        let route = table.map(|t| Route {
            table: t.table.clone(),
            backends: backends.iter().map(|b| b.backend.clone()).collect(),
        });
        let core = self.core.clone();
        py.detach(|| core.set_route(route));
    }

    /// The events since the last call, oldest first, as tuples: `("refused", signal, reason,
    /// items or None, detail, transport)`, `("failed", endpoint, signal, reason, items, detail)`,
    /// `("at_least_once", signal, reason, items, detail)`, `("rerouted", signal, items)`,
    /// `("unhealthy", endpoint, reason, stalled seconds, failures)`, `("info", line)`,
    /// `("warning", line)`.
    fn take_events<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for event in self.events.take() {
            list.append(event_tuple(py, event)?)?;
        }
        Ok(list)
    }

    /// Refuse new requests (`shutting_down`) and release those waiting for room.
    fn stop_accepting(&self) {
        self.core.stop_accepting();
    }

    /// Flush every queue within `timeout` seconds, count what is left; `callback()` when done.
    fn drain(&self, timeout: f64, callback: Py<PyAny>) -> PyResult<()> {
        let timeout = duration(timeout)?;
        let core = self.core.clone();
        let event_loop = self.event_loop.clone_handle();
        crate::runtime::handle().spawn(async move {
            core.drain(timeout).await;
            notify(event_loop, callback);
        });
        Ok(())
    }

    /// ([[items received per transport (grpc, http)] per signal], [missing keys per signal]).
    fn counters(&self) -> (Vec<Vec<u64>>, Vec<u64>) {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &self.core.counters;
        let received = c
            .received
            .iter()
            .map(|t| t.iter().map(|n| n.load(Relaxed)).collect())
            .collect();
        let missing = c.missing_keys.iter().map(|n| n.load(Relaxed)).collect();
        (received, missing)
    }

    /// Batches waiting for a backend to exist again.
    #[getter]
    fn orphans(&self) -> usize {
        self.core.orphans()
    }

    /// Handle `data` (protobuf, converted from the OTLP/JSON body of `call`) natively; the
    /// answer goes to `call`'s client.
    fn submit(&self, py: Python<'_>, call: &PyCall, data: &[u8]) {
        let reply = call.reply.lock().map(|mut r| r.take()).unwrap_or(None);
        let Some(reply) = reply else { return };
        let transport = if call.transport == "grpc" {
            Transport::Grpc
        } else {
            Transport::Http
        };
        let request = Request {
            id: call.id,
            signal: call.signal,
            transport,
            data: bytes::Bytes::copy_from_slice(data),
            is_json: false,
            deadline: call.deadline,
            reply,
        };
        let core = self.core.clone();
        py.detach(|| {
            let _guard = crate::runtime::handle().enter();
            core.handle(request);
        });
    }
}

/// One backend of a pipeline.
#[pyclass(name = "Backend", module = "dataplane._native", frozen)]
pub(crate) struct PyBackend {
    backend: Arc<Backend>,
}

#[pymethods]
impl PyBackend {
    #[getter]
    fn endpoint(&self) -> &str {
        &self.backend.endpoint
    }

    /// (batches, items) waiting in its queue.
    fn sizes(&self) -> (u64, u64) {
        self.backend.queue.sizes()
    }

    /// Whether batches wait or are in flight.
    #[getter]
    fn busy(&self) -> bool {
        self.backend.queue.busy()
    }

    /// ([items exported per signal], calls succeeded, calls failed, [calls per latency bucket,
    /// the last +Inf], latency sum in ms).
    fn counters(&self) -> (Vec<u64>, u64, u64, Vec<u64>, f64) {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &self.backend.counters;
        (
            c.exported.iter().map(|n| n.load(Relaxed)).collect(),
            c.succeeded.load(Relaxed),
            c.failed.load(Relaxed),
            c.latency.iter().map(|n| n.load(Relaxed)).collect(),
            c.latency_sum_us.load(Relaxed) as f64 / 1000.0,
        )
    }

    /// Take it out (see `Backend::retire`); `callback()` on `loop` when it is retired.
    fn retire(&self, pipeline: &PyPipeline, callback: Py<PyAny>) {
        let backend = self.backend.clone();
        let core = pipeline.core.clone();
        let event_loop = pipeline.event_loop.clone_handle();
        crate::runtime::handle().spawn(async move {
            backend.retire().await;
            core.remove_backend(&backend);
            notify(event_loop, callback);
        });
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyPipeline>()?;
    m.add_class::<PyBackend>()?;
    Ok(())
}
