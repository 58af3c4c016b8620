//! Wall-clock helpers shared by the log, the API and the operations endpoints.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

/// RFC 3339 with milliseconds in UTC, e.g. `2026-11-23T11:00:00.123Z`.
pub fn rfc3339_millis(unix_ms: u64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(unix_ms);
    humantime::format_rfc3339_millis(time).to_string()
}

/// The monotonic instant at which a unix time (seconds) arrives; now when it is past.
pub fn instant_of_unix_seconds(unix_seconds: u64) -> tokio::time::Instant {
    let now_ms = unix_millis();
    let then_ms = unix_seconds.saturating_mul(1000);
    tokio::time::Instant::now() + Duration::from_millis(then_ms.saturating_sub(now_ms))
}

/// Sleeps until `deadline`, or forever when there is none.
pub async fn sleep_until_or_forever(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_milliseconds_in_utc() {
        assert_eq!(
            rfc3339_millis(1_795_432_851_067),
            "2026-11-23T11:20:51.067Z"
        );
        assert!(unix_millis() > 1_700_000_000_000);
    }
}
