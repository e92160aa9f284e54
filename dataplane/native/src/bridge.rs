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

// --- Interpreter exit ------------------------------------------------------------------
//
// A runtime thread that is inside Python code when the interpreter finalizes is killed by
// CPython 3.11 with pthread_exit when it asks for the lock again, and that forced unwind
// through Rust frames aborts the process ("FATAL: exception not rethrown"). So hand-overs
// go through `attach`, and `quiesce` (registered with `atexit`, which runs before
// finalization) stops new ones and waits for those under way.

static ATTACHED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static EXITING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Run `f` holding the interpreter lock, unless the interpreter is exiting (then `f` is
/// dropped unrun and `None` returned: nobody is left to receive the result).
pub fn attach<R>(f: impl FnOnce(Python<'_>) -> R) -> Option<R> {
    use std::sync::atomic::Ordering::SeqCst;
    ATTACHED.fetch_add(1, SeqCst);
    let result = if EXITING.load(SeqCst) {
        None
    } else {
        Some(Python::attach(f))
    };
    ATTACHED.fetch_sub(1, SeqCst);
    result
}

/// At interpreter exit: no more hand-overs; wait (without the lock) up to `timeout` for the
/// ones under way to leave Python.
pub fn quiesce(py: Python<'_>, timeout: std::time::Duration) {
    use std::sync::atomic::Ordering::SeqCst;
    EXITING.store(true, SeqCst);
    py.detach(|| {
        let deadline = std::time::Instant::now() + timeout;
        while ATTACHED.load(SeqCst) > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    });
}
