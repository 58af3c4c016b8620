//! REST handlers of rooms: create, list the caller's (with unread counts
//! and last message) and the public ones, get, update, delete.
//!
//! Invariants: a private room answers 404 to whoever is not its member (as
//! a missing one does); lists are pages with a `nextCursor` (`null` at the
//! end); the writes are [`super::rooms`]' inside one change each.

use super::ChatModule;
use super::api::{Body, DEFAULT_PAGE, MAX_PAGE, id_query, room_id};
use super::query;
use super::rooms::{self, NewRoom, RoomPatch};
use crate::error::ApiError;
use crate::http::router::Router;
use crate::http::{Request, Response, response};
use http::{Method, StatusCode};
use serde_json::Value;
use std::sync::Arc;

/// Adds the room routes.
pub(super) fn routes(router: &mut Router, chat: &Arc<ChatModule>) {
    const ROOMS: &str = "/api/v1/rooms";
    const ROOM: &str = "/api/v1/rooms/{roomId}";
    router.route_with(Method::POST, ROOMS, chat, create_room);
    router.route_with(Method::GET, ROOMS, chat, my_rooms);
    router.route_with(Method::GET, "/api/v1/rooms/public", chat, public_rooms);
    router.route_with(Method::GET, ROOM, chat, get_room);
    router.route_with(Method::PATCH, ROOM, chat, update_room);
    router.route_with(Method::DELETE, ROOM, chat, delete_room);
}

/// `POST /api/v1/rooms`
async fn create_room(api: Arc<ChatModule>, mut request: Request) -> Result<Response, ApiError> {
    let write = api
        .prepare::<NewRoom>(&mut request, "chat.room", Body::Json)
        .await?;
    api.commit(write, |change, acting, input| {
        Ok((StatusCode::CREATED, rooms::create(change, acting, input)?))
    })
    .await
}

/// The `cursor` of `GET /rooms` (`<ms>-<roomId>`), if any; 400 when malformed.
fn activity_cursor(request: &Request) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(text) = request.query_param("cursor").filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    query::parse_activity_cursor(&text)
        .map(Some)
        .ok_or_else(|| {
            ApiError::validation(format!("cursor `{text}` is not a cursor of this list"))
        })
}

/// `GET /api/v1/rooms?limit=&cursor=`: the caller's rooms, last active first.
async fn my_rooms(api: Arc<ChatModule>, request: Request) -> Result<Response, ApiError> {
    let viewer = api.viewer(&request).await?;
    let limit = request.limit_param(DEFAULT_PAGE, MAX_PAGE)?;
    let cursor = activity_cursor(&request)?;
    let page = api
        .read(move |store| query::my_rooms(store, viewer, limit, cursor))
        .await?;
    Ok(response::data(StatusCode::OK, &page))
}

/// `GET /api/v1/rooms/public?limit=&cursor=`: the tenant's public rooms by id.
async fn public_rooms(api: Arc<ChatModule>, request: Request) -> Result<Response, ApiError> {
    let viewer = api.viewer(&request).await?;
    let limit = request.limit_param(DEFAULT_PAGE, MAX_PAGE)?;
    let after = id_query(&request, "cursor")?;
    let page = api
        .read(move |store| query::public_rooms(store, viewer.tenant, limit, after))
        .await?;
    Ok(response::data(StatusCode::OK, &page))
}

/// `GET /api/v1/rooms/{roomId}`
async fn get_room(api: Arc<ChatModule>, request: Request) -> Result<Response, ApiError> {
    let viewer = api.viewer(&request).await?;
    let room = room_id(&request)?;
    let (stored, _) = api.read(move |store| viewer.room(store, room)).await?;
    Ok(response::data(StatusCode::OK, &stored.room))
}

/// `PATCH /api/v1/rooms/{roomId}` (owners and admins).
async fn update_room(api: Arc<ChatModule>, mut request: Request) -> Result<Response, ApiError> {
    let write = api
        .prepare::<RoomPatch>(&mut request, "chat.room.update", Body::Json)
        .await?;
    let room = room_id(&request)?;
    api.commit(write, move |change, acting, patch| {
        Ok((StatusCode::OK, rooms::update(change, acting, room, patch)?))
    })
    .await
}

/// `DELETE /api/v1/rooms/{roomId}` (the owner or the backend).
async fn delete_room(api: Arc<ChatModule>, mut request: Request) -> Result<Response, ApiError> {
    let write = api
        .prepare::<Value>(&mut request, "chat.room.delete", Body::None)
        .await?;
    let room = room_id(&request)?;
    api.commit(write, move |change, acting, _| {
        Ok((StatusCode::OK, rooms::delete(change, acting, room)?))
    })
    .await
}
