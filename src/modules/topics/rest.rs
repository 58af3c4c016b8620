//! HTTP handlers of the topics API: publish, history page, SSE stream.

use super::TopicsApi;
use super::actor::{self, ActorClaim};
use crate::auth::Principal;
use crate::auth::api_keys::Scope;
use crate::auth::tickets::{Target, Viewer};
use crate::core::hub::FanOut;
use crate::core::log::read::{Cursor, PageLimit};
use crate::core::log::{LogEvent, TopicRef};
use crate::core::writer::Footprint;
use crate::error::ApiError;
use crate::http::{Request, Response, response};
use crate::modules::idempotency::{self, Claim, Key, Reply};
use crate::transport::sse::{self, GenericFormat, SseStream};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use ulid::Ulid;

/// Events in a history page unless `limit` says otherwise.
const DEFAULT_PAGE: usize = 100;
/// Stored JSON after which a history page stops (`next` continues it).
const HISTORY_PAGE_BYTES: usize = 4 << 20;

/// One event to publish.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EventInput {
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default)]
    pub data: Value,
    #[serde(default)]
    pub actor: Option<ActorClaim>,
}

/// Parses a publish body: one event, or `{"events":[…]}`.
pub(super) fn parse_events(body: Value, max: usize) -> Result<(Vec<EventInput>, bool), ApiError> {
    let (items, batch) = match body {
        Value::Object(mut map) if map.contains_key("events") => match map.remove("events") {
            Some(Value::Array(items)) if map.is_empty() => (items, true),
            _ => {
                return Err(ApiError::validation(
                    "`events` must be the only field and an array of events",
                ));
            }
        },
        single => (vec![single], false),
    };
    if items.is_empty() || items.len() > max {
        return Err(ApiError::validation(format!(
            "a batch holds 1 to {max} events"
        )));
    }
    let events = items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            serde_json::from_value::<EventInput>(item).map_err(|err| {
                let place = if batch {
                    format!("events[{index}]: ")
                } else {
                    String::new()
                };
                ApiError::validation(format!(
                    "{place}{err}; an event is {{\"type\": string, \"data\": any, \"actor\"?: {{\"id\"?, \"display\"?}}}}"
                ))
            })
        })
        .map(|input| {
            let input = input?;
            input.actor.as_ref().map(ActorClaim::check).transpose()?;
            Ok(input)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((events, batch))
}

/// The idempotency operation of a publish (over REST or WebSocket alike).
const PUBLISH_OPERATION: &str = "topics.publish";

/// The claim of a publish of `body` (the event or batch, as parsed JSON) to
/// `topic` with `key`: the same publish over REST or WebSocket fingerprints alike.
pub(super) fn publish_claim(
    api: &TopicsApi,
    key: Option<Key>,
    principal: &Principal,
    topic: &TopicRef,
    body: &Value,
) -> Option<Claim> {
    let body = body.to_string();
    api.core.idempotency.claim(
        key,
        principal,
        PUBLISH_OPERATION,
        &[topic.name.as_bytes(), body.as_bytes()],
    )
}

/// Commits events to a topic atomically, all or none (the writer stages a
/// webhook delivery of each, its stored JSON, in the same change).
/// The reply is the event (or `{"events":[…]}` for a batch); with a claim,
/// a retry gets the first publish's reply and writes nothing.
pub(super) async fn commit_events(
    api: &TopicsApi,
    topic: TopicRef,
    default_actor: String,
    (events, batch): (Vec<EventInput>, bool),
    claim: Option<Claim>,
) -> Result<Reply, ApiError> {
    // Actor claims are not counted: at most 400 bytes each, within --max-body.
    let footprint = Footprint::json(events.iter().map(|input| &input.data));
    let committed = api
        .core
        .writer
        .commit(footprint, move |change| {
            idempotency::protect(claim.as_ref(), change, |change| {
                let mut appended = Vec::with_capacity(events.len());
                for input in events {
                    let actor = actor::stored(&default_actor, input.actor.as_ref());
                    appended.push(change.append(&topic, &input.event_type, actor, input.data)?);
                }
                Ok(Reply::new(StatusCode::CREATED, published(&appended, batch)))
            })
        })
        .await?;
    Ok(committed.value)
}

/// The reply body of a publish: the event, or `{"events":[…]}` for a batch.
fn published(events: &[Arc<LogEvent>], batch: bool) -> Vec<u8> {
    if batch {
        let mut out = b"{\"events\":".to_vec();
        out.extend_from_slice(&join_json(events));
        out.push(b'}');
        out
    } else {
        events
            .first()
            .map(|event| event.json.to_vec())
            .unwrap_or_default()
    }
}

/// `POST /api/v1/topics/{topic}/events` (`Idempotency-Key` optional)
pub(super) async fn publish(
    api: Arc<TopicsApi>,
    mut request: Request,
) -> Result<Response, ApiError> {
    let (principal, topic) = api.authorize(&request)?;
    principal.require(Scope::Publish)?;
    let key = idempotency::requested(request.headers(), None)?;
    let body: Value = request.json().await?;
    let claim = publish_claim(&api, key, &principal, &topic, &body);
    let inputs = parse_events(body, api.limits.max_batch_events)?;
    let reply = commit_events(&api, topic, principal.name, inputs, claim).await?;
    Ok(idempotency::reply_response(&reply))
}

/// `GET /api/v1/topics/{topic}/events?after=ID&limit=N`
pub(super) async fn history(api: Arc<TopicsApi>, request: Request) -> Result<Response, ApiError> {
    let (principal, topic) = api.authorize(&request)?;
    principal.require_read(&topic.name)?;
    let cursor = match request
        .query_param("after")
        .filter(|after| !after.is_empty())
    {
        None => Cursor::Start,
        Some(text) => Cursor::After(
            Ulid::from_string(&text)
                .map_err(|_| ApiError::validation(format!("after=`{text}` is not an event id")))?,
        ),
    };
    let limit = PageLimit {
        events: request.limit_param(DEFAULT_PAGE, api.limits.max_page)?,
        bytes: HISTORY_PAGE_BYTES,
    };
    let page = api
        .core
        .hub
        .read_page(&topic, cursor, limit)
        .await
        .map_err(|err| err.into_api("reading the log failed"))?;
    let next = match (page.more, page.events.last()) {
        (true, Some(last)) => Value::String(last.id().to_string()),
        _ => Value::Null,
    };
    let gap = page.gap.map_or(Value::Bool(false), |gap| json!(gap));
    let mut out = b"{\"events\":".to_vec();
    out.extend_from_slice(&join_json(&page.events));
    out.extend_from_slice(format!(",\"next\":{next},\"gap\":{gap}}}").as_bytes());
    Ok(response::raw_data(StatusCode::OK, &out))
}

/// `GET /api/v1/topics/{topic}/stream` (credential, or `?ticket=`)
pub(super) async fn stream(api: Arc<TopicsApi>, request: Request) -> Result<Response, ApiError> {
    let name = request.param("topic").unwrap_or_default().to_string();
    let admission = api
        .core
        .auth
        .admit_stream(&request, &Target::Topic(name.clone()))
        .await?;
    let principal = &admission.principal;
    let topic = TopicRef::new(principal.tenant, &name).map_err(ApiError::validation)?;
    principal.require_read(&topic.name)?;
    let start = sse::resume_start(&request)?;
    let connected = json!({ "topic": topic.name });
    let subscription = api.core.hub.subscribe(topic, start);
    Ok(sse::response(SseStream {
        subscription,
        format: Arc::new(GenericFormat { connected }),
        settings: api.core.sse(),
        lifecycle: api.core.lifecycle.clone(),
        metrics: api.core.metrics.clone(),
        admission,
    }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TicketInput {
    #[serde(default)]
    viewer: Viewer,
}

/// `POST /api/v1/topics/{topic}/tickets`: a single-use ticket for one viewer's stream.
pub(super) async fn mint_ticket(
    api: Arc<TopicsApi>,
    mut request: Request,
) -> Result<Response, ApiError> {
    let (principal, topic) = api.authorize(&request)?;
    principal.require(Scope::Read)?;
    let input: TicketInput = request.json_or_default().await?;
    let target = Target::Topic(topic.name.clone());
    let (secret, ticket) = api
        .core
        .auth
        .tickets()
        .mint(principal.tenant, target, input.viewer)
        .await?;
    Ok(response::data(
        StatusCode::CREATED,
        &json!({
            "ticket": secret,
            "topic": topic.name,
            "expiresAt": crate::core::clock::rfc3339_millis(ticket.first_use_by),
        }),
    ))
}

/// `[e1,e2,…]` from stored event JSON, without re-encoding.
fn join_json(events: &[Arc<LogEvent>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(events.iter().map(|e| e.json.len() + 1).sum::<usize>() + 2);
    out.push(b'[');
    for (index, event) in events.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&event.json);
    }
    out.push(b']');
    out
}
