//! `/__test/ws-follow`: a WebSocket session whose topics are set only by the
//! server, the shape chat and Socket.IO sessions take on the session runner.
//!
//! * `GET /__test/ws-follow?topics=a,b` (any credential that may read them):
//!   the session follows `a` and `b` live from its start, without a client
//!   message, and says `{"op":"session","id","following":[…]}`.
//! * `POST /__test/ws-follow/{id}?follow=c&unfollow=a`: a signal to the open
//!   session `id` (as a membership change would be): it follows and
//!   unfollows, then says `{"op":"following","topics":[…]}`. 404 when no
//!   such session is open.
//!
//! Events arrive as on the topics WebSocket; client messages are ignored.

use crate::auth::Authenticator;
use crate::core::hub::Start;
use crate::core::log::read::Gap;
use crate::core::log::{LogEvent, TopicRef};
use crate::error::ApiError;
use crate::http::router::Router;
use crate::http::{Request, response};
use crate::modules::topics;
use crate::transport::ws::{self, Outcome, Session, WsProtocol, WsRuntime};
use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::json;
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// A change of the followed topics, sent by the server.
#[derive(Debug, Default)]
struct Change {
    follow: Vec<String>,
    unfollow: Vec<String>,
}

/// Open sessions by id.
#[derive(Default)]
struct Sessions {
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, mpsc::UnboundedSender<Change>>>,
}

/// Registers the two routes.
pub fn routes(router: &mut Router, runtime: WsRuntime, auth: Authenticator) {
    let sessions = Arc::new(Sessions::default());
    let registry = sessions.clone();
    router.route(Method::GET, "/__test/ws-follow", move |mut request| {
        let (runtime, auth, registry) = (runtime.clone(), auth.clone(), registry.clone());
        async move { open(&mut request, &runtime, &auth, &registry).await }
    });
    router.route(Method::POST, "/__test/ws-follow/{id}", move |request| {
        let sent = signal(&request, &sessions);
        async move { sent }
    });
}

async fn open(
    request: &mut Request,
    runtime: &WsRuntime,
    auth: &Authenticator,
    sessions: &Arc<Sessions>,
) -> Result<crate::http::Response, ApiError> {
    let admission = auth.admit(auth.authenticate(request)?, None).await?;
    let initial = names(request, "topics");
    for name in &initial {
        admission.principal.require_read(name)?;
    }
    let id = sessions.next_id.fetch_add(1, Ordering::Relaxed);
    let (sender, changes) = mpsc::unbounded_channel();
    sessions.open.lock().unwrap().insert(id, sender);
    let protocol = FollowProtocol {
        id,
        initial,
        changes,
        sessions: sessions.clone(),
    };
    ws::serve(request, runtime, admission, protocol)
}

fn signal(request: &Request, sessions: &Sessions) -> Result<crate::http::Response, ApiError> {
    let id: u64 = request
        .param("id")
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| ApiError::validation("the session id is a number"))?;
    let change = Change {
        follow: names(request, "follow"),
        unfollow: names(request, "unfollow"),
    };
    let open = sessions.open.lock().unwrap();
    let sender = open
        .get(&id)
        .ok_or_else(|| ApiError::not_found(format!("no open session {id}")))?;
    sender
        .send(change)
        .map_err(|_| ApiError::not_found(format!("session {id} ended")))?;
    Ok(response::data(StatusCode::OK, &json!({ "sent": id })))
}

/// The comma-separated names of a query parameter.
fn names(request: &Request, parameter: &str) -> Vec<String> {
    request
        .query_param(parameter)
        .map(|list| {
            list.split(',')
                .filter(|name| !name.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

struct FollowProtocol {
    id: u64,
    initial: Vec<String>,
    changes: mpsc::UnboundedReceiver<Change>,
    sessions: Arc<Sessions>,
}

impl FollowProtocol {
    fn follow(session: &mut Session<'_>, names: &[String]) -> Result<(), Outcome> {
        for name in names {
            let topic = TopicRef::new(session.principal().tenant, name)
                .map_err(|err| Outcome::Close(err.to_string().into()))?;
            session.follow(name, topic, Start::Live);
        }
        Ok(())
    }
}

impl WsProtocol for FollowProtocol {
    type Signal = Option<Change>;

    async fn open(&mut self, session: &mut Session<'_>) -> Outcome {
        let initial = std::mem::take(&mut self.initial);
        if let Err(close) = Self::follow(session, &initial) {
            return close;
        }
        Outcome::Text(json!({ "op": "session", "id": self.id, "following": initial }).to_string())
    }

    async fn on_text(&mut self, _text: &str, _session: &mut Session<'_>) -> Outcome {
        Outcome::Continue
    }

    async fn next_signal(&mut self) -> Option<Change> {
        self.changes.recv().await
    }

    async fn on_signal(&mut self, change: Option<Change>, session: &mut Session<'_>) -> Outcome {
        let Some(change) = change else {
            return Outcome::Close("the server dropped this session".into());
        };
        for name in &change.unfollow {
            session.unfollow(name);
        }
        if let Err(close) = Self::follow(session, &change.follow) {
            return close;
        }
        let following: BTreeSet<&str> = session.followed().collect();
        Outcome::Text(json!({ "op": "following", "topics": following }).to_string())
    }

    fn event_text<'e>(&self, _topic: &str, event: &'e LogEvent) -> Option<Cow<'e, Bytes>> {
        Some(topics::ws_event_text(event))
    }

    fn gap_text(&self, topic: &str, gap: &Gap) -> String {
        json!({ "op": "gap", "topic": topic, "gap": gap }).to_string()
    }
}

impl Drop for FollowProtocol {
    fn drop(&mut self) {
        self.sessions.open.lock().unwrap().remove(&self.id);
    }
}
