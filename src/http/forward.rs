//! The forwarding hook: requests this node does not answer itself go
//! elsewhere whole, decided before routing (an edge sends writes and admin
//! requests to the writer; see `cluster::edge::forward`). Handlers and
//! modules never see a forwarded request.
//!
//! Invariants: a forwarded request skips routing and this node's CORS (the
//! node that answers it applies its own); its body is read under the same
//! limits as a handler's ([`Request::body_bytes`]); whatever the hook
//! answers, even an error, is the response.

use super::{Request, Response};
use crate::error::ApiError;
use std::future::Future;
use std::pin::Pin;

/// The answer of a forwarded request.
pub type Forwarded<'a> = Pin<Box<dyn Future<Output = Result<Response, ApiError>> + Send + 'a>>;

/// Where requests this node does not serve itself go.
pub trait Forward: Send + Sync + 'static {
    /// Whether the request with this head is forwarded.
    fn forwards(&self, head: &http::request::Parts) -> bool;

    /// Sends the request on and answers with what came back.
    fn forward(&self, request: Request) -> Forwarded<'_>;
}
