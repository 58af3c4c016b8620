//! Clock sync with the server, NTP-style, from `GET /api/v1/time`.
//!
//! One sample is the local time the request left (`t0`), the server's `now`
//! (unix ms, truncated, so the true instant is in `[now, now + 1 ms)`) and
//! the local time the answer arrived (`t1`). Assuming the request and the
//! answer took equally long, the server read its clock at local `(t0 + t1)
//! / 2`, so `offset = now + 0.5 ms − (t0 + t1) / 2`, with an error of at
//! most half the round trip. Of several samples the one with the shortest
//! round trip is kept. Server time is then `local unix time + offset`; the
//! same arithmetic a browser client does, written down in README.
//!
//! Invariant: every time here is unix microseconds (`i64`), local times
//! from [`local_unix_us`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The length of one interval, in milliseconds (the server announces it too).
pub const INTERVAL_MS: i64 = 250;

/// Now, as unix microseconds of this machine's clock.
pub fn local_unix_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
        })
}

/// One `/api/v1/time` round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Local unix µs when the request was sent.
    pub sent_us: i64,
    /// The server's `now` (unix ms).
    pub server_ms: i64,
    /// Local unix µs when the answer arrived.
    pub received_us: i64,
}

impl Sample {
    /// The round trip, in µs.
    pub fn round_trip_us(&self) -> i64 {
        self.received_us - self.sent_us
    }

    /// Server time minus local time, in µs, by this sample.
    pub fn offset_us(&self) -> i64 {
        let midpoint = self.sent_us + self.round_trip_us() / 2;
        self.server_ms * 1000 + 500 - midpoint
    }
}

/// The server's clock as seen from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerClock {
    /// Server time minus local time, in µs.
    pub offset_us: i64,
    /// Round trip of the sample the offset comes from, in µs (twice the error bound).
    pub round_trip_us: i64,
}

impl ServerClock {
    /// The clock of the sample with the shortest round trip (`None` without samples).
    pub fn from_samples(samples: &[Sample]) -> Option<Self> {
        samples
            .iter()
            .min_by_key(|sample| sample.round_trip_us())
            .map(|best| Self {
                offset_us: best.offset_us(),
                round_trip_us: best.round_trip_us(),
            })
    }

    /// The server's time now, in unix µs.
    pub fn now_us(&self) -> i64 {
        local_unix_us() + self.offset_us
    }

    /// How long from now until the server's clock shows `server_us` (zero when past).
    pub fn until(&self, server_us: i64) -> Duration {
        let wait = server_us - self.now_us();
        Duration::from_micros(u64::try_from(wait).unwrap_or(0))
    }
}

/// The interval (its start, unix ms) that contains the server time `server_us`.
pub fn interval_containing(server_us: i64) -> i64 {
    let ms = server_us.div_euclid(1000);
    ms - ms.rem_euclid(INTERVAL_MS)
}

/// When interval `interval` closes, in unix µs of the server's clock.
pub fn close_us(interval: i64) -> i64 {
    (interval + INTERVAL_MS) * 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_is_measured_from_the_midpoint_of_the_round_trip() {
        // Server 2 s ahead; the request took 1 ms each way.
        let sample = Sample {
            sent_us: 1_000_000_000,
            server_ms: 1_002_001,
            received_us: 1_000_002_000,
        };
        assert_eq!(sample.round_trip_us(), 2_000);
        assert_eq!(sample.offset_us(), 2_000_000 + 500);
        // A server behind us gives a negative offset.
        let behind = Sample {
            sent_us: 5_000_000,
            server_ms: 4_000,
            received_us: 5_000_200,
        };
        assert_eq!(behind.offset_us(), 4_000_500 - 5_000_100);
    }

    #[test]
    fn the_shortest_round_trip_wins() {
        let slow = Sample {
            sent_us: 0,
            server_ms: 50,
            received_us: 90_000,
        };
        let fast = Sample {
            sent_us: 100_000,
            server_ms: 100,
            received_us: 100_400,
        };
        let clock = ServerClock::from_samples(&[slow, fast]).expect("samples");
        assert_eq!(clock.round_trip_us, 400);
        assert_eq!(clock.offset_us, fast.offset_us());
        assert_eq!(ServerClock::from_samples(&[]), None);
    }

    #[test]
    fn intervals_are_aligned_to_250_ms() {
        assert_eq!(
            interval_containing(1_663_278_794_500_000),
            1_663_278_794_500
        );
        assert_eq!(
            interval_containing(1_663_278_794_749_999),
            1_663_278_794_500
        );
        assert_eq!(
            interval_containing(1_663_278_794_750_000),
            1_663_278_794_750
        );
        assert_eq!(close_us(1_663_278_794_500), 1_663_278_794_750_000);
    }

    #[test]
    fn waiting_for_a_past_time_is_no_wait() {
        let clock = ServerClock {
            offset_us: 0,
            round_trip_us: 0,
        };
        assert_eq!(clock.until(0), Duration::ZERO);
        assert!(clock.until(local_unix_us() + 10_000_000) > Duration::from_secs(9));
    }
}
