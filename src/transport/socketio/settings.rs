//! Limits and timing of Engine.IO / Socket.IO sessions ([`SioSettings`],
//! built from the `--sio-*` flags) and the fixed bounds the transport keeps.
//!
//! Invariants: every bound a client can push against is here, either a flag
//! or a named constant; the WebSocket settings used for Socket.IO take their
//! largest message from `max_payload`, so a frame over it closes the session.

use crate::transport::ws::WsSettings;
use std::time::Duration;

/// Most Socket.IO namespaces one Engine.IO session may join at once; a
/// CONNECT beyond it is answered with CONNECT_ERROR.
pub const MAX_NAMESPACES_PER_SESSION: usize = 8;
/// Most binary attachments one Socket.IO packet may announce; more closes the session.
pub const MAX_ATTACHMENTS: usize = 16;
/// Most server-to-client acknowledgements a socket waits for; emitting one
/// more forgets the oldest (its late answer is then ignored).
#[cfg_attr(not(debug_assertions), allow(dead_code))]
pub const MAX_PENDING_ACKS: usize = 64;
/// How long a probed WebSocket may take to send the upgrade packet `5`
/// before it is dropped and the session stays on long-polling.
pub const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);
/// Client requests (polls, posted payloads, a probe) queued for a
/// long-polling session's task; a request waits while the queue is full.
pub const INBOUND_QUEUE: usize = 4;

/// Limits and timing of Engine.IO sessions and their Socket.IO layer.
#[derive(Debug, Clone, Copy)]
pub struct SioSettings {
    /// Interval between server pings (`pingInterval` in the open packet).
    pub ping_interval: Duration,
    /// How long the client has to answer a ping (`pingTimeout`).
    pub ping_timeout: Duration,
    /// Largest packet or polling payload accepted (`maxPayload`); larger closes the session.
    pub max_payload: usize,
    /// A session with no Socket.IO namespace joined for this long is closed.
    pub connect_timeout: Duration,
    /// Most Engine.IO sessions open at once; a handshake beyond gets 503.
    pub max_sessions: usize,
    /// Most bytes queued for a long-polling client; more ends the session.
    pub max_buffer: usize,
    /// WebSocket read buffer, write pacing (the largest message is `max_payload`).
    pub ws: WsSettings,
}

impl SioSettings {
    /// The WebSocket settings of a session: frames and messages up to `max_payload`.
    pub fn websocket(&self) -> WsSettings {
        WsSettings {
            max_message_bytes: self.max_payload,
            ..self.ws
        }
    }
}
