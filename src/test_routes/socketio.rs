//! The Socket.IO conformance kit's endpoints (`/work/shared/conformance`),
//! debug builds with `--enable-test-routes` only.
//!
//! * `/__test/engine.io/`: a raw Engine.IO endpoint that sends every message
//!   back (text as text, binary as binary).
//! * `/__test/socket.io/`: namespaces `/` and `/custom`. On CONNECT both emit
//!   `auth` with the CONNECT payload (`{}` if none); `/` also has the kit's
//!   handlers: `message` → emit `message-back` with the same arguments;
//!   `message-with-ack` → ack with them; `emit-with-ack` → emit them with
//!   an ack request, and emit `emit-with-ack` with the client's answer;
//!   `smoke` → ack `{ok: true, data}`, then broadcast `smoke:broadcast`
//!   `{from, data}` to every socket of `/` (a `tokio::sync::broadcast`
//!   channel, each socket's signal). Binary attachments travel along.
//!
//!   `/topics` (not the kit's) follows topics of the tenant named by the
//!   handshake's `?tenant=` (or `X-TenantId`; without one the CONNECT is
//!   refused, the refusal's data naming the peer): `follow` (topic) acks
//!   `{position, following, namespace, principal}`; `unfollow` (topic) acks
//!   `[unfollowed, still followed]`; `leave` disconnects the socket. Events
//!   arrive as `42/topics,["event",<stored event JSON>]` (built once per
//!   event), gaps as `42/topics,["gap",{topic,gap}]`. No credential: test
//!   builds only.
//!
//! The Socket.IO endpoint is written only against the transport's module
//! interface ([`Namespace`], [`SocketHandler`]): it is the example for modules.

use crate::auth::Admission;
use crate::core::hub::Start;
use crate::core::log::encoding::Encoding;
use crate::core::log::read::Gap;
use crate::core::log::{LogEvent, TopicRef};
use crate::http::router::Router;
use crate::transport::socketio::engine::{
    AppEnd, Application, EngineServer, Message, Outgoing, SessionApp,
};
use crate::transport::socketio::packet;
use crate::transport::socketio::{
    ClientAck, ClientEvent, ConnectRefusal, Handshake, Namespace, SioSettings, SocketCtx,
    SocketHandler, SocketIoServer,
};
use crate::transport::ws::WsRuntime;
use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};
use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::broadcast;

/// Path of the raw Engine.IO echo endpoint.
const ENGINE_PATH: &str = "/__test/engine.io/";
/// Path of the Socket.IO endpoint.
const SOCKETIO_PATH: &str = "/__test/socket.io/";
/// The smoke client's event.
const SMOKE_EVENT: &str = "smoke";
/// The broadcast a smoke event triggers.
const SMOKE_BROADCAST: &str = "smoke:broadcast";
/// Broadcasts a slow socket may lag behind before it misses some.
const SHOUT_BUFFER: usize = 64;
/// The namespace following topics.
const TOPICS_NSP: &str = "/topics";

/// Registers the kit's endpoints.
pub fn routes(router: &mut Router, settings: SioSettings, runtime: WsRuntime) {
    let echo = Arc::new(EngineServer::new(
        settings,
        runtime.lifecycle.clone(),
        runtime.metrics.clone(),
        Echo,
    ));
    let (shouts, _) = broadcast::channel(SHOUT_BUFFER);
    let sio = Arc::new(
        SocketIoServer::new(settings, runtime)
            .namespace(
                "/",
                Arc::new(KitNamespace {
                    shouts: Some(shouts),
                }),
            )
            .namespace("/custom", Arc::new(KitNamespace { shouts: None }))
            .namespace(TOPICS_NSP, Arc::new(TopicsNamespace)),
    );
    for method in [Method::GET, Method::POST, Method::PUT] {
        router.route_with(
            method.clone(),
            ENGINE_PATH,
            &echo,
            |echo, request| async move { echo.handle(request).await },
        );
        router.route_with(method, SOCKETIO_PATH, &sio, |sio, request| async move {
            sio.handle(request).await
        });
    }
}

/// A kit namespace: `/` with the smoke broadcast channel and every
/// handler, `/custom` with the `auth` greeting only.
struct KitNamespace {
    shouts: Option<broadcast::Sender<Shout>>,
}

/// A `smoke` broadcast.
#[derive(Debug, Clone)]
struct Shout {
    from: String,
    data: Value,
    attachments: Vec<Bytes>,
}

impl Namespace for KitNamespace {
    type Socket = KitSocket;

    async fn connect(
        &self,
        _handshake: &Handshake,
        auth: Option<Value>,
    ) -> Result<(KitSocket, Option<Admission>), ConnectRefusal> {
        let smoke = self.shouts.as_ref().map(|shouts| Smoke {
            shouts: shouts.clone(),
            heard: shouts.subscribe(),
        });
        let auth = auth.unwrap_or_else(|| json!({}));
        Ok((KitSocket { auth, smoke }, None))
    }
}

/// One client in a kit namespace.
struct KitSocket {
    /// The CONNECT payload, sent back on connect.
    auth: Value,
    /// The broadcast channel (`/` only: it has the handlers).
    smoke: Option<Smoke>,
}

/// The smoke broadcast, both ways.
struct Smoke {
    shouts: broadcast::Sender<Shout>,
    heard: broadcast::Receiver<Shout>,
}

impl SocketHandler for KitSocket {
    type Signal = Shout;

    async fn on_connect(&mut self, ctx: &mut SocketCtx<'_>) {
        ctx.emit("auth", vec![self.auth.take()]);
    }

    async fn on_event(&mut self, event: ClientEvent, ctx: &mut SocketCtx<'_>) {
        let Some(smoke) = &self.smoke else {
            return;
        };
        let ClientEvent {
            name,
            args,
            attachments,
            ack,
        } = event;
        match name.as_str() {
            "message" => ctx.emit_binary("message-back", args, attachments),
            "message-with-ack" => {
                if let Some(id) = ack {
                    ctx.ack_binary(id, args, attachments);
                }
            }
            "emit-with-ack" if attachments.is_empty() => {
                ctx.emit_with_ack("emit-with-ack", args);
            }
            "emit-with-ack" => {
                ctx.emit_binary_with_ack("emit-with-ack", args, attachments);
            }
            SMOKE_EVENT => {
                let data = args.into_iter().next().unwrap_or(Value::Null);
                if let Some(id) = ack {
                    let reply = json!({ "ok": true, "data": data });
                    ctx.ack_binary(id, vec![reply], attachments.clone());
                }
                let from = ctx.socket_id().to_string();
                // No receiver is no error (the sender itself listens).
                let _ = smoke.shouts.send(Shout {
                    from,
                    data,
                    attachments,
                });
            }
            _ => {}
        }
    }

    async fn on_ack(&mut self, ack: ClientAck, ctx: &mut SocketCtx<'_>) {
        ctx.emit_binary("emit-with-ack", ack.args, ack.attachments);
    }

    async fn next_signal(&mut self) -> Shout {
        let Some(smoke) = &mut self.smoke else {
            return std::future::pending().await;
        };
        loop {
            match smoke.heard.recv().await {
                Ok(shout) => return shout,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
            }
        }
    }

    async fn on_signal(&mut self, shout: Shout, ctx: &mut SocketCtx<'_>) {
        let data = json!({ "from": shout.from, "data": shout.data });
        ctx.emit_binary(SMOKE_BROADCAST, vec![data], shout.attachments);
    }

    fn event_packet<'e>(&self, _key: &str, _event: &'e LogEvent) -> Option<Cow<'e, Bytes>> {
        None
    }

    fn gap_packet(&self, _key: &str, _gap: &Gap) -> Option<String> {
        None
    }
}

/// `/topics`: sockets following topics of one tenant.
struct TopicsNamespace;

impl Namespace for TopicsNamespace {
    type Socket = TopicsSocket;

    async fn connect(
        &self,
        handshake: &Handshake,
        _auth: Option<Value>,
    ) -> Result<(TopicsSocket, Option<Admission>), ConnectRefusal> {
        let named = handshake.query_param("tenant").or_else(|| {
            handshake
                .headers()
                .get("x-tenantid")
                .and_then(|value| value.to_str().ok())
        });
        let tenant = named
            .and_then(|tenant| tenant.parse().ok())
            .ok_or_else(|| ConnectRefusal {
                message: "name the tenant: ?tenant=<uuid> on the handshake".into(),
                data: Some(json!({ "peer": handshake.peer().map(|peer| peer.to_string()) })),
            })?;
        Ok((TopicsSocket { tenant }, None))
    }
}

/// One client of `/topics`.
struct TopicsSocket {
    tenant: uuid::Uuid,
}

/// `42/topics,["event",<stored JSON>]`, built once per event.
static TOPICS_EVENT: Encoding = Encoding::new("test.socketio.event", |event| {
    packet::event_text(TOPICS_NSP, "event", &event.json)
});

impl SocketHandler for TopicsSocket {
    type Signal = Infallible;

    async fn on_event(&mut self, event: ClientEvent, ctx: &mut SocketCtx<'_>) {
        let topic = event
            .args
            .first()
            .and_then(Value::as_str)
            .unwrap_or_default();
        let reply = match event.name.as_str() {
            "follow" => match TopicRef::new(self.tenant, topic) {
                Ok(topic_ref) => {
                    let position = ctx.follow(topic, topic_ref, Start::Live);
                    json!({
                        "position": position.map(|id| id.to_string()),
                        "following": ctx.following(),
                        "namespace": ctx.namespace(),
                        "principal": ctx.principal().map(|principal| principal.name.clone()),
                    })
                }
                Err(err) => json!({ "error": err }),
            },
            "unfollow" => json!([ctx.unfollow(topic), ctx.follows(topic)]),
            "leave" => {
                ctx.disconnect();
                return;
            }
            _ => return,
        };
        if let Some(id) = event.ack {
            ctx.ack(id, vec![reply]);
        }
    }

    fn event_packet<'e>(&self, _key: &str, event: &'e LogEvent) -> Option<Cow<'e, Bytes>> {
        Some(event.encoded(&TOPICS_EVENT))
    }

    fn gap_packet(&self, key: &str, gap: &Gap) -> Option<String> {
        let notice = json!({ "topic": key, "gap": gap }).to_string();
        String::from_utf8(packet::event_text(TOPICS_NSP, "gap", notice.as_bytes()).to_vec()).ok()
    }
}

/// The echo endpoint's application.
struct Echo;

impl Application for Echo {
    type Session = Echo;

    fn open(&self, _handshake: Arc<Handshake>) -> Echo {
        Echo
    }
}

impl SessionApp for Echo {
    type Work = Infallible;

    async fn on_message(
        &mut self,
        message: Message,
        out: &mut Vec<Outgoing>,
    ) -> Result<(), AppEnd> {
        out.push(match message {
            Message::Text(text) => Outgoing::Text(format!("4{text}").into()),
            Message::Binary(data) => Outgoing::Binary(data),
        });
        Ok(())
    }

    async fn next_work(&mut self) -> Infallible {
        std::future::pending().await
    }

    async fn on_work(&mut self, work: Infallible, _out: &mut Vec<Outgoing>) -> Result<(), AppEnd> {
        match work {}
    }
}
