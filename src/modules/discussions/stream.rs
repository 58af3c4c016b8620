//! The stream side of spec 000: stream tickets minted by the backend and the
//! browser's SSE stream of one discussion.
//!
//! * `POST /api/v1/stream/ticket-by-external` `{externalId}` and
//!   `POST /api/v1/stream/ticket` `{discussionId}` (API key with `read`;
//!   optionally `externalUserId` and `displayName` of the viewer) →
//!   `{ticket, discussionId, expiresAt, discussionStatus}`.
//! * `GET /api/v1/stream/{discussionId}?ticket=…` → SSE: `retry: 5000`,
//!   `connected` (its `id:` is the stream's position, so EventSource resumes
//!   exactly even before the first event), the discussion's events (`data:`
//!   is the payload), and `connection-timeout` when the connection is cycled.
//!
//! Ticket semantics (see the auth tickets module): a ticket opens one stream
//! session of one discussion. It must first be used within `--ticket-ttl`;
//! afterwards the same session may be resumed with the same ticket and
//! `Last-Event-ID` (what EventSource does by itself) while no other
//! connection holds it, within `--ticket-resume-window` of its last
//! connection. A second concurrent stream is refused (409).

use super::DiscussionsApi;
use super::api::uuid_param;
use super::events;
use super::model::Discussion;
use super::query;
use crate::auth::api_keys::Scope;
use crate::auth::tickets::{Target, Viewer};
use crate::auth::{Credential, Principal};
use crate::core::hub::FanOut;
use crate::core::log::LogEvent;
use crate::error::ApiError;
use crate::http::{Request, Response, response};
use crate::transport::sse::{self, SseFormat, SseStream};
use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// The spec's SSE encoding: `event:` is the event type, `data:` its payload.
struct DiscussionFormat {
    connected: Value,
}

impl SseFormat for DiscussionFormat {
    fn connected(&self) -> Value {
        self.connected.clone()
    }

    /// The spec's frame: `data:` is the payload.
    fn event(&self, event: &LogEvent) -> Option<Bytes> {
        Some(event.encoded(&sse::DATA_FRAME).into_owned())
    }
}

/// The viewer a backend names when minting.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TicketRequest {
    #[serde(default)]
    external_id: Option<String>,
    #[serde(default)]
    discussion_id: Option<String>,
    #[serde(default)]
    external_user_id: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
}

/// `POST /api/v1/stream/ticket-by-external`
pub(super) async fn ticket_by_external(
    api: Arc<DiscussionsApi>,
    request: Request,
) -> Result<Response, ApiError> {
    mint(api, request, |input, store, tenant| {
        let external = input
            .external_id
            .as_deref()
            .ok_or_else(|| ApiError::validation("`externalId` is required"))?;
        query::discussion_by_external(store, tenant, external)
    })
    .await
}

/// `POST /api/v1/stream/ticket`
pub(super) async fn ticket(
    api: Arc<DiscussionsApi>,
    request: Request,
) -> Result<Response, ApiError> {
    mint(api, request, |input, store, tenant| {
        let id = uuid_param("discussionId", input.discussion_id.as_deref())?;
        query::discussion(store, tenant, &id)
    })
    .await
}

type Find =
    fn(&TicketRequest, &crate::core::store::Store, &uuid::Uuid) -> Result<Discussion, ApiError>;

async fn mint(
    api: Arc<DiscussionsApi>,
    mut request: Request,
    find: Find,
) -> Result<Response, ApiError> {
    let principal = api.core.auth.authenticate(&request)?;
    principal.require(Scope::Read)?;
    let mut input: TicketRequest = request.json().await?;
    let viewer = Viewer {
        id: input.external_user_id.take(),
        name: input.display_name.take(),
    };
    viewer.check("externalUserId", "displayName")?;
    let tenant = principal.tenant;
    let discussion = api.read(move |store| find(&input, store, &tenant)).await?;
    let target = Target::Discussion(discussion.id.to_string());
    let (secret, ticket) = api.core.auth.tickets().mint(tenant, target, viewer).await?;
    Ok(response::data(
        StatusCode::CREATED,
        &json!({
            "ticket": secret,
            "discussionId": discussion.id,
            "expiresAt": crate::core::clock::rfc3339_millis(ticket.first_use_by),
            "discussionStatus": discussion.status,
        }),
    ))
}

/// `GET /api/v1/stream/{discussionId}` (`?ticket=`, or an API key with `read`
/// or a JWT of the tenant)
pub(super) async fn stream(
    api: Arc<DiscussionsApi>,
    request: Request,
) -> Result<Response, ApiError> {
    let id = uuid_param("discussionId", request.param("discussionId"))?;
    let admission = api
        .core
        .auth
        .admit_stream(&request, &Target::Discussion(id.to_string()))
        .await?;
    require_stream_read(&admission.principal)?;
    let tenant = admission.principal.tenant;
    let start = sse::resume_start(&request)?;
    let discussion = api
        .read(move |store| query::discussion(store, &tenant, &id))
        .await?;
    let subscription = api.core.hub.subscribe(events::topic(tenant, &id), start);
    let connected = json!({
        "discussionId": discussion.id,
        "discussionStatus": discussion.status,
    });
    Ok(sse::response(SseStream {
        subscription,
        format: Arc::new(DiscussionFormat { connected }),
        settings: api.core.sse(),
        lifecycle: api.core.lifecycle.clone(),
        metrics: api.core.metrics.clone(),
        admission,
    }))
}

/// Tickets were checked on claim; keys need `read`; tenant JWTs may read.
fn require_stream_read(principal: &Principal) -> Result<(), ApiError> {
    match principal.credential {
        Credential::Ticket(_) | Credential::Token(_) => Ok(()),
        Credential::Admin | Credential::Key(_) => principal.require(Scope::Read),
    }
}
