//! REST handlers of channels and access: channels, their discussion
//! settings, explicit members, discussion bans, and users' stored
//! entitlements and features.
//!
//! Invariants: the writes are [`super::settings`]' and [`super::people`]'
//! inside one change each; member, ban and grant routes are the backend's
//! (a user's JWT gets 403); `GET /channels/{channelId}` answers what the
//! access policy lets the caller read, with the position to sync from.

use super::ChannelsModule;
use super::api::{Body, reader_of};
use super::people::{self, BanInput, GrantKind};
use super::settings::{self, ChannelPatch, DiscussionInput, NewChannel};
use super::{query, service};
use crate::auth::api_keys::Scope;
use crate::error::ApiError;
use crate::http::router::Router;
use crate::http::{Request, Response};
use crate::modules::records::forbidden;
use crate::modules::rest::id_param;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;

/// Adds the channel and access routes.
pub(super) fn routes(router: &mut Router, module: &Arc<ChannelsModule>) {
    const CHANNEL: &str = "/api/v1/communication/channels/{channelId}";
    const MEMBER: &str = "/api/v1/communication/channels/{channelId}/members/{userId}";
    const BAN: &str = "/api/v1/communication/discussions/{discussionId}/bans/{userId}";
    const ENTITLEMENT: &str = "/api/v1/communication/users/{userId}/entitlements/{key}";
    const FEATURE: &str = "/api/v1/communication/users/{userId}/features/{key}";
    router.route_with(
        Method::POST,
        "/api/v1/communication/channels",
        module,
        create,
    );
    router.route_with(Method::GET, CHANNEL, module, get);
    router.route_with(Method::PATCH, CHANNEL, module, update);
    let discussion = "/api/v1/communication/channels/{channelId}/discussion";
    router.route_with(Method::PUT, discussion, module, set_discussion);
    let members = "/api/v1/communication/channels/{channelId}/members";
    router.route_with(Method::GET, members, module, list_members);
    router.route_with(Method::PUT, MEMBER, module, add_member);
    router.route_with(Method::DELETE, MEMBER, module, remove_member);
    router.route_with(Method::PUT, BAN, module, ban);
    router.route_with(Method::DELETE, BAN, module, unban);
    router.route_with(
        Method::GET,
        "/api/v1/communication/users/{userId}/grants",
        module,
        grants,
    );
    router.route_with(Method::PUT, ENTITLEMENT, module, grant_entitlement);
    router.route_with(Method::DELETE, ENTITLEMENT, module, lose_entitlement);
    router.route_with(Method::PUT, FEATURE, module, grant_feature);
    router.route_with(Method::DELETE, FEATURE, module, remove_feature);
}

fn text_param(request: &Request, name: &str) -> String {
    request.param(name).unwrap_or_default().to_string()
}

/// `POST /channels`
async fn create(module: Arc<ChannelsModule>, mut request: Request) -> Result<Response, ApiError> {
    let write = module
        .prepare::<NewChannel>(&mut request, "channels.create", Body::Json)
        .await?;
    module
        .commit(write, StatusCode::CREATED, settings::create)
        .await
}

/// `GET /channels/{channelId}`: the channel and the position to sync its rooms from.
async fn get(module: Arc<ChannelsModule>, request: Request) -> Result<Response, ApiError> {
    let viewer = module.viewer(&request)?;
    let id = id_param(&request, "channelId")?;
    module
        .answer(move |store, latest| {
            let channel = viewer.channel(store, id)?;
            let mut value = serde_json::to_value(channel).unwrap_or_default();
            value["latestEventId"] = json!(super::events::event_id(latest));
            Ok(value)
        })
        .await
}

/// `PATCH /channels/{channelId}`
async fn update(module: Arc<ChannelsModule>, mut request: Request) -> Result<Response, ApiError> {
    let write = module
        .prepare::<ChannelPatch>(&mut request, "channels.update", Body::Json)
        .await?;
    let id = id_param(&request, "channelId")?;
    module
        .commit(write, StatusCode::OK, move |change, acting, patch| {
            settings::update(change, acting, id, patch)
        })
        .await
}

/// `PUT /channels/{channelId}/discussion`
async fn set_discussion(
    module: Arc<ChannelsModule>,
    mut request: Request,
) -> Result<Response, ApiError> {
    let write = module
        .prepare::<DiscussionInput>(&mut request, "channels.discussion", Body::Json)
        .await?;
    let id = id_param(&request, "channelId")?;
    module
        .commit(write, StatusCode::OK, move |change, acting, input| {
            settings::set_discussion(change, acting, id, input)
        })
        .await
}

/// The backend's tenant, or 403 (member, ban and grant reads are the backend's).
fn backend(module: &ChannelsModule, request: &Request) -> Result<uuid::Uuid, ApiError> {
    let principal = module.core.auth.authenticate(request)?;
    match reader_of(&principal, Scope::Read)? {
        super::access::Reader::Backend => Ok(principal.tenant),
        super::access::Reader::User { .. } => {
            Err(forbidden("this is the tenant's backend's (API key)"))
        }
    }
}

/// `GET /channels/{channelId}/members`
async fn list_members(module: Arc<ChannelsModule>, request: Request) -> Result<Response, ApiError> {
    let tenant = backend(&module, &request)?;
    let id = id_param(&request, "channelId")?;
    module
        .answer(move |store, _| Ok(json!({ "members": query::members(store, &tenant, id)? })))
        .await
}

/// `PUT /channels/{channelId}/members/{userId}`
async fn add_member(
    module: Arc<ChannelsModule>,
    mut request: Request,
) -> Result<Response, ApiError> {
    let write = module
        .prepare::<Value>(&mut request, "channels.member.add", Body::None)
        .await?;
    let (id, user) = (
        id_param(&request, "channelId")?,
        text_param(&request, "userId"),
    );
    module
        .commit(write, StatusCode::OK, move |change, acting, _| {
            people::add_member(change, acting, id, &user)
        })
        .await
}

/// `DELETE /channels/{channelId}/members/{userId}`
async fn remove_member(
    module: Arc<ChannelsModule>,
    mut request: Request,
) -> Result<Response, ApiError> {
    let write = module
        .prepare::<Value>(&mut request, "channels.member.remove", Body::None)
        .await?;
    let (id, user) = (
        id_param(&request, "channelId")?,
        text_param(&request, "userId"),
    );
    module
        .commit(write, StatusCode::OK, move |change, acting, _| {
            people::remove_member(change, acting, id, &user)
        })
        .await
}

/// `PUT /discussions/{discussionId}/bans/{userId}` `{"until"?, "reason"?}`.
async fn ban(module: Arc<ChannelsModule>, mut request: Request) -> Result<Response, ApiError> {
    let write = module
        .prepare::<BanInput>(&mut request, "channels.ban", Body::Json)
        .await?;
    let (id, user) = (
        id_param(&request, "discussionId")?,
        text_param(&request, "userId"),
    );
    module
        .commit(write, StatusCode::OK, move |change, acting, input| {
            people::ban(change, acting, id, &user, input)
        })
        .await
}

/// `DELETE /discussions/{discussionId}/bans/{userId}`
async fn unban(module: Arc<ChannelsModule>, mut request: Request) -> Result<Response, ApiError> {
    let write = module
        .prepare::<Value>(&mut request, "channels.unban", Body::None)
        .await?;
    let (id, user) = (
        id_param(&request, "discussionId")?,
        text_param(&request, "userId"),
    );
    module
        .commit(write, StatusCode::OK, move |change, acting, _| {
            people::unban(change, acting, id, &user)
        })
        .await
}

/// `GET /users/{userId}/grants`
async fn grants(module: Arc<ChannelsModule>, request: Request) -> Result<Response, ApiError> {
    let tenant = backend(&module, &request)?;
    let user = text_param(&request, "userId");
    module
        .answer(move |store, _| service::grants(store, &tenant, &user))
        .await
}

/// One grant route: `kind` granted (`held`) or taken away.
async fn set_grant(
    module: Arc<ChannelsModule>,
    mut request: Request,
    kind: GrantKind,
    held: bool,
) -> Result<Response, ApiError> {
    let write = module
        .prepare::<Value>(&mut request, "channels.grant", Body::None)
        .await?;
    let (user, key) = (text_param(&request, "userId"), text_param(&request, "key"));
    module
        .commit(write, StatusCode::OK, move |change, acting, _| {
            people::set_grant(change, acting, &user, (kind, &key), held)
        })
        .await
}

/// `PUT /users/{userId}/entitlements/{key}`
async fn grant_entitlement(
    module: Arc<ChannelsModule>,
    request: Request,
) -> Result<Response, ApiError> {
    set_grant(module, request, GrantKind::Entitlement, true).await
}

/// `DELETE /users/{userId}/entitlements/{key}`: lost now (kept for the push grace).
async fn lose_entitlement(
    module: Arc<ChannelsModule>,
    request: Request,
) -> Result<Response, ApiError> {
    set_grant(module, request, GrantKind::Entitlement, false).await
}

/// `PUT /users/{userId}/features/{key}`
async fn grant_feature(
    module: Arc<ChannelsModule>,
    request: Request,
) -> Result<Response, ApiError> {
    set_grant(module, request, GrantKind::Feature, true).await
}

/// `DELETE /users/{userId}/features/{key}`
async fn remove_feature(
    module: Arc<ChannelsModule>,
    request: Request,
) -> Result<Response, ApiError> {
    set_grant(module, request, GrantKind::Feature, false).await
}
