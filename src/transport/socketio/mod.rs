//! Socket.IO v5 over Engine.IO v4, our own implementation, wire-compatible
//! with `socket.io-client` 4.x (long-polling first then the upgrade to
//! WebSocket, or WebSocket only).
//!
//! * [`engine`]: Engine.IO sessions (polling, WebSocket, upgrade, heartbeat).
//! * [`packet`]: the Socket.IO packet codec (binary attachments included).
//! * [`namespace`]: what a module implements ([`Namespace`],
//!   [`SocketHandler`]) and what its sockets can do ([`SocketCtx`]).
//! * [`server`]: [`SocketIoServer`], one endpoint with its namespaces.
//! * `session`: the Socket.IO state of one session (inside its task).
//! * [`settings`]: [`SioSettings`] and the fixed bounds.
//!
//! A session is one task (no task per socket or subscription): it owns its
//! transport, heartbeat, namespace sockets, their subscriptions and pending
//! acks. Invariants are stated in each part.

pub mod engine;
mod erased;
mod lapse;
pub mod namespace;
pub mod packet;
pub mod server;
mod session;
pub mod settings;

// Server-initiated acks are platform API; only the debug test routes use them yet.
#[cfg_attr(not(debug_assertions), allow(unused_imports))]
pub use namespace::ClientAck;
pub use namespace::{ClientEvent, ConnectRefusal, Handshake, Namespace, SocketCtx, SocketHandler};
pub use server::SocketIoServer;
pub use settings::SioSettings;
