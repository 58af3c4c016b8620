//! The topics API over WebSocket (`GET /api/v1/topics/ws`).
//!
//! Client → server text frames (`ref` is optional and echoed back):
//! `{"op":"subscribe","topic","after"?}`, `{"op":"unsubscribe","topic"}`,
//! `{"op":"publish","topic","type","data","actor"?,"idempotencyKey"?}`.
//! Server → client: `{"op":"subscribed","topic","position"}` (resubscribing
//! with `after` set to `position`, or to the id of the last event received
//! since, resumes exactly), `{"op":"unsubscribed","topic"}`,
//! `{"op":"event","event":{…}}`, `{"op":"gap","topic","reason","oldestId"}`,
//! `{"op":"published","event":{…},"replayed"?:true}`, `{"op":"error","code","message"}`.
//! A publish with an `idempotencyKey` is the same operation as a REST
//! publish with that `Idempotency-Key`: a retry (over either) replays it.
//!
//! The session runs on the WebSocket session runner
//! ([`crate::transport::ws::runner`]): this file is only the protocol (what
//! an op means, how events and gaps are framed). Each subscription is
//! followed under the topic name the client gave.

use super::TopicsApi;
use super::rest::{commit_events, parse_events, publish_claim};
use crate::auth::Principal;
use crate::auth::api_keys::Scope;
use crate::core::hub::Start;
use crate::core::log::read::Gap;
use crate::core::log::{LogEvent, TopicRef};
use crate::error::{ApiError, ErrorCode};
use crate::http::response::REPLAYED_HEADER;
use crate::http::{Request, Response};
use crate::modules::idempotency::{self, Reply};
use crate::modules::platform::WriterLink;
use crate::transport::ws::{self, Outcome, Session, WsProtocol, WsRuntime};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use serde_json::{Value, json};
use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;
use ulid::Ulid;

#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum ClientOp {
    Subscribe {
        topic: String,
        #[serde(default)]
        after: Option<String>,
        #[serde(default, rename = "ref")]
        reference: Option<Value>,
    },
    Unsubscribe {
        topic: String,
        #[serde(default, rename = "ref")]
        reference: Option<Value>,
    },
    Publish {
        topic: String,
        #[serde(flatten)]
        event: Value,
    },
}

/// `GET /api/v1/topics/ws`
pub(super) async fn open(api: Arc<TopicsApi>, mut request: Request) -> Result<Response, ApiError> {
    let admission = api
        .core
        .auth
        .admit(api.core.auth.authenticate(&request)?, None)
        .await?;
    let runtime = WsRuntime {
        settings: api.core.ws(),
        hub: api.core.hub.clone(),
        lifecycle: api.core.lifecycle.clone(),
        metrics: api.core.metrics.clone(),
    };
    ws::serve(&mut request, &runtime, admission, TopicsProtocol { api })
}

/// The topics protocol of one session.
struct TopicsProtocol {
    api: Arc<TopicsApi>,
}

/// A failed op: the error and the `ref` to echo.
type Refusal = (ApiError, Option<Value>);

impl WsProtocol for TopicsProtocol {
    type Signal = Infallible;

    async fn on_text(&mut self, text: &str, session: &mut Session<'_>) -> Outcome {
        let op: ClientOp = match serde_json::from_str(text) {
            Ok(op) => op,
            Err(err) => {
                let error = ApiError::validation(format!(
                    "{err}; ops are subscribe, unsubscribe and publish, each with a topic"
                ));
                return Outcome::Text(error_frame(&error, None).to_string());
            }
        };
        let outcome = match op {
            ClientOp::Subscribe {
                topic,
                after,
                reference,
            } => self.subscribe(session, topic, after, reference),
            ClientOp::Unsubscribe { topic, reference } => {
                Ok(unsubscribe(session, topic, reference))
            }
            ClientOp::Publish { topic, event } => {
                self.publish(session.principal(), topic, event).await
            }
        };
        let reply = outcome.unwrap_or_else(|(error, reference)| error_frame(&error, reference));
        Outcome::Text(reply.to_string())
    }

    async fn on_binary(&mut self, _data: &[u8], _session: &mut Session<'_>) -> Outcome {
        Outcome::Close("send JSON text frames".into())
    }

    fn event_text<'e>(&self, _topic: &str, event: &'e LogEvent) -> Option<Cow<'e, Bytes>> {
        Some(super::ws_event_text(event))
    }

    fn gap_text(&self, topic: &str, gap: &Gap) -> String {
        gap_notice(topic, gap)
    }
}

impl TopicsProtocol {
    fn subscribe(
        &self,
        session: &mut Session<'_>,
        name: String,
        after: Option<String>,
        reference: Option<Value>,
    ) -> Result<Value, Refusal> {
        let fail = |error: ApiError| (error, reference.clone());
        let principal = session.principal();
        let topic =
            TopicRef::new(principal.tenant, &name).map_err(|e| fail(ApiError::validation(e)))?;
        principal.require_read(&name).map_err(fail)?;
        let start = match after.as_deref() {
            None | Some("") => Start::Live,
            Some(text) => Start::After(Ulid::from_string(text).map_err(|_| {
                fail(ApiError::validation(format!(
                    "after=`{text}` is not an event id"
                )))
            })?),
        };
        if session.follows(&name) {
            return Err(fail(ApiError::new(
                ErrorCode::Conflict,
                format!("already subscribed to {name}"),
            )));
        }
        let most = self.api.limits.ws_max_topics;
        if session.following() >= most {
            return Err(fail(ApiError::new(
                ErrorCode::RateLimited,
                format!("at most {most} topics per connection"),
            )));
        }
        let position = session.follow(&name, topic, start).map(|id| id.to_string());
        Ok(with_ref(
            json!({ "op": "subscribed", "topic": name, "position": position }),
            reference,
        ))
    }

    async fn publish(
        &self,
        principal: &Principal,
        name: String,
        mut event: Value,
    ) -> Result<Value, Refusal> {
        let reference = event.as_object_mut().and_then(|map| map.remove("ref"));
        let fail = |error: ApiError| (error, reference.clone());
        let topic =
            TopicRef::new(principal.tenant, &name).map_err(|e| fail(ApiError::validation(e)))?;
        principal.require(Scope::Publish).map_err(fail)?;
        if let Some(link) = &self.api.core.writer_link {
            let reply = via_writer(link.as_ref(), principal, &name, event)
                .await
                .map_err(fail)?;
            return Ok(self.published(&reply, reference));
        }
        let field = idempotency::take_field(&mut event);
        let key = idempotency::from_field(field).map_err(fail)?;
        let claim = publish_claim(&self.api, key, principal, &topic, &event);
        let inputs = parse_events(event, 1).map_err(fail)?;
        let reply = commit_events(&self.api, topic, principal.name.clone(), inputs, claim)
            .await
            .map_err(fail)?;
        Ok(self.published(&reply, reference))
    }

    /// The `published` frame of a publish's reply.
    fn published(&self, reply: &Reply, reference: Option<Value>) -> Value {
        let mut published = json!({ "op": "published", "event": published_event(reply) });
        if reply.replayed {
            published["replayed"] = Value::Bool(true);
            self.api.core.metrics.idempotent_replay();
        }
        with_ref(published, reference)
    }
}

/// On a cluster's edge: the publish as the writer's
/// `POST /api/v1/topics/{topic}/events` of the same key (and
/// `Idempotency-Key`), answered once the edge's replica holds the event.
async fn via_writer(
    link: &dyn WriterLink,
    principal: &Principal,
    name: &str,
    mut event: Value,
) -> Result<Reply, ApiError> {
    let field = idempotency::take_field(&mut event);
    parse_events(event.clone(), 1)?;
    let mut headers = HeaderMap::new();
    if let Some(Value::String(key)) = &field {
        let value = HeaderValue::from_str(key)
            .map_err(|_| ApiError::validation("the idempotency key is not a header value"))?;
        headers.insert(idempotency::HEADER, value);
    }
    idempotency::from_field(field)?;
    let segment: String = utf8_percent_encode(name, NON_ALPHANUMERIC).collect();
    let path = format!("/api/v1/topics/{segment}/events");
    let body = serde_json::to_vec(&event)
        .map_err(|err| ApiError::internal(format!("encoding a publish: {err}")))?;
    let answer = link
        .send(principal, Method::POST, path, headers, body.into())
        .await?;
    Ok(Reply {
        status: answer.status(),
        replayed: answer.headers().contains_key(REPLAYED_HEADER),
        body: answer.into_body(),
    })
}

fn unsubscribe(session: &mut Session<'_>, name: String, reference: Option<Value>) -> Value {
    session.unfollow(&name);
    with_ref(json!({ "op": "unsubscribed", "topic": name }), reference)
}

/// The event of a publish reply (a one-event batch replies `{"events":[e]}`).
fn published_event(reply: &Reply) -> Value {
    match serde_json::from_slice(&reply.body) {
        Ok(Value::Object(mut map)) if !map.contains_key("id") => map
            .remove("events")
            .and_then(|events| events.get(0).cloned())
            .unwrap_or(Value::Null),
        Ok(event) => event,
        Err(_) => Value::Null,
    }
}

fn gap_notice(topic: &str, gap: &Gap) -> String {
    let mut notice = json!({ "op": "gap", "topic": topic });
    if let (Some(map), Ok(Value::Object(gap))) = (notice.as_object_mut(), serde_json::to_value(gap))
    {
        map.extend(gap);
    }
    notice.to_string()
}

fn with_ref(mut value: Value, reference: Option<Value>) -> Value {
    if let (Some(map), Some(reference)) = (value.as_object_mut(), reference) {
        map.insert("ref".into(), reference);
    }
    value
}

fn error_frame(error: &ApiError, reference: Option<Value>) -> Value {
    with_ref(
        json!({ "op": "error", "code": error.code.as_str(), "message": error.message }),
        reference,
    )
}
