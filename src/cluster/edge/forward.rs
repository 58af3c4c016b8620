//! Forwarding: an edge sends every request that may write, and every admin
//! request, to the writer and answers with the writer's response, once its
//! replica holds what that response reported.
//!
//! * Forwarded: every method but GET, HEAD and OPTIONS, and every path under
//!   `/admin/`; except Engine.IO requests (a `EIO` query parameter), whose
//!   session lives on this edge (a long-polling client POSTs its packets).
//! * The request goes with its method, path, query, headers (hop-by-hop
//!   ones dropped, `Host` kept as the client sent it since it may name the
//!   tenant, `X-Forwarded-For` extended with the client's address,
//!   `X-Request-Id` set to this request's id) and body (read under
//!   `--max-body` and `--body-timeout`, as for a handler).
//! * Read-your-writes: the writer stamps each response with the number of
//!   its last durable batch (`Tidings-Batch`); the edge answers only once
//!   its replica has applied that batch, waiting at most
//!   [`Forwarder::REPLICA_WAIT`], after which it answers anyway with
//!   `Tidings-Replica-Lag: true`. A client that wrote through an edge
//!   therefore reads its write back from that edge.
//! * A writer that cannot be reached (or sends no response head within
//!   [`FORWARD_TIMEOUT`]) is 503 `SERVICE_UNAVAILABLE` with `Retry-After`;
//!   the response body is relayed as it arrives (a failure mid-body ends
//!   it early, as a cut connection would).
//! * Writes made on the edge outside a forwarded request (a WebSocket
//!   publish) go the same way as the equivalent HTTP request
//!   ([`WriterLink`]): sent with the edge's `--writer-key`, naming the
//!   principal's tenant and, for an API key, the key
//!   ([`crate::auth::ACTING_KEY_HEADER`]); the writer authenticates that
//!   key again (a revoked key is refused there). Only the instance admin
//!   key and API keys act this way: a JWT or ticket principal is refused
//!   (403), never sent as the admin. A module's internal endpoint (the chat
//!   user id a stream needs) is called as the edge itself
//!   ([`WriterLink::post_as_node`]).

use super::leases::refusal;
use super::replica::Replica;
use super::settings::WriterKey;
use super::writer_client::WriterClient;
use crate::auth::{ACTING_KEY_HEADER, API_KEY_HEADER, Credential, Principal, TENANT_HEADER};
use crate::cluster::record::BATCH_HEADER;
use crate::error::ApiError;
use crate::error::ErrorCode;
use crate::http::forward::{Forward, Forwarded};
use crate::http::service::Peer;
use crate::http::{Request, Response};
use crate::modules::platform::{LinkAnswer, WriterLink};
use bytes::Bytes;
use http::Method;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

/// Longest wait for the writer's response head.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);
/// Header set on a forwarded answer given before the replica caught up.
pub const REPLICA_LAG_HEADER: &str = "tidings-replica-lag";
/// Largest writer answer read for a [`WriterLink`] write.
const MAX_ACT_ANSWER_BYTES: usize = 4 << 20;
/// `Retry-After` of a 503 for an unreachable writer.
const UNREACHABLE_RETRY: Duration = Duration::from_secs(1);

/// Headers that concern one connection, never forwarded either way.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// The edge's forwarding hook.
pub struct Forwarder {
    writer: WriterClient,
    key: WriterKey,
    replica: Arc<Replica>,
    reachable: Arc<AtomicBool>,
}

impl Forwarder {
    /// Longest wait for the replica to hold a forwarded write.
    pub const REPLICA_WAIT: Duration = Duration::from_secs(2);

    /// Forwards to `writer`, waits on `replica`, records in `reachable`
    /// whether the writer answered.
    /// [`WriterLink`] writes are sent with `key`.
    pub fn new(
        writer: WriterClient,
        key: WriterKey,
        replica: Arc<Replica>,
        reachable: Arc<AtomicBool>,
    ) -> Self {
        Self {
            writer,
            key,
            replica,
            reachable,
        }
    }

    async fn send(&self, mut request: Request) -> Result<Response, ApiError> {
        let body = request.body_bytes().await?;
        let outbound = self.outbound(&request, body)?;
        let (response, lagging) = self.exchange(outbound).await?;
        Ok(relay(response, lagging))
    }

    /// Sends `outbound` to the writer; its response, and whether the
    /// replica still lacked the response's batch after [`Self::REPLICA_WAIT`].
    async fn exchange(
        &self,
        outbound: http::Request<Full<Bytes>>,
    ) -> Result<(http::Response<Incoming>, bool), ApiError> {
        let sent = tokio::time::timeout(FORWARD_TIMEOUT, self.writer.http.request(outbound)).await;
        let response = match sent {
            Ok(Ok(response)) => response,
            Ok(Err(err)) => return Err(self.unreachable(&err.to_string())),
            Err(_) => return Err(self.unreachable("no answer within 30s")),
        };
        self.reachable.store(true, Ordering::Relaxed);
        let lagging = match batch_of(response.headers()) {
            Some(batch) => !self.replica_holds(batch).await,
            None => false,
        };
        Ok((response, lagging))
    }

    /// A write of `principal` as the equivalent request to the writer.
    async fn act(
        &self,
        principal: &Principal,
        method: Method,
        path: String,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<http::Response<Bytes>, ApiError> {
        let acting = match &principal.credential {
            Credential::Admin => None,
            Credential::Key(key) => Some(key.hash.clone()),
            Credential::Token(_) | Credential::Ticket(_) => {
                return Err(ApiError::new(
                    ErrorCode::Forbidden,
                    "only API keys and the admin key write this way",
                ));
            }
        };
        let call = Call {
            tenant: principal.tenant,
            acting,
            method,
            path,
        };
        self.call(call, headers, body).await
    }

    /// Sends `call` with the edge's key; the writer's `data`, once the
    /// replica holds the batch it reported (up to [`Self::REPLICA_WAIT`]).
    async fn call(
        &self,
        call: Call,
        mut headers: HeaderMap,
        body: Bytes,
    ) -> Result<http::Response<Bytes>, ApiError> {
        let Call {
            tenant,
            acting,
            method,
            path,
        } = call;
        let uri =
            self.writer.address.uri(&path).map_err(|err| {
                ApiError::internal(format!("sending {path} to the writer: {err}"))
            })?;
        let value = |text: &str| {
            HeaderValue::from_str(text).map_err(|err| ApiError::internal(err.to_string()))
        };
        headers.insert(
            HeaderName::from_static(API_KEY_HEADER),
            value(self.key.expose())?,
        );
        headers.insert(
            HeaderName::from_static(TENANT_HEADER),
            value(&tenant.to_string())?,
        );
        if let Some(hash) = acting {
            headers.insert(HeaderName::from_static(ACTING_KEY_HEADER), value(&hash)?);
        }
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let mut outbound = http::Request::new(Full::new(body));
        *outbound.method_mut() = method;
        *outbound.uri_mut() = uri;
        *outbound.headers_mut() = headers;
        let (response, _lagging) = self.exchange(outbound).await?;
        let (parts, body) = response.into_parts();
        let limited = http_body_util::Limited::new(body, MAX_ACT_ANSWER_BYTES);
        let bytes = limited
            .collect()
            .await
            .map_err(|err| self.unreachable(&format!("its answer broke off: {err}")))?
            .to_bytes();
        if !parts.status.is_success() {
            return Err(refusal(parts.status, &parts.headers, &bytes));
        }
        let data =
            data_of(&bytes).ok_or_else(|| ApiError::internal("the writer's answer has no data"))?;
        Ok(http::Response::from_parts(parts, data))
    }

    /// The request as it goes to the writer.
    fn outbound(
        &self,
        request: &Request,
        body: Bytes,
    ) -> Result<http::Request<Full<Bytes>>, ApiError> {
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", |path| path.as_str());
        let uri = self
            .writer
            .address
            .uri(path)
            .map_err(|err| ApiError::internal(format!("forwarding {path}: {err}")))?;
        let mut headers = request.headers().clone();
        strip_hop_by_hop(&mut headers);
        headers.remove(header::CONTENT_LENGTH);
        // The client's host stays (it may name the tenant, `--base-domain`);
        // an HTTP/2 request carries it as its authority.
        if !headers.contains_key(header::HOST) {
            let authority = request.uri().authority().map(|a| a.as_str());
            let host = authority.unwrap_or(self.writer.address.authority().as_str());
            if let Ok(host) = HeaderValue::from_str(host) {
                headers.insert(header::HOST, host);
            }
        }
        if let Ok(id) = HeaderValue::from_str(request.request_id()) {
            headers.insert(HeaderName::from_static("x-request-id"), id);
        }
        if let Some(peer) = request.extensions().get::<Peer>() {
            forwarded_for(&mut headers, peer.addr.ip());
        }
        let mut outbound = http::Request::new(Full::new(body));
        *outbound.method_mut() = request.method().clone();
        *outbound.uri_mut() = uri;
        *outbound.headers_mut() = headers;
        Ok(outbound)
    }

    /// Waits until the replica holds `batch`; false when it did not
    /// within [`Self::REPLICA_WAIT`].
    async fn replica_holds(&self, batch: u64) -> bool {
        let mut applied = self.replica.watch_applied();
        let reached = applied.wait_for(|applied| *applied >= batch);
        matches!(
            tokio::time::timeout(Self::REPLICA_WAIT, reached).await,
            Ok(Ok(_))
        )
    }

    fn unreachable(&self, reason: &str) -> ApiError {
        self.reachable.store(false, Ordering::Relaxed);
        tracing::warn!(writer = %self.writer.address, reason, "a forwarded request did not reach the writer");
        ApiError::unavailable_for(
            format!(
                "this edge forwards writes to the writer at {}, which did not answer ({reason}); retry shortly",
                self.writer.address
            ),
            UNREACHABLE_RETRY,
        )
    }
}

/// A request the edge sends to the writer with its own key.
struct Call {
    /// The tenant it acts on.
    tenant: uuid::Uuid,
    /// The hash of the API key it acts as, if any (else the admin).
    acting: Option<String>,
    method: Method,
    path: String,
}

impl WriterLink for Forwarder {
    fn post_as_node(&self, tenant: uuid::Uuid, path: String, body: Bytes) -> LinkAnswer<'_> {
        let call = Call {
            tenant,
            acting: None,
            method: Method::POST,
            path,
        };
        Box::pin(self.call(call, HeaderMap::new(), body))
    }

    fn send<'a>(
        &'a self,
        principal: &'a Principal,
        method: Method,
        path: String,
        headers: HeaderMap,
        body: Bytes,
    ) -> LinkAnswer<'a> {
        Box::pin(self.act(principal, method, path, headers, body))
    }
}

impl Forward for Forwarder {
    fn forwards(&self, head: &http::request::Parts) -> bool {
        let writes = !matches!(head.method, Method::GET | Method::HEAD | Method::OPTIONS);
        let admin = head.uri.path().starts_with("/admin/");
        (writes || admin) && !is_engine_io(head.uri.query())
    }

    fn forward(&self, request: Request) -> Forwarded<'_> {
        Box::pin(self.send(request))
    }
}

/// The JSON of `data` in a `{"data": …}` answer.
fn data_of(body: &[u8]) -> Option<Bytes> {
    let mut answer: serde_json::Value = serde_json::from_slice(body).ok()?;
    let data = answer.get_mut("data")?.take();
    serde_json::to_vec(&data).ok().map(Bytes::from)
}

/// Whether a query names an Engine.IO session request (`EIO=`).
fn is_engine_io(query: Option<&str>) -> bool {
    query.is_some_and(|query| form_urlencoded::parse(query.as_bytes()).any(|(key, _)| key == "EIO"))
}

/// The batch number a writer's response reports.
fn batch_of(headers: &HeaderMap) -> Option<u64> {
    headers.get(BATCH_HEADER)?.to_str().ok()?.parse().ok()
}

/// Removes the hop-by-hop headers, and those the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(&named) {
        headers.remove(name);
    }
}

/// Appends `client` to `X-Forwarded-For`.
fn forwarded_for(headers: &mut HeaderMap, client: std::net::IpAddr) {
    let name = HeaderName::from_static("x-forwarded-for");
    let value = match headers.get(&name).and_then(|value| value.to_str().ok()) {
        Some(earlier) => format!("{earlier}, {client}"),
        None => client.to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(name, value);
    }
}

/// The writer's response as this edge's answer.
fn relay(response: http::Response<Incoming>, lagging: bool) -> Response {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    if lagging {
        parts.headers.insert(
            HeaderName::from_static(REPLICA_LAG_HEADER),
            HeaderValue::from_static("true"),
        );
    }
    Response::from_parts(parts, Relayed(body).boxed())
}

/// A response body relayed from the writer: a failure while reading it
/// ends it (the client sees a cut body, as from a cut connection).
struct Relayed(Incoming);

impl Body for Relayed {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match Pin::new(&mut self.0).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(Some(Err(err))) => {
                tracing::warn!(error = %err, "the writer's response body broke off");
                Poll::Ready(None)
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

/// Checks every `period` whether the writer answers `/healthz`, into
/// `reachable`, until `stopping` resolves.
pub async fn watch_writer(
    writer: WriterClient,
    reachable: Arc<AtomicBool>,
    period: Duration,
    stopping: impl std::future::Future<Output = ()>,
) {
    let mut stopping = std::pin::pin!(stopping);
    loop {
        reachable.store(answers(&writer, period).await, Ordering::Relaxed);
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            () = &mut stopping => return,
        }
    }
}

/// Whether the writer answers `/healthz` (with any status) within `within`.
async fn answers(writer: &WriterClient, within: Duration) -> bool {
    let Ok(uri) = writer.address.uri("/healthz") else {
        return false;
    };
    let Ok(request) = http::Request::get(uri).body(Full::default()) else {
        return false;
    };
    matches!(
        tokio::time::timeout(within, writer.http.request(request)).await,
        Ok(Ok(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_stay_behind() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        headers.insert("x-secret-hop", HeaderValue::from_static("1"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert("x-api-key", HeaderValue::from_static("ek_1"));
        strip_hop_by_hop(&mut headers);
        let left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["x-api-key"]);
        forwarded_for(&mut headers, "10.0.0.1".parse().unwrap());
        forwarded_for(&mut headers, "10.0.0.2".parse().unwrap());
        assert_eq!(headers["x-forwarded-for"], "10.0.0.1, 10.0.0.2");
    }

    #[test]
    fn engine_io_requests_stay_on_the_edge() {
        assert!(is_engine_io(Some("EIO=4&transport=polling&sid=abc")));
        assert!(!is_engine_io(Some("eio=4")));
        assert!(!is_engine_io(None));
    }
}
