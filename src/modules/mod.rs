//! Product surfaces built on the core (store, writer, log, hub, transports, auth).
//!
//! * [`topics`]: the generic topics API, the core's own public surface.
//! * [`discussions`]: spec 000, article discussions streamed over SSE.
//! * [`chat`]: spec 002, chat rooms, members, messages, threads and receipts.
//! * [`channels`]: spec 003, channel posts and discussions for Socket.IO clients.
//! * [`tickets`]: spec 004, a ticketing core with notification inboxes,
//!   SLA timers and the notification and list-update SSE streams.
//! * [`admin`]: `/admin/v1`, tenants, API keys, JWT realms and live stats.
//! * [`idempotency`]: idempotency keys: a retried write replays its first
//!   reply (every creating write of a module goes through it).
//! * [`records`]: stored-record encoding and the validation errors modules share.
//! * [`rest`]: path, query and body helpers every module's REST handlers share.
//! * [`shared_counts`]: per-node counters (live viewers) summed over a
//!   cluster's nodes.
//! * [`platform`]: the [`platform::Module`] interface every module
//!   implements, the context it is built from, and the startup checks.
//! * `sample` (debug builds, `--enable-test-routes`): a minimal module that
//!   proves a new namespace's events reach webhooks with no module code.
//!
//! Modules never import hyper or a WebSocket crate; they use the
//! `http::Request`/`Response` helpers. `app.rs` lists the modules.

pub mod admin;
pub mod channels;
pub mod chat;
pub mod discussions;
pub mod idempotency;
pub mod live;
pub mod platform;
pub mod records;
pub mod rest;
#[cfg(debug_assertions)]
pub mod sample;
pub mod shared_counts;
pub mod tickets;
pub mod topics;
