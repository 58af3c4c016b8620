//! HTTP handlers of the discussions' write and read side (`/api/v1/discussions…`).

use super::DiscussionsApi;
use super::actor::{Acting, Actor};
use super::query::{self, PageRequest};
use super::service::{self, Context, Lifecycle, Moderate, NewComment, NewDiscussion};
use crate::auth::keys::Scope;
use crate::error::ApiError;
use crate::http::{Request, Response, response};
use crate::writer::{Change, Footprint};
use http::StatusCode;
use serde::Deserialize;
use std::sync::Arc;
use uuid::Uuid;

/// Comments in a page unless `limit` says otherwise.
const DEFAULT_PAGE: usize = 50;

/// A UUID path or query parameter, or 400.
pub(super) fn uuid_param(name: &str, value: Option<&str>) -> Result<Uuid, ApiError> {
    let text = value.unwrap_or_default();
    Uuid::parse_str(text)
        .map_err(|_| ApiError::validation(format!("{name} `{text}` is not a UUID")))
}

fn discussion_id(request: &Request) -> Result<Uuid, ApiError> {
    uuid_param("discussionId", request.param("discussionId"))
}

fn comment_id(request: &Request) -> Result<Uuid, ApiError> {
    uuid_param("commentId", request.param("commentId"))
}

impl DiscussionsApi {
    /// The context of a write for `tenant`.
    fn context(&self, tenant: Uuid) -> Context {
        Context {
            tenant,
            limits: self.limits,
            webhooks: self.webhooks.clone(),
        }
    }

    /// Runs `operation` for `actor` in one atomic change.
    async fn act<T, F>(&self, actor: Actor, operation: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Change<'_>, &Context, &Acting) -> Result<T, ApiError> + Send + 'static,
    {
        let context = self.context(actor.tenant);
        let committed = self
            .writer
            .commit(self.footprint(), move |change| {
                let acting = actor.resolve(change)?;
                operation(change, &context, &acting)
            })
            .await?;
        Ok(committed.value)
    }

    /// What a discussion change holds while it waits for the writer: at most
    /// a comment and a title at their configured limits (4 bytes a char).
    fn footprint(&self) -> Footprint {
        Footprint::data((self.limits.max_comment_chars + self.limits.max_title_chars) * 4)
    }
}

/// `POST /api/v1/discussions`
pub(super) async fn create(
    api: Arc<DiscussionsApi>,
    mut request: Request,
) -> Result<Response, ApiError> {
    let principal = api.auth.authenticate(&request)?;
    principal.require(Scope::Publish)?;
    let input: NewDiscussion = request.json().await?;
    let context = api.context(principal.tenant);
    let discussion = api
        .writer
        .commit(api.footprint(), move |change| {
            service::create_discussion(change, &context, input)
        })
        .await?
        .value;
    Ok(response::data(StatusCode::CREATED, &discussion))
}

/// `GET /api/v1/discussions/{discussionId}`
pub(super) async fn get(api: Arc<DiscussionsApi>, request: Request) -> Result<Response, ApiError> {
    let actor = api.actor(&request, false)?;
    let id = discussion_id(&request)?;
    let discussion = api
        .read(move |store| query::discussion(store, &actor.tenant, &id))
        .await?;
    Ok(response::data(StatusCode::OK, &discussion))
}

/// `GET /api/v1/discussions/by-external/{externalId}`
pub(super) async fn get_by_external(
    api: Arc<DiscussionsApi>,
    request: Request,
) -> Result<Response, ApiError> {
    let actor = api.actor(&request, false)?;
    let external = request.param("externalId").unwrap_or_default().to_string();
    let discussion = api
        .read(move |store| query::discussion_by_external(store, &actor.tenant, &external))
        .await?;
    Ok(response::data(StatusCode::OK, &discussion))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonInput {
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /api/v1/discussions/{discussionId}/lock|unlock|archive`
pub(super) async fn lifecycle(
    api: Arc<DiscussionsApi>,
    mut request: Request,
    action: Lifecycle,
) -> Result<Response, ApiError> {
    let actor = api.actor(&request, true)?;
    let id = discussion_id(&request)?;
    let input: ReasonInput = request.json_or_default().await?;
    let discussion = api
        .act(actor, move |change, context, acting| {
            service::change_lifecycle(change, context, &id, action, input.reason, acting)
        })
        .await?;
    Ok(response::data(StatusCode::OK, &discussion))
}

/// `GET /api/v1/discussions/{discussionId}/comments?parentId=&cursor=&limit=`
pub(super) async fn list_comments(
    api: Arc<DiscussionsApi>,
    request: Request,
) -> Result<Response, ApiError> {
    let actor = api.actor(&request, false)?;
    let id = discussion_id(&request)?;
    let optional_uuid = |name: &str| {
        request
            .query_param(name)
            .filter(|text| !text.is_empty())
            .map(|text| uuid_param(name, Some(&text)))
            .transpose()
    };
    let max = api.limits.max_page;
    let limit = match request.query_param("limit") {
        None => DEFAULT_PAGE.min(max),
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|limit| (1..=max).contains(limit))
            .ok_or_else(|| ApiError::validation(format!("limit must be 1 to {max}")))?,
    };
    let page = PageRequest {
        parent: optional_uuid("parentId")?,
        after: optional_uuid("cursor")?,
        limit,
        moderator: actor.moderator,
    };
    let page = api
        .read(move |store| {
            query::discussion(store, &actor.tenant, &id)?;
            query::comments(store, &actor.tenant, &id, &page)
        })
        .await?;
    Ok(response::data(StatusCode::OK, &page))
}

/// `GET /api/v1/discussions/{discussionId}/comments/{commentId}`
pub(super) async fn get_comment(
    api: Arc<DiscussionsApi>,
    request: Request,
) -> Result<Response, ApiError> {
    let actor = api.actor(&request, false)?;
    let (id, comment) = (discussion_id(&request)?, comment_id(&request)?);
    let comment = api
        .read(move |store| query::comment(store, &actor.tenant, &id, &comment, actor.moderator))
        .await?;
    Ok(response::data(StatusCode::OK, &comment))
}

/// `POST /api/v1/discussions/{discussionId}/comments`
pub(super) async fn post_comment(
    api: Arc<DiscussionsApi>,
    mut request: Request,
) -> Result<Response, ApiError> {
    let actor = api.actor(&request, true)?;
    let id = discussion_id(&request)?;
    let input: NewComment = request.json().await?;
    let actor = actor.with_display_name(input.display_name.clone());
    let comment = api
        .act(actor, move |change, context, acting| {
            service::post_comment(change, context, &id, input, acting)
        })
        .await?;
    Ok(response::data(StatusCode::CREATED, &comment))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EditInput {
    body: String,
}

/// `PATCH /api/v1/discussions/{discussionId}/comments/{commentId}`
pub(super) async fn edit_comment(
    api: Arc<DiscussionsApi>,
    mut request: Request,
) -> Result<Response, ApiError> {
    let actor = api.actor(&request, true)?;
    let (id, comment) = (discussion_id(&request)?, comment_id(&request)?);
    let input: EditInput = request.json().await?;
    let comment = api
        .act(actor, move |change, context, acting| {
            service::edit_comment(change, context, &id, &comment, input.body, acting)
        })
        .await?;
    Ok(response::data(StatusCode::OK, &comment))
}

/// `DELETE /api/v1/discussions/{discussionId}/comments/{commentId}`
pub(super) async fn delete_comment(
    api: Arc<DiscussionsApi>,
    request: Request,
) -> Result<Response, ApiError> {
    let actor = api.actor(&request, true)?;
    let (id, comment) = (discussion_id(&request)?, comment_id(&request)?);
    let comment = api
        .act(actor, move |change, context, acting| {
            service::delete_comment(change, context, &id, &comment, acting)
        })
        .await?;
    Ok(response::data(StatusCode::OK, &comment))
}

/// `POST /api/v1/discussions/{discussionId}/comments/{commentId}/approve|reject|pin|unpin`
pub(super) async fn moderate(
    api: Arc<DiscussionsApi>,
    mut request: Request,
    action: Moderate,
) -> Result<Response, ApiError> {
    let actor = api.actor(&request, true)?;
    let (id, comment) = (discussion_id(&request)?, comment_id(&request)?);
    let input: ReasonInput = request.json_or_default().await?;
    let comment = api
        .act(actor, move |change, context, acting| {
            service::moderate(change, context, &id, &comment, action, input.reason, acting)
        })
        .await?;
    Ok(response::data(StatusCode::OK, &comment))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReactionInput {
    reaction: String,
}

/// `POST /api/v1/discussions/{discussionId}/comments/{commentId}/reactions`
pub(super) async fn toggle_reaction(
    api: Arc<DiscussionsApi>,
    mut request: Request,
) -> Result<Response, ApiError> {
    let actor = api.actor(&request, true)?;
    let (id, comment) = (discussion_id(&request)?, comment_id(&request)?);
    let input: ReactionInput = request.json().await?;
    let toggled = api
        .act(actor, move |change, context, acting| {
            service::toggle_reaction(change, context, &id, &comment, input.reaction, acting)
        })
        .await?;
    Ok(response::data(StatusCode::OK, &toggled))
}
