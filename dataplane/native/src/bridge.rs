//! Handing results from the data path's threads to Python's event loop.
//!
//! The runtime's threads never wait for the interpreter lock on the data path; they take
//! it only to hand a finished result (or a request, while the control side still lives in
//! Python) to the asyncio loop with `loop.call_soon_threadsafe(callback, *args)`.

#![allow(dead_code)] // until the receivers and channels use it (issue 10, in progress)

use pyo3::prelude::*;
use pyo3::types::PyTuple;

/// An asyncio event loop, callable from any thread.
#[derive(Debug)]
pub struct LoopHandle {
    call_soon_threadsafe: Py<PyAny>,
}

impl LoopHandle {
    pub fn new(event_loop: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(LoopHandle {
            call_soon_threadsafe: event_loop.getattr("call_soon_threadsafe")?.unbind(),
        })
    }

    /// Schedule `callback(*args)` on the loop; the caller holds the interpreter lock (take it
    /// with `Python::attach` only once the data is ready). Errors (a closed loop at exit) are
    /// dropped: there is nobody left to tell.
    pub fn call_soon(&self, py: Python<'_>, callback: &Py<PyAny>, args: &[Bound<'_, PyAny>]) {
        let mut all = Vec::with_capacity(args.len() + 1);
        all.push(callback.bind(py).clone());
        all.extend(args.iter().cloned());
        if let Ok(tuple) = PyTuple::new(py, all) {
            let _ = self.call_soon_threadsafe.bind(py).call1(tuple);
        }
    }
}

impl LoopHandle {
    /// Another handle to the same loop (it takes the interpreter lock to copy the reference).
    pub fn clone_handle(&self) -> LoopHandle {
        Python::attach(|py| LoopHandle {
            call_soon_threadsafe: self.call_soon_threadsafe.clone_ref(py),
        })
    }
}
