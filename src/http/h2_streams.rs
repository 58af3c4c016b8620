//! The open streams of one HTTP/2 connection, for its two deadlines: a
//! connection with no open stream is closed after a quiet spell (the first
//! request within `--header-timeout`, later ones within `--idle-timeout`),
//! and a response stalled by HTTP/2 flow control is treated like a socket
//! that accepts nothing for `--write-timeout`.
//!
//! A stall shows as a response body that handed hyper data and has not been
//! asked for more since: hyper asks again as soon as the data fits the
//! peer's window, so a body left waiting for `--write-timeout` belongs to a
//! client that stopped granting window (the socket itself may be fine, so
//! [`super::io::WriteDeadline`] cannot see it).
//!
//! Invariants: a stream counts as open from the moment its request reaches
//! the service until its response body is dropped (finished, reset, or the
//! connection gone), so a request still being handled is never idle time;
//! the watcher wakes only on stream changes and, while streams are open,
//! every half write timeout.

use super::Body;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Why the watcher says the connection should end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No open stream for the quiet period: close gracefully.
    Idle,
    /// A response has waited for window longer than the write timeout: cut.
    Stalled,
}

/// The deadlines a watcher enforces.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// Quiet period before the first request.
    pub first_request: Duration,
    /// Quiet period after a stream ended.
    pub idle: Duration,
    /// Longest wait of a response body for flow-control window.
    pub write: Duration,
}

/// The streams of one connection.
pub struct StreamWatch {
    open: watch::Sender<usize>,
    waiting: Mutex<Vec<Weak<WaitingSince>>>,
    epoch: Instant,
}

/// When a body last handed out data that hyper has not followed up on, in
/// milliseconds since the watch's epoch plus one; zero when it is not waiting.
struct WaitingSince(AtomicU64);

impl StreamWatch {
    /// A watch with no stream open.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            open: watch::Sender::new(0),
            waiting: Mutex::new(Vec::new()),
            epoch: Instant::now(),
        })
    }

    /// Counts a stream as open until the returned guard (or the body it wraps) is dropped.
    pub fn open(self: &Arc<Self>) -> StreamGuard {
        let since = Arc::new(WaitingSince(AtomicU64::new(0)));
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        waiting.retain(|entry| entry.strong_count() > 0);
        waiting.push(Arc::downgrade(&since));
        drop(waiting);
        self.open.send_modify(|count| *count += 1);
        StreamGuard {
            watch: self.clone(),
            since,
        }
    }

    /// Resolves when the connection should end (see [`Verdict`]).
    pub async fn verdict(&self, deadlines: Deadlines) -> Verdict {
        let mut open = self.open.subscribe();
        let mut quiet_for = deadlines.first_request;
        loop {
            if *open.borrow_and_update() == 0 {
                tokio::select! {
                    () = tokio::time::sleep(quiet_for) => return Verdict::Idle,
                    _ = open.changed() => {}
                }
                quiet_for = deadlines.idle;
                continue;
            }
            quiet_for = deadlines.idle;
            let interval = (deadlines.write / 2).max(Duration::from_millis(50));
            let mut next_check = Instant::now() + interval;
            while *open.borrow_and_update() > 0 {
                tokio::select! {
                    () = tokio::time::sleep_until(next_check) => {
                        if self.stalled(deadlines.write) {
                            return Verdict::Stalled;
                        }
                        next_check += interval;
                    }
                    _ = open.changed() => {}
                }
            }
        }
    }

    /// Whether some body has waited for window for `limit` or longer.
    fn stalled(&self, limit: Duration) -> bool {
        let now = self.millis();
        let limit = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        let waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        waiting.iter().filter_map(Weak::upgrade).any(|since| {
            let stamp = since.0.load(Ordering::Relaxed);
            stamp != 0 && now.saturating_sub(stamp - 1) >= limit
        })
    }

    fn millis(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// One open stream; closes it on drop.
pub struct StreamGuard {
    watch: Arc<StreamWatch>,
    since: Arc<WaitingSince>,
}

impl StreamGuard {
    /// The response body, watched for flow-control stalls, holding this guard.
    pub fn watch_body(self, body: Body) -> Body {
        WatchedBody {
            inner: body,
            guard: self,
        }
        .boxed()
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.watch.open.send_modify(|count| *count -= 1);
    }
}

/// A response body that records when it waits for hyper to take more.
struct WatchedBody {
    inner: Body,
    guard: StreamGuard,
}

impl hyper::body::Body for WatchedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let since = &self.guard.since.0;
        since.store(0, Ordering::Relaxed);
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && frame.is_data()
        {
            let now = self.guard.watch.millis();
            self.guard.since.0.store(now + 1, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    const DEADLINES: Deadlines = Deadlines {
        first_request: Duration::from_secs(1),
        idle: Duration::from_secs(5),
        write: Duration::from_secs(2),
    };

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_streams_is_idle_after_the_first_request_deadline() {
        let watch = StreamWatch::new();
        let started = Instant::now();
        assert_eq!(watch.verdict(DEADLINES).await, Verdict::Idle);
        assert_eq!(started.elapsed(), DEADLINES.first_request);
    }

    #[tokio::test(start_paused = true)]
    async fn open_streams_hold_off_the_idle_deadline() {
        let watch = StreamWatch::new();
        let guard = watch.open();
        let closer = async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(guard);
        };
        let started = Instant::now();
        let (verdict, ()) = tokio::join!(watch.verdict(DEADLINES), closer);
        assert_eq!(verdict, Verdict::Idle);
        assert_eq!(started.elapsed(), Duration::from_secs(30) + DEADLINES.idle);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_left_waiting_for_window_is_a_stall() {
        let watch = StreamWatch::new();
        let mut body = watch
            .open()
            .watch_body(Full::new(Bytes::from_static(b"data")).boxed());
        assert!(body.frame().await.is_some(), "data handed to hyper");
        let started = Instant::now();
        assert_eq!(watch.verdict(DEADLINES).await, Verdict::Stalled);
        assert!(started.elapsed() >= DEADLINES.write);
        assert!(started.elapsed() <= DEADLINES.write * 3 / 2);
    }
}
