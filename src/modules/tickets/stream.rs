//! The two SSE streams of a user: `GET /ticket/sse/notifications` (their
//! notifications) and `GET /ticket/sse/list/updates` (their ticket-list
//! updates).
//!
//! Who opens one: a user's JWT whose tenant and realm are named, from the
//! spec's headers (`Authorization: Bearer`, `x-tenantid`, `realmname`) or,
//! for a browser's `EventSource` (which cannot set headers), from the query
//! (`?access_token=…&tenant=…&realm=…`; each part from its header, else its
//! parameter; see [`crate::auth::Authenticator::authenticate_named_user`]).
//!
//! Wire: `retry:`, then `connected` (`{"message","userId","timestamp"}`,
//! its `id:` the stream's position), then `notification` frames (`id:` the
//! event's ULID, `data:` the notification object, [`NOTIFICATION_FRAME`])
//! or list frames (`event:` `ticketCreated|ticketAdded|ticketUpdated|ticketRemoved`,
//! `data:` the event's data); `heartbeat` `{"timestamp"}` every
//! `--tickets-heartbeat`; `error` `{"code","message"}` before the server
//! ends it (`TOKEN_EXPIRED` at the token's `exp`, `CREDENTIAL_REVOKED`,
//! `SUBSCRIPTION_ERROR` when the log cannot be read). `Last-Event-ID` (or
//! `?lastEventId=`) resumes exactly after that event.
//!
//! Refusals: 401 (no token, an invalid or expired one, no tenant or realm
//! named), 403 (the tenant's `notificationRoles` are set and the token has
//! none of them), 429 with `Retry-After` (the user already holds
//! `--tickets-max-streams-per-user` ticket streams, both kinds counted
//! together; the server-wide `--max-streams-per-user` applies too), 503 with
//! `Retry-After` while the server drains.
//!
//! Invariants: a stream carries only its user's topic of its tenant; the
//! per-user slot is held by the stream's format, so it is released exactly
//! when the stream ends, however it ends.

use super::TicketsModule;
use super::events::{self, NOTIFICATION_JSON};
use super::layout::UserKey;
use super::service;
use crate::auth::limits::UserSlot;
use crate::auth::{Credential, Principal};
use crate::core::clock;
use crate::core::hub::FanOut;
use crate::core::log::encoding::Encoding;
use crate::core::log::{LogEvent, TopicRef};
use crate::error::ApiError;
use crate::http::router::Router;
use crate::http::{Request, Response};
use crate::modules::records::forbidden;
use crate::transport::sse::{self, SseFormat, SseStream};
use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// `Retry-After` of a stream refused while the server drains.
const DRAIN_RETRY: Duration = Duration::from_secs(5);

/// A notification as the spec's SSE frame: `id:` the event's ULID,
/// `event: notification`, `data:` the served notification object.
pub static NOTIFICATION_FRAME: Encoding = Encoding::new("tickets.sse", |event| {
    sse::event_frame(event, &event.encoded(&NOTIFICATION_JSON))
});

/// Adds the stream routes.
pub(super) fn routes(router: &mut Router, module: &Arc<TicketsModule>) {
    router.route_with(
        Method::GET,
        "/api/v2/ticketing/ticket/sse/notifications",
        module,
        notifications,
    );
    router.route_with(
        Method::GET,
        "/api/v2/ticketing/ticket/sse/list/updates",
        module,
        list_updates,
    );
}

/// Which of a user's two streams.
#[derive(Debug, Clone, Copy)]
enum Feed {
    /// Their notifications.
    Notifications,
    /// Their ticket-list updates.
    ListUpdates,
}

impl Feed {
    fn topic(self, tenant: Uuid, user: &UserKey) -> TopicRef {
        match self {
            Feed::Notifications => events::notifications_topic(tenant, user),
            Feed::ListUpdates => events::list_topic(tenant, user),
        }
    }

    fn greeting(self) -> &'static str {
        match self {
            Feed::Notifications => "Connected to notification stream",
            Feed::ListUpdates => "Connected to ticket list updates",
        }
    }
}

/// The spec's framing of one user's stream; holds the user's ticket-stream
/// slot for as long as the stream lives.
struct TicketsFormat {
    feed: Feed,
    user: String,
    _slot: UserSlot,
}

/// Now as RFC 3339 with milliseconds.
fn timestamp() -> String {
    clock::rfc3339_millis(clock::unix_millis())
}

impl SseFormat for TicketsFormat {
    fn connected(&self) -> Value {
        json!({
            "message": self.feed.greeting(),
            "userId": self.user,
            "timestamp": timestamp(),
        })
    }

    fn event(&self, event: &LogEvent) -> Option<Bytes> {
        let frame = match self.feed {
            Feed::Notifications => event.encoded(&NOTIFICATION_FRAME),
            Feed::ListUpdates => event.encoded(&sse::DATA_FRAME),
        };
        Some(frame.into_owned())
    }

    fn heartbeat(&self) -> Bytes {
        sse::frame("heartbeat", &json!({ "timestamp": timestamp() }))
    }

    fn read_failure(&self, message: &str) -> Value {
        json!({ "code": "SUBSCRIPTION_ERROR", "message": message })
    }
}

/// `GET /ticket/sse/notifications`
async fn notifications(module: Arc<TicketsModule>, request: Request) -> Result<Response, ApiError> {
    open(&module, &request, Feed::Notifications).await
}

/// `GET /ticket/sse/list/updates`
async fn list_updates(module: Arc<TicketsModule>, request: Request) -> Result<Response, ApiError> {
    open(&module, &request, Feed::ListUpdates).await
}

/// Checks the caller in the order of the refusals (503, 401, 400, 403,
/// 429) and opens `feed` for them.
async fn open(module: &TicketsModule, request: &Request, feed: Feed) -> Result<Response, ApiError> {
    if module.core.lifecycle.is_draining() {
        return Err(ApiError::unavailable_for(
            "the server is shutting down; reconnect (to another instance)",
            DRAIN_RETRY,
        ));
    }
    let principal = module.core.auth.authenticate_named_user(request)?;
    let start = sse::resume_start(request)?;
    let tenant = principal.tenant;
    let settings = module
        .core
        .read("reading the ticketing settings failed", move |store| {
            service::settings(store, &tenant)
        })
        .await?;
    check_roles(&settings.notification_roles, token_roles(&principal))?;
    let user = principal.name.clone();
    let slot = module.streams.acquire(tenant, &user)?;
    let admission = module.core.auth.admit(principal, None).await?;
    let subscription = module
        .core
        .hub
        .subscribe(feed.topic(tenant, &UserKey::of(&user)), start);
    let mut settings = module.core.sse();
    settings.heartbeat = module.limits.heartbeat;
    Ok(sse::response(SseStream {
        subscription,
        format: Arc::new(TicketsFormat {
            feed,
            user,
            _slot: slot,
        }),
        settings,
        lifecycle: module.core.lifecycle.clone(),
        metrics: module.core.metrics.clone(),
        admission,
    }))
}

/// The roles of the principal's token (none for other credentials, which
/// [`crate::auth::Authenticator::authenticate_named_user`] never returns).
fn token_roles(principal: &Principal) -> &[String] {
    match &principal.credential {
        Credential::Token(claims) => &claims.roles,
        _ => &[],
    }
}

/// 403 unless `roles` has one of `required` (any user when none are required).
fn check_roles(required: &[String], roles: &[String]) -> Result<(), ApiError> {
    if required.is_empty() || roles.iter().any(|role| required.contains(role)) {
        return Ok(());
    }
    Err(forbidden(&format!(
        "the notification streams need one of the roles {}",
        required.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn the_streams_need_one_of_the_tenants_roles_when_it_names_some() {
        assert!(check_roles(&[], &[]).is_ok(), "no roles required");
        let required = names(&["agent", "support"]);
        assert!(check_roles(&required, &names(&["viewer", "support"])).is_ok());
        let refused = check_roles(&required, &names(&["viewer"])).unwrap_err();
        assert_eq!(refused.status.as_u16(), 403);
        assert!(check_roles(&required, &[]).is_err());
    }

    #[test]
    fn heartbeats_and_read_failures_have_the_specs_shape() {
        let format = TicketsFormat {
            feed: Feed::Notifications,
            user: "u1".into(),
            _slot: crate::auth::limits::StreamLimits::new(1)
                .acquire(Uuid::nil(), "u1")
                .unwrap(),
        };
        let heartbeat = String::from_utf8(format.heartbeat().to_vec()).unwrap();
        let data = heartbeat
            .strip_prefix("event: heartbeat\ndata: ")
            .and_then(|rest| rest.strip_suffix("\n\n"))
            .unwrap();
        let data: Value = serde_json::from_str(data).unwrap();
        assert_eq!(data["timestamp"].as_str().unwrap().len(), 24, "{data}");
        assert_eq!(format.read_failure("m")["code"], "SUBSCRIPTION_ERROR");
        assert_eq!(format.connected()["userId"], "u1");
    }
}
