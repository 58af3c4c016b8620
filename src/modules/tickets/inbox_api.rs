//! REST handlers of the inbox and preferences (all under
//! `/api/v2/ticketing`), for the caller's own inbox:
//!
//! * `GET /ticket/notification/count` → `{unread, total}`;
//! * `GET /ticket/notification/list?cursor=&limit=&unreadOnly=` →
//!   `{items, nextCursor}` newest first (`cursor` a notification id);
//! * `PUT /ticket/notification/read` `{ids:[…]}` or `{all:true}` →
//!   `{updated, unread}`;
//! * `GET /user/preference`, `PUT /user/preference` `{types:{<type>:bool}}`
//!   → `{types:{…all 14…}}`.
//!
//! Invariants: a caller reaches only their own inbox (the JWT's `sub`, or
//! the user a backend acts for); writes are idempotent under an
//! `Idempotency-Key`; marking all read is one change per
//! [`inbox::MARK_PAGE`] rows, the reply recorded by the last one (a retry
//! with the same key goes through the pages again, which finds nothing new
//! to mark but notifications that arrived since, and replays the first
//! reply).

use super::TicketsModule;
use super::api::{Body, DEFAULT_PAGE, MAX_PAGE, Write};
use super::events::parse_notification_id;
use super::inbox::{self, ListQuery, MAX_READ_IDS, Owner};
use super::service::Acting;
use crate::core::writer::Footprint;
use crate::error::ApiError;
use crate::http::router::Router;
use crate::http::{Request, Response};
use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::sync::Arc;
use ulid::Ulid;

/// Adds the inbox and preference routes.
pub(super) fn routes(router: &mut Router, module: &Arc<TicketsModule>) {
    router.route_with(
        Method::GET,
        "/api/v2/ticketing/ticket/notification/count",
        module,
        count,
    );
    router.route_with(
        Method::GET,
        "/api/v2/ticketing/ticket/notification/list",
        module,
        list,
    );
    router.route_with(
        Method::PUT,
        "/api/v2/ticketing/ticket/notification/read",
        module,
        read,
    );
    let preference = "/api/v2/ticketing/user/preference";
    router.route_with(Method::GET, preference, module, get_preferences);
    router.route_with(Method::PUT, preference, module, put_preferences);
}

/// The caller's inbox.
fn inbox_of(acting: &Acting) -> Owner {
    Owner::of(acting.tenant, &acting.person.id)
}

/// `GET /ticket/notification/count`
async fn count(module: Arc<TicketsModule>, request: Request) -> Result<Response, ApiError> {
    let owner = inbox_of(&module.reader(&request)?);
    module
        .answer(move |store| Ok(inbox::counts_view(inbox::counts(store, &owner)?)))
        .await
}

/// `GET /ticket/notification/list`
async fn list(module: Arc<TicketsModule>, request: Request) -> Result<Response, ApiError> {
    let owner = inbox_of(&module.reader(&request)?);
    let query = ListQuery {
        cursor: request
            .query_param("cursor")
            .filter(|text| !text.is_empty())
            .map(|text| notification_id("cursor", &text))
            .transpose()?,
        limit: request.limit_param(DEFAULT_PAGE, MAX_PAGE)?,
        unread_only: unread_only(&request)?,
    };
    module
        .answer(move |store| inbox::list(store, &owner, query))
        .await
}

/// The `unreadOnly` query parameter: `true` or `false` (default).
fn unread_only(request: &Request) -> Result<bool, ApiError> {
    match request.query_param("unreadOnly").as_deref() {
        None | Some("" | "false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(ApiError::validation(format!(
            "unreadOnly must be true or false, not `{other}`"
        ))),
    }
}

/// A notification id (a UUID) as its event's ULID; 400 naming `field`.
fn notification_id(field: &str, text: &str) -> Result<Ulid, ApiError> {
    parse_notification_id(text).ok_or_else(|| {
        ApiError::validation(format!(
            "{field} `{text}` is not a notification id (a UUID)"
        ))
    })
}

/// `PUT /ticket/notification/read` body: `ids` or `all: true`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadInput {
    #[serde(default)]
    ids: Option<Vec<String>>,
    #[serde(default)]
    all: bool,
}

/// What to mark read.
enum Target {
    Ids(Vec<Ulid>),
    All,
}

impl ReadInput {
    fn target(&self) -> Result<Target, ApiError> {
        match (&self.ids, self.all) {
            (None, true) => Ok(Target::All),
            (Some(ids), false) if !ids.is_empty() => {
                if ids.len() > MAX_READ_IDS {
                    return Err(ApiError::validation(format!(
                        "`ids` names {} notifications; the most is {MAX_READ_IDS}",
                        ids.len()
                    )));
                }
                let parsed = ids.iter().map(|id| notification_id("ids", id));
                Ok(Target::Ids(parsed.collect::<Result<_, _>>()?))
            }
            _ => Err(ApiError::validation(
                "send either a non-empty `ids` list or `all: true`",
            )),
        }
    }
}

/// `PUT /ticket/notification/read`
async fn read(module: Arc<TicketsModule>, mut request: Request) -> Result<Response, ApiError> {
    let write = module
        .prepare::<ReadInput>(&mut request, "tickets.notifications.read", Body::Json)
        .await?;
    match write.input.target()? {
        Target::Ids(ids) => {
            module
                .commit(write, StatusCode::OK, move |change, acting, _| {
                    inbox::mark_ids(change, &inbox_of(acting), &ids)
                })
                .await
        }
        Target::All => mark_all(&module, write).await,
    }
}

/// Marks every notification read, one change per page, then records the
/// reply in a last change (under the request's idempotency key).
async fn mark_all(module: &TicketsModule, write: Write<ReadInput>) -> Result<Response, ApiError> {
    let owner = inbox_of(&write.acting);
    let newest = module
        .core
        .read("reading the inbox failed", move |store| {
            inbox::newest(store, &owner)
        })
        .await?;
    let mut updated = 0;
    if let Some(through) = newest {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let through = through.clone();
            let progress = module
                .core
                .writer
                .commit(Footprint::data(0), move |change| {
                    inbox::mark_page(change, &owner, after.as_deref(), &through)
                })
                .await?
                .value;
            updated += progress.updated;
            match progress.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
    }
    module
        .commit(write, StatusCode::OK, move |change, acting, _| {
            inbox::marked_all(change, &inbox_of(acting), updated)
        })
        .await
}

/// `GET /user/preference`
async fn get_preferences(
    module: Arc<TicketsModule>,
    request: Request,
) -> Result<Response, ApiError> {
    let owner = inbox_of(&module.reader(&request)?);
    module
        .answer(move |store| Ok(inbox::preferences_view(&inbox::preferences(store, &owner)?)))
        .await
}

/// `PUT /user/preference` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PreferenceInput {
    types: Map<String, Value>,
}

/// `PUT /user/preference`
async fn put_preferences(
    module: Arc<TicketsModule>,
    mut request: Request,
) -> Result<Response, ApiError> {
    let write = module
        .prepare::<PreferenceInput>(&mut request, "tickets.preferences", Body::Json)
        .await?;
    module
        .commit(write, StatusCode::OK, |change, acting, input| {
            inbox::set_preferences(change, &inbox_of(acting), &input.types)
        })
        .await
}
