//! The HTTP layer: the server (accept, TLS, HTTP/1.1 and HTTP/2, drain), CORS
//! for browser-facing routes ([`cors`]), the router, and the request and
//! response types handlers use.
//!
//! Handlers see only [`Request`], [`Body`] and the helpers in [`response`]; no
//! module outside `http/` and `transport/` imports hyper.

pub mod admission;
pub mod cors;
pub mod first_bytes;
pub mod forward;
pub mod h2_streams;
pub mod io;
pub mod lean;
pub mod request;
pub mod response;
pub mod router;
pub mod server;
pub mod service;
pub mod tls;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use std::convert::Infallible;
use std::time::Duration;

/// The response body type of every handler: fixed bytes or a stream.
pub type Body = BoxBody<Bytes, Infallible>;

/// A response as handlers build it.
pub type Response = http::Response<Body>;

pub use request::Request;

/// Limits the HTTP layer enforces on every request and connection.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Largest request body in bytes.
    pub max_body_bytes: u64,
    /// Deadline for the request head.
    pub header_timeout: Duration,
    /// Deadline for the request body.
    pub body_timeout: Duration,
    /// Deadline for a blocked write to make progress.
    pub write_timeout: Duration,
    /// Most open connections.
    pub max_connections: usize,
    /// Connections accepted beyond `max_connections` for health probes only.
    pub probe_connections: usize,
    /// Most open connections per client address (0: no cap).
    pub max_connections_per_ip: usize,
    /// Whether the per-address cap applies to loopback addresses.
    pub per_ip_limit_loopback: bool,
    /// Largest request head in bytes.
    pub max_head_bytes: usize,
    /// How long an HTTP/2 connection may stay without an open stream.
    pub idle_timeout: Duration,
    /// Streams one HTTP/2 connection may have open at once.
    pub h2_max_streams: u32,
    /// Which requests write an access-log line.
    pub access_log: AccessLog,
}

/// Which requests write an access-log line (`--access-log`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AccessLog {
    /// Every request.
    All,
    /// Requests answered with a status of 400 or more.
    Errors,
    /// None (the metrics still count every request).
    Off,
}

impl AccessLog {
    /// True when a request answered with `status` is logged.
    pub fn logs(self, status: u16) -> bool {
        match self {
            AccessLog::All => true,
            AccessLog::Errors => status >= 400,
            AccessLog::Off => false,
        }
    }
}
