//! Process lifecycle shared by the server, handlers and streams: ready →
//! draining → stopping → drained.
//!
//! * draining: `/readyz` answers 503 so load balancers stop sending traffic;
//!   the listener still accepts (for `--drain-delay`).
//! * stopping: the listener closes, every long-lived stream (SSE, WebSocket)
//!   ends with its shutdown message, and connections finish their in-flight
//!   requests before closing.
//! * drained: every connection and session ended (or the grace ran out);
//!   background work that must see every request's effect (the live
//!   module's last interval close) runs its final step now.
//!
//! Invariant: the phases only move forward; stopping implies draining.
//! Sessions that outlive their HTTP connection (WebSocket) are tracked here
//! so the drain waits for them too.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio_util::sync::{
    CancellationToken, WaitForCancellationFuture, WaitForCancellationFutureOwned,
};
use tokio_util::task::TaskTracker;

/// The shared lifecycle state; one per server.
#[derive(Debug, Default)]
pub struct Lifecycle {
    draining: AtomicBool,
    stopping: CancellationToken,
    drained: CancellationToken,
    sessions: TaskTracker,
}

impl Lifecycle {
    /// A lifecycle in the ready phase.
    pub fn new() -> Self {
        Self::default()
    }

    /// Enters the draining phase: readiness turns false.
    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Enters the stopping phase: the listener closes and streams are told to end.
    pub fn stop(&self) {
        self.begin_drain();
        self.stopping.cancel();
    }

    /// True once draining or stopping began.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Completes when the stopping phase begins. Long-lived streams select on
    /// this to send their final message and end.
    pub fn stopping(&self) -> WaitForCancellationFuture<'_> {
        self.stopping.cancelled()
    }

    /// Like [`Lifecycle::stopping`], but owning: a stream can keep it pinned
    /// for its whole life instead of registering anew on every poll.
    pub fn stopping_owned(&self) -> WaitForCancellationFutureOwned {
        self.stopping.clone().cancelled_owned()
    }

    /// Marks the end of the drain: no request is in flight any more.
    pub fn finish_drain(&self) {
        self.stop();
        self.drained.cancel();
    }

    /// Completes once the drain ended (see [`Lifecycle::finish_drain`]).
    pub fn drained(&self) -> WaitForCancellationFuture<'_> {
        self.drained.cancelled()
    }

    /// True once stopping began.
    pub fn is_stopping(&self) -> bool {
        self.stopping.is_cancelled()
    }

    /// Runs a session that outlives its HTTP connection (an upgraded
    /// WebSocket); shutdown waits for it like for a connection.
    pub fn spawn_session<F>(&self, session: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.sessions.spawn(session);
    }

    /// Completes when every session ended (after stopping began).
    pub async fn sessions_finished(&self) {
        self.sessions.close();
        self.sessions.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_only_move_forward() {
        let lifecycle = Lifecycle::new();
        assert!(!lifecycle.is_draining());
        lifecycle.begin_drain();
        assert!(lifecycle.is_draining() && !lifecycle.is_stopping());
        lifecycle.stop();
        assert!(lifecycle.is_draining() && lifecycle.is_stopping());
    }
}
