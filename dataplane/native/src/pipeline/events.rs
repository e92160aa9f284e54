//! What the pipeline tells the control side: every refusal, drop and at-least-once case (each
//! is counted and logged there with its reason), re-routes, and backends that look unhealthy.
//!
//! These are rare next to the data (a healthy pipeline sends none per request); the hot
//! counters (items received and exported, latencies) stay native and are read at scrape time.

/// One thing that happened on the data path.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A request was refused to its client (`items`: `None` when they could not be counted).
    Refused {
        signal: &'static str,
        reason: &'static str,
        items: Option<u64>,
        detail: String,
        transport: &'static str,
    },
    /// Accepted items were lost (`endpoint` "none" for orphans), with the reason.
    Failed {
        endpoint: String,
        signal: &'static str,
        reason: String,
        items: u64,
        detail: String,
    },
    /// Items that may reach a backend twice.
    AtLeastOnce {
        signal: &'static str,
        reason: &'static str,
        items: u64,
        detail: String,
    },
    /// Items of a departed backend handed to the new owners.
    Rerouted { signal: &'static str, items: u64 },
    /// A backend made no progress for the ejection window (`reason`: `export_failures` or
    /// `queue_full`); the control side decides whether to eject it.
    Unhealthy {
        endpoint: String,
        reason: &'static str,
        stalled: f64,
        failures: u32,
    },
    /// Something worth an INFO line in the log.
    Info(String),
    /// Something worth a WARNING line in the log.
    Warning(String),
}

/// Where events go: the Python binding schedules them on the asyncio loop; tests record them.
pub trait Events: Send + Sync + 'static {
    fn emit(&self, event: Event);
}
