//! Debug-only fault injection into the writer thread, driven by the
//! `/__test/writer/*` routes so integration tests can reach failure paths a
//! healthy disk never shows. Compiled only with `debug_assertions`.
//!
//! Invariant: every fault fires at most as often as it was armed.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// Faults armed for the writer thread.
#[derive(Debug, Default)]
pub struct Faults {
    failing_flushes: AtomicU32,
    panic: AtomicBool,
    answer_delay_ms: AtomicU64,
}

impl Faults {
    /// Makes the next `count` flushes (of groups or of recovery attempts)
    /// fail after their batch was applied.
    pub fn fail_flushes(&self, count: u32) {
        self.failing_flushes.store(count, Ordering::SeqCst);
    }

    /// Makes the writer thread panic outside any change when it next wakes.
    pub fn panic_thread(&self) {
        self.panic.store(true, Ordering::SeqCst);
    }

    /// Delays answering callers after each durable group (0 for none).
    pub fn delay_answers(&self, millis: u64) {
        self.answer_delay_ms.store(millis, Ordering::SeqCst);
    }

    pub(super) fn take_flush_failure(&self) -> bool {
        self.failing_flushes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    pub(super) fn take_panic(&self) -> bool {
        self.panic.swap(false, Ordering::SeqCst)
    }

    pub(super) fn answer_delay(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.answer_delay_ms.load(Ordering::SeqCst))
    }
}
