//! The writer's state as the rest of the process sees it: whether the store
//! accepts writes, when the last group became durable, how much waits.
//!
//! Invariants: only the writer thread changes the state and the commit
//! records; the queue counters are raised by callers before a change is
//! queued and lowered by the writer thread when it takes the change, so they
//! never undercount what waits.

use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};

/// Whether the store accepts writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreState {
    /// Writes are accepted.
    Healthy,
    /// A write failed; the writer waits before its next recovery attempt.
    Failed,
    /// The writer is reopening the store and undoing the failed group.
    Recovering,
}

impl StoreState {
    /// The name used in `/healthz`, `/readyz` and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Failed => "failed",
            Self::Recovering => "recovering",
        }
    }

    /// The value of the `tidings_store_state` gauge (0 healthy, 1 failed, 2 recovering).
    pub fn gauge(self) -> i64 {
        self as i64
    }

    fn from_u8(value: u8) -> Self {
        match value {
            0 => Self::Healthy,
            1 => Self::Failed,
            _ => Self::Recovering,
        }
    }
}

/// A snapshot of the writer's state.
#[derive(Debug, Clone, Copy)]
pub struct WriterStatus {
    /// Whether the store accepts writes.
    pub state: StoreState,
    /// Groups made durable since the start.
    pub commits: u64,
    /// Unix ms of the last durable group (the start time before the first).
    pub last_commit_ms: u64,
    /// Events in the groups made durable since the start.
    pub events: u64,
    /// Time spent writing and flushing the durable groups, in microseconds
    /// (divided by `commits`: the mean flush latency).
    pub flush_micros: u64,
    /// Changes waiting for the writer.
    pub queued_changes: usize,
    /// Bytes the waiting changes declared.
    pub queued_bytes: usize,
}

/// The shared cells behind [`WriterStatus`].
#[derive(Debug)]
pub(super) struct Health {
    state: AtomicU8,
    commits: AtomicU64,
    last_commit_ms: AtomicU64,
    events: AtomicU64,
    flush_micros: AtomicU64,
    queued_changes: AtomicUsize,
    queued_bytes: AtomicUsize,
}

impl Health {
    pub(super) fn new() -> Self {
        Self {
            state: AtomicU8::new(StoreState::Healthy as u8),
            commits: AtomicU64::new(0),
            last_commit_ms: AtomicU64::new(crate::core::clock::unix_millis()),
            events: AtomicU64::new(0),
            flush_micros: AtomicU64::new(0),
            queued_changes: AtomicUsize::new(0),
            queued_bytes: AtomicUsize::new(0),
        }
    }

    pub(super) fn state(&self) -> StoreState {
        StoreState::from_u8(self.state.load(Ordering::Acquire))
    }

    pub(super) fn set_state(&self, state: StoreState) {
        self.state.store(state as u8, Ordering::Release);
    }

    /// Records a durable group whose write and flush took `flush`.
    pub(super) fn record_commit(&self, flush: std::time::Duration) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(flush.as_micros()).unwrap_or(u64::MAX);
        self.flush_micros.fetch_add(micros, Ordering::Relaxed);
        self.last_commit_ms
            .store(crate::core::clock::unix_millis(), Ordering::Relaxed);
    }

    /// Reserves room for a change of `bytes`; false (nothing reserved) when
    /// it would take the queued bytes over `limit`. A change alone larger
    /// than the limit is admitted into an empty queue so it can still commit.
    pub(super) fn reserve(&self, bytes: usize, limit: usize) -> bool {
        let admitted = self
            .queued_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                let total = queued.saturating_add(bytes);
                (queued == 0 || total <= limit).then_some(total)
            })
            .is_ok();
        if admitted {
            self.queued_changes.fetch_add(1, Ordering::AcqRel);
        }
        admitted
    }

    /// Gives back what [`Health::reserve`] took.
    pub(super) fn release(&self, bytes: usize) {
        self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
        self.queued_changes.fetch_sub(1, Ordering::AcqRel);
    }

    /// Counts the events of a durable group.
    pub(super) fn record_events(&self, events: usize) {
        self.events.fetch_add(events as u64, Ordering::Relaxed);
    }

    pub(super) fn status(&self) -> WriterStatus {
        WriterStatus {
            state: self.state(),
            commits: self.commits.load(Ordering::Relaxed),
            last_commit_ms: self.last_commit_ms.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            flush_micros: self.flush_micros.load(Ordering::Relaxed),
            queued_changes: self.queued_changes.load(Ordering::Acquire),
            queued_bytes: self.queued_bytes.load(Ordering::Acquire),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_stay_within_the_byte_limit_and_are_given_back() {
        let health = Health::new();
        assert!(health.reserve(600, 1000));
        assert!(!health.reserve(600, 1000), "over the limit");
        assert!(health.reserve(400, 1000), "exactly at the limit");
        assert_eq!(health.status().queued_bytes, 1000);
        assert_eq!(health.status().queued_changes, 2);
        health.release(600);
        health.release(400);
        assert!(
            health.reserve(5000, 1000),
            "an oversized change fits an empty queue"
        );
        assert!(!health.reserve(1, 1000));
    }
}
