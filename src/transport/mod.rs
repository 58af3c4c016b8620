//! Transports: how hub subscriptions reach clients.
//!
//! * [`sse`]: Server-Sent Events over a streaming HTTP body (HTTP/1.1, HTTP/2, TLS).
//! * [`ws`]: WebSocket (RFC 6455) on hyper's upgrade.
//! * [`socketio`]: Socket.IO v5 over Engine.IO v4 (long-polling and WebSocket).
//! * [`webhook`]: signed POSTs to tenants' endpoints from a durable outbox.
//!
//! * [`coalesce`]: when a busy SSE or WebSocket stream writes (adaptive hold).
//!
//! SSE and WebSocket drain everything a subscription has ready into one write
//! (holding a busy stream's writes briefly, see [`coalesce`]), end when
//! the server stops (with a final message telling the client to reconnect),
//! and never hold up the publisher: a slow client falls back to reading the
//! log, and a client whose socket does not drain is disconnected by the
//! connection's write timeout.

pub mod coalesce;
pub mod socketio;
pub mod sse;
pub mod webhook;
pub mod ws;
