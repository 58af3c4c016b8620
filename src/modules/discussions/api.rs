//! HTTP handlers of the discussions' write and read side (`/api/v1/discussions…`).
//!
//! Every write is idempotent under an `Idempotency-Key` header or an
//! `idempotencyKey` body field (see [`crate::modules::idempotency`]): one key per
//! endpoint, fingerprinted by method, path, acting reader and body.

use super::DiscussionsApi;
use super::actor::{Acting, Actor, EXTERNAL_USER_HEADER};
use super::query::{self, PageRequest};
use super::service::{self, Context, LifecycleAction, Moderate, NewComment, NewDiscussion};
use crate::auth::Principal;
use crate::auth::api_keys::Scope;
use crate::core::writer::{Change, Footprint};
use crate::error::ApiError;
use crate::http::{Request, Response, response};
use crate::modules::idempotency::{self, Claim, Reply};
use http::StatusCode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
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
        }
    }

    /// The caller of a write and who acts: the credential's principal (who
    /// owns idempotency keys) and the actor (reader or moderator).
    fn writer_of(&self, request: &Request) -> Result<(Principal, Actor), ApiError> {
        let principal = self.core.auth.authenticate(request)?;
        let actor = Actor::of(&principal, request, true)?;
        Ok((principal, actor))
    }

    /// The idempotency claim of a write to `operation`: the key comes from
    /// the header or the `idempotencyKey` field, which is taken out of `body`;
    /// the fingerprint is the method, path, acting reader and remaining body.
    fn claim(
        &self,
        request: &Request,
        principal: &Principal,
        operation: &str,
        body: &mut Value,
    ) -> Result<Option<Claim>, ApiError> {
        let key = idempotency::requested(request.headers(), idempotency::take_field(body))?;
        let reader = request.header(EXTERNAL_USER_HEADER).unwrap_or_default();
        Ok(self.core.idempotency.claim(
            key,
            principal,
            operation,
            &[
                request.method().as_str().as_bytes(),
                request.uri().path().as_bytes(),
                reader.as_bytes(),
                body.to_string().as_bytes(),
            ],
        ))
    }

    /// Runs `operation` in one atomic change, idempotently under `claim`,
    /// and replies `{"data": value}` with `status`.
    async fn commit<T, F>(
        &self,
        claim: Option<Claim>,
        status: StatusCode,
        operation: F,
    ) -> Result<Response, ApiError>
    where
        T: Serialize,
        F: FnOnce(&mut Change<'_>) -> Result<T, ApiError> + Send + 'static,
    {
        let committed = self
            .core
            .writer
            .commit(self.footprint(), move |change| {
                idempotency::protect(claim.as_ref(), change, |change| {
                    let value = operation(change)?;
                    let body = serde_json::to_vec(&value).map_err(|err| {
                        ApiError::internal(format!("encoding the reply failed: {err}"))
                    })?;
                    Ok(Reply::new(status, body))
                })
            })
            .await?;
        Ok(idempotency::reply_response(&committed.value))
    }

    /// Runs `operation` for `actor` (see [`DiscussionsApi::commit`]).
    async fn act<T, F>(
        &self,
        actor: Actor,
        claim: Option<Claim>,
        status: StatusCode,
        operation: F,
    ) -> Result<Response, ApiError>
    where
        T: Serialize,
        F: FnOnce(&mut Change<'_>, &Context, &Acting) -> Result<T, ApiError> + Send + 'static,
    {
        let context = self.context(actor.tenant);
        self.commit(claim, status, move |change| {
            let acting = actor.resolve(change)?;
            operation(change, &context, &acting)
        })
        .await
    }

    /// What a discussion change holds while it waits for the writer: at most
    /// a comment and a title at their configured limits (4 bytes a char).
    fn footprint(&self) -> Footprint {
        Footprint::data((self.limits.max_comment_chars + self.limits.max_title_chars) * 4)
    }
}

/// A JSON body (its key field taken out) as the endpoint's input; 400 when
/// it does not have the input's shape.
fn input<T: DeserializeOwned>(body: Value) -> Result<T, ApiError> {
    serde_json::from_value(body).map_err(|err| {
        ApiError::validation(format!(
            "the JSON body does not have the expected shape: {err}"
        ))
    })
}

/// `POST /api/v1/discussions`
pub(super) async fn create(
    api: Arc<DiscussionsApi>,
    mut request: Request,
) -> Result<Response, ApiError> {
    let principal = api.core.auth.authenticate(&request)?;
    principal.require(Scope::Publish)?;
    let mut body: Value = request.json().await?;
    let claim = api.claim(&request, &principal, "discussions.create", &mut body)?;
    let input: NewDiscussion = input(body)?;
    let context = api.context(principal.tenant);
    api.commit(claim, StatusCode::CREATED, move |change| {
        service::create_discussion(change, &context, input)
    })
    .await
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

/// Whether a write needs a JSON body.
#[derive(Clone, Copy)]
enum BodyRule {
    /// A JSON body is required.
    Required,
    /// An empty body reads as `null` (moderation and lifecycle reasons).
    Optional,
}

/// Who acts, the idempotency claim and the JSON body (its key field taken
/// out) as `T`, for a reader's or moderator's write to `operation`.
async fn write_input<T: DeserializeOwned>(
    api: &DiscussionsApi,
    request: &mut Request,
    operation: &str,
    rule: BodyRule,
) -> Result<(Actor, Option<Claim>, T), ApiError> {
    let (principal, actor) = api.writer_of(request)?;
    let mut body: Value = match rule {
        BodyRule::Required => request.json().await?,
        BodyRule::Optional => request.json_or_default().await?,
    };
    let claim = api.claim(request, &principal, operation, &mut body)?;
    Ok((actor, claim, input(body)?))
}

/// [`write_input`] of an optional `{"reason"}` body (moderation, lifecycle).
async fn reason_write(
    api: &DiscussionsApi,
    request: &mut Request,
    operation: &str,
) -> Result<(Actor, Option<Claim>, ReasonInput), ApiError> {
    let (actor, claim, reason) =
        write_input::<Option<ReasonInput>>(api, request, operation, BodyRule::Optional).await?;
    Ok((actor, claim, reason.unwrap_or_default()))
}

/// `POST /api/v1/discussions/{discussionId}/lock|unlock|archive`
pub(super) async fn lifecycle(
    api: Arc<DiscussionsApi>,
    mut request: Request,
    action: LifecycleAction,
) -> Result<Response, ApiError> {
    let (actor, claim, input) = reason_write(&api, &mut request, "discussions.lifecycle").await?;
    let id = discussion_id(&request)?;
    api.act(
        actor,
        claim,
        StatusCode::OK,
        move |change, context, acting| {
            service::change_lifecycle(change, context, &id, action, input.reason, acting)
        },
    )
    .await
}

/// `GET /api/v1/discussions/{discussionId}/comments?parentId=&cursor=&limit=`
pub(super) async fn list_comments(
    api: Arc<DiscussionsApi>,
    request: Request,
) -> Result<Response, ApiError> {
    let actor = api.actor(&request, false)?;
    let id = discussion_id(&request)?;
    let page = PageRequest {
        parent: optional_uuid(&request, "parentId")?,
        after: optional_uuid(&request, "cursor")?,
        limit: request.limit_param(DEFAULT_PAGE.min(api.limits.max_page), api.limits.max_page)?,
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

/// An optional UUID query parameter (absent or empty: `None`), or 400.
fn optional_uuid(request: &Request, name: &str) -> Result<Option<Uuid>, ApiError> {
    request
        .query_param(name)
        .filter(|text| !text.is_empty())
        .map(|text| uuid_param(name, Some(&text)))
        .transpose()
}

/// `GET /api/v1/discussions/pending-comments?cursor=&limit=`: the tenant's
/// comments awaiting moderation, oldest first (moderators only).
pub(super) async fn pending_comments(
    api: Arc<DiscussionsApi>,
    request: Request,
) -> Result<Response, ApiError> {
    let actor = api.actor(&request, false)?;
    actor.require_moderator("list pending comments")?;
    let after = optional_uuid(&request, "cursor")?;
    let limit = request.limit_param(DEFAULT_PAGE.min(api.limits.max_page), api.limits.max_page)?;
    let page = api
        .read(move |store| query::pending_comments(store, &actor.tenant, after, limit))
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
    let (actor, claim, input): (_, _, NewComment) = write_input(
        &api,
        &mut request,
        "discussions.comment",
        BodyRule::Required,
    )
    .await?;
    let id = discussion_id(&request)?;
    let actor = actor.with_display_name(input.display_name.clone())?;
    api.act(
        actor,
        claim,
        StatusCode::CREATED,
        move |change, context, acting| service::post_comment(change, context, &id, input, acting),
    )
    .await
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
    let (actor, claim, input): (_, _, EditInput) =
        write_input(&api, &mut request, "discussions.edit", BodyRule::Required).await?;
    let (id, comment) = (discussion_id(&request)?, comment_id(&request)?);
    api.act(
        actor,
        claim,
        StatusCode::OK,
        move |change, context, acting| {
            service::edit_comment(change, context, &id, &comment, input.body, acting)
        },
    )
    .await
}

/// `DELETE /api/v1/discussions/{discussionId}/comments/{commentId}`
pub(super) async fn delete_comment(
    api: Arc<DiscussionsApi>,
    request: Request,
) -> Result<Response, ApiError> {
    let (principal, actor) = api.writer_of(&request)?;
    let (id, comment) = (discussion_id(&request)?, comment_id(&request)?);
    let claim = api.claim(&request, &principal, "discussions.delete", &mut Value::Null)?;
    api.act(
        actor,
        claim,
        StatusCode::OK,
        move |change, context, acting| {
            service::delete_comment(change, context, &id, &comment, acting)
        },
    )
    .await
}

/// `POST /api/v1/discussions/{discussionId}/comments/{commentId}/approve|reject|pin|unpin`
pub(super) async fn moderate(
    api: Arc<DiscussionsApi>,
    mut request: Request,
    action: Moderate,
) -> Result<Response, ApiError> {
    let (actor, claim, input) = reason_write(&api, &mut request, "discussions.moderate").await?;
    let (id, comment) = (discussion_id(&request)?, comment_id(&request)?);
    api.act(
        actor,
        claim,
        StatusCode::OK,
        move |change, context, acting| {
            service::moderate(change, context, &id, &comment, action, input.reason, acting)
        },
    )
    .await
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
    let (actor, claim, input): (_, _, ReactionInput) = write_input(
        &api,
        &mut request,
        "discussions.reaction",
        BodyRule::Required,
    )
    .await?;
    let (id, comment) = (discussion_id(&request)?, comment_id(&request)?);
    api.act(
        actor,
        claim,
        StatusCode::OK,
        move |change, context, acting| {
            service::toggle_reaction(change, context, &id, &comment, input.reaction, acting)
        },
    )
    .await
}
