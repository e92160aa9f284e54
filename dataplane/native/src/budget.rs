//! The memory budget: one atomic byte account for everything the data plane buffers.
//!
//! Shared by the receivers (which charge a request before or while reading it, on the data
//! path's threads, without the interpreter lock) and Python's admission and queues (through
//! `dataplane._native.Budget`, which `dataplane.memory.MemoryBudget` delegates to).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Bytes charged against a fixed limit. Lock-free; cheap to share as `Arc<Budget>`.
#[derive(Debug)]
pub struct Budget {
    limit: u64,
    used: AtomicU64,
    peak: AtomicU64,
}

impl Budget {
    pub fn new(limit: u64) -> Arc<Budget> {
        Arc::new(Budget {
            limit: limit.max(1),
            used: AtomicU64::new(0),
            peak: AtomicU64::new(0),
        })
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    pub fn has_room(&self, n: u64) -> bool {
        self.used().saturating_add(n) <= self.limit
    }

    /// Charge `n` bytes if they fit (nothing charged when they do not).
    pub fn try_charge(&self, n: u64) -> bool {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let next = used.saturating_add(n);
            if next > self.limit {
                return false;
            }
            match self
                .used
                .compare_exchange_weak(used, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.peak.fetch_max(next, Ordering::Relaxed);
                    return true;
                }
                Err(now) => used = now,
            }
        }
    }

    /// Charge without a check: for data already accepted that only moves.
    pub fn charge(&self, n: u64) {
        let next = self.used.fetch_add(n, Ordering::AcqRel).saturating_add(n);
        self.peak.fetch_max(next, Ordering::Relaxed);
    }

    /// Release `n` bytes; returns how many more were released than held (0 normally). The
    /// account never goes below zero: an accounting bug must not make the budget grow.
    pub fn release(&self, n: u64) -> u64 {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let next = used.saturating_sub(n);
            match self
                .used
                .compare_exchange_weak(used, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return n.saturating_sub(used),
                Err(now) => used = now,
            }
        }
    }
}

/// A charge released when dropped (a request's bytes, held while it is handled).
#[derive(Debug)]
pub struct Held {
    budget: Arc<Budget>,
    bytes: u64,
}

impl Held {
    pub fn empty(budget: &Arc<Budget>) -> Held {
        Held {
            budget: budget.clone(),
            bytes: 0,
        }
    }

    /// Hold `n` more bytes if they fit.
    pub fn try_grow(&mut self, n: u64) -> bool {
        if self.budget.try_charge(n) {
            self.bytes += n;
            true
        } else {
            false
        }
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

#[cfg(feature = "python")]
pub use py::PyBudget;

#[cfg(feature = "python")]
mod py {
    use super::Budget;
    use pyo3::prelude::*;
    use std::sync::Arc;

    /// `Budget(data_limit)`: the atomic account behind `dataplane.memory.MemoryBudget`.
    #[pyclass(name = "Budget", module = "dataplane._native", frozen)]
    pub struct PyBudget {
        pub inner: Arc<Budget>,
    }

    #[pymethods]
    impl PyBudget {
        #[new]
        fn new(data_limit: u64) -> Self {
            PyBudget {
                inner: Budget::new(data_limit),
            }
        }
        #[getter]
        fn data_limit(&self) -> u64 {
            self.inner.limit()
        }
        #[getter]
        fn used(&self) -> u64 {
            self.inner.used()
        }
        #[getter]
        fn peak(&self) -> u64 {
            self.inner.peak()
        }
        fn has_room(&self, nbytes: u64) -> bool {
            self.inner.has_room(nbytes)
        }
        fn try_charge(&self, nbytes: u64) -> bool {
            self.inner.try_charge(nbytes)
        }
        fn charge(&self, nbytes: u64) {
            self.inner.charge(nbytes)
        }
        /// Returns the bytes released beyond what was held (0 unless the caller has a bug).
        fn release(&self, nbytes: u64) -> u64 {
            self.inner.release(nbytes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_up_to_the_limit_and_never_below_zero() {
        let b = Budget::new(100);
        assert!(b.try_charge(60));
        assert!(!b.try_charge(41));
        assert!(b.try_charge(40));
        assert_eq!(b.used(), 100);
        assert!(!b.has_room(1));
        b.charge(10); // moves are never refused
        assert_eq!(b.used(), 110);
        assert_eq!(b.release(200), 90);
        assert_eq!(b.used(), 0);
        assert_eq!(b.peak(), 110);
    }

    #[test]
    fn a_held_charge_is_released_when_dropped() {
        let b = Budget::new(100);
        {
            let mut h = Held::empty(&b);
            assert!(h.try_grow(30));
            assert!(!h.try_grow(80));
            assert_eq!(h.bytes(), 30);
            assert_eq!(b.used(), 30);
        }
        assert_eq!(b.used(), 0);
    }
}
