//! Tidings: durable real-time streams in one executable.
//!
//! Module map, by layer; dependencies point down (a layer uses those below
//! it, never those above):
//!
//! * [`app`]: wires the layers together, lists the modules, runs the server
//!   until a signal stops it and drains it.
//! * [`cli`], [`config`], [`settings_file`]: `tidings token / keys /
//!   tenants`; command line, environment and settings file → validated
//!   settings of each layer.
//! * [`cluster`]: running more than one node: the writer's replication
//!   outbox and publisher, edges that replicate the writer's store from a
//!   NATS JetStream stream.
//! * [`bench`]: `tidings bench`, the load generator (a separate process from
//!   the server; it shares no code path with it).
//! * [`ops`]: `/healthz`, `/readyz`, `/metrics`, `/api/v1/time`; background
//!   retention ([`ops::pruner`]); log output ([`ops::logging`]).
//! * [`modules`]: the product surfaces (topics, discussions, admin), the
//!   [`modules::platform`] they plug into, and [`modules::idempotency`].
//!   Modules never import hyper or a WebSocket crate.
//! * [`transport`]: how subscriptions reach clients: SSE, the WebSocket
//!   session runner, write pacing, webhooks from the durable outbox.
//! * [`http`]: the server (accept, TLS, HTTP/1.1 + HTTP/2, admission, drain),
//!   CORS, the router, request and response types.
//! * [`auth`]: tenants, API keys, JWT realms, tickets, allowed origins,
//!   per-user limits: who makes a request and what it may do.
//! * [`core`]: the event core: [`core::store`], [`core::log`],
//!   [`core::writer`], [`core::hub`], plus [`core::lifecycle`],
//!   [`core::metrics`], [`core::datadir`] and [`core::clock`].
//! * [`error`], [`field_limits`], [`secret`]: the one error envelope, length
//!   limits of stored strings, random secrets (used by every layer).
//! * `test_routes` (debug builds, `--enable-test-routes`): routes only the
//!   integration tests use.

#![warn(missing_docs)]

pub mod app;
pub mod auth;
pub mod bench;
pub mod cli;
pub mod cluster;
pub mod config;
pub(crate) mod core;
pub mod error;
pub(crate) mod field_limits;
pub(crate) mod http;
pub(crate) mod modules;
pub mod ops;
pub(crate) mod secret;
pub mod settings_file;
#[cfg(debug_assertions)]
pub mod test_routes;
pub(crate) mod transport;
