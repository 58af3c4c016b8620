//! The upgrade from long-polling to WebSocket: a WebSocket opened with the
//! session's sid is a probe until the client confirms it.
//!
//! Sequence: client `2probe` → server `3probe` (from then on polls get a
//! noop and the queue waits) → client `5` → the session continues on the
//! WebSocket. Anything else on the probe, its end, or no `5` within
//! [`UPGRADE_TIMEOUT`] drops the probe and the session stays on polling.

use crate::transport::socketio::settings::UPGRADE_TIMEOUT;
use crate::transport::ws::WsSocket;
use futures_util::{SinkExt, StreamExt};
use std::pin::Pin;
use tokio::time::{Instant, Sleep};
use tokio_tungstenite::tungstenite::{self, Message};

/// An upgrade probe in progress.
pub(super) struct Probe {
    socket: Box<WsSocket>,
    deadline: Pin<Box<Sleep>>,
    probed: bool,
}

/// What happened on the probe.
pub(super) enum ProbeEvent {
    /// A message (or the end of the probe socket).
    Message(Option<Result<Message, tungstenite::Error>>),
    /// No upgrade within the timeout.
    Expired,
}

impl Probe {
    /// A probe on `socket`, given [`UPGRADE_TIMEOUT`] to complete.
    pub(super) fn new(socket: Box<WsSocket>) -> Self {
        Self {
            socket,
            deadline: Box::pin(tokio::time::sleep_until(Instant::now() + UPGRADE_TIMEOUT)),
            probed: false,
        }
    }

    /// Whether `3probe` was sent (polls now get a noop).
    pub(super) fn probed(&self) -> bool {
        self.probed
    }

    /// Waits for the probe's next event (cancel-safe).
    pub(super) async fn next_event(&mut self) -> ProbeEvent {
        tokio::select! {
            message = self.socket.next() => ProbeEvent::Message(message),
            () = self.deadline.as_mut() => ProbeEvent::Expired,
        }
    }

    /// Moves the upgrade on: `Ok(true)` when it completed, `Ok(false)` to
    /// keep waiting, `Err` when the probe failed and must be dropped.
    pub(super) async fn advance(&mut self, event: ProbeEvent) -> Result<bool, ()> {
        let ProbeEvent::Message(Some(Ok(message))) = event else {
            return Err(());
        };
        match message {
            Message::Text(text) if text.as_str() == "2probe" && !self.probed => {
                self.socket
                    .send(Message::text("3probe"))
                    .await
                    .map_err(|_| ())?;
                self.probed = true;
                Ok(false)
            }
            Message::Text(text) if text.as_str() == "5" && self.probed => Ok(true),
            Message::Ping(_) | Message::Pong(_) => Ok(false),
            _ => Err(()),
        }
    }

    /// The WebSocket the session continues on.
    pub(super) fn into_socket(self) -> Box<WsSocket> {
        self.socket
    }
}
