//! Product surfaces built on the core (store, writer, log, hub, transports, auth).
//!
//! * [`topics`]: the generic topics API, the core's own public surface.
//!
//! Modules never import hyper; they use `http::Request`/`Response` helpers.

pub mod topics;
