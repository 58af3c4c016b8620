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
//! Invariants: the session polls its subscriptions itself (a `StreamMap`, no
//! task or queue per subscription) and writes everything ready in one flush;
//! a slow client makes its subscriptions fall back to the log, never the hub wait.

use super::TopicsApi;
use super::rest::{commit_events, parse_events, publish_claim};
use crate::auth::Admission;
use crate::auth::keys::Scope;
use crate::error::{ApiError, ErrorCode};
use crate::http::{Request, Response};
use crate::hub::{Delivery, Start, Subscription};
use crate::idempotency::{self, Reply};
use crate::log::TopicRef;
use crate::log::read::Gap;
use crate::store::StoreError;
use crate::transport::coalesce::Coalescer;
use crate::transport::ws::{self, FrameBatch, WsSocket};
use bytes::Bytes;
use futures_util::{FutureExt, SinkExt, Stream, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use std::pin::Pin;
use std::sync::Arc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_stream::StreamMap;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use ulid::Ulid;

/// Close code sent when the JWT that opened the connection expires.
const TOKEN_EXPIRED_CLOSE: u16 = 4001;
/// Most events taken from a subscription at once.
const MAX_BATCH: usize = 512;

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
    let admission = api.auth.admit(api.auth.authenticate(&request)?, None)?;
    let settings = api.ws;
    let lifecycle = api.lifecycle.clone();
    ws::upgrade(
        &mut request,
        settings,
        &lifecycle,
        move |socket| async move {
            let _open = api.metrics.stream_opened("ws");
            let session = Session {
                api,
                admission,
                socket,
                subscriptions: StreamMap::new(),
                coalescer: Coalescer::new(settings.write_interval),
            };
            session.run().await;
        },
    )
}

/// One subscription as a stream of deliveries (polled by the session itself:
/// no task or queue per subscription).
type Deliveries = Pin<Box<dyn Stream<Item = Result<Delivery, StoreError>> + Send>>;

/// A delivery ready to be written, with its topic name.
type Ready = (String, Result<Delivery, StoreError>);

fn deliveries(subscription: Subscription) -> Deliveries {
    Box::pin(futures_util::stream::unfold(
        subscription,
        |mut subscription| async move {
            let delivery = subscription.next(MAX_BATCH).await;
            Some((delivery, subscription))
        },
    ))
}

struct Session {
    api: Arc<TopicsApi>,
    admission: Admission,
    socket: WsSocket,
    subscriptions: StreamMap<String, Deliveries>,
    coalescer: Coalescer,
}

/// Why a session ended.
enum End {
    Client,
    Close(CloseCode, &'static str, &'static str),
}

impl End {
    /// The end after a failed read or write (see [`ws::closing_for`]).
    fn after_error(closing: Option<ws::Closing>) -> Self {
        closing.map_or(Self::Client, |c| Self::Close(c.code, c.reason, c.metric))
    }
}

impl Session {
    async fn run(mut self) {
        let end = self.serve().await;
        self.subscriptions.clear();
        let reason = match end {
            End::Client => {
                ws::finish_client_close(&mut self.socket).await;
                "client"
            }
            End::Close(code, reason, metric) => {
                ws::close(&mut self.socket, code, reason).await;
                metric
            }
        };
        self.api.metrics.stream_ended("ws", reason);
    }

    async fn serve(&mut self) -> End {
        let interval = self.api.ws.ping_interval;
        let mut ping = tokio::time::interval_at(Instant::now() + interval, interval);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        let lifecycle = self.api.lifecycle.clone();
        let expiry = self
            .admission
            .expires_at
            .map(crate::clock::instant_of_unix_seconds);
        let mut expired = std::pin::pin!(crate::clock::sleep_until_or_forever(expiry));
        let mut revoked = std::pin::pin!(self.admission.revoked());
        loop {
            tokio::select! {
                biased;
                () = lifecycle.stopping() => return End::Close(CloseCode::Away, "server shutting down; reconnect", "shutdown"),
                () = expired.as_mut() => return End::Close(CloseCode::Library(TOKEN_EXPIRED_CLOSE), "token expired; reconnect with a fresh token", "expired"),
                () = revoked.as_mut() => return End::Close(CloseCode::Policy, "credential revoked", "revoked"),
                incoming = self.socket.next() => {
                    last_heard = Instant::now();
                    match incoming {
                        None | Some(Ok(Message::Close(_))) => return End::Client,
                        Some(Err(err)) => return End::after_error(ws::closing_for(&err)),
                        Some(Ok(Message::Text(text))) => {
                            if let Err(end) = self.handle(text.as_str()).await {
                                return end;
                            }
                        }
                        Some(Ok(Message::Binary(_))) => {
                            return End::Close(CloseCode::Policy, "send JSON text frames", "policy");
                        }
                        Some(Ok(_)) => {}
                    }
                }
                Some(first) = self.subscriptions.next(), if !self.subscriptions.is_empty() => {
                    if let Err(end) = self.deliver(first).await {
                        return end;
                    }
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() > interval * 2 {
                        return End::Close(CloseCode::Away, "no answer to pings", "keepalive");
                    }
                    if let Err(err) = self.socket.send(Message::Ping(Bytes::new())).await {
                        return End::after_error(ws::closing_for(&err));
                    }
                }
            }
        }
    }

    /// Writes the delivery and everything else already ready, in as few writes as possible.
    async fn deliver(&mut self, first: Ready) -> Result<(), End> {
        let mut batch = FrameBatch::new();
        let mut hold = self.coalescer.hold_until(Instant::now());
        let mut next = Some(first);
        while let Some((topic, delivery)) = next {
            let delivery = delivery.map_err(|err| {
                tracing::error!(error = %err, topic = %topic, "WebSocket subscription could not read the log");
                End::Close(CloseCode::Error, "the server could not read the event log; reconnect", "error")
            })?;
            if let Some(gap) = delivery.gap {
                batch.push_text(gap_notice(&topic, &gap).as_bytes());
            }
            for event in &delivery.events {
                batch.push_text(event.ws_text());
                if batch.is_full() {
                    self.write(&mut batch).await?;
                }
            }
            next = match self.subscriptions.next().now_or_never() {
                Some(ready) => ready,
                None => self.linger(hold.take()).await,
            };
        }
        self.coalescer.wrote(Instant::now());
        self.write(&mut batch).await
    }

    async fn write(&mut self, batch: &mut FrameBatch) -> Result<(), End> {
        batch
            .write_to(&mut self.socket)
            .await
            .map_err(|err| End::after_error(ws::closing_for_io(&err)))
    }

    /// On a busy session, waits out the hold, then takes what arrived
    /// meanwhile (sleeping, not waiting on the subscriptions: one wake-up per
    /// hold, not one per publish).
    async fn linger(&mut self, hold: Option<Instant>) -> Option<Ready> {
        let until = hold?;
        tokio::time::sleep_until(until).await;
        self.subscriptions.next().now_or_never().flatten()
    }

    async fn reply(&mut self, value: Value) -> Result<(), End> {
        self.socket
            .send(Message::Text(value.to_string().into()))
            .await
            .map_err(|err| End::after_error(ws::closing_for(&err)))
    }

    async fn handle(&mut self, text: &str) -> Result<(), End> {
        let op: ClientOp = match serde_json::from_str(text) {
            Ok(op) => op,
            Err(err) => {
                let error = ApiError::validation(format!(
                    "{err}; ops are subscribe, unsubscribe and publish, each with a topic"
                ));
                return self.reply(error_frame(&error, None)).await;
            }
        };
        let outcome = match op {
            ClientOp::Subscribe {
                topic,
                after,
                reference,
            } => self.subscribe(topic, after, reference),
            ClientOp::Unsubscribe { topic, reference } => Ok(self.unsubscribe(topic, reference)),
            ClientOp::Publish { topic, event } => self.publish(topic, event).await,
        };
        match outcome {
            Ok(reply) => self.reply(reply).await,
            Err((error, reference)) => self.reply(error_frame(&error, reference)).await,
        }
    }

    fn subscribe(
        &mut self,
        name: String,
        after: Option<String>,
        reference: Option<Value>,
    ) -> Result<Value, (ApiError, Option<Value>)> {
        let fail = |error: ApiError| (error, reference.clone());
        let topic = TopicRef::new(self.admission.principal.tenant, &name)
            .map_err(|e| fail(ApiError::validation(e)))?;
        self.admission.principal.require_read(&name).map_err(fail)?;
        let start = match after.as_deref() {
            None | Some("") => Start::Live,
            Some(text) => Start::After(Ulid::from_string(text).map_err(|_| {
                fail(ApiError::validation(format!(
                    "after=`{text}` is not an event id"
                )))
            })?),
        };
        if self.subscriptions.contains_key(&name) {
            return Err(fail(ApiError::new(
                ErrorCode::Conflict,
                format!("already subscribed to {name}"),
            )));
        }
        if self.subscriptions.len() >= self.api.limits.ws_max_topics {
            return Err(fail(ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "at most {} topics per connection",
                    self.api.limits.ws_max_topics
                ),
            )));
        }
        let subscription = self.api.hub.subscribe(topic, start);
        let position = subscription.last_id().map(|id| id.to_string());
        self.subscriptions
            .insert(name.clone(), deliveries(subscription));
        Ok(with_ref(
            json!({ "op": "subscribed", "topic": name, "position": position }),
            reference,
        ))
    }

    fn unsubscribe(&mut self, name: String, reference: Option<Value>) -> Value {
        self.subscriptions.remove(&name);
        with_ref(json!({ "op": "unsubscribed", "topic": name }), reference)
    }

    async fn publish(
        &mut self,
        name: String,
        mut event: Value,
    ) -> Result<Value, (ApiError, Option<Value>)> {
        let reference = event.as_object_mut().and_then(|map| map.remove("ref"));
        let fail = |error: ApiError| (error, reference.clone());
        let principal = &self.admission.principal;
        let topic =
            TopicRef::new(principal.tenant, &name).map_err(|e| fail(ApiError::validation(e)))?;
        principal.require(Scope::Publish).map_err(fail)?;
        let field = idempotency::take_field(&mut event);
        let key = idempotency::from_field(field).map_err(fail)?;
        let claim = publish_claim(&self.api, key, principal, &topic, &event);
        let inputs = parse_events(event, 1).map_err(fail)?;
        let reply = commit_events(&self.api, topic, principal.name.clone(), inputs, claim)
            .await
            .map_err(fail)?;
        let mut published = json!({ "op": "published", "event": published_event(&reply) });
        if reply.replayed {
            published["replayed"] = Value::Bool(true);
            self.api.metrics.idempotent_replay();
        }
        Ok(with_ref(published, reference))
    }
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
