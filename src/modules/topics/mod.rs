//! The generic topics API: publish to, read and stream any topic of a tenant.
//!
//! * `POST /api/v1/topics/{topic}/events`: `{"type","data","actor"?}` (see
//!   [`actor`] for what a publisher may claim) or `{"events":[…]}` (an
//!   atomic batch) → 201 once durable; with an `Idempotency-Key`, a retry
//!   replays the first reply.
//! * `GET /api/v1/topics/{topic}/events?after=ID&limit=N` → a page of history
//!   with `next` and `gap`.
//! * `POST /api/v1/topics/{topic}/tickets` → a single-use stream ticket for a browser.
//! * `GET /api/v1/topics/{topic}/stream` → SSE (resume with `Last-Event-ID`;
//!   credential or `?ticket=`).
//! * `GET /api/v1/topics/ws` → WebSocket with subscribe/unsubscribe/publish ops.
//!
//! `{topic}` is one path segment: percent-encode `/` as `%2F`. The module
//! owns the public topic namespace (names of `[A-Za-z0-9._:/-]`, never a
//! module's `~<name>/…`); the writer stages every published event for the
//! tenant's webhook endpoints (body: the event's stored JSON, the module's
//! declared [`whole_event`]), in the same atomic change.

mod actor;
mod rest;
mod ws;

use crate::auth::Principal;
use crate::core::log::encoding::Encoding;
use crate::core::log::namespace::Namespace;
use crate::core::log::{LogEvent, TopicRef};
use crate::error::ApiError;
use crate::http::Request;
use crate::http::router::Router;
use crate::modules::platform::{Module, ModuleContext};
#[cfg(doc)]
use crate::transport::webhook::whole_event;
use bytes::Bytes;
use http::Method;
use std::borrow::Cow;
use std::sync::Arc;

/// Limits of the topics API.
#[derive(Debug, Clone, Copy)]
pub struct TopicsLimits {
    /// Most events in one publish request.
    pub max_batch_events: usize,
    /// Most events in one history page.
    pub max_page: usize,
    /// Most topics one WebSocket may subscribe to.
    pub ws_max_topics: usize,
}

/// Everything the topics API uses.
pub struct TopicsApi {
    /// The core's shared parts (writer, hub, auth, lifecycle, metrics,
    /// idempotency, stream settings).
    pub core: ModuleContext,
    /// API limits.
    pub limits: TopicsLimits,
}

impl TopicsApi {
    /// The topics API on the core's shared parts.
    pub fn new(context: &ModuleContext) -> Self {
        Self {
            core: context.clone(),
            limits: context.settings.topics,
        }
    }

    /// The caller and the topic named in the path.
    fn authorize(&self, request: &Request) -> Result<(Principal, TopicRef), ApiError> {
        let principal = self.core.auth.authenticate(request)?;
        let name = request.param("topic").unwrap_or_default();
        let topic = TopicRef::new(principal.tenant, name).map_err(ApiError::validation)?;
        Ok((principal, topic))
    }
}

/// The WebSocket text of a topics event (`{"op":"event","event":{…}}`),
/// built once per event and lent to every subscriber (the topics WebSocket
/// and any session that frames events the same way).
pub(crate) fn ws_event_text(event: &LogEvent) -> Cow<'_, Bytes> {
    event.encoded(&WS_EVENT_TEXT)
}

/// The encoding behind [`ws_event_text`].
static WS_EVENT_TEXT: Encoding = Encoding::new("topics.ws", |event| {
    let mut text = Vec::with_capacity(event.json.len() + 24);
    text.extend_from_slice(br#"{"op":"event","event":"#);
    text.extend_from_slice(&event.json);
    text.push(b'}');
    Bytes::from(text)
});

impl Module for TopicsApi {
    fn name(&self) -> &'static str {
        "topics"
    }

    fn namespace(&self) -> Option<Namespace> {
        Some(Namespace::Public)
    }

    fn routes(self: Arc<Self>, router: &mut Router) {
        routes(router, self);
    }
}

fn routes(router: &mut Router, api: Arc<TopicsApi>) {
    router.route_with(
        Method::POST,
        "/api/v1/topics/{topic}/events",
        &api,
        rest::publish,
    );
    router.route_with(
        Method::GET,
        "/api/v1/topics/{topic}/events",
        &api,
        rest::history,
    );
    router.route_with(
        Method::POST,
        "/api/v1/topics/{topic}/tickets",
        &api,
        rest::mint_ticket,
    );
    router.route_with(
        Method::GET,
        "/api/v1/topics/{topic}/stream",
        &api,
        rest::stream,
    );
    router.route_with(Method::GET, "/api/v1/topics/ws", &api, ws::open);
}
