//! REST handlers of messages: post (top level or a thread comment), list a
//! room's top-level messages by cursor in both directions, get one, list a
//! thread, edit, delete; and read receipts (mark read, list a room's).
//!
//! Invariants: pages are oldest first within the page, with `hasMore` in
//! their direction; `before` and `after` exclude the message they name; the
//! writes are [`super::messages`]' inside one change each.

use super::ChatModule;
use super::api::{Body, DEFAULT_PAGE, MAX_PAGE, id_param, id_query, room_id};
use super::messages::{self, NewMessage};
use super::query::{self, Position};
use crate::error::ApiError;
use crate::http::router::Router;
use crate::http::{Request, Response, response};
use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;

/// Adds the message, thread and receipt routes.
pub(super) fn routes(router: &mut Router, chat: &Arc<ChatModule>) {
    const MESSAGES: &str = "/api/v1/rooms/{roomId}/messages";
    const MESSAGE: &str = "/api/v1/rooms/{roomId}/messages/{messageId}";
    const THREAD: &str = "/api/v1/rooms/{roomId}/messages/{messageId}/thread";
    router.route_with(Method::POST, MESSAGES, chat, post_message);
    router.route_with(Method::GET, MESSAGES, chat, list_messages);
    router.route_with(Method::GET, MESSAGE, chat, get_message);
    router.route_with(Method::PATCH, MESSAGE, chat, edit_message);
    router.route_with(Method::DELETE, MESSAGE, chat, delete_message);
    router.route_with(Method::GET, THREAD, chat, thread);
    router.route_with(Method::POST, "/api/v1/rooms/{roomId}/read", chat, read);
    router.route_with(
        Method::GET,
        "/api/v1/rooms/{roomId}/receipts",
        chat,
        receipts,
    );
}

/// The `{messageId}` path parameter, or 400.
fn message_id(request: &Request) -> Result<u64, ApiError> {
    id_param(request, "messageId")
}

/// Where a page starts: `before` or `after` (not both), else the newest.
fn position(request: &Request) -> Result<Position, ApiError> {
    match (id_query(request, "before")?, id_query(request, "after")?) {
        (None, None) => Ok(Position::Newest),
        (Some(before), None) => Ok(Position::Before(before)),
        (None, Some(after)) => Ok(Position::After(after)),
        (Some(_), Some(_)) => Err(ApiError::validation("send `before` or `after`, not both")),
    }
}

/// `POST /api/v1/rooms/{roomId}/messages` (members and the backend).
async fn post_message(api: Arc<ChatModule>, mut request: Request) -> Result<Response, ApiError> {
    let write = api
        .prepare::<NewMessage>(&mut request, "chat.message", Body::Json)
        .await?;
    let room = room_id(&request)?;
    api.commit(write, move |change, acting, input| {
        let message = messages::post(change, acting, room, input)?;
        Ok((StatusCode::CREATED, message))
    })
    .await
}

/// `GET /api/v1/rooms/{roomId}/messages?before=&after=&limit=`: top-level messages.
async fn list_messages(api: Arc<ChatModule>, request: Request) -> Result<Response, ApiError> {
    let viewer = api.viewer(&request).await?;
    let room = room_id(&request)?;
    let limit = request.limit_param(DEFAULT_PAGE, MAX_PAGE)?;
    let position = position(&request)?;
    let page = api
        .read(move |store| {
            viewer.room(store, room)?;
            query::messages(store, &viewer.tenant, room, 0, position, limit)
        })
        .await?;
    Ok(response::data(StatusCode::OK, &page))
}

/// `GET /api/v1/rooms/{roomId}/messages/{messageId}`
async fn get_message(api: Arc<ChatModule>, request: Request) -> Result<Response, ApiError> {
    let viewer = api.viewer(&request).await?;
    let (room, id) = (room_id(&request)?, message_id(&request)?);
    let message = api
        .read(move |store| query::message(store, viewer, room, id))
        .await?;
    Ok(response::data(StatusCode::OK, &message))
}

/// `GET /api/v1/rooms/{roomId}/messages/{messageId}/thread?after=&limit=`
async fn thread(api: Arc<ChatModule>, request: Request) -> Result<Response, ApiError> {
    let viewer = api.viewer(&request).await?;
    let (room, id) = (room_id(&request)?, message_id(&request)?);
    let limit = request.limit_param(DEFAULT_PAGE, MAX_PAGE)?;
    let after = id_query(&request, "after")?.unwrap_or(0);
    let thread = api
        .read(move |store| query::thread(store, viewer, room, id, after, limit))
        .await?;
    Ok(response::data(StatusCode::OK, &thread))
}

/// `PATCH /rooms/{roomId}/messages/{messageId}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TextInput {
    text: String,
}

/// `PATCH /api/v1/rooms/{roomId}/messages/{messageId}` (the author only).
async fn edit_message(api: Arc<ChatModule>, mut request: Request) -> Result<Response, ApiError> {
    let write = api
        .prepare::<TextInput>(&mut request, "chat.message.edit", Body::Json)
        .await?;
    let (room, id) = (room_id(&request)?, message_id(&request)?);
    api.commit(write, move |change, acting, input| {
        let message = messages::edit(change, acting, room, id, input.text)?;
        Ok((StatusCode::OK, message))
    })
    .await
}

/// `DELETE /api/v1/rooms/{roomId}/messages/{messageId}` (the author, owners,
/// admins, the backend); a top-level message's comments go with it.
async fn delete_message(api: Arc<ChatModule>, mut request: Request) -> Result<Response, ApiError> {
    let write = api
        .prepare::<Value>(&mut request, "chat.message.delete", Body::None)
        .await?;
    let (room, id) = (room_id(&request)?, message_id(&request)?);
    api.commit(write, move |change, acting, _| {
        Ok((StatusCode::OK, messages::delete(change, acting, room, id)?))
    })
    .await
}

/// `POST /rooms/{roomId}/read` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReadInput {
    message_id: u64,
}

/// `POST /api/v1/rooms/{roomId}/read`: moves the caller's receipt forward.
async fn read(api: Arc<ChatModule>, mut request: Request) -> Result<Response, ApiError> {
    let write = api
        .prepare::<ReadInput>(&mut request, "chat.read", Body::Json)
        .await?;
    let room = room_id(&request)?;
    api.commit(write, move |change, acting, input| {
        let state = messages::read(change, acting, room, input.message_id)?;
        Ok((StatusCode::OK, state))
    })
    .await
}

/// `GET /api/v1/rooms/{roomId}/receipts`: by user id.
async fn receipts(api: Arc<ChatModule>, request: Request) -> Result<Response, ApiError> {
    let viewer = api.viewer(&request).await?;
    let room = room_id(&request)?;
    let receipts = api
        .read(move |store| query::receipts(store, viewer, room))
        .await?;
    Ok(response::data(StatusCode::OK, &receipts))
}
