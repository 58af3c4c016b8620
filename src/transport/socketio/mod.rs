//! Socket.IO v5 over Engine.IO v4, our own implementation, wire-compatible
//! with `socket.io-client` 4.x (long-polling first then the upgrade to
//! WebSocket, or WebSocket only).
//!
//! * [`engine`]: Engine.IO sessions (polling, WebSocket, upgrade, heartbeat).
//! * [`settings`]: [`SioSettings`] and the fixed bounds.
//!
//! Invariants are stated in each part.

pub mod engine;
pub mod settings;

pub use settings::SioSettings;
