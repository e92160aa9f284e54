//! What an export's answer means: retry delays, the backend's RetryInfo, partial success.
//!
//! - [`Backoff`]: the collector's `retry_on_failure` schedule (as `dataplane/backoff.py`):
//!   exponential from `initial_interval` by `multiplier` up to `max_interval`, each delay
//!   randomized by +/- `randomization_factor`, no further retry once `max_elapsed_time` would
//!   pass (0: retry for ever);
//! - [`retry_info_delay`]: the `google.rpc.RetryInfo` delay in a failed call's status details;
//! - [`retryable`]: the OTLP specification's retry rules for a status code;
//! - [`partial_success`]: the items a successful Export response says it rejected.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::client::status::Code;
use crate::wire::{read_tag, read_varint, skip_field};

/// A `retry_on_failure` block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub enabled: bool,
    pub initial_interval: f64,
    pub randomization_factor: f64,
    pub multiplier: f64,
    pub max_interval: f64,
    /// Seconds; 0 retries for ever.
    pub max_elapsed_time: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            enabled: true,
            initial_interval: 5.0,
            randomization_factor: 0.5,
            multiplier: 1.5,
            max_interval: 30.0,
            max_elapsed_time: 300.0,
        }
    }
}

static SEED: AtomicU64 = AtomicU64::new(0);

/// The delays one failing export may wait before its retries.
#[derive(Debug)]
pub struct Backoff {
    policy: RetryPolicy,
    interval: f64,
    elapsed: f64,
    rng: u64,
}

/// A seed that differs per call (time and a counter): jitter and random routing need no more.
pub fn random_seed() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    now ^ SEED.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
}

impl Backoff {
    pub fn new(policy: RetryPolicy) -> Backoff {
        Backoff {
            policy,
            interval: policy.initial_interval,
            elapsed: 0.0,
            rng: random_seed(),
        }
    }

    fn random(&mut self) -> f64 {
        // splitmix64, 53 bits into [0, 1).
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The next delay, or `None` once the policy gives up (at once when retrying is disabled).
    pub fn next_delay(&mut self) -> Option<Duration> {
        let p = self.policy;
        if !p.enabled {
            return None;
        }
        let delta = p.randomization_factor * self.interval;
        let delay = self.interval - delta + self.random() * (2.0 * delta);
        if p.max_elapsed_time > 0.0 && self.elapsed + delay > p.max_elapsed_time {
            return None;
        }
        self.elapsed += delay;
        self.interval = (self.interval * p.multiplier).min(p.max_interval);
        Duration::try_from_secs_f64(delay.max(0.0)).ok()
    }
}

/// Whether retrying may help (OTLP: RESOURCE_EXHAUSTED only with a RetryInfo).
pub fn retryable(code: Code, retry_after: Option<Duration>) -> bool {
    matches!(
        code,
        Code::Cancelled
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::OutOfRange
            | Code::Unavailable
            | Code::DataLoss
    ) || (code == Code::ResourceExhausted && retry_after.is_some())
}

/// After these the backend may have processed the request although the call failed.
pub fn unknown_outcome(code: Code) -> bool {
    matches!(code, Code::DeadlineExceeded | Code::Cancelled)
}

/// Length-delimited fields of a message: (tag, start, end); `None` when malformed.
fn len_fields(data: &[u8], start: usize, end: usize) -> Option<Vec<(u64, usize, usize)>> {
    let mut out = Vec::new();
    let mut pos = start;
    while pos < end {
        let (tag, p) = read_tag(data, pos, end).ok()?;
        if tag & 7 == 2 {
            let (len, s) = read_varint(data, p, end).ok()?;
            let e = s.checked_add(usize::try_from(len).ok()?)?;
            if e > end {
                return None;
            }
            out.push((tag, s, e));
            pos = e;
        } else {
            pos = skip_field(data, tag & 7, p, end).ok()?;
        }
    }
    Some(out)
}

fn varints(data: &[u8], start: usize, end: usize) -> Option<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    let mut pos = start;
    while pos < end {
        let (tag, p) = read_tag(data, pos, end).ok()?;
        if tag & 7 == 0 {
            let (v, p) = read_varint(data, p, end).ok()?;
            out.push((tag >> 3, v));
            pos = p;
        } else {
            pos = skip_field(data, tag & 7, p, end).ok()?;
        }
    }
    Some(out)
}

const RETRY_INFO_TYPE: &[u8] = b"type.googleapis.com/google.rpc.RetryInfo";

/// The delay of the `google.rpc.RetryInfo` in a serialized `google.rpc.Status`, if any
/// (`dataplane/exporter.py`'s `retry_info_delay`; malformed bytes count as absent).
pub fn retry_info_delay(details: &[u8]) -> Option<Duration> {
    for (tag, s, e) in len_fields(details, 0, details.len())? {
        if tag != 0x1A {
            continue;
        }
        let any = len_fields(details, s, e)?;
        let url = any.iter().find(|f| f.0 == 0x0A);
        let value = any.iter().find(|f| f.0 == 0x12);
        match url {
            Some(&(_, us, ue)) if &details[us..ue] == RETRY_INFO_TYPE => {}
            _ => continue,
        }
        let Some(&(_, vs, ve)) = value else {
            return Some(Duration::ZERO);
        };
        let Some(&(_, ds, de)) = len_fields(details, vs, ve)?.iter().find(|f| f.0 == 0x0A) else {
            return Some(Duration::ZERO);
        };
        let numbers = varints(details, ds, de)?;
        let get = |n: u64| numbers.iter().rev().find(|f| f.0 == n).map_or(0, |f| f.1);
        let secs = get(1) as i64 as f64 + get(2) as i64 as f64 / 1e9;
        return Some(Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::ZERO));
    }
    None
}

/// (accepted, rejected, message) of a successful Export response for `items` items: its
/// `partial_success` (field 1) holds the rejected count (field 1) and a message (field 2).
/// An unparseable response counts every item as accepted, as the Python exporter did.
pub fn partial_success(response: &[u8], items: u64) -> (u64, u64, String) {
    if response.is_empty() {
        return (items, 0, String::new());
    }
    let Some(fields) = len_fields(response, 0, response.len()) else {
        return (items, 0, String::new());
    };
    let Some(&(_, s, e)) = fields.iter().rev().find(|f| f.0 == 0x0A) else {
        return (items, 0, String::new());
    };
    let (Some(numbers), Some(texts)) = (varints(response, s, e), len_fields(response, s, e)) else {
        return (items, 0, String::new());
    };
    let rejected = numbers
        .iter()
        .rev()
        .find(|f| f.0 == 1)
        .map_or(0, |f| f.1 as i64)
        .max(0) as u64;
    let message = texts
        .iter()
        .rev()
        .find(|f| f.0 == 0x12)
        .map(|&(_, a, b)| String::from_utf8_lossy(&response[a..b]).into_owned())
        .unwrap_or_default();
    let rejected = rejected.min(items);
    (items - rejected, rejected, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_maximum_and_stops_after_the_elapsed_limit() {
        let policy = RetryPolicy {
            enabled: true,
            initial_interval: 1.0,
            randomization_factor: 0.0,
            multiplier: 2.0,
            max_interval: 4.0,
            max_elapsed_time: 12.0,
        };
        let mut b = Backoff::new(policy);
        let delays: Vec<f64> = std::iter::from_fn(|| b.next_delay())
            .map(|d| d.as_secs_f64())
            .collect();
        assert_eq!(delays, vec![1.0, 2.0, 4.0, 4.0]);
    }

    #[test]
    fn disabled_retry_gives_no_delay() {
        let policy = RetryPolicy {
            enabled: false,
            ..RetryPolicy::default()
        };
        assert_eq!(Backoff::new(policy).next_delay(), None);
    }

    #[test]
    fn jitter_stays_within_the_randomization_factor() {
        let policy = RetryPolicy {
            initial_interval: 1.0,
            randomization_factor: 0.5,
            multiplier: 1.0,
            max_interval: 1.0,
            max_elapsed_time: 0.0,
            enabled: true,
        };
        let mut b = Backoff::new(policy);
        for _ in 0..1000 {
            let d = b.next_delay().unwrap().as_secs_f64();
            assert!((0.5..=1.5).contains(&d), "{d}");
        }
    }

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag, body.len() as u8];
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn retry_info_is_read_from_status_details() {
        let duration = [0x08, 3, 0x10, 0x80, 0xE1, 0xEB, 0x17]; // 3 s + 50_000_000 ns
        let retry_info = frame(0x0A, &duration);
        let mut any = frame(0x0A, RETRY_INFO_TYPE);
        any.extend(frame(0x12, &retry_info));
        let mut status = vec![0x08, 8];
        status.extend(frame(0x1A, &any));
        assert_eq!(retry_info_delay(&status), Some(Duration::from_millis(3050)));
        assert_eq!(retry_info_delay(&[0x08, 8]), None);
        assert_eq!(retry_info_delay(&[0x1A, 0x7F]), None);
    }

    #[test]
    fn partial_success_counts_rejected_items() {
        let mut ps = vec![0x08, 3];
        ps.extend(frame(0x12, b"bad spans"));
        let response = frame(0x0A, &ps);
        assert_eq!(
            partial_success(&response, 10),
            (7, 3, "bad spans".to_string())
        );
        assert_eq!(partial_success(&[], 10), (10, 0, String::new()));
        assert_eq!(partial_success(&[0x0A, 0x50], 10), (10, 0, String::new()));
    }

    #[test]
    fn retry_rules_follow_otlp() {
        assert!(retryable(Code::Unavailable, None));
        assert!(!retryable(Code::ResourceExhausted, None));
        assert!(retryable(Code::ResourceExhausted, Some(Duration::ZERO)));
        assert!(!retryable(Code::InvalidArgument, None));
    }
}
