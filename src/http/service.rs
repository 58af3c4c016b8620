//! The per-request pipeline: request id, routing, the handler (with panics
//! caught), the error envelope, metrics, and one access-log line.
//!
//! Invariants: every response carries `x-request-id`; every failure is the
//! error envelope; a panicking handler yields a 500 and the connection and
//! server keep serving; query strings are never logged (they may carry tickets);
//! a connection on a probe slot (see [`super::admission`]) is served only
//! [`PROBE_PATHS`], anything else gets 503 with `Retry-After`; with CORS
//! on ([`HttpService::with_cors`]), every browser-facing request goes
//! through [`Cors`] (preflights answered there, headers added to every
//! response, handlers unaware of it); with forwarding on
//! ([`HttpService::with_forwarding`]), the requests the hook claims go
//! whole to it, before routing and CORS (see [`super::forward`]); on a
//! cluster writer every response carries `Tidings-Batch`
//! ([`HttpService::with_batch_header`]).

use super::cors::{Cors, PageRequest};
use super::forward::Forward;
use super::router::{Lookup, Router};
use super::{Request, Response, response};
use crate::core::metrics::Metrics;
use crate::error::ApiError;
use crate::http::HttpLimits;
use futures_util::FutureExt;
use http::{HeaderValue, StatusCode, header};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Header carrying the request id, both directions.
const REQUEST_ID: &str = "x-request-id";
/// Header carrying a cluster writer's last durable batch number.
const BATCH_HEADER: &str = crate::cluster::record::BATCH_HEADER;
/// Longest client-supplied request id we keep.
const MAX_CLIENT_REQUEST_ID: usize = 128;
/// Metrics label for requests that matched no route.
const UNMATCHED: &str = "unmatched";
/// Metrics label for requests sent whole to another node.
const FORWARDED: &str = "forwarded";
/// Metrics label for requests refused because the server is at its connection limit.
const AT_CONNECTION_LIMIT: &str = "connection-limit";
/// The routes a connection beyond `--max-connections` is served.
pub const PROBE_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];
/// `Retry-After` of a request refused at the connection limit.
const AT_LIMIT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Where a request came from, for logs.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// Remote address.
    pub addr: SocketAddr,
    /// `http1` or `h2`.
    pub protocol: &'static str,
    /// The connection holds a probe slot: only [`PROBE_PATHS`] are served.
    pub probe_only: bool,
}

/// Routes requests and records what happened to them.
pub struct HttpService {
    router: Router,
    metrics: Arc<Metrics>,
    limits: HttpLimits,
    ids: RequestIds,
    cors: Option<Cors>,
    forward: Option<Arc<dyn Forward>>,
    /// A cluster writer's last durable batch number, sent on every response.
    batch: Option<Arc<AtomicU64>>,
}

impl HttpService {
    /// A service over `router`.
    pub fn new(router: Router, metrics: Arc<Metrics>, limits: HttpLimits) -> Self {
        Self {
            router,
            metrics,
            limits,
            ids: RequestIds::new(),
            cors: None,
            forward: None,
            batch: None,
        }
    }

    /// The same service sending the requests `forward` claims to it.
    pub fn with_forwarding(mut self, forward: Arc<dyn Forward>) -> Self {
        self.forward = Some(forward);
        self
    }

    /// The same service adding `Tidings-Batch: <number>` to every response:
    /// a cluster writer's last durable batch number, read once the handler
    /// ran (so it covers the request's own write).
    pub fn with_batch_header(mut self, batch: Arc<AtomicU64>) -> Self {
        self.batch = Some(batch);
        self
    }

    /// The same service with CORS on browser-facing routes.
    pub fn with_cors(mut self, cors: Cors) -> Self {
        self.cors = Some(cors);
        self
    }

    /// Handles one request end to end; never fails.
    pub async fn handle(&self, request: http::Request<Incoming>, peer: Peer) -> Response {
        let (head, body) = request.into_parts();
        self.handle_parts(head, Some(body), peer).await
    }

    /// Handles a request given as its head and its body (`None`: it has none).
    pub async fn handle_parts(
        &self,
        mut head: http::request::Parts,
        body: Option<Incoming>,
        peer: Peer,
    ) -> Response {
        let started = Instant::now();
        let request_id = self.ids.for_request(&head.headers);
        let method = head.method.clone();
        let path = head.uri.path().to_string();
        head.extensions.insert(peer);
        let (route, mut response) = if peer.probe_only && !PROBE_PATHS.contains(&path.as_str()) {
            (AT_CONNECTION_LIMIT, at_connection_limit())
        } else if let Some(forward) = self.forward.as_ref().filter(|f| f.forwards(&head)) {
            let request = Request::new(head, body, Vec::new(), self.limits, request_id.clone());
            let answer = forward.forward(request).await;
            (
                FORWARDED,
                answer.unwrap_or_else(|err| response::error(&err)),
            )
        } else {
            self.route(head, body, request_id.clone()).await
        };
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert(REQUEST_ID, value);
        }
        if let Some(batch) = &self.batch {
            let number = batch.load(Ordering::Acquire);
            response
                .headers_mut()
                .insert(BATCH_HEADER, HeaderValue::from(number));
        }
        let elapsed = started.elapsed();
        let status = response.status().as_u16();
        self.metrics
            .observe_request(route, method.as_str(), status, elapsed);
        if response
            .headers()
            .contains_key(super::response::REPLAYED_HEADER)
        {
            self.metrics.idempotent_replay();
        }
        if !self.limits.access_log.logs(status) {
            return response;
        }
        tracing::info!(
            target: "tidings::access",
            request_id = %request_id,
            peer = %peer.addr,
            protocol = peer.protocol,
            method = %method,
            path = %path,
            route,
            status,
            micros = elapsed.as_micros() as u64,
        );
        response
    }

    /// Routes a request this node answers itself, with CORS around it.
    async fn route(
        &self,
        mut head: http::request::Parts,
        body: Option<Incoming>,
        request_id: Arc<str>,
    ) -> (&'static str, Response) {
        let path = head.uri.path().to_string();
        let page = self.cors.as_ref().and_then(|cors| cors.inspect(&mut head));
        let (route, mut response) = match self.preflight(page.as_ref(), &path) {
            Some(answer) => answer,
            None => self.dispatch(head, body, request_id).await,
        };
        if let Some(cors) = &self.cors {
            cors.finish(&path, page.as_ref(), &mut response);
        }
        (route, response)
    }

    /// The answer to a CORS preflight of a known route; `None` for any
    /// other request.
    fn preflight(
        &self,
        page: Option<&PageRequest>,
        path: &str,
    ) -> Option<(&'static str, Response)> {
        let (cors, page) = (self.cors.as_ref()?, page?);
        if !page.is_preflight() {
            return None;
        }
        let (pattern, methods) = self.router.methods(path)?;
        Some((pattern, cors.preflight(page, &methods)))
    }

    async fn dispatch(
        &self,
        head: http::request::Parts,
        body: Option<Incoming>,
        request_id: Arc<str>,
    ) -> (&'static str, Response) {
        match self.router.lookup(&head.method, head.uri.path()) {
            Lookup::Found {
                handler,
                pattern,
                params,
            } => {
                let request = Request::new(head, body, params, self.limits, request_id.clone());
                let outcome = AssertUnwindSafe(handler(request)).catch_unwind().await;
                let response = match outcome {
                    Ok(Ok(response)) => response,
                    Ok(Err(err)) => response::error(&err),
                    Err(panic) => {
                        tracing::error!(
                            request_id = %request_id,
                            route = pattern,
                            panic = panic_message(&panic),
                            "handler panicked"
                        );
                        response::error(&ApiError::internal(format!(
                            "internal error; quote request id {request_id} when reporting it"
                        )))
                    }
                };
                (pattern, response)
            }
            Lookup::MethodNotAllowed { pattern, allow } => {
                let message = format!("{} is not allowed here; use {allow}", head.method);
                let mut err =
                    ApiError::validation(message).with_status(StatusCode::METHOD_NOT_ALLOWED);
                if let Ok(value) = HeaderValue::from_str(&allow) {
                    err = err.with_header(header::ALLOW, value);
                }
                (pattern, response::error(&err))
            }
            Lookup::NotFound => {
                let err = ApiError::not_found(format!("no such path: {}", head.uri.path()));
                (UNMATCHED, response::error(&err))
            }
        }
    }
}

/// 503 for a request on a probe slot that is not a probe.
fn at_connection_limit() -> Response {
    let err = ApiError::unavailable_for(
        "the server is at its connection limit (--max-connections); retry shortly",
        AT_LIMIT_RETRY_AFTER,
    );
    response::error(&err)
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|text| text.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-text panic payload".into())
}

/// Issues request ids: a client's sane `x-request-id`, or `<process prefix>-<counter>`.
struct RequestIds {
    prefix: String,
    next: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        let mut seed = [0u8; 4];
        // A failed random source only makes ids less unique across restarts.
        let _ = getrandom::fill(&mut seed);
        Self {
            prefix: format!("{:08x}", u32::from_be_bytes(seed)),
            next: AtomicU64::new(1),
        }
    }

    fn for_request(&self, headers: &http::HeaderMap) -> Arc<str> {
        let supplied = headers
            .get(REQUEST_ID)
            .and_then(|value| value.to_str().ok())
            .filter(|id| is_acceptable_request_id(id));
        match supplied {
            Some(id) => Arc::from(id),
            None => {
                let number = self.next.fetch_add(1, Ordering::Relaxed);
                Arc::from(format!("{}-{number:x}", self.prefix).as_str())
            }
        }
    }
}

fn is_acceptable_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_CLIENT_REQUEST_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_unique_and_client_ids_are_sanitised() {
        let ids = RequestIds::new();
        let empty = http::HeaderMap::new();
        assert_ne!(ids.for_request(&empty), ids.for_request(&empty));
        let mut headers = http::HeaderMap::new();
        headers.insert(REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(&*ids.for_request(&headers), "abc-123");
        headers.insert(REQUEST_ID, HeaderValue::from_static("bad id with spaces"));
        assert_ne!(&*ids.for_request(&headers), "bad id with spaces");
    }
}
