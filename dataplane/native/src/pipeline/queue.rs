//! One backend's sending queue: bounded, FIFO, drained by the backend's consumers.
//!
//! The native form of `dataplane/queue.py` (whose documentation describes the behaviour):
//! room is checked before anything is enqueued ([`BackendQueue::has_room`], by requests,
//! items or bytes), a batch larger than the whole queue still enters an empty queue, and
//! every batch is charged to the memory budget from [`BackendQueue::put`] until its
//! consumer is done with it. A consumer takes the first batch and, with coalescing, holds it
//! up to `max_delay` while more arrives (new batches then wake no other consumer), and joins
//! the waiting batches of the same signal behind it up to `max_size` bytes into one export.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::budget::Budget;

/// What `queue_size` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sizer {
    Requests,
    Items,
    Bytes,
}

/// A `sending_queue` block (enabled) and the `coalesce` block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueueConfig {
    pub sizer: Sizer,
    pub queue_size: u64,
    pub num_consumers: usize,
    /// Coalesce batches up to this many bytes (0: never).
    pub coalesce_max_size: usize,
    pub coalesce_max_delay: Duration,
}

/// One serialized export request of one signal (index into `server::SIGNALS`).
#[derive(Debug, Clone)]
pub struct Batch {
    pub signal: usize,
    pub payload: Bytes,
    pub items: u64,
}

#[derive(Debug, Default)]
struct State {
    waiting: VecDeque<(Batch, Instant)>,
    queued_items: u64,
    queued_bytes: u64,
    in_flight: usize,
    lingering: usize,
}

/// A bounded queue of batches; see the module documentation.
#[derive(Debug)]
pub struct BackendQueue {
    cfg: QueueConfig,
    budget: Arc<Budget>,
    state: Mutex<State>,
    /// A batch for an idle consumer.
    work: Notify,
    /// Something arrived (for lingering consumers).
    grew: Notify,
    /// Room was freed (or waiters must give up).
    room: Notify,
    /// Empty and nothing in flight.
    idle: Notify,
}

impl BackendQueue {
    pub fn new(cfg: QueueConfig, budget: Arc<Budget>) -> BackendQueue {
        BackendQueue {
            cfg,
            budget,
            state: Mutex::new(State::default()),
            work: Notify::new(),
            grew: Notify::new(),
            room: Notify::new(),
            idle: Notify::new(),
        }
    }

    pub fn config(&self) -> &QueueConfig {
        &self.cfg
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `batches` batches holding `items` items in `nbytes` bytes fit now.
    pub fn has_room(&self, items: u64, nbytes: u64, batches: u64) -> bool {
        let s = self.lock();
        if s.waiting.is_empty() {
            return true;
        }
        match self.cfg.sizer {
            Sizer::Items => s.queued_items + items <= self.cfg.queue_size,
            Sizer::Bytes => s.queued_bytes + nbytes <= self.cfg.queue_size,
            Sizer::Requests => s.waiting.len() as u64 + batches <= self.cfg.queue_size,
        }
    }

    /// Enqueue without a room check (callers check first; re-routed data is always taken),
    /// charging the budget until the consumer is done with it.
    pub fn put(&self, batch: Batch) {
        self.budget.charge(batch.payload.len() as u64);
        let lingering = {
            let mut s = self.lock();
            s.queued_items += batch.items;
            s.queued_bytes += batch.payload.len() as u64;
            s.waiting.push_back((batch, Instant::now()));
            s.lingering
        };
        self.grew.notify_waiters();
        if lingering == 0 {
            self.work.notify_one();
        }
    }

    /// Remove every waiting batch (in-flight ones stay with their consumer); their budget
    /// charge is released (whoever takes them charges them again).
    pub fn take_all(&self) -> Vec<Batch> {
        let taken: Vec<Batch> = {
            let mut s = self.lock();
            s.queued_items = 0;
            s.queued_bytes = 0;
            let taken = s.waiting.drain(..).map(|(b, _)| b).collect();
            self.notify_if_idle(&s);
            taken
        };
        let bytes: u64 = taken.iter().map(|b| b.payload.len() as u64).sum();
        self.budget.release(bytes);
        self.room.notify_waiters();
        taken
    }

    /// Wake everyone waiting for room (room was freed, or they must give up).
    pub fn wake_waiters(&self) {
        self.room.notify_waiters();
    }

    /// Wait until room may have been freed (a batch taken, the queue emptied, or a wake).
    pub async fn room_freed(&self) {
        self.room.notified().await;
    }

    /// A future that completes at the next [`BackendQueue::wake_waiters`] (register it before
    /// checking the condition it waits for, so no wake-up is missed).
    pub fn room_notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.room.notified()
    }

    /// Batches and items waiting (not in flight).
    pub fn sizes(&self) -> (u64, u64) {
        let s = self.lock();
        (s.waiting.len() as u64, s.queued_items)
    }

    pub fn busy(&self) -> bool {
        let s = self.lock();
        !s.waiting.is_empty() || s.in_flight > 0
    }

    fn notify_if_idle(&self, s: &State) {
        if s.waiting.is_empty() && s.in_flight == 0 {
            self.idle.notify_waiters();
        }
    }

    /// Wait until nothing waits and nothing is in flight.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.busy() {
                return;
            }
            notified.await;
        }
    }

    /// A consumer's next batch (coalesced per the config); it counts as in flight until
    /// [`BackendQueue::done`].
    pub async fn take(&self) -> Batch {
        let (first, born) = loop {
            let notified = self.work.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = self.lock();
                if let Some((batch, born)) = s.waiting.pop_front() {
                    s.queued_items -= batch.items;
                    s.queued_bytes -= batch.payload.len() as u64;
                    s.in_flight += 1;
                    break (batch, born);
                }
            }
            notified.await;
        };
        self.room.notify_waiters();
        let max_size = self.cfg.coalesce_max_size;
        if max_size <= first.payload.len() {
            return first;
        }
        let mut guard = Lingering {
            queue: self,
            batch: Some(first),
            active: false,
        };
        if !self.cfg.coalesce_max_delay.is_zero() {
            guard.linger(born).await;
        }
        let first = guard.batch.take().expect("held batch");
        self.join(first)
    }

    /// `first` with the waiting batches of its signal behind it, up to `max_size` bytes.
    fn join(&self, first: Batch) -> Batch {
        let limit = self.cfg.coalesce_max_size;
        let mut s = self.lock();
        let mut size = first.payload.len();
        let mut n = 0;
        for (b, _) in s.waiting.iter() {
            if b.signal != first.signal || size + b.payload.len() > limit {
                break;
            }
            size += b.payload.len();
            n += 1;
        }
        if n == 0 {
            let more = !s.waiting.is_empty();
            drop(s);
            if more {
                self.work.notify_one();
            }
            return first;
        }
        let mut joined = BytesMut::with_capacity(size);
        joined.extend_from_slice(&first.payload);
        let mut items = first.items;
        for _ in 0..n {
            let (b, _) = s.waiting.pop_front().expect("counted above");
            s.queued_items -= b.items;
            s.queued_bytes -= b.payload.len() as u64;
            joined.extend_from_slice(&b.payload);
            items += b.items;
        }
        let more = !s.waiting.is_empty();
        drop(s);
        self.room.notify_waiters();
        if more {
            self.work.notify_one(); // what did not fit is for another consumer
        }
        Batch {
            signal: first.signal,
            payload: joined.freeze(),
            items,
        }
    }

    /// The consumer is done with `batch` (sent, failed or handed on): release its budget.
    pub fn done(&self, batch_bytes: usize) {
        self.budget.release(batch_bytes as u64);
        let mut s = self.lock();
        s.in_flight -= 1;
        self.notify_if_idle(&s);
    }

    /// Put a batch a stopped consumer held back at the front (it is counted by whoever takes
    /// it next) and end its flight.
    fn put_back(&self, batch: Batch, born: Instant) {
        let mut s = self.lock();
        s.queued_items += batch.items;
        s.queued_bytes += batch.payload.len() as u64;
        s.waiting.push_front((batch, born));
        s.in_flight -= 1;
    }
}

/// A consumer holding its first batch while more arrives; dropped while lingering (the
/// consumer was stopped) it puts the batch back, so shutdown finds and counts it.
struct Lingering<'a> {
    queue: &'a BackendQueue,
    batch: Option<Batch>,
    active: bool,
}

impl Lingering<'_> {
    async fn linger(&mut self, born: Instant) {
        let q = self.queue;
        let first_len = self.batch.as_ref().map_or(0, |b| b.payload.len()) as u64;
        let limit = (q.cfg.coalesce_max_size as u64).saturating_sub(first_len);
        q.lock().lingering += 1;
        self.active = true;
        let until = born + q.cfg.coalesce_max_delay;
        loop {
            let notified = q.grew.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if q.lock().queued_bytes >= limit || Instant::now() >= until {
                break;
            }
            let _ = tokio::time::timeout_at(until, notified).await;
        }
        q.lock().lingering -= 1;
        self.active = false;
    }
}

impl Drop for Lingering<'_> {
    fn drop(&mut self) {
        if !self.active {
            return;
        }
        self.queue.lock().lingering -= 1;
        if let Some(batch) = self.batch.take() {
            // The budget stays charged: it is queued again, and take_all releases it.
            self.queue.put_back(batch, Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(sizer: Sizer, size: u64, max_size: usize, delay_ms: u64) -> QueueConfig {
        QueueConfig {
            sizer,
            queue_size: size,
            num_consumers: 1,
            coalesce_max_size: max_size,
            coalesce_max_delay: Duration::from_millis(delay_ms),
        }
    }

    fn batch(n: usize, items: u64) -> Batch {
        Batch {
            signal: 0,
            payload: Bytes::from(vec![1u8; n]),
            items,
        }
    }

    #[test]
    fn room_is_counted_by_the_sizer_and_an_empty_queue_takes_anything() {
        let budget = Budget::new(1 << 30);
        let q = BackendQueue::new(cfg(Sizer::Items, 10, 0, 0), budget.clone());
        assert!(q.has_room(100, 1, 1));
        q.put(batch(5, 8));
        assert!(q.has_room(2, 1, 1));
        assert!(!q.has_room(3, 1, 1));
        assert_eq!(budget.used(), 5);
        assert_eq!(q.take_all().len(), 1);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn consumers_join_waiting_batches_up_to_max_size() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let budget = Budget::new(1 << 30);
            let q = BackendQueue::new(cfg(Sizer::Requests, 100, 25, 0), budget.clone());
            for _ in 0..4 {
                q.put(batch(10, 1));
            }
            let first = q.take().await;
            assert_eq!((first.payload.len(), first.items), (20, 2));
            q.done(first.payload.len());
            let second = q.take().await;
            assert_eq!(second.items, 2);
            q.done(second.payload.len());
            assert_eq!(budget.used(), 0);
            assert!(!q.busy());
        });
    }

    #[test]
    fn a_lingering_consumer_waits_for_more_until_max_delay() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let budget = Budget::new(1 << 30);
            let q = Arc::new(BackendQueue::new(
                cfg(Sizer::Requests, 100, 1000, 50),
                budget,
            ));
            q.put(batch(10, 1));
            let q2 = q.clone();
            let later = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                q2.put(batch(10, 3));
            });
            let started = Instant::now();
            let got = q.take().await;
            later.await.unwrap();
            assert_eq!(got.items, 4);
            assert!(started.elapsed() >= Duration::from_millis(50));
        });
    }
}
