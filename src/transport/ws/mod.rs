//! WebSocket (RFC 6455) on hyper's HTTP/1.1 upgrade, framed by tokio-tungstenite.
//!
//! * [`handshake`]: the upgrade handshake and [`WsSettings`] (read buffer,
//!   max message, ping interval, write pacing).
//! * [`runner`]: the session runner ([`serve`]): keepalive, close codes,
//!   expiry, revocation, shutdown, subscriptions, write pacing, metrics.
//! * [`protocol`]: what a surface supplies ([`WsProtocol`]) and sees of its
//!   session ([`Session`]).
//! * [`frames`]: [`FrameBatch`], event frames from the events' shared bytes.
//! * [`close`]: close codes and end reasons.
//! * [`socket`]: the upgraded socket and its read gate (backpressure).
//!
//! Surfaces (modules) implement [`WsProtocol`] and call [`serve`]; they never
//! see tungstenite. Invariants are stated in each part.

pub mod close;
pub mod frames;
pub mod handshake;
pub mod protocol;
pub mod runner;
pub mod socket;

pub use handshake::{WsSettings, upgrade};
pub use protocol::{Outcome, Session, WsProtocol};
pub use runner::{WsRuntime, serve};
pub use socket::WsSocket;
