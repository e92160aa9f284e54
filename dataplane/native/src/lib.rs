//! Ringleader's native data path: the foundation.
//!
//! Today this crate holds the OTLP **wire splitter** (`split`), a port of the Python wire
//! path in `dataplane/routing/_wire_split.py` that routes by the same ring table
//! (`ring`) and writes the same bytes; `keys` builds the resource-level routing keys and
//! `wire` reads the protobuf wire format. Nothing in the running data plane calls it yet
//! (issue 10 wires it in): the Python binding (`python`, feature `python`) exposes it as
//! the extension module `dataplane._native` so property tests can compare it with the
//! reference decode splitter, and `e2e/bench_native.py` measures it.
//!
//! Without the `python` feature the crate is plain Rust: `cargo test` and `cargo clippy`
//! need neither libpython nor pyo3.

pub mod client;
pub mod keys;
pub mod ring;
pub mod ring_build;
pub mod runtime;
pub mod server;
pub mod split;
pub mod wire;

#[cfg(feature = "python")]
mod bridge;
#[cfg(feature = "python")]
mod py_client;
#[cfg(feature = "python")]
mod py_server;
#[cfg(feature = "python")]
mod python;
