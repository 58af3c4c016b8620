//! The integration suite: every test starts the real `tidings` executable
//! (see [`harness`]) and talks to it as a client would.

mod clients;
mod eventsource;
mod harness;

mod auth;
mod bench;
mod claims;
mod cli;
mod conformance;
mod discussions;
mod durability;
mod errors;
mod full_disk;
mod hostile;
mod idempotency;
mod lean;
mod ops;
mod protocols;
mod resume;
mod revocation;
mod shutdown;
mod slow;
mod streams;
mod tickets;
mod tls_streams;
mod topics;
mod webhooks;
mod writer;
