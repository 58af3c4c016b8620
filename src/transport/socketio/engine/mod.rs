//! Engine.IO v4: sessions over HTTP long-polling and WebSocket, with the
//! upgrade between them, heartbeat and the packet codec, for an
//! [`Application`] that gives each session its meaning (Socket.IO, or the
//! raw echo of the conformance tests).
//!
//! * [`packet`]: packets and the polling payload codec.
//! * [`registry`]: sid → long-polling session, and the session bound.
//! * [`polling`]: the long-polling queue and its GET/POST requests.
//! * [`upgrade`]: the probe that moves a session to WebSocket.
//! * [`session`]: the one task per session (transport, heartbeat, application).
//!
//! Requests are answered as Node's `engine.io` does: 400 with
//! `{"code","message"}` (0 unknown transport, 1 unknown sid, 2 bad handshake
//! method, 3 bad request, 5 unsupported protocol version); over
//! `--sio-max-sessions` a handshake gets 503.
//!
//! Invariants: every session holds a slot of the registry from its
//! handshake to the end of its task, and runs as a lifecycle session
//! (shutdown waits for it and it ends with a close); a session is served by
//! exactly one task, which alone reads and writes its transport.

pub mod packet;
pub(crate) mod polling;
pub(crate) mod registry;
pub(crate) mod session;
mod upgrade;

pub use packet::{Message, Outgoing};
pub use registry::new_id;

use super::settings::{INBOUND_QUEUE, SioSettings};
use crate::core::lifecycle::Lifecycle;
use crate::core::metrics::Metrics;
use crate::error::ApiError;
use crate::http::service::Peer;
use crate::http::{Request, Response, response};
use crate::transport::ws;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use registry::Registry;
use session::{Link, Session};
use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// `Retry-After` of a handshake refused at `--sio-max-sessions`.
const FULL_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The headers of the opening request a [`Handshake`] keeps: those
/// namespaces read at CONNECT (authentication: the bearer token, the page's
/// origin, the tenant by id or host, the realm). The others are not kept, so
/// an idle session holds a few small copies, not the whole request head.
pub static HANDSHAKE_HEADERS: [HeaderName; 5] = [
    header::AUTHORIZATION,
    header::ORIGIN,
    header::HOST,
    HeaderName::from_static(crate::auth::TENANT_HEADER),
    HeaderName::from_static(crate::auth::REALM_HEADER),
];

/// What the transport knows of the connection when the session opened.
///
/// Invariant: it owns its bytes (the header values are copies), so it never
/// keeps the HTTP connection's read buffer alive, which the request's own
/// header values share.
#[derive(Debug)]
pub struct Handshake {
    headers: HeaderMap,
    // The query and peer are platform API; only the debug test routes read them yet.
    #[cfg_attr(not(debug_assertions), allow(dead_code))]
    query: Box<[(Box<str>, Box<str>)]>,
    #[cfg_attr(not(debug_assertions), allow(dead_code))]
    peer: Option<SocketAddr>,
}

impl Handshake {
    /// The handshake of `request` (the one that opened the session).
    fn of(request: &Request) -> Self {
        let query = form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes())
            .map(|(name, value)| (name.into(), value.into()))
            .collect();
        Self {
            headers: kept_headers(request.headers()),
            query,
            peer: request.extensions().get::<Peer>().map(|peer| peer.addr),
        }
    }

    /// The headers of the request that opened the session, those of
    /// [`HANDSHAKE_HEADERS`] only.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// A query parameter of that request, percent-decoded.
    #[cfg_attr(not(debug_assertions), allow(dead_code))]
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| **key == *name)
            .map(|(_, value)| &**value)
    }

    /// The client's address.
    #[cfg_attr(not(debug_assertions), allow(dead_code))]
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }
}

/// Copies of the values of `headers` named in [`HANDSHAKE_HEADERS`] (every
/// value of a repeated one, in order), in a map of just their size.
fn kept_headers(headers: &HeaderMap) -> HeaderMap {
    let copies: Vec<(&HeaderName, HeaderValue)> = HANDSHAKE_HEADERS
        .iter()
        .flat_map(|name| {
            let values = headers.get_all(name).iter();
            values.filter_map(move |value| Some((name, copy_of(value)?)))
        })
        .collect();
    let mut kept = HeaderMap::with_capacity(copies.len());
    for (name, value) in copies {
        kept.append(name.clone(), value);
    }
    kept
}

/// A header value in bytes of its own (`None` cannot happen: the bytes of a
/// header value make one).
fn copy_of(value: &HeaderValue) -> Option<HeaderValue> {
    let mut copy = HeaderValue::from_bytes(value.as_bytes()).ok()?;
    copy.set_sensitive(value.is_sensitive());
    Some(copy)
}

/// Why the application ends its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppEnd {
    /// Metrics label (`tidings_stream_ends_total`).
    pub metric: &'static str,
    /// What the client is told (the WebSocket close reason).
    pub message: Cow<'static, str>,
}

impl AppEnd {
    /// An end counted as `metric` and explained by `message`.
    pub fn new(metric: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            metric,
            message: message.into(),
        }
    }
}

/// What an endpoint serves on its sessions; one value per endpoint.
pub trait Application: Send + Sync + 'static {
    /// The state of one session.
    type Session: SessionApp;

    /// A new session opened by `handshake`.
    fn open(&self, handshake: Arc<Handshake>) -> Self::Session;
}

/// One session's application side. What it sends goes into `out`, written
/// by the session after the call returns, in order.
pub trait SessionApp: Send + 'static {
    /// Work the application waits for besides client messages (signals,
    /// deliveries, timers).
    type Work: Send;

    /// A message packet from the client.
    fn on_message(
        &mut self,
        message: Message,
        out: &mut Vec<Outgoing>,
    ) -> impl Future<Output = Result<(), AppEnd>> + Send;

    /// Waits for the next work; dropped whenever something else wins the
    /// session's loop, so it must be cancel-safe.
    fn next_work(&mut self) -> impl Future<Output = Self::Work> + Send;

    /// Does the work.
    fn on_work(
        &mut self,
        work: Self::Work,
        out: &mut Vec<Outgoing>,
    ) -> impl Future<Output = Result<(), AppEnd>> + Send;
}

/// Node's engine.io request errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EngineError {
    TransportUnknown,
    UnknownSid,
    BadHandshakeMethod,
    BadRequest,
    UnsupportedProtocolVersion,
}

/// The 400 answer to a request engine.io refuses, as Node words it.
pub(crate) fn engine_error(error: EngineError) -> Response {
    let (code, message) = match error {
        EngineError::TransportUnknown => (0, "Transport unknown"),
        EngineError::UnknownSid => (1, "Session ID unknown"),
        EngineError::BadHandshakeMethod => (2, "Bad handshake method"),
        EngineError::BadRequest => (3, "Bad request"),
        EngineError::UnsupportedProtocolVersion => (5, "Unsupported protocol version"),
    };
    let body = serde_json::json!({ "code": code, "message": message }).to_string();
    response::with_content_type(StatusCode::BAD_REQUEST, "application/json", body)
}

/// The transports a request may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Polling,
    WebSocket,
}

/// One Engine.IO endpoint: its settings, sessions and application.
pub struct EngineServer<A> {
    settings: SioSettings,
    lifecycle: Arc<Lifecycle>,
    metrics: Arc<Metrics>,
    registry: Arc<Registry>,
    app: A,
}

impl<A: Application> EngineServer<A> {
    /// An endpoint serving `app` with `settings`; sessions are tracked by
    /// `lifecycle` and counted in `metrics`.
    pub fn new(
        settings: SioSettings,
        lifecycle: Arc<Lifecycle>,
        metrics: Arc<Metrics>,
        app: A,
    ) -> Self {
        Self {
            registry: Registry::new(settings.max_sessions),
            settings,
            lifecycle,
            metrics,
            app,
        }
    }

    /// The application (to finish setting it up before serving).
    pub fn app_mut(&mut self) -> &mut A {
        &mut self.app
    }

    /// Answers one request of the endpoint (GET, POST, or the WebSocket upgrade).
    pub async fn handle(&self, mut request: Request) -> Result<Response, ApiError> {
        let transport = match request.query_param("transport").as_deref() {
            Some("polling") => Transport::Polling,
            Some("websocket") => Transport::WebSocket,
            _ => return Ok(engine_error(EngineError::TransportUnknown)),
        };
        if let Some(sid) = request.query_param("sid") {
            return self.continue_session(&sid, transport, &mut request).await;
        }
        if request.method() != Method::GET {
            return Ok(engine_error(EngineError::BadHandshakeMethod));
        }
        if request.query_param("EIO").as_deref() != Some("4") {
            return Ok(engine_error(EngineError::UnsupportedProtocolVersion));
        }
        if transport == Transport::WebSocket && !is_upgrade(&request) {
            return Ok(engine_error(EngineError::BadRequest));
        }
        let slot = self.registry.acquire().ok_or_else(|| {
            ApiError::unavailable_for(
                "too many Socket.IO sessions are open; retry",
                FULL_RETRY_AFTER,
            )
        })?;
        let sid = new_id().ok_or_else(|| ApiError::internal("no randomness for a session id"))?;
        let app = self.app.open(Arc::new(Handshake::of(&request)));
        let runtime = session::Runtime {
            settings: self.settings,
            lifecycle: self.lifecycle.clone(),
            metrics: self.metrics.clone(),
        };
        match transport {
            Transport::Polling => {
                let (sender, inbound) = mpsc::channel(INBOUND_QUEUE);
                let registration = self.registry.register(&sid, sender);
                let polling =
                    polling::Polling::new(inbound, registration, self.settings.max_buffer);
                let session = Session::new(runtime, app, Link::Polling(Box::new(polling)), slot);
                self.lifecycle.spawn_session(session.run());
                let open = open_packet(&sid, &self.settings, true);
                Ok(response::with_content_type(
                    StatusCode::OK,
                    "text/plain; charset=UTF-8",
                    open,
                ))
            }
            Transport::WebSocket => {
                let open = Outgoing::Text(open_packet(&sid, &self.settings, false).into());
                ws::upgrade(
                    &mut request,
                    self.settings.websocket(),
                    &self.lifecycle,
                    move |socket| {
                        let mut session =
                            Session::new(runtime, app, Link::WebSocket(Box::new(socket)), slot);
                        session.greet(open);
                        session.run()
                    },
                )
            }
        }
    }

    /// A request of an open session: a poll, a payload, or an upgrade probe.
    async fn continue_session(
        &self,
        sid: &str,
        transport: Transport,
        request: &mut Request,
    ) -> Result<Response, ApiError> {
        let Some(session) = self.registry.sender(sid) else {
            return Ok(engine_error(EngineError::UnknownSid));
        };
        Ok(match (transport, request.method()) {
            (Transport::Polling, &Method::GET) => polling::poll(session).await,
            (Transport::Polling, &Method::POST) => {
                polling::post(session, request, self.settings.max_payload).await
            }
            (Transport::WebSocket, &Method::GET) if is_upgrade(request) => {
                ws::upgrade(
                    request,
                    self.settings.websocket(),
                    &self.lifecycle,
                    move |socket| async move {
                        // A session that is gone drops the socket, which closes it.
                        let _ = session
                            .send(polling::Inbound::Probe(Box::new(socket)))
                            .await;
                    },
                )?
            }
            _ => engine_error(EngineError::BadRequest),
        })
    }
}

/// Whether the request asks for a WebSocket upgrade.
fn is_upgrade(request: &Request) -> bool {
    request
        .header("upgrade")
        .is_some_and(|value| value.eq_ignore_ascii_case("websocket"))
}

/// The open packet: `0{"sid","upgrades","pingInterval","pingTimeout","maxPayload"}`.
fn open_packet(sid: &str, settings: &SioSettings, can_upgrade: bool) -> String {
    let upgrades = if can_upgrade {
        r#"["websocket"]"#
    } else {
        "[]"
    };
    format!(
        r#"0{{"sid":"{sid}","upgrades":{upgrades},"pingInterval":{},"pingTimeout":{},"maxPayload":{}}}"#,
        settings.ping_interval.as_millis(),
        settings.ping_timeout.as_millis(),
        settings.max_payload,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_headers_are_the_listed_ones_in_bytes_of_their_own() {
        let head = bytes::Bytes::from_static(b"Bearer abcd, https://a.example");
        let shared = |range| HeaderValue::from_maybe_shared(head.slice(range)).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, shared(0..11));
        headers.append(header::ORIGIN, shared(13..30));
        headers.append(
            header::ORIGIN,
            HeaderValue::from_static("https://b.example"),
        );
        headers.insert(header::USER_AGENT, HeaderValue::from_static("test"));
        headers.insert("realmname", HeaderValue::from_static("people"));

        let kept = kept_headers(&headers);

        assert_eq!(kept.len(), 4, "user-agent is not kept");
        assert_eq!(kept[header::AUTHORIZATION], "Bearer abcd");
        let origins: Vec<_> = kept.get_all(header::ORIGIN).iter().collect();
        assert_eq!(origins, ["https://a.example", "https://b.example"]);
        assert_eq!(kept["realmname"], "people");
        let own = kept[header::AUTHORIZATION].as_bytes().as_ptr();
        assert!(!head.as_ptr_range().contains(&own), "a copy, not a share");
    }
}
