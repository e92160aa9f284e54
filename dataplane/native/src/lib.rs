//! Ringleader's native data path.
//!
//! What runs here, on the data path's own tokio runtime (`runtime`, sized by the config's
//! `data_path.worker_threads`) and never holding the Python interpreter's lock while it
//! moves data:
//!
//! - `server`: the OTLP receivers, gRPC (h2c) and OTLP/HTTP on hyper, with bounded
//!   decompression of every codec and the memory budget they charge (`budget`);
//! - `client`: the exporter, one gRPC channel per backend over hyper's HTTP/2 client (h2c or
//!   rustls), with our own framing and compression at a chosen level;
//! - `split`: the OTLP wire splitter (a port of `dataplane/routing/_wire_split.py`, writing
//!   the same bytes; `keys` builds resource-level keys, `wire` reads the wire format) over a
//!   ring table (`ring`) that `ring_build` computes as `dataplane/ring.py`'s reference does;
//! - `size_limit`: cuts a part over the export size limit into requests a backend takes (a
//!   port of `dataplane/size_limit.py`, writing the same bytes);
//! - `pipeline`: everything between receiving and exporting: admission (all parts or none),
//!   per-backend queues with coalescing, export with retries, re-routing, ejection health,
//!   the drain at shutdown and the counters.
//!
//! Python keeps the control side (configuration, resolvers, ring building, metrics, shutdown)
//! and the orchestration for the few configurations the pipeline does not serve (see
//! `dataplane/pipeline.py`). The binding (feature `python`: `python`, `py_server`,
//! `py_client`, `py_pipeline`, `bridge`) exposes all of it as the extension module
//! `dataplane._native`; `bridge` hands results to the asyncio loop and stands still at
//! interpreter exit.
//!
//! Without the `python` feature the crate is plain Rust: `cargo test` and `cargo clippy`
//! need neither libpython nor pyo3.

pub mod budget;
pub mod client;
pub mod keys;
pub mod pipeline;
pub mod ring;
pub mod ring_build;
pub mod runtime;
pub mod server;
pub mod size_limit;
pub mod split;
pub mod wire;

#[cfg(feature = "python")]
mod bridge;
#[cfg(feature = "python")]
mod py_client;
#[cfg(feature = "python")]
mod py_pipeline;
#[cfg(feature = "python")]
mod py_server;
#[cfg(feature = "python")]
mod python;
