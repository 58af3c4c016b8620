//! Per-user limits on concurrent streams (spec 004 suggests 5 per user).
//!
//! Invariants: a slot is counted while its [`UserSlot`] lives and released when
//! it drops (the stream ended, however it ended); the next stream past the
//! limit gets 429 with `Retry-After`; backends (API keys) are not limited here.

use crate::error::{ApiError, ErrorCode};
use http::{HeaderValue, header};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// Seconds a refused client is told to wait.
const RETRY_AFTER_SECONDS: &str = "5";

type Counts = Arc<Mutex<HashMap<(Uuid, String), usize>>>;

/// Counts open streams per user per tenant.
pub struct StreamLimits {
    max_per_user: usize,
    counts: Counts,
}

/// One counted stream; dropping it frees the slot.
pub struct UserSlot {
    key: (Uuid, String),
    counts: Counts,
}

impl StreamLimits {
    /// At most `max_per_user` concurrent streams per user per tenant.
    pub fn new(max_per_user: usize) -> Self {
        Self {
            max_per_user: max_per_user.max(1),
            counts: Arc::default(),
        }
    }

    /// Takes a slot for `user` of `tenant`, or 429.
    pub fn acquire(&self, tenant: Uuid, user: &str) -> Result<UserSlot, ApiError> {
        let key = (tenant, user.to_string());
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(key.clone()).or_insert(0);
        if *count >= self.max_per_user {
            return Err(ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "at most {} concurrent streams per user; close one first",
                    self.max_per_user
                ),
            )
            .with_header(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECONDS),
            ));
        }
        *count += 1;
        Ok(UserSlot {
            key,
            counts: self.counts.clone(),
        })
    }
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_refuses_past_the_maximum_and_frees_slots_on_drop() {
        let limits = StreamLimits::new(2);
        let tenant = Uuid::nil();
        let first = limits.acquire(tenant, "u").unwrap();
        let _second = limits.acquire(tenant, "u").unwrap();
        let refused = limits.acquire(tenant, "u").err().unwrap();
        assert_eq!(refused.status.as_u16(), 429);
        assert!(
            limits.acquire(tenant, "other").is_ok(),
            "users are counted apart"
        );
        drop(first);
        assert!(limits.acquire(tenant, "u").is_ok());
    }
}
