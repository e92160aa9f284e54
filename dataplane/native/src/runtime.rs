//! The data path's own threads: one tokio runtime per process.
//!
//! Receivers and exporters run on it, never on the Python interpreter's thread and
//! never holding its lock while they move data. Its size is fixed the first time
//! it is used: call [`configure`] (Python: `dataplane._native.configure_runtime`)
//! before starting a receiver or opening a channel; without it the runtime has
//! [`DEFAULT_THREADS`] worker threads.

use std::sync::OnceLock;

use tokio::runtime::{Builder, Handle, Runtime};

/// Worker threads when nothing was configured.
pub const DEFAULT_THREADS: usize = 1;

static THREADS: OnceLock<usize> = OnceLock::new();
static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// Fix the number of worker threads (>= 1). Fails once the runtime exists with another size.
pub fn configure(threads: usize) -> Result<(), String> {
    if threads == 0 {
        return Err("worker_threads must be at least 1".into());
    }
    let set = *THREADS.get_or_init(|| threads);
    if set != threads {
        return Err(format!(
            "the data path runtime already runs with {set} worker threads"
        ));
    }
    Ok(())
}

/// The runtime's handle, starting it on first use.
pub fn handle() -> Handle {
    RUNTIME
        .get_or_init(|| {
            let threads = *THREADS.get_or_init(|| DEFAULT_THREADS);
            Builder::new_multi_thread()
                .worker_threads(threads)
                .thread_name("ringleader-data")
                .enable_all()
                .build()
                .expect("cannot start the data path runtime")
        })
        .handle()
        .clone()
}

/// The configured (or default) number of worker threads.
pub fn threads() -> usize {
    *THREADS.get().unwrap_or(&DEFAULT_THREADS)
}
