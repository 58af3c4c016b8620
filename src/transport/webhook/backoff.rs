//! When a failed delivery is tried again, and when it is given up.
//!
//! Exponential backoff with full jitter: after the n-th failed attempt the
//! next one waits a uniformly random time in `[0, min(cap, base·2^(n-1))]`.
//! A delivery is retried for `retry_for` from the start of its window (when
//! it was queued, or re-delivered); the last attempt is scheduled at the end
//! of the window at the latest, and one failing after it is given up.
//!
//! Invariants: waits never exceed the cap (no overflow however many
//! attempts); every delivery gets at least one attempt.

use std::time::Duration;

/// Backoff and give-up settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Ceiling of the first wait.
    pub base: Duration,
    /// Longest wait.
    pub cap: Duration,
    /// How long after its window opened a delivery is still retried.
    pub retry_for: Duration,
}

impl RetryPolicy {
    /// The longest wait after `failed` attempts (at least one).
    pub fn ceiling(&self, failed: u32) -> Duration {
        let doublings = failed.saturating_sub(1).min(63);
        let factor = 1u64 << doublings;
        let base_ms = u64::try_from(self.base.as_millis()).unwrap_or(u64::MAX);
        let cap_ms = u64::try_from(self.cap.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(base_ms.saturating_mul(factor).min(cap_ms))
    }

    /// When to try again (unix ms) after `failed` attempts of a delivery whose
    /// window opened at `window_start_ms`; `None` means give up now.
    pub fn next_attempt_ms(&self, failed: u32, window_start_ms: u64, now_ms: u64) -> Option<u64> {
        let window_end = window_start_ms.saturating_add(millis(self.retry_for));
        if now_ms >= window_end {
            return None;
        }
        let wait = jitter(millis(self.ceiling(failed)), random_fraction());
        Some(now_ms.saturating_add(wait).min(window_end))
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// `fraction` (in `[0, 1)`) of `ceiling_ms`, rounded down.
fn jitter(ceiling_ms: u64, fraction: f64) -> u64 {
    // f64 keeps 53 bits: exact enough for any wait that fits in a u64 of ms.
    (ceiling_ms as f64 * fraction.clamp(0.0, 1.0)) as u64
}

/// A uniform random number in `[0, 1)`; 0 when the OS source fails (no wait
/// beats a failing retry loop).
fn random_fraction() -> f64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return 0.0;
    }
    (u64::from_be_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(10),
            retry_for: Duration::from_secs(60),
        }
    }

    #[test]
    fn ceilings_double_from_the_base_up_to_the_cap() {
        let policy = policy();
        assert_eq!(policy.ceiling(0), Duration::from_millis(100));
        assert_eq!(policy.ceiling(1), Duration::from_millis(100));
        assert_eq!(policy.ceiling(2), Duration::from_millis(200));
        assert_eq!(policy.ceiling(5), Duration::from_millis(1600));
        assert_eq!(policy.ceiling(8), Duration::from_secs(10));
        assert_eq!(policy.ceiling(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn jittered_waits_stay_within_the_ceiling() {
        assert_eq!(jitter(1000, 0.0), 0);
        assert_eq!(jitter(1000, 0.5), 500);
        assert!(jitter(1000, 0.999_999) < 1000);
        assert_eq!(jitter(u64::MAX, 2.0), u64::MAX);
        for failed in 1..40 {
            let next = policy().next_attempt_ms(failed, 0, 1_000).unwrap();
            let ceiling = millis(policy().ceiling(failed));
            assert!(
                (1_000..=1_000 + ceiling).contains(&next),
                "{failed}: {next}"
            );
            assert!(random_fraction() < 1.0);
        }
    }

    #[test]
    fn retries_end_with_the_window() {
        let policy = policy();
        assert_eq!(policy.next_attempt_ms(3, 0, 60_000), None);
        assert!(policy.next_attempt_ms(30, 0, 59_999).unwrap() <= 60_000);
        let none = RetryPolicy {
            retry_for: Duration::ZERO,
            ..policy
        };
        assert_eq!(none.next_attempt_ms(1, 5, 5), None);
    }
}
