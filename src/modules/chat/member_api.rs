//! REST handlers of memberships and users: list a room's members, add one
//! (by user id or JWT subject), change a role, remove one, join a public
//! room, leave, `GET /me` (the caller's numeric id), and the internal
//! `POST /admin/v1/cluster/chat/users` through which an edge has the writer
//! create a user's id.
//!
//! Invariants: adding or joining twice answers the existing member with 200
//! (201 only when the membership began); the writes are [`super::members`]'
//! inside one change each; a JWT subject maps to one numeric id per tenant,
//! created on first use and never changed.

use super::ChatModule;
use super::api::{Body, Outcome, id_param, room_id};
use super::directory;
use super::members::{self, Admitted, MemberRef};
use super::model::{Member, Role};
use super::query;
use super::service::Caller;
use crate::auth::api_keys::Scope;
use crate::error::ApiError;
use crate::http::router::Router;
use crate::http::{Request, Response, response};
use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// Adds the member routes and `GET /me`.
pub(super) fn routes(router: &mut Router, chat: &Arc<ChatModule>) {
    const MEMBERS: &str = "/api/v1/rooms/{roomId}/members";
    const MEMBER: &str = "/api/v1/rooms/{roomId}/members/{userId}";
    router.route_with(Method::GET, MEMBERS, chat, list_members);
    router.route_with(Method::POST, MEMBERS, chat, add_member);
    router.route_with(Method::PATCH, MEMBER, chat, set_role);
    router.route_with(Method::DELETE, MEMBER, chat, remove_member);
    router.route_with(Method::POST, "/api/v1/rooms/{roomId}/join", chat, join);
    router.route_with(Method::POST, "/api/v1/rooms/{roomId}/leave", chat, leave);
    router.route_with(Method::GET, "/api/v1/me", chat, me);
    router.route_with(Method::POST, directory::USERS_PATH, chat, ensure_user);
}

/// 201 when the membership began, 200 when it already was.
fn created_or_ok((created, member): Admitted) -> Outcome<Member> {
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, member)
}

/// The `{userId}` path parameter, or 400.
fn user_id(request: &Request) -> Result<u64, ApiError> {
    id_param(request, "userId")
}

/// `GET /api/v1/rooms/{roomId}/members`: by user id.
async fn list_members(api: Arc<ChatModule>, request: Request) -> Result<Response, ApiError> {
    let viewer = api.viewer(&request).await?;
    let room = room_id(&request)?;
    let members = api
        .read(move |store| query::members(store, viewer, room))
        .await?;
    Ok(response::data(StatusCode::OK, &members))
}

/// `POST /rooms/{roomId}/members` body: exactly one of `userId` and `sub`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewMember {
    #[serde(default)]
    user_id: Option<u64>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    role: Option<Role>,
}

impl NewMember {
    /// Who is named; 400 unless exactly one of `userId` and `sub` is.
    fn target(&self) -> Result<MemberRef, ApiError> {
        match (self.user_id, &self.sub) {
            (Some(user), None) => Ok(MemberRef::Id(user)),
            (None, Some(sub)) => Ok(MemberRef::Sub(sub.clone())),
            _ => Err(
                ApiError::validation("send exactly one of `userId` and `sub`")
                    .with_details(json!({ "field": "userId" })),
            ),
        }
    }
}

/// `POST /api/v1/rooms/{roomId}/members` (owners and admins; role `member` by default).
async fn add_member(api: Arc<ChatModule>, mut request: Request) -> Result<Response, ApiError> {
    let write = api
        .prepare::<NewMember>(&mut request, "chat.member.add", Body::Json)
        .await?;
    let room = room_id(&request)?;
    let target = write.input.target()?;
    api.commit(write, move |change, acting, input| {
        let role = input.role.unwrap_or(Role::Member);
        members::add(change, acting, room, &target, role).map(created_or_ok)
    })
    .await
}

/// `PATCH /rooms/{roomId}/members/{userId}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleInput {
    role: Role,
}

/// `PATCH /api/v1/rooms/{roomId}/members/{userId}`
async fn set_role(api: Arc<ChatModule>, mut request: Request) -> Result<Response, ApiError> {
    let write = api
        .prepare::<RoleInput>(&mut request, "chat.member.role", Body::Json)
        .await?;
    let (room, user) = (room_id(&request)?, user_id(&request)?);
    api.commit(write, move |change, acting, input| {
        let member = members::set_role(change, acting, room, user, input.role)?;
        Ok((StatusCode::OK, member))
    })
    .await
}

/// `DELETE /api/v1/rooms/{roomId}/members/{userId}`
async fn remove_member(api: Arc<ChatModule>, mut request: Request) -> Result<Response, ApiError> {
    let write = api
        .prepare::<Value>(&mut request, "chat.member.remove", Body::None)
        .await?;
    let (room, user) = (room_id(&request)?, user_id(&request)?);
    api.commit(write, move |change, acting, _| {
        Ok((StatusCode::OK, members::remove(change, acting, room, user)?))
    })
    .await
}

/// `POST /api/v1/rooms/{roomId}/join`: a user joins a public room.
async fn join(api: Arc<ChatModule>, mut request: Request) -> Result<Response, ApiError> {
    let write = api
        .prepare::<Value>(&mut request, "chat.join", Body::None)
        .await?;
    let room = room_id(&request)?;
    api.commit(write, move |change, acting, _| {
        members::join(change, acting, room).map(created_or_ok)
    })
    .await
}

/// `POST /api/v1/rooms/{roomId}/leave`
async fn leave(api: Arc<ChatModule>, mut request: Request) -> Result<Response, ApiError> {
    let write = api
        .prepare::<Value>(&mut request, "chat.leave", Body::None)
        .await?;
    let room = room_id(&request)?;
    api.commit(write, move |change, acting, _| {
        Ok((StatusCode::OK, members::leave(change, acting, room)?))
    })
    .await
}

/// `GET /api/v1/me`: the caller's user id (created on first use) and subject.
async fn me(api: Arc<ChatModule>, request: Request) -> Result<Response, ApiError> {
    let (principal, caller) = api.caller(&request, Scope::Read)?;
    let (user, sub) = match caller {
        Caller::Backend => (0, None),
        Caller::User(sub) => {
            let user = directory::user_id(&api.core, principal.tenant, &sub).await?;
            (user, Some(sub))
        }
    };
    Ok(response::data(
        StatusCode::OK,
        &json!({ "userId": user, "sub": sub }),
    ))
}

/// `POST /admin/v1/cluster/chat/users` `{"sub"}`, the instance admin key
/// only (an edge's `--writer-key`, for a stream of a user it has no id for
/// yet): the subject's id in the tenant, created when missing.
async fn ensure_user(api: Arc<ChatModule>, mut request: Request) -> Result<Response, ApiError> {
    let principal = api.core.auth.authenticate(&request)?;
    if !principal.is_instance_admin() {
        return Err(ApiError::new(
            crate::error::ErrorCode::Forbidden,
            "this endpoint is the cluster's own: the instance admin key only",
        ));
    }
    let input: directory::UserInput = request.json().await?;
    let user_id = directory::ensure_user(&api.core.writer, principal.tenant, &input.sub).await?;
    Ok(response::data(
        StatusCode::OK,
        &directory::UserOutput { user_id },
    ))
}
