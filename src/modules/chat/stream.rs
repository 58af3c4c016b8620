//! `GET /api/v1/events`: one user's chat event stream over WebSocket
//! (spec 002), a [`WsProtocol`] on the shared session runner.
//!
//! * Auth: a JWT of the tenant's realm (`Authorization: Bearer`, or
//!   `?access_token=` where a browser cannot set headers); the user is its
//!   `sub`. A browser's `Origin` must be allowed by the tenant (403 before
//!   the upgrade); the per-user stream limit applies (429).
//! * Start: `?lastEventId=<id>` (or a `Last-Event-ID` header) resumes after that id; without it the
//!   stream starts now. The first frame is
//!   `{"type":"Connected","id":<position>,"data":{"userId","rooms"}}`:
//!   resuming from `id` misses nothing even when no event followed. A first
//!   message `{"type":"Resume","data":{"lastEventId"}}` does the same as the
//!   query, accepted once and only while nothing was delivered yet.
//! * Events: `{"type","id","data"}` for every event of the user's rooms and
//!   membership ([`super::feed`]); consecutive `TextMessagesCreated` of one
//!   room delivered together are one frame whose `messages` hold them in
//!   order and whose `id` is the last one's. A gap: `{"type":"Gap","data":
//!   {"roomId","reason","oldestId"}}`; a resume position ahead of the log
//!   (never given by this server) is one `unknown` gap with `roomId` null,
//!   and the stream starts now (`Connected` says where). `{"type":"Ping"}` answers
//!   `{"type":"Pong"}`; anything else an `Error` frame.
//!
//! Invariants: every frame's `id` is a position in all the user's rooms
//! (the feed is in commit order); a message's frame is built once per event
//! and shared by every session (a group of several is built per session).

use super::ChatModule;
use super::directory;
use super::feed::{ChatFeed, room_of_key};
use crate::core::hub::{Batch, Start};
use crate::core::log::LogEvent;
use crate::core::log::encoding::Encoding;
use crate::core::log::read::{Gap, GapReason};
use crate::core::store::StoreError;
use crate::error::{ApiError, ErrorCode};
use crate::http::router::Router;
use crate::http::{Request, Response};
use crate::transport::sse;
use crate::transport::ws::frames::FrameBatch;
use crate::transport::ws::{self, Outcome, Session, WsProtocol, WsRuntime};
use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};
use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use ulid::Ulid;
use uuid::Uuid;

/// The runner's key of the session's one feed.
const FEED_KEY: &str = "chat";
/// The event type whose consecutive events of one room share a frame.
const CREATED: &str = "TextMessagesCreated";

/// Registers the stream's route.
pub fn routes(module: &Arc<ChatModule>, router: &mut Router) {
    router.route_with(Method::GET, "/api/v1/events", module, open);
}

async fn open(module: Arc<ChatModule>, mut request: Request) -> Result<Response, ApiError> {
    let auth = &module.core.auth;
    let principal = auth.authenticate(&request)?;
    let sub = principal
        .user()
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::Forbidden,
                "the chat event stream is a user's: use a JWT",
            )
        })?
        .to_string();
    let resume = match sse::resume_start(&request)? {
        Start::After(id) => Some(id),
        Start::Live => None,
    };
    let tenant = principal.tenant;
    let admission = auth.admit(principal, None).await?;
    let user = directory::user_id(&module.core, tenant, &sub).await?;
    let runtime = WsRuntime {
        settings: module.core.ws(),
        hub: module.core.hub.clone(),
        lifecycle: module.core.lifecycle.clone(),
        metrics: module.core.metrics.clone(),
    };
    let protocol = ChatSession {
        module,
        tenant,
        user,
        resume,
        delivered: AtomicBool::new(false),
        resumed: false,
    };
    ws::serve(&mut request, &runtime, admission, protocol)
}

/// One user's session.
struct ChatSession {
    module: Arc<ChatModule>,
    tenant: Uuid,
    user: u64,
    /// Where the feed starts; `None` for now.
    resume: Option<Ulid>,
    /// Whether an event went out (a `Resume` message is refused after).
    delivered: AtomicBool,
    /// Whether a `Resume` message was taken (a session takes one).
    resumed: bool,
}

impl ChatSession {
    /// Follows the user's feed from the resume position (or now) and
    /// returns the `Connected` frame.
    async fn start(&mut self, session: &mut Session<'_>) -> Outcome {
        let hub = self.module.core.hub.clone();
        // Read before the membership history: every change at or below it is in the store.
        let now = hub.durable_mark();
        // A position this server never gave (ahead of its log) is unknown:
        // the stream says so once and starts now.
        let (from, ahead) = match self.resume {
            Some(id) if id > now => (now, true),
            Some(id) => (id, false),
            None => (now, false),
        };
        let (tenant, user) = (self.tenant, self.user);
        let rooms = hub
            .store()
            .run(move |store| directory::user_rooms(store, tenant, user))
            .await;
        let rooms = match rooms {
            Ok(rooms) => rooms,
            Err(err) => {
                tracing::error!(error = %err, "chat stream could not read memberships");
                return Outcome::Close("the server could not read your rooms".into());
            }
        };
        let mut feed = ChatFeed::open(hub, tenant, user, &rooms, from)
            .with_batch_window(self.module.limits.batch_window);
        if ahead {
            feed = feed.starting_with_gap(Gap {
                reason: GapReason::Unknown,
                oldest_id: None,
            });
        }
        let followed = feed.rooms();
        session.follow_stream(FEED_KEY, futures_util::stream::unfold(feed, next_delivery));
        let data = json!({ "userId": user, "rooms": followed });
        Outcome::Text(frame_text("Connected", Some(from), &data))
    }

    fn resume_message(&mut self, data: &Value) -> Result<Ulid, ApiError> {
        if self.resumed {
            return Err(ApiError::validation("a session takes one Resume message"));
        }
        if self.delivered.load(Ordering::Relaxed) {
            return Err(ApiError::validation(
                "Resume must come before any event was delivered; reconnect with ?lastEventId=",
            ));
        }
        let text = data["lastEventId"]
            .as_str()
            .ok_or_else(|| ApiError::validation("Resume needs data.lastEventId"))?;
        Ulid::from_string(text).map_err(|_| ApiError::validation("lastEventId is an event id"))
    }
}

/// The feed's next delivery, as the stream the runner polls.
async fn next_delivery(mut feed: ChatFeed) -> Option<(Result<Batch, StoreError>, ChatFeed)> {
    let delivery = feed.next().await;
    Some((delivery, feed))
}

/// An `Error` frame for a client message that could not be acted on.
fn error_frame(error: &ApiError) -> Outcome {
    let data = json!({ "code": error.code.as_str(), "message": error.message });
    Outcome::Text(frame_text("Error", None, &data))
}

impl WsProtocol for ChatSession {
    type Signal = Infallible;

    async fn open(&mut self, session: &mut Session<'_>) -> Outcome {
        self.start(session).await
    }

    async fn on_text(&mut self, text: &str, session: &mut Session<'_>) -> Outcome {
        let message: Value = match serde_json::from_str(text) {
            Ok(message) => message,
            Err(_) => return error_frame(&ApiError::validation("messages are JSON objects")),
        };
        match message["type"].as_str() {
            Some("Ping") => Outcome::Text(r#"{"type":"Pong"}"#.to_string()),
            Some("Resume") => match self.resume_message(&message["data"]) {
                Ok(id) => {
                    self.resume = Some(id);
                    self.resumed = true;
                    self.start(session).await
                }
                Err(err) => error_frame(&err),
            },
            _ => error_frame(&ApiError::validation(
                "the client may send {\"type\":\"Ping\"} or {\"type\":\"Resume\",…}",
            )),
        }
    }

    fn event_text<'e>(&self, _key: &str, event: &'e LogEvent) -> Option<Cow<'e, Bytes>> {
        self.delivered.store(true, Ordering::Relaxed);
        Some(event.encoded(&CHAT_FRAME))
    }

    fn frame_events(&self, key: &str, events: &[Arc<LogEvent>], frames: &mut FrameBatch) {
        let mut rest = events;
        while let Some(first) = rest.first() {
            let run = created_run(rest);
            if run > 1 {
                frames.push_text(&grouped_frame(&rest[..run]));
                self.delivered.store(true, Ordering::Relaxed);
            } else if let Some(text) = self.event_text(key, first) {
                frames.push_text(&text);
            }
            rest = &rest[run.max(1)..];
        }
    }

    fn gap_text(&self, key: &str, gap: &Gap) -> String {
        let data = json!({
            "roomId": room_of_key(key),
            "reason": gap.reason,
            "oldestId": gap.oldest_id.map(|id| id.to_string()),
        });
        frame_text("Gap", None, &data)
    }
}

/// How many events from the start are `TextMessagesCreated` of one room.
fn created_run(events: &[Arc<LogEvent>]) -> usize {
    let Some(first) = events.first() else {
        return 0;
    };
    if first.event.event_type != CREATED {
        return 0;
    }
    events
        .iter()
        .take_while(|event| {
            event.event.event_type == CREATED && event.event.topic == first.event.topic
        })
        .count()
}

/// One `TextMessagesCreated` frame holding the messages of `run`, in order,
/// with the last event's id.
fn grouped_frame(run: &[Arc<LogEvent>]) -> Vec<u8> {
    let messages: Vec<Cow<'_, Bytes>> = run.iter().map(|event| event.encoded(&MESSAGES)).collect();
    let last = run
        .last()
        .map(|event| event.id().to_string())
        .unwrap_or_default();
    let size: usize = messages.iter().map(|part| part.len() + 1).sum();
    let mut frame = Vec::with_capacity(size + 96);
    frame.extend_from_slice(br#"{"type":"TextMessagesCreated","id":""#);
    frame.extend_from_slice(last.as_bytes());
    frame.extend_from_slice(br#"","data":{"messages":["#);
    for (index, part) in messages.iter().enumerate() {
        if index > 0 {
            frame.push(b',');
        }
        frame.extend_from_slice(part);
    }
    frame.extend_from_slice(b"]}}");
    frame
}

/// `{"type","id","data"}` of one event, built once and shared by every session.
static CHAT_FRAME: Encoding = Encoding::new("chat.ws", |event| {
    let id = event.id();
    Bytes::from(frame_text(
        &event.event.event_type,
        Some(id),
        &event.event.data,
    ))
});

/// A frame with its keys in the spec's order, `type`, `id` (when given),
/// `data`, as every frame of the stream has them.
fn frame_text(kind: &str, id: Option<Ulid>, data: &Value) -> String {
    let kind = Value::from(kind);
    match id {
        Some(id) => format!(r#"{{"type":{kind},"id":"{id}","data":{data}}}"#),
        None => format!(r#"{{"type":{kind},"data":{data}}}"#),
    }
}

/// The message objects of a `TextMessagesCreated` event, comma-separated
/// (one per stored event), built once and shared by every grouped frame.
static MESSAGES: Encoding = Encoding::new("chat.messages", |event| {
    let messages = event.event.data["messages"]
        .as_array()
        .map(|messages| {
            messages
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    Bytes::from(messages)
});
