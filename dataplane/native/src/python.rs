//! The Python binding: `dataplane._native` (see `dataplane/routing/_native_split.py`).
//!
//! Errors come back as `MalformedInput` / `InvalidInput` / `ItemTooLarge` (all `ValueError`s);
//! the Python wrapper turns them into the data plane's `MalformedError` /
//! `InvalidRequestError` / `ItemTooLargeError`.
//! A Rust panic surfaces as pyo3's `PanicException`, never as an abort.

use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

use crate::ring::{Hash, Table};
use crate::ring_build::Upstream;
use crate::size_limit::FitError;
use crate::split::{Key, Signal, Split, Splitter};
use crate::wire::Error;

create_exception!(
    _native,
    MalformedInput,
    PyValueError,
    "The bytes are not a well-formed OTLP request."
);
create_exception!(
    _native,
    InvalidInput,
    PyValueError,
    "args: (reason, message); the request violates OTLP."
);
create_exception!(
    _native,
    ItemTooLarge,
    PyValueError,
    "A single item is larger than the export size limit: no backend would take it."
);

/// A ring table: `algorithm` ("ringleader" or "upstream"), its cells as little-endian
/// unsigned integers of `itemsize` bytes (`array.tobytes()` of `Ring` cells). Immutable:
/// swap the object to swap the ring.
#[pyclass(name = "RingTable", module = "dataplane._native", frozen)]
pub(crate) struct PyRingTable {
    pub(crate) table: std::sync::Arc<Table>,
}

#[pymethods]
impl PyRingTable {
    #[new]
    fn new(algorithm: &str, cells: &[u8], itemsize: usize) -> PyResult<Self> {
        let hash = match algorithm {
            "ringleader" => Hash::Ringleader,
            "upstream" | "upstream-v0.161" | "upstream-v0.152" | "upstream-v0.129" => {
                Hash::Upstream
            }
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown ring algorithm {other:?}"
                )))
            }
        };
        let table = Table::from_le_bytes(hash, cells, itemsize).map_err(PyValueError::new_err)?;
        Ok(PyRingTable {
            table: std::sync::Arc::new(table),
        })
    }

    /// One more than the largest backend index.
    #[getter]
    fn backends(&self) -> usize {
        self.table.backends()
    }

    /// The backend that owns `key`.
    fn lookup(&self, key: &[u8]) -> u32 {
        self.table.lookup(key)
    }
}

/// A wire splitter for one signal and key; reuses its buffers across requests.
/// Not shareable between threads at once (a second concurrent call raises).
#[pyclass(name = "WireSplitter", module = "dataplane._native")]
struct PyWireSplitter {
    splitter: Splitter,
    out: Split,
}

#[pymethods]
impl PyWireSplitter {
    #[new]
    #[pyo3(signature = (signal, key, seed = 0))]
    fn new(signal: &str, key: &str, seed: u64) -> PyResult<Self> {
        let sig = Signal::parse(signal)
            .ok_or_else(|| PyValueError::new_err(format!("unknown signal {signal:?}")))?;
        let k = Key::parse(sig, key).ok_or_else(|| {
            PyValueError::new_err(format!("the wire path cannot route {signal} by {key}"))
        })?;
        Ok(PyWireSplitter {
            splitter: Splitter::new(sig, k, seed),
            out: Split::default(),
        })
    }

    /// Split `data` by `table`: ([(backend, part bytes, items), ...], items, missing keys).
    /// The interpreter lock is released while splitting.
    fn split<'py>(
        &mut self,
        py: Python<'py>,
        data: &Bound<'py, PyBytes>,
        table: &Bound<'py, PyRingTable>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let bytes = data.as_bytes();
        let table = &table.get().table;
        let (splitter, out) = (&mut self.splitter, &mut self.out);
        let result = py.detach(|| splitter.split_into(bytes, table, out));
        match result {
            Ok(()) => {
                let parts = PyList::empty(py);
                for (idx, part, count) in self.out.iter() {
                    parts.append((idx, PyBytes::new(py, part), count))?;
                }
                (parts, self.out.items, self.out.missing_keys).into_pyobject(py)
            }
            Err(Error::Malformed(m)) => Err(MalformedInput::new_err(m)),
            Err(Error::Invalid { reason, message }) => {
                Err(InvalidInput::new_err((reason, message)))
            }
        }
    }
}

/// `data` cut into requests of at most `max_bytes` bytes: [(chunk, items), ...], as
/// `dataplane.size_limit.SizeLimit.fit` cuts it (see src/size_limit.rs). A part that fits
/// comes back as the same bytes object. Runs without the interpreter lock.
#[pyfunction]
fn fit_parts<'py>(
    py: Python<'py>,
    signal: &str,
    data: &Bound<'py, PyBytes>,
    max_bytes: usize,
) -> PyResult<Bound<'py, PyList>> {
    let sig = Signal::parse(signal)
        .ok_or_else(|| PyValueError::new_err(format!("unknown signal {signal:?}")))?;
    let bytes = data.as_bytes();
    if bytes.len() <= max_bytes {
        let items = py.detach(|| crate::split::count_items(sig, bytes).unwrap_or(0));
        return PyList::new(py, [(data.clone(), items)]);
    }
    match py.detach(|| crate::size_limit::fit(sig, bytes, max_bytes)) {
        Ok(chunks) => PyList::new(
            py,
            chunks
                .iter()
                .map(|(chunk, items)| (PyBytes::new(py, chunk), *items)),
        ),
        Err(FitError::TooLarge(e)) => Err(ItemTooLarge::new_err(e.0)),
        Err(FitError::Malformed(m)) => Err(MalformedInput::new_err(m)),
    }
}

/// Panics on purpose, on the same lock-free path a split runs on: the tests call it to
/// prove a Rust panic reaches Python as `PanicException` (the build unwinds, never aborts).
#[pyfunction]
fn _panic_probe(py: Python<'_>) {
    py.detach(|| panic!("panic probe"));
}

/// The cells of a ring (see `dataplane/ring.py`): `unique` sorted and deduplicated, `ordered`
/// the endpoint list as upstream sorts it (duplicates kept; upstream rings only). Returns
/// (little-endian cells, item size). Runs without the interpreter lock.
#[pyfunction]
fn build_ring_cells<'py>(
    py: Python<'py>,
    algorithm: &str,
    unique: Vec<String>,
    ordered: Vec<String>,
) -> PyResult<(Bound<'py, PyBytes>, usize)> {
    if unique.is_empty() {
        return Err(PyValueError::new_err("a ring needs at least one endpoint"));
    }
    let upstream = if algorithm == "ringleader" {
        None
    } else {
        Some(Upstream::named(algorithm).ok_or_else(|| {
            PyValueError::new_err(format!("unknown ring algorithm {algorithm:?}"))
        })?)
    };
    let n = unique.len();
    let (raw, itemsize) = py.detach(|| {
        let cells = match upstream {
            None => crate::ring_build::ringleader(&unique),
            Some(v) => v.cells(&ordered, &unique),
        };
        crate::ring_build::to_le_bytes(&cells, n)
    });
    Ok((PyBytes::new(py, &raw), itemsize))
}

/// Cells per backend index of a table (for exact shares), without the interpreter lock.
#[pyfunction]
fn ring_cell_counts(py: Python<'_>, table: &Bound<'_, PyRingTable>, backends: usize) -> Vec<u64> {
    let table = &table.get().table;
    py.detach(|| crate::ring_build::counts(table.cells(), backends))
}

/// Fix the data path runtime's worker threads (before any receiver or channel starts).
#[pyfunction]
fn configure_runtime(threads: usize) -> PyResult<()> {
    crate::runtime::configure(threads).map_err(PyValueError::new_err)
}

#[pymodule]
#[pyo3(name = "_native")]
fn native_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyRingTable>()?;
    m.add_class::<PyWireSplitter>()?;
    m.add_function(wrap_pyfunction!(_panic_probe, m)?)?;
    m.add_function(wrap_pyfunction!(configure_runtime, m)?)?;
    m.add_function(wrap_pyfunction!(build_ring_cells, m)?)?;
    m.add_function(wrap_pyfunction!(ring_cell_counts, m)?)?;
    m.add_function(wrap_pyfunction!(fit_parts, m)?)?;
    crate::py_server::register(m)?;
    crate::py_client::register(m)?;
    crate::py_pipeline::register(m)?;
    m.add("MalformedInput", m.py().get_type::<MalformedInput>())?;
    m.add("InvalidInput", m.py().get_type::<InvalidInput>())?;
    m.add("ItemTooLarge", m.py().get_type::<ItemTooLarge>())?;
    Ok(())
}
