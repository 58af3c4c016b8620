//! Product surfaces built on the core (store, writer, log, hub, transports, auth).
//!
//! * [`topics`]: the generic topics API, the core's own public surface.
//! * [`discussions`]: spec 000, article discussions streamed over SSE.
//! * [`admin`]: `/admin/v1`, tenants, API keys, JWT realms and live stats.
//!
//! Modules never import hyper; they use `http::Request`/`Response` helpers.

pub mod admin;
pub mod discussions;
pub mod topics;
