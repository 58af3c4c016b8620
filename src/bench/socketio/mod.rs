//! Socket.IO (spec 003, "channels") as `tidings bench socketio` drives it:
//! WebSocket-only Engine.IO v4 / Socket.IO v5 clients joined to one
//! channel's posts room, posts made over HTTP, on Tidings or on the Node.js
//! socket.io reference (`scripts/socketio-reference.cjs`), the same wire for
//! both.
//!
//! * [`args`]: the command line; [`api`]: each server's set-up calls and
//!   the clients' logins.
//! * [`packet`]: Engine.IO / Socket.IO text packets; [`conn`]: one client
//!   session over the bench's WebSocket framing.
//! * [`post`]: the stamp a post's text carries and how events are read back.
//! * [`client`]: one client's life (join, receive, drop, rejoin, sync) and
//!   its exact accounting; [`fleet`]: all clients of a run.
//! * [`publisher`]: the paced posts.

pub mod api;
pub mod args;
pub mod client;
pub mod conn;
pub mod fleet;
pub mod packet;
pub mod post;
pub mod publisher;
