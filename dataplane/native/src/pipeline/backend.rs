//! One tier-2 backend on the native data path: its channel, queue, consumers and health.
//!
//! Each consumer takes a (coalesced) batch from the queue and exports it with the backend's
//! retry policy (`dataplane/delivery.py` describes the rules, which this follows):
//! delivered items are counted, a partial success's rejected items are dropped with reason
//! `rejected_by_backend`, a permanent error drops the batch with its code as the reason,
//! and a retryable one is retried after the backoff delay (at least the backend's
//! RetryInfo delay) until the policy gives up (`retries_exhausted`). A backend that is
//! leaving the ring hands its batches to their new owners instead ([`Backend::retire`]);
//! a batch whose last attempt had an unknown outcome and is sent again is counted as
//! at-least-once (`unknown_outcome`). A consumer stopped at shutdown counts the batch it
//! held as dropped (`shutdown`).
//!
//! Health for passive ejection is tracked here too (the last successful export and the
//! retryable failures since); when a backend made no progress for the ejection window
//! and keeps failing or refusing, an [`Event::Unhealthy`] asks the control side to decide.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::events::Event;
use super::queue::{BackendQueue, Batch};
use super::retry::{
    partial_success, retry_info_delay, retryable, unknown_outcome, Backoff, RetryPolicy,
};
use super::Core;
use crate::client::Channel;
use crate::server::grpc::METHODS;
use crate::server::SIGNALS;

/// Passive ejection's thresholds (`ejection` block).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthConfig {
    pub enabled: bool,
    pub window: Duration,
    pub consecutive_failures: u32,
}

/// A backend's export settings.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendConfig {
    /// `protocol.otlp.timeout` of one export call.
    pub timeout: Option<Duration>,
    pub retry: RetryPolicy,
    pub health: HealthConfig,
    /// Upper bounds (ms) of the latency histogram's buckets (+Inf is implied).
    pub latency_buckets_ms: Vec<f64>,
}

#[derive(Debug)]
struct Health {
    last_progress: Instant,
    failures: u32,
}

/// What a backend counts (read by /metrics).
#[derive(Debug)]
pub struct Counters {
    pub exported: [AtomicU64; 3],
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    /// Calls per latency bucket (not cumulative; the last is +Inf).
    pub latency: Vec<AtomicU64>,
    /// Sum of the latencies, in microseconds.
    pub latency_sum_us: AtomicU64,
}

/// One backend; see the module documentation.
pub struct Backend {
    pub endpoint: String,
    channel: Arc<Channel>,
    pub queue: BackendQueue,
    cfg: BackendConfig,
    retiring: AtomicBool,
    retired: Notify,
    health: Mutex<Health>,
    pub counters: Counters,
    consumers: Mutex<Vec<JoinHandle<()>>>,
    core: Weak<Core>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl Backend {
    /// A backend and its running consumers.
    pub fn start(
        core: &Arc<Core>,
        endpoint: String,
        channel: Arc<Channel>,
        queue: BackendQueue,
        cfg: BackendConfig,
    ) -> Arc<Backend> {
        let buckets = cfg.latency_buckets_ms.len() + 1;
        let consumers = queue.config().num_consumers.max(1);
        let backend = Arc::new(Backend {
            endpoint,
            channel,
            queue,
            cfg,
            retiring: AtomicBool::new(false),
            retired: Notify::new(),
            health: Mutex::new(Health {
                last_progress: Instant::now(),
                failures: 0,
            }),
            counters: Counters {
                exported: Default::default(),
                succeeded: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                latency: (0..buckets).map(|_| AtomicU64::new(0)).collect(),
                latency_sum_us: AtomicU64::new(0),
            },
            consumers: Mutex::new(Vec::new()),
            core: Arc::downgrade(core),
        });
        let rt = crate::runtime::handle();
        let handles = (0..consumers)
            .map(|_| rt.spawn(backend.clone().consume()))
            .collect();
        *backend.consumers.lock().unwrap_or_else(|e| e.into_inner()) = handles;
        backend
    }

    pub fn retiring(&self) -> bool {
        self.retiring.load(Ordering::Acquire)
    }

    fn emit(&self, event: Event) {
        if let Some(core) = self.core.upgrade() {
            core.emit(event);
        }
    }

    /// Take the backend out: what waits in its queue goes to the new owners, in-flight
    /// exports finish (a failure re-routes too), then the consumers stop and the channel closes.
    pub async fn retire(self: &Arc<Self>) {
        self.retiring.store(true, Ordering::Release);
        self.retired.notify_waiters();
        self.queue.wake_waiters();
        let waiting = self.queue.take_all();
        if let Some(core) = self.core.upgrade() {
            if !waiting.is_empty() {
                core.emit(Event::Info(format!(
                    "backend {} left: re-routing {} queued batch(es)",
                    self.endpoint,
                    waiting.len()
                )));
                core.reroute(waiting);
            }
        }
        self.queue.wait_idle().await;
        self.stop().await;
        // Put by an admission that checked this backend just before it started leaving.
        let late = self.queue.take_all();
        if !late.is_empty() {
            if let Some(core) = self.core.upgrade() {
                core.reroute(late);
            }
        }
    }

    /// Stop the consumers (a batch one holds is counted as dropped: `shutdown`) and close.
    pub async fn stop(&self) {
        let handles =
            std::mem::take(&mut *self.consumers.lock().unwrap_or_else(|e| e.into_inner()));
        for h in &handles {
            h.abort();
        }
        for h in handles {
            let _ = h.await;
        }
        self.channel.close();
    }

    /// Admission found this backend's queue full.
    pub fn queue_full(&self) {
        self.consider("queue_full");
    }

    fn progress(&self) {
        let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        h.last_progress = Instant::now();
        h.failures = 0;
    }

    fn failure(&self) {
        let failures = {
            let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
            h.failures += 1;
            h.failures
        };
        if failures >= self.cfg.health.consecutive_failures {
            self.consider("export_failures");
        }
    }

    fn consider(&self, reason: &'static str) {
        if !self.cfg.health.enabled || self.retiring() {
            return;
        }
        let (stalled, failures) = {
            let h = self.health.lock().unwrap_or_else(|e| e.into_inner());
            (h.last_progress.elapsed(), h.failures)
        };
        if stalled < self.cfg.health.window {
            return;
        }
        self.emit(Event::Unhealthy {
            endpoint: self.endpoint.clone(),
            reason,
            stalled: stalled.as_secs_f64(),
            failures,
        });
    }

    fn observe(&self, elapsed: Duration) {
        let ms = elapsed.as_secs_f64() * 1000.0;
        let bounds = &self.cfg.latency_buckets_ms;
        let idx = bounds.iter().position(|b| ms <= *b).unwrap_or(bounds.len());
        self.counters.latency[idx].fetch_add(1, Ordering::Relaxed);
        self.counters
            .latency_sum_us
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    async fn consume(self: Arc<Self>) {
        loop {
            let batch = self.queue.take().await;
            let mut flight = InFlight {
                backend: &self,
                signal: batch.signal,
                items: batch.items,
                bytes: batch.payload.len(),
                armed: true,
            };
            self.deliver(batch).await;
            flight.armed = false;
        }
    }

    /// Sleep `delay`, or less if the backend starts leaving meanwhile.
    async fn pause(&self, delay: Duration) {
        let notified = self.retired.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.retiring() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = notified => {}
        }
    }

    async fn deliver(&self, batch: Batch) {
        let signal = SIGNALS[batch.signal];
        let path = METHODS[batch.signal].0;
        let mut backoff = Backoff::new(self.cfg.retry);
        loop {
            if self.retiring() {
                self.reroute(batch);
                return;
            }
            let start = Instant::now();
            let result = self
                .channel
                .export(path, &batch.payload, self.cfg.timeout)
                .await;
            self.observe(start.elapsed());
            let status = match result {
                Ok(response) => {
                    self.counters.succeeded.fetch_add(1, Ordering::Relaxed);
                    self.progress();
                    let (accepted, rejected, message) = partial_success(&response, batch.items);
                    self.counters.exported[batch.signal].fetch_add(accepted, Ordering::Relaxed);
                    if rejected > 0 {
                        self.emit(Event::Failed {
                            endpoint: self.endpoint.clone(),
                            signal,
                            reason: "rejected_by_backend".into(),
                            items: rejected,
                            detail: message,
                        });
                    }
                    return;
                }
                Err(status) => status,
            };
            self.counters.failed.fetch_add(1, Ordering::Relaxed);
            let retry_after = retry_info_delay(&status.details);
            let can_retry = retryable(status.code, retry_after);
            let text = format!("{}: {}", status.code.name(), status.message)
                .trim()
                .to_string();
            if can_retry {
                self.failure();
            }
            if self.retiring() {
                if unknown_outcome(status.code) {
                    self.at_least_once(
                        &batch,
                        format!("{} left: re-routed after {text}", self.endpoint),
                    );
                }
                self.reroute(batch);
                return;
            }
            if !can_retry {
                self.failed(&batch, status.code.name(), text);
                return;
            }
            let Some(mut delay) = backoff.next_delay() else {
                self.failed(&batch, "retries_exhausted", text);
                return;
            };
            if let Some(after) = retry_after {
                delay = delay.max(after);
            }
            self.pause(delay).await;
            if unknown_outcome(status.code) {
                self.at_least_once(
                    &batch,
                    format!("{}: sent again after {text}", self.endpoint),
                );
            }
        }
    }

    fn reroute(&self, batch: Batch) {
        match self.core.upgrade() {
            Some(core) => core.reroute(vec![batch]),
            None => self.failed(&batch, "shutdown", "the data path is gone".into()),
        }
    }

    fn failed(&self, batch: &Batch, reason: &str, detail: String) {
        self.emit(Event::Failed {
            endpoint: self.endpoint.clone(),
            signal: SIGNALS[batch.signal],
            reason: reason.to_string(),
            items: batch.items,
            detail,
        });
    }

    fn at_least_once(&self, batch: &Batch, detail: String) {
        self.emit(Event::AtLeastOnce {
            signal: SIGNALS[batch.signal],
            reason: "unknown_outcome",
            items: batch.items,
            detail,
        });
    }
}

/// The batch a consumer works on: when it is done (or the consumer is stopped) the queue
/// releases it; stopped before the end, it is counted as dropped at shutdown.
struct InFlight<'a> {
    backend: &'a Backend,
    signal: usize,
    items: u64,
    bytes: usize,
    armed: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.backend.emit(Event::Failed {
                endpoint: self.backend.endpoint.clone(),
                signal: SIGNALS[self.signal],
                reason: "shutdown".into(),
                items: self.items,
                detail: "drain deadline".into(),
            });
        }
        self.backend.queue.done(self.bytes);
    }
}
