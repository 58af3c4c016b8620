//! The HTTP layer: the server (accept, TLS, HTTP/1.1 and HTTP/2, drain), CORS
//! for browser-facing routes ([`cors`]), the router, and the request and
//! response types handlers use.
//!
//! Handlers see only [`Request`], [`Body`] and the helpers in [`response`]; no
//! module outside `http/` and `transport/` imports hyper.

pub mod admission;
pub mod cors;
pub mod first_bytes;
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

/// The response body type of every handler: fixed bytes or a stream.
pub type Body = BoxBody<Bytes, Infallible>;

/// A response as handlers build it.
pub type Response = http::Response<Body>;

pub use request::Request;
