//! The native data path: from an accepted request to exports on the right backends.
//!
//! Python hands this module what is control (the configuration, each backend and its
//! channel, the ring table of every backend set, the order to retire a backend or to
//! drain) and reads what it counts; every request and every export runs here, on the data
//! path's threads, without the interpreter lock. Per request (`dataplane/balancer.py`'s
//! module documentation describes the same flow; each step's rules are those of the Python
//! module named):
//!
//! 1. **split** (`routing`): validate and cut the request into at most one part per backend
//!    with the current ring (swapped atomically per request);
//! 2. **fit** (`size_limit`): parts over `max_request_size` are cut at item boundaries; a
//!    single item over it refuses the request (`item_too_large`);
//! 3. **admit** (`admission`): every destination queue and the memory budget must have room,
//!    then all parts are queued, or none and the client is told to retry (`queue_full`,
//!    `memory_limit`); with `block_on_overflow` the request waits for room up to its
//!    client's deadline. A full queue is reported to the backend's health ([`backend`]);
//! 4. **queue and export** ([`queue`], [`backend`]): per-backend consumers, coalescing,
//!    retries with backoff, partial success, passive ejection's health;
//! 5. **re-route** ([`Core::reroute`]): a departed backend's batches go to the new owners;
//!    with no backend at all they wait as orphans until a ring exists again;
//! 6. **drain** ([`Core::drain`]): at shutdown, flush within the deadline, count the rest.
//!
//! Everything that is refused or lost is reported as an [`events::Event`] (Python counts
//! and logs it); what is received and exported is counted here.

pub mod backend;
pub mod events;
pub mod queue;
pub mod retry;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::budget::Budget;
use crate::ring::{Hash, Table};
use crate::server::{code, Answer, Handler, Refusal, Request, Transport, SIGNALS};
use crate::split::{Key, Signal, Split, Splitter};
use crate::wire::Error;
use backend::Backend;
use events::{Event, Events};
use queue::Batch;

const SIGNAL_KINDS: [Signal; 3] = [Signal::Traces, Signal::Logs, Signal::Metrics];

/// What the pipeline needs besides its backends.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// The routing key of each enabled signal (`None`: the signal is not enabled).
    pub keys: [Option<Key>; 3],
    /// `protocol.otlp.max_request_size`: parts are cut to fit it.
    pub max_request_size: usize,
    pub block_on_overflow: bool,
}

/// A ring table and the backends its indexes name, swapped as one.
#[derive(Debug)]
pub struct Route {
    pub table: Arc<Table>,
    pub backends: Vec<Arc<Backend>>,
}

/// Counters read by /metrics.
#[derive(Debug, Default)]
pub struct Counters {
    /// Items accepted, by signal and transport (grpc, http).
    pub received: [[AtomicU64; 2]; 3],
    /// Items without their routing key, by signal.
    pub missing_keys: [AtomicU64; 3],
}

/// The pipeline's shared state.
pub struct Core {
    cfg: PipelineConfig,
    pub budget: Arc<Budget>,
    events: Arc<dyn Events>,
    route: RwLock<Option<Arc<Route>>>,
    stopping: AtomicBool,
    orphans: Mutex<Vec<Batch>>,
    splitters: [Mutex<Vec<(Splitter, Split)>>; 3],
    validate: Table,
    backends: Mutex<Vec<Arc<Backend>>>,
    pub counters: Counters,
}

enum Step {
    Answer(Answer, u64),
    Block(Pending),
}

/// A request waiting for room (`block_on_overflow`).
struct Pending {
    signal: usize,
    items: u64,
    parts: Vec<(Arc<Backend>, Vec<Batch>)>,
    nbytes: u64,
    full: Arc<Backend>,
}

enum NoRoom {
    Full(Arc<Backend>),
    Memory(String),
}

fn refusal_answer(reason: &str, message: String) -> Answer {
    let status = if reason == "deadline_exceeded" {
        code::DEADLINE_EXCEEDED
    } else {
        code::UNAVAILABLE
    };
    Answer::new(status, 503, message)
}

fn transport_index(t: Transport) -> usize {
    match t {
        Transport::Grpc => 0,
        Transport::Http => 1,
    }
}

fn signal_index(name: &str) -> usize {
    SIGNALS.iter().position(|s| *s == name).unwrap_or(0)
}

impl Core {
    pub fn new(cfg: PipelineConfig, budget: Arc<Budget>, events: Arc<dyn Events>) -> Arc<Core> {
        let validate = Table::new(Hash::Upstream, vec![0; crate::ring::UPSTREAM_CELLS[1]])
            .expect("a valid one-backend table");
        Arc::new(Core {
            cfg,
            budget,
            events,
            route: RwLock::new(None),
            stopping: AtomicBool::new(false),
            orphans: Mutex::new(Vec::new()),
            splitters: Default::default(),
            validate,
            backends: Mutex::new(Vec::new()),
            counters: Counters::default(),
        })
    }

    pub fn emit(&self, event: Event) {
        self.events.emit(event);
    }

    pub fn route(&self) -> Option<Arc<Route>> {
        self.route.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    pub fn orphans(&self) -> usize {
        self.orphans.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Register a started backend (for the drain at shutdown).
    pub fn add_backend(&self, backend: Arc<Backend>) {
        self.backends
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(backend);
    }

    /// Forget a retired backend.
    pub fn remove_backend(&self, backend: &Arc<Backend>) {
        self.backends
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|b| !Arc::ptr_eq(b, backend));
    }

    /// Swap the route (`None`: no backend); the orphans go to a new route's owners.
    pub fn set_route(&self, route: Option<Route>) {
        let has_route = route.is_some();
        *self.route.write().unwrap_or_else(|e| e.into_inner()) = route.map(Arc::new);
        if has_route {
            let orphans =
                std::mem::take(&mut *self.orphans.lock().unwrap_or_else(|e| e.into_inner()));
            if !orphans.is_empty() {
                self.emit(Event::Info(format!(
                    "re-routing {} orphaned batch(es) to the new backend set",
                    orphans.len()
                )));
                let bytes: u64 = orphans.iter().map(|b| b.payload.len() as u64).sum();
                self.reroute(orphans);
                self.budget.release(bytes);
            }
        }
    }

    /// Refuse new requests (`shutting_down`) and release those waiting for room.
    pub fn stop_accepting(&self) {
        self.stopping.store(true, Ordering::Release);
        for b in self
            .backends
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            b.queue.wake_waiters();
        }
    }

    fn with_splitter<R>(&self, signal: usize, f: impl FnOnce(&mut Splitter, &mut Split) -> R) -> R {
        let pooled = self.splitters[signal]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop();
        let (mut splitter, mut split) = pooled.unwrap_or_else(|| {
            let key = self.cfg.keys[signal].unwrap_or(Key::Resource);
            (
                Splitter::new(SIGNAL_KINDS[signal], key, retry::random_seed()),
                Split::default(),
            )
        });
        let result = f(&mut splitter, &mut split);
        self.splitters[signal]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((splitter, split));
        result
    }

    fn count_items(&self, signal: usize, data: &[u8]) -> Option<u64> {
        Some(crate::size_limit::count_items(SIGNAL_KINDS[signal], data).unwrap_or(0))
    }

    fn refuse(
        &self,
        signal: usize,
        reason: &'static str,
        items: Option<u64>,
        detail: String,
        transport: Transport,
    ) {
        self.emit(Event::Refused {
            signal: SIGNALS[signal],
            reason,
            items,
            detail,
            transport: transport.name(),
        });
    }

    /// Handle one request that passed the transport's checks; the answer goes to its reply.
    pub fn handle(self: &Arc<Self>, request: Request) {
        let signal = signal_index(request.signal);
        match self.admit(signal, &request.data, request.transport) {
            Step::Answer(answer, items) => self.answer(request, signal, answer, items),
            Step::Block(pending) => {
                let core = self.clone();
                tokio::spawn(async move { core.wait_for_room(pending, request).await });
            }
        }
    }

    fn answer(&self, request: Request, signal: usize, answer: Answer, items: u64) {
        let ok = answer.grpc_code == code::OK;
        let transport = request.transport;
        if ok {
            self.counters.received[signal][transport_index(transport)]
                .fetch_add(items, Ordering::Relaxed);
        }
        if !request.reply.send(answer) && ok && items > 0 {
            self.emit(Event::AtLeastOnce {
                signal: SIGNALS[signal],
                reason: "late_answer",
                items,
                detail: format!(
                    "admitted, but the {} client had given up before the answer",
                    transport.name()
                ),
            });
        }
    }

    fn admit(&self, signal: usize, data: &[u8], transport: Transport) -> Step {
        let name = SIGNALS[signal];
        if self.cfg.keys[signal].is_none() {
            self.refuse(
                signal,
                "signal_disabled",
                self.count_items(signal, data),
                format!("{name} are not enabled in this data plane"),
                transport,
            );
            return Step::Answer(
                Answer::new(code::UNIMPLEMENTED, 404, format!("{name} are not enabled")),
                0,
            );
        }
        let route = self.route();
        let table: &Table = route.as_ref().map_or(&self.validate, |r| &r.table);
        let split = self.with_splitter(signal, |splitter, out| {
            splitter.split_into(data, table, out)?;
            let parts: Vec<(usize, Bytes, u64)> = out
                .iter()
                .map(|(idx, part, n)| (idx, Bytes::copy_from_slice(part), n))
                .collect();
            Ok::<_, Error>((parts, out.items, out.missing_keys))
        });
        let (parts, items, missing) = match split {
            Ok(s) => s,
            Err(Error::Malformed(m)) => {
                self.refuse(signal, "malformed", None, m.clone(), transport);
                let answer = Answer::new(
                    code::INVALID_ARGUMENT,
                    400,
                    format!("malformed request: {m}"),
                );
                return Step::Answer(answer, 0);
            }
            Err(Error::Invalid { reason, message }) => {
                self.refuse(
                    signal,
                    reason,
                    self.count_items(signal, data),
                    message.clone(),
                    transport,
                );
                return Step::Answer(Answer::new(code::INVALID_ARGUMENT, 400, message), 0);
            }
        };
        if missing > 0 {
            self.counters.missing_keys[signal].fetch_add(missing, Ordering::Relaxed);
        }
        let refuse = |reason: &'static str, message: String| {
            self.refuse(signal, reason, Some(items), message.clone(), transport);
            Step::Answer(refusal_answer(reason, message), 0)
        };
        if self.stopping() {
            return refuse("shutting_down", "the data plane is shutting down".into());
        }
        if items == 0 {
            return Step::Answer(Answer::new(code::OK, 200, ""), 0);
        }
        let max = self.cfg.max_request_size;
        if data.len() > max {
            if let Err(crate::size_limit::FitError::TooLarge(t)) =
                crate::size_limit::check(SIGNAL_KINDS[signal], data, max)
            {
                self.refuse(
                    signal,
                    "item_too_large",
                    Some(items),
                    t.0.clone(),
                    transport,
                );
                return Step::Answer(Answer::new(code::RESOURCE_EXHAUSTED, 413, t.0), 0);
            }
        }
        let Some(route) = route else {
            return refuse("no_backends", "no backends are available".into());
        };
        let mut nbytes = 0u64;
        let mut destined = Vec::with_capacity(parts.len());
        for (idx, payload, n) in parts {
            let chunks = if payload.len() > max {
                match crate::size_limit::fit(SIGNAL_KINDS[signal], &payload, max) {
                    Ok(chunks) => chunks
                        .into_iter()
                        .map(|(p, n)| Batch {
                            signal,
                            payload: Bytes::from(p),
                            items: n,
                        })
                        .collect(),
                    Err(e) => {
                        let message = match e {
                            crate::size_limit::FitError::TooLarge(t) => t.0,
                            crate::size_limit::FitError::Malformed(m) => m,
                        };
                        self.refuse(
                            signal,
                            "item_too_large",
                            Some(items),
                            message.clone(),
                            transport,
                        );
                        return Step::Answer(
                            Answer::new(code::RESOURCE_EXHAUSTED, 413, message),
                            0,
                        );
                    }
                }
            } else {
                vec![Batch {
                    signal,
                    payload,
                    items: n,
                }]
            };
            nbytes += chunks.iter().map(|c| c.payload.len() as u64).sum::<u64>();
            destined.push((route.backends[idx].clone(), chunks));
        }
        match self.room_for(&destined, nbytes) {
            None => {
                self.enqueue(destined);
                Step::Answer(Answer::new(code::OK, 200, ""), items)
            }
            Some(NoRoom::Memory(message)) => refuse("memory_limit", message),
            Some(NoRoom::Full(full)) => {
                let message = format!("sending queue of {} is full", full.endpoint);
                if !self.cfg.block_on_overflow || self.stopping() {
                    return refuse("queue_full", message);
                }
                if destined.iter().any(|(b, _)| b.retiring()) {
                    return refuse(
                        "queue_full",
                        format!("{message}, and a destination left the ring meanwhile"),
                    );
                }
                Step::Block(Pending {
                    signal,
                    items,
                    parts: destined,
                    nbytes,
                    full,
                })
            }
        }
    }

    fn over_budget_message(&self, nbytes: u64) -> String {
        format!(
            "memory budget exhausted ({} of {} MiB of buffered data in use, {nbytes} more bytes needed)",
            self.budget.used() >> 20,
            self.budget.limit() >> 20
        )
    }

    /// `None` when every destination queue and the budget have room for the parts.
    fn room_for(&self, parts: &[(Arc<Backend>, Vec<Batch>)], nbytes: u64) -> Option<NoRoom> {
        for (backend, chunks) in parts {
            let items = chunks.iter().map(|c| c.items).sum();
            let bytes = chunks.iter().map(|c| c.payload.len() as u64).sum();
            if !backend.queue.has_room(items, bytes, chunks.len() as u64) {
                backend.queue_full();
                return Some(NoRoom::Full(backend.clone()));
            }
        }
        if !self.budget.has_room(nbytes) {
            return Some(NoRoom::Memory(self.over_budget_message(nbytes)));
        }
        None
    }

    fn enqueue(&self, parts: Vec<(Arc<Backend>, Vec<Batch>)>) {
        for (backend, chunks) in parts {
            if backend.retiring() {
                // Admitted while its owner started leaving: straight to the new owners.
                self.reroute(chunks);
                continue;
            }
            for chunk in chunks {
                backend.queue.put(chunk);
            }
        }
    }

    async fn wait_for_room(self: Arc<Self>, mut pending: Pending, mut request: Request) {
        let signal = pending.signal;
        let transport = request.transport;
        let deadline = request.deadline;
        let refuse = |reason: &'static str, message: String| {
            self.refuse(
                signal,
                reason,
                Some(pending.items),
                message.clone(),
                transport,
            );
            refusal_answer(reason, message)
        };
        loop {
            let full = pending.full.clone();
            let message = format!("sending queue of {} is full", full.endpoint);
            let freed = full.queue.room_notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let expired = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut freed => {}
                _ = request.reply.closed() => {
                    let (reason, detail) = if self.stopping() {
                        ("shutting_down", "still in flight when the shutdown grace ended".to_string())
                    } else if deadline.is_some_and(|d| Instant::now() + Duration::from_millis(50) >= d) {
                        ("deadline_exceeded", format!("the {} client gave up", transport.name()))
                    } else {
                        ("client_cancelled", format!("the {} client gave up", transport.name()))
                    };
                    self.refuse(signal, reason, Some(pending.items), detail, transport);
                    return;
                }
                _ = expired => {
                    let answer = refuse("deadline_exceeded", format!("{message} until the client's deadline"));
                    let _ = request.reply.send(answer);
                    return;
                }
            }
            match self.room_for(&pending.parts, pending.nbytes) {
                None => {
                    let items = pending.items;
                    self.enqueue(std::mem::take(&mut pending.parts));
                    self.answer(request, signal, Answer::new(code::OK, 200, ""), items);
                    return;
                }
                Some(NoRoom::Memory(m)) => {
                    let answer = refuse("memory_limit", m);
                    let _ = request.reply.send(answer);
                    return;
                }
                Some(NoRoom::Full(next)) => {
                    let message = format!("sending queue of {} is full", next.endpoint);
                    if self.stopping() {
                        let _ = request.reply.send(refuse("queue_full", message));
                        return;
                    }
                    if pending.parts.iter().any(|(b, _)| b.retiring()) {
                        let answer = refuse(
                            "queue_full",
                            format!("{message}, and a destination left the ring meanwhile"),
                        );
                        let _ = request.reply.send(answer);
                        return;
                    }
                    pending.full = next;
                }
            }
        }
    }

    /// Hand batches accepted for a departed backend to their new owners (no room check: the
    /// client was told they were accepted); with no backend at all they wait as orphans.
    pub fn reroute(&self, batches: Vec<Batch>) {
        let Some(route) = self.route() else {
            for b in &batches {
                self.budget.charge(b.payload.len() as u64);
            }
            self.orphans
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(batches);
            return;
        };
        for batch in batches {
            self.emit(Event::Rerouted {
                signal: SIGNALS[batch.signal],
                items: batch.items,
            });
            let parts = self.with_splitter(batch.signal, |splitter, out| {
                splitter.split_into(&batch.payload, &route.table, out)?;
                Ok::<_, Error>(
                    out.iter()
                        .map(|(idx, part, n)| (idx, Bytes::copy_from_slice(part), n))
                        .collect::<Vec<_>>(),
                )
            });
            match parts {
                Ok(parts) => {
                    for (idx, payload, items) in parts {
                        route.backends[idx].queue.put(Batch {
                            signal: batch.signal,
                            payload,
                            items,
                        });
                    }
                }
                Err(e) => self.emit(Event::Failed {
                    endpoint: "none".into(),
                    signal: SIGNALS[batch.signal],
                    reason: "malformed".into(),
                    items: batch.items,
                    detail: format!("cannot re-route: {e}"),
                }),
            }
        }
    }

    /// At shutdown: wait until every queue is empty and idle, at most `timeout`; then stop
    /// the consumers and count what is left as dropped (`shutdown`).
    pub async fn drain(&self, timeout: Duration) {
        let backends = self
            .backends
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let idle = async {
            for b in &backends {
                b.queue.wait_idle().await;
            }
        };
        if tokio::time::timeout(timeout, idle).await.is_err() {
            self.emit(Event::Warning(format!(
                "drain deadline of {:.1}s passed with data still queued",
                timeout.as_secs_f64()
            )));
        }
        for b in &backends {
            b.stop().await;
            for batch in b.queue.take_all() {
                self.emit(Event::Failed {
                    endpoint: b.endpoint.clone(),
                    signal: SIGNALS[batch.signal],
                    reason: "shutdown".into(),
                    items: batch.items,
                    detail: "drain deadline".into(),
                });
            }
        }
        let orphans = std::mem::take(&mut *self.orphans.lock().unwrap_or_else(|e| e.into_inner()));
        for batch in orphans {
            self.budget.release(batch.payload.len() as u64);
            self.emit(Event::Failed {
                endpoint: "none".into(),
                signal: SIGNALS[batch.signal],
                reason: "shutdown".into(),
                items: batch.items,
                detail: "no backend before shutdown".into(),
            });
        }
    }
}

/// The receivers' handler on the native data path: protobuf requests are handled here; an
/// OTLP/JSON body goes to `json` (Python converts it and submits the result back).
pub struct Router {
    pub core: Arc<Core>,
    pub json: Arc<dyn Handler>,
}

impl Handler for Router {
    fn request(&self, request: Request) {
        if request.is_json {
            self.json.request(request);
        } else {
            self.core.handle(request);
        }
    }

    fn cancelled(&self, id: u64) {
        self.json.cancelled(id);
    }

    fn refused(&self, refusal: Refusal) {
        let signal = signal_index(refusal.signal);
        let items = refusal
            .data
            .as_ref()
            .and_then(|d| self.core.count_items(signal, d));
        self.core.emit(Event::Refused {
            signal: refusal.signal,
            reason: refusal.reason,
            items,
            detail: refusal.detail,
            transport: "",
        });
    }
}
