//! Tidings: durable real-time streams in one executable.
//!
//! Module map (dependencies point down the list):
//!
//! * [`app`]: wires everything and runs the server until a signal stops it.
//! * [`cli`]: `tidings token`, `tidings keys`, `tidings tenants`.
//! * [`bench`]: `tidings bench`, the load generator (a separate process from the server).
//! * [`ops`]: `/healthz`, `/readyz`, `/metrics`, `/api/v1/time`.
//! * [`http`]: server (accept, TLS, HTTP/1.1 + HTTP/2, drain), router, request and response types.
//! * [`idempotency`]: idempotency keys: a retried write replays its first reply.
//! * [`store`]: the embedded database (sled) behind our own API.
//! * [`metrics`]: the Prometheus registry.
//! * [`lifecycle`]: ready → draining → stopping, shared by server and streams.
//! * [`datadir`]: data directory layout, exclusive lock and the config file with secrets.
//! * [`config`]: command line and environment → validated settings.
//! * [`secret`]: random secrets.
//! * [`error`]: error types and the one mapping of API errors to HTTP.
//! * [`field_limits`]: length limits of stored strings and their error.
//! * [`logging`]: log output.

#![warn(missing_docs)]

pub mod app;
pub mod auth;
pub mod bench;
pub mod cli;
pub mod clock;
pub mod config;
pub mod datadir;
pub mod error;
pub mod field_limits;
pub mod http;
pub mod hub;
pub mod idempotency;
pub mod lifecycle;
pub mod log;
pub mod logging;
pub mod metrics;
pub mod modules;
pub mod ops;
pub mod pruner;
pub mod secret;
pub mod store;
#[cfg(debug_assertions)]
pub mod test_routes;
pub mod transport;
pub mod writer;
