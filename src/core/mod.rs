//! The event core every surface stands on; it depends on nothing above it
//! (not auth, http, transports or modules).
//!
//! * [`store`]: the embedded database (sled) behind our own API: one tree,
//!   key prefixes claimed by their owners, a handle that closes and reopens
//!   on failure.
//! * [`log`]: events, topics and their namespaces, ids, reads with explicit
//!   gaps, retention policy, and the per-event cache of wire encodings.
//! * [`writer`]: the one commit pipeline: every change, durable timers and
//!   periodic commits; acknowledged means durable.
//! * [`hub`]: in-memory fan-out per topic behind the `FanOut` boundary, with
//!   replay from the log.
//! * [`lifecycle`]: ready → draining → stopping, shared by server and streams.
//! * [`metrics`]: the Prometheus registry every layer records into.
//! * [`datadir`]: data directory layout, exclusive lock and the config file
//!   with secrets.
//! * [`clock`]: wall-clock helpers (unix time, RFC 3339, deadlines).
//!
//! Invariants (detailed in each module and ARCHITECTURE.md): events are
//! published only after they are durable, in id order per topic; a
//! subscriber resumes from any position with no gap and no duplicate, or is
//! told of the gap; no key belongs to two owners.

pub mod clock;
pub mod datadir;
pub mod hub;
pub mod lifecycle;
pub mod log;
pub mod metrics;
pub mod store;
pub mod writer;
