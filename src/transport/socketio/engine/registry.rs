//! The sessions of one Engine.IO endpoint: how many are open (bounded by
//! `--sio-max-sessions`) and, for long-polling sessions, the way from a
//! request's `sid` to the session's task.
//!
//! Invariants: the open count is taken before a handshake is answered and
//! released when the session's task ends ([`SessionSlot`] drop), so it never
//! exceeds the bound; a long-polling session is reachable by its sid from its
//! handshake until its task ends or it moved to WebSocket
//! ([`Registration`] drop); WebSocket sessions hold a slot but no entry.

use super::polling::Inbound;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Random bytes of a session or socket id (20 base64url characters, as Node's).
const ID_BYTES: usize = 15;

/// A fresh random id for an Engine.IO session or a Socket.IO socket;
/// `None` when the OS has no randomness to give.
pub fn new_id() -> Option<String> {
    let mut bytes = [0u8; ID_BYTES];
    getrandom::fill(&mut bytes).ok()?;
    Some(URL_SAFE_NO_PAD.encode(bytes))
}

/// The open sessions of one endpoint.
pub(crate) struct Registry {
    polling: Mutex<HashMap<Box<str>, mpsc::Sender<Inbound>>>,
    open: AtomicUsize,
    max: usize,
}

impl Registry {
    /// An empty registry admitting at most `max` sessions at once.
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            polling: Mutex::new(HashMap::new()),
            open: AtomicUsize::new(0),
            max,
        })
    }

    /// Takes a session slot; `None` when `max` sessions are open.
    pub(super) fn acquire(self: &Arc<Self>) -> Option<SessionSlot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.max).then_some(open + 1)
            })
            .ok()?;
        Some(SessionSlot {
            registry: self.clone(),
        })
    }

    /// Makes a long-polling session reachable by `sid`.
    pub(super) fn register(
        self: &Arc<Self>,
        sid: &str,
        inbound: mpsc::Sender<Inbound>,
    ) -> Registration {
        self.entries().insert(Box::from(sid), inbound);
        Registration {
            registry: self.clone(),
            sid: Box::from(sid),
        }
    }

    /// The way to the long-polling session `sid`, if it is open.
    pub(super) fn sender(&self, sid: &str) -> Option<mpsc::Sender<Inbound>> {
        self.entries().get(sid).cloned()
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, mpsc::Sender<Inbound>>> {
        self.polling
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One open session counted against the bound; released on drop.
pub(crate) struct SessionSlot {
    registry: Arc<Registry>,
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.registry.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A long-polling session's registry entry; removed on drop.
pub(crate) struct Registration {
    registry: Arc<Registry>,
    sid: Box<str>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.entries().remove(&self.sid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_and_released_on_drop() {
        let registry = Registry::new(2);
        let first = registry.acquire().unwrap();
        let _second = registry.acquire().unwrap();
        assert!(registry.acquire().is_none());
        drop(first);
        assert!(registry.acquire().is_some());
    }

    #[test]
    fn registrations_end_with_their_guard() {
        let registry = Registry::new(1);
        let (sender, _receiver) = mpsc::channel(1);
        let registration = registry.register("abc", sender);
        assert!(registry.sender("abc").is_some());
        drop(registration);
        assert!(registry.sender("abc").is_none());
        assert_eq!(new_id().unwrap().len(), 20);
    }
}
