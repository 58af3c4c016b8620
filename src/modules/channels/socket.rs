//! The channels surface over Socket.IO (spec 003): `/socket.io/`, default
//! namespace `/`, for unmodified `socket.io-client` 4.x apps.
//!
//! * Connect: a JWT of the tenant's realm in the CONNECT payload
//!   (`io(url, { auth: { token } })`) or, for native clients, the
//!   `Authorization: Bearer` header of the opening request; no or a bad
//!   token is refused with `connect_error` (`message` says why, `data`
//!   holds `{code, reason}`). At the token's `exp` the socket is
//!   disconnected; an event that arrives after it answers `UNAUTHORIZED`.
//! * Client events, each acked `{"ok":true,"data":…}` or `{"ok":false,
//!   "error":{"code","message"}}` (codes `UNAUTHORIZED`, `FORBIDDEN`,
//!   `NOT_FOUND`, `VALIDATION_ERROR`, `SERVICE_UNAVAILABLE`):
//!   `communication:join_channel_posts` / `leave_channel_posts`
//!   `{channelId}`, `communication:join_discussion` / `leave_discussion`
//!   `{channelId}` or `{discussionId}`, `communication:sync_channel_posts` /
//!   `sync_discussion` `{channelId|discussionId, sinceEventId?, limit?}`.
//!   A join acks `{room, latestEventId}` (events after that position arrive
//!   live); a sync acks [`query::SyncPage`].
//! * Server events: the room's events as `eventType` with the envelope
//!   `{eventId, eventType, occurredAt, data}` (one packet built per event
//!   for every socket). A joined room the user may no longer read (a
//!   `communication.access.changed` for them, met in order in the room's
//!   own events) is re-checked at once; if access is gone the socket leaves
//!   it and gets `communication.room.left` `{room, reason:{code,message}}`.
//!
//! Invariants: no event of a room committed after the change that took the
//! user's access away reaches them (the socket stops delivering the room at
//! the notice and resumes, if still allowed, right after it, so nothing in
//! between is lost either); a socket holds at most `--channels-max-joined-rooms`
//! rooms; every read checks access with [`super::access`].

use super::access::Reader;
use super::events::{self, ACCESS_CHANGED, Room};
use super::query::{self, Viewer};
use super::{ChannelsModule, service};
use crate::auth::Admission;
use crate::core::hub::Start;
use crate::core::log::LogEvent;
use crate::core::log::encoding::Encoding;
use crate::core::log::read::{Cursor, Gap};
use crate::error::{ApiError, ErrorCode};
use crate::http::router::Router;
use crate::transport::socketio::packet::event_text;
use crate::transport::socketio::{
    ClientEvent, ConnectRefusal, Handshake, Namespace, SocketCtx, SocketHandler, SocketIoServer,
};
use crate::transport::ws::WsRuntime;
use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use ulid::Ulid;
use uuid::Uuid;

/// The server event telling a socket it left a room it may no longer read.
pub const ROOM_LEFT: &str = "communication.room.left";
/// The server event telling a socket its room skipped events retention removed.
pub const ROOM_GAP: &str = "communication.room.gap";
/// Events in a sync page unless `limit` says otherwise.
const DEFAULT_SYNC: usize = 50;
/// Most events in a sync page.
const MAX_SYNC: usize = 200;

/// The Socket.IO packet of a room event on `/`: `42["<eventType>",<envelope>]`.
static PACKET: Encoding = Encoding::new("channels.socketio", |event| {
    event_text(
        "/",
        &event.event.event_type,
        &event.encoded(&events::ENVELOPE),
    )
});

/// The Socket.IO endpoint's path.
pub const PATH: &str = "/socket.io/";

/// Registers `/socket.io/` (Engine.IO's GET and POST, and the WebSocket
/// upgrade's GET) with the channels namespace as `/`.
pub fn routes(router: &mut Router, module: &Arc<ChannelsModule>) {
    let runtime = WsRuntime {
        settings: module.core.ws(),
        hub: module.core.hub.clone(),
        lifecycle: module.core.lifecycle.clone(),
        metrics: module.core.metrics.clone(),
    };
    let namespace = Arc::new(ChannelsNamespace::new(module.clone()));
    let server =
        Arc::new(SocketIoServer::new(module.core.sio(), runtime).namespace("/", namespace));
    for method in [Method::GET, Method::POST] {
        router.route_with(method, PATH, &server, |server, request| async move {
            server.handle(request).await
        });
    }
}

/// The default namespace of `/socket.io/`.
pub struct ChannelsNamespace {
    module: Arc<ChannelsModule>,
}

impl ChannelsNamespace {
    /// The namespace of the channels module.
    pub fn new(module: Arc<ChannelsModule>) -> Self {
        Self { module }
    }
}

impl Namespace for ChannelsNamespace {
    type Socket = ChannelSocket;

    async fn connect(
        &self,
        handshake: &Handshake,
        auth: Option<Value>,
    ) -> Result<(ChannelSocket, Option<Admission>), ConnectRefusal> {
        let token = auth
            .as_ref()
            .and_then(|auth| auth.get("token"))
            .and_then(Value::as_str);
        let authenticator = &self.module.core.auth;
        let admitted = async {
            let principal = authenticator.authenticate_socket(handshake.headers(), token)?;
            let reader = super::api::reader_of(&principal, crate::auth::api_keys::Scope::Read)?;
            Ok::<_, ApiError>((reader, authenticator.admit(principal, None).await?))
        };
        let (reader, admission) = admitted.await.map_err(refusal)?;
        let socket = ChannelSocket {
            module: self.module.clone(),
            tenant: admission.principal.tenant,
            reader,
            expires_at: admission.expires_at,
            joined: BTreeSet::new(),
            suspended: Mutex::new(Vec::new()),
        };
        Ok((socket, Some(admission)))
    }
}

/// A refused CONNECT: the error's message, and its code (the API's:
/// `UNAUTHORIZED`, `FORBIDDEN`, `RATE_LIMITED` past the per-user stream
/// limit, …) and details.
fn refusal(err: ApiError) -> ConnectRefusal {
    ConnectRefusal {
        message: err.message.clone(),
        data: Some(json!({ "code": err.code.as_str(), "details": err.details })),
    }
}

/// The ack error code of an API error.
fn ack_code(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::Unauthorized => "UNAUTHORIZED",
        ErrorCode::Forbidden => "FORBIDDEN",
        ErrorCode::NotFound => "NOT_FOUND",
        ErrorCode::ValidationError | ErrorCode::Conflict | ErrorCode::PayloadTooLarge => {
            "VALIDATION_ERROR"
        }
        _ => "SERVICE_UNAVAILABLE",
    }
}

/// `{"ok":false,"error":{"code","message"}}`.
fn failure(err: &ApiError) -> Value {
    json!({ "ok": false, "error": { "code": ack_code(err.code), "message": err.message } })
}

/// One client's socket on `/`.
pub struct ChannelSocket {
    module: Arc<ChannelsModule>,
    tenant: Uuid,
    reader: Reader,
    /// The token's `exp` (unix seconds).
    expires_at: Option<u64>,
    /// The rooms joined.
    joined: BTreeSet<Room>,
    /// Joined rooms stopped at an access notice, with the notice's id,
    /// waiting for their re-check (set while framing through `&self`,
    /// hence the lock, never contended: one task owns the socket).
    suspended: Mutex<Vec<(Room, Ulid)>>,
}

/// A room to re-check after an access notice at the given id.
pub struct Recheck(Room, Ulid);

impl SocketHandler for ChannelSocket {
    type Signal = Recheck;

    async fn on_event(&mut self, event: ClientEvent, ctx: &mut SocketCtx<'_>) {
        let answer = match self.answer(&event, ctx).await {
            Ok(data) => json!({ "ok": true, "data": data }),
            Err(err) => failure(&err),
        };
        if let Some(id) = event.ack {
            ctx.ack(id, vec![answer]);
        }
        if self.expired() {
            ctx.disconnect();
        }
    }

    /// A suspended room waiting for its re-check, if any (checked each
    /// time the session asks, right after the delivery that suspended it).
    async fn next_signal(&mut self) -> Recheck {
        let waiting = self.suspended().first().copied();
        match waiting {
            Some((room, at)) => Recheck(room, at),
            None => std::future::pending().await,
        }
    }

    async fn on_signal(&mut self, Recheck(room, at): Recheck, ctx: &mut SocketCtx<'_>) {
        self.suspended().retain(|(suspended, _)| *suspended != room);
        if !self.joined.contains(&room) {
            return;
        }
        match self.check(room).await {
            Ok(()) => {
                ctx.follow(&room.name(), room.topic(self.tenant), Start::After(at));
            }
            Err(err) => {
                self.leave(room, ctx);
                let reason = json!({ "code": ack_code(err.code), "message": err.message });
                ctx.emit(
                    ROOM_LEFT,
                    vec![json!({ "room": room.name(), "reason": reason })],
                );
            }
        }
    }

    fn event_packet<'e>(&self, key: &str, event: &'e LogEvent) -> Option<Cow<'e, Bytes>> {
        let mut suspended = self.suspended();
        let room = suspended
            .iter()
            .find(|(room, _)| room.name() == key)
            .map(|(room, _)| *room);
        if room.is_some() {
            return None;
        }
        if event.event.event_type == ACCESS_CHANGED {
            if self.concerns_me(event)
                && let Some(room) = self.joined.iter().find(|room| room.name() == key)
            {
                suspended.push((*room, event.id()));
            }
            return None;
        }
        Some(event.encoded(&PACKET))
    }

    /// A joined room's delivery resumed past events retention removed:
    /// `communication.room.gap` `{room, reason, oldestEventId}` tells the
    /// client to refetch through REST (the spec's fallback); live events
    /// continue after it.
    fn gap_packet(&self, key: &str, gap: &Gap) -> Option<String> {
        let oldest = gap.oldest_id.map(events::event_id);
        let notice = json!({ "room": key, "reason": gap.reason, "oldestEventId": oldest });
        let packet = event_text("/", ROOM_GAP, notice.to_string().as_bytes());
        String::from_utf8(packet.to_vec()).ok()
    }
}

impl ChannelSocket {
    fn suspended(&self) -> MutexGuard<'_, Vec<(Room, Ulid)>> {
        self.suspended
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn expired(&self) -> bool {
        let now = crate::core::clock::unix_millis() / 1000;
        self.expires_at.is_some_and(|exp| exp <= now)
    }

    /// Whether an access notice names this socket's user (or everyone).
    fn concerns_me(&self, event: &LogEvent) -> bool {
        match &event.event.data["userId"] {
            Value::Null => true,
            Value::String(user) => self.reader.sub() == Some(user.as_str()),
            _ => false,
        }
    }

    fn viewer(&self) -> Viewer {
        Viewer {
            tenant: self.tenant,
            reader: self.reader.clone(),
        }
    }

    /// Ok when the user may be in `room` now.
    async fn check(&self, room: Room) -> Result<(), ApiError> {
        let viewer = self.viewer();
        self.module
            .core
            .read("reading channels failed", move |store| {
                viewer.may_join(store, room).map(drop)
            })
            .await
    }

    fn leave(&mut self, room: Room, ctx: &mut SocketCtx<'_>) {
        self.joined.remove(&room);
        ctx.unfollow(&room.name());
    }

    /// The data of a successful ack, or the error.
    async fn answer(
        &mut self,
        event: &ClientEvent,
        ctx: &mut SocketCtx<'_>,
    ) -> Result<Value, ApiError> {
        if self.expired() {
            return Err(ApiError::new(
                ErrorCode::Unauthorized,
                "the token has expired".to_string(),
            ));
        }
        let payload = event.args.first().unwrap_or(&Value::Null);
        match event.name.as_str() {
            "communication:join_channel_posts" => {
                let room = Room::Posts(number(payload, "channelId")?);
                self.join(room, ctx).await
            }
            "communication:leave_channel_posts" => {
                let room = Room::Posts(number(payload, "channelId")?);
                self.leave(room, ctx);
                Ok(json!({ "room": room.name() }))
            }
            "communication:join_discussion" => {
                let room = self.discussion_room(payload).await?;
                self.join(room, ctx).await
            }
            "communication:leave_discussion" => {
                let room = self.discussion_room(payload).await?;
                self.leave(room, ctx);
                Ok(json!({ "room": room.name() }))
            }
            "communication:sync_channel_posts" => {
                let room = Room::Posts(number(payload, "channelId")?);
                self.sync(room, payload).await
            }
            "communication:sync_discussion" => {
                let room = self.discussion_room(payload).await?;
                self.sync(room, payload).await
            }
            other => Err(ApiError::validation(format!("unknown event `{other}`"))),
        }
    }

    /// The discussion room a payload names by `discussionId`, or by the
    /// `channelId` of its channel (a channel has at most one discussion).
    async fn discussion_room(&self, payload: &Value) -> Result<Room, ApiError> {
        if payload.get("discussionId").is_some() {
            return Ok(Room::Discussion(number(payload, "discussionId")?));
        }
        let channel = number(payload, "channelId")?;
        let tenant = self.tenant;
        let found = self
            .module
            .core
            .read("reading channels failed", move |store| {
                service::channel(store, &tenant, channel)
            })
            .await?;
        let discussion = found
            .discussion
            .ok_or_else(|| ApiError::not_found("this channel has no discussion"))?;
        Ok(Room::Discussion(discussion.discussion_id))
    }

    async fn join(&mut self, room: Room, ctx: &mut SocketCtx<'_>) -> Result<Value, ApiError> {
        let max = self.module.limits.max_joined_rooms;
        if !self.joined.contains(&room) && self.joined.len() >= max {
            return Err(crate::modules::records::over_limit(
                "too many rooms joined on one connection",
                "channels-max-joined-rooms",
                max,
            ));
        }
        self.check(room).await?;
        let position = ctx.follow(&room.name(), room.topic(self.tenant), Start::Live);
        self.joined.insert(room);
        let position = position.unwrap_or_else(|| self.module.core.hub.durable_mark());
        Ok(json!({ "room": room.name(), "latestEventId": events::event_id(position) }))
    }

    async fn sync(&self, room: Room, payload: &Value) -> Result<Value, ApiError> {
        let since = match payload.get("sinceEventId") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(events::parse_event_id(text).ok_or_else(|| {
                ApiError::validation("`sinceEventId` is not an event id (a UUID)")
            })?),
            Some(_) => return Err(ApiError::validation("`sinceEventId` must be a string")),
        };
        let limit = match payload.get("limit") {
            None | Some(Value::Null) => DEFAULT_SYNC,
            Some(value) => value
                .as_u64()
                .filter(|limit| (1..=MAX_SYNC as u64).contains(limit))
                .ok_or_else(|| ApiError::validation(format!("`limit` must be 1 to {MAX_SYNC}")))?
                as usize,
        };
        let viewer = self.viewer();
        let hub = &self.module.core.hub;
        hub.reach(since.map_or(Cursor::Start, Cursor::After)).await;
        let durable = hub.durable_mark();
        let page = self
            .module
            .core
            .read("reading channels failed", move |store| {
                query::sync(store, &viewer, room, since, limit, durable)
            })
            .await?;
        serde_json::to_value(page).map_err(|err| ApiError::internal(err.to_string()))
    }
}

/// A positive integer field of an event payload, or 400.
fn number(payload: &Value, field: &str) -> Result<u64, ApiError> {
    payload
        .get(field)
        .and_then(Value::as_u64)
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::validation(format!("`{field}` must be a positive number")))
}
