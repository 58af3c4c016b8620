//! REST handlers of posts and discussion messages: pages (newest first,
//! `?before=&limit=`, with `latestEventId`), one entity, and the writes.
//!
//! Invariants: reads check the access policy ([`super::query`]); writes are
//! [`super::posts`]' and [`super::messages`]' inside one change each.

use super::ChannelsModule;
use super::api::{Body, DEFAULT_PAGE, MAX_PAGE};
use super::events::{self, Room};
use super::messages::{self, MessageEdit, NewMessage};
use super::posts::{self, NewPost, Pin, PostEdit};
use super::query;
use crate::error::ApiError;
use crate::http::router::Router;
use crate::http::{Request, Response};
use crate::modules::rest::{id_param, id_query};
use http::{Method, StatusCode};
use serde_json::Value;
use std::sync::Arc;

/// Adds the post and message routes.
pub(super) fn routes(router: &mut Router, module: &Arc<ChannelsModule>) {
    const POSTS: &str = "/api/v1/communication/channels/{channelId}/posts";
    const POST: &str = "/api/v1/communication/channels/{channelId}/posts/{postId}";
    const MESSAGES: &str = "/api/v1/communication/discussions/{discussionId}/messages";
    const MESSAGE: &str = "/api/v1/communication/discussions/{discussionId}/messages/{messageId}";
    router.route_with(Method::GET, POSTS, module, list_posts);
    router.route_with(Method::POST, POSTS, module, create_post);
    router.route_with(Method::GET, POST, module, get_post);
    router.route_with(Method::PATCH, POST, module, edit_post);
    router.route_with(Method::DELETE, POST, module, delete_post);
    let pin = "/api/v1/communication/channels/{channelId}/posts/{postId}/pin";
    router.route_with(Method::PUT, pin, module, pin_post);
    router.route_with(Method::GET, MESSAGES, module, list_messages);
    router.route_with(Method::POST, MESSAGES, module, create_message);
    router.route_with(Method::GET, MESSAGE, module, get_message);
    router.route_with(Method::PATCH, MESSAGE, module, edit_message);
    router.route_with(Method::DELETE, MESSAGE, module, delete_message);
    let restore = "/api/v1/communication/discussions/{discussionId}/messages/{messageId}/restore";
    router.route_with(Method::POST, restore, module, restore_message);
    let post_events = "/api/v1/communication/channels/{channelId}/events";
    router.route_with(Method::GET, post_events, module, sync_posts);
    let message_events = "/api/v1/communication/discussions/{discussionId}/events";
    router.route_with(Method::GET, message_events, module, sync_messages);
}

/// `GET /channels/{channelId}/events?sinceEventId=&limit=`: sync over REST.
async fn sync_posts(module: Arc<ChannelsModule>, request: Request) -> Result<Response, ApiError> {
    let room = Room::Posts(id_param(&request, "channelId")?);
    sync(&module, &request, room).await
}

/// `GET /discussions/{discussionId}/events?sinceEventId=&limit=`: sync over REST.
async fn sync_messages(
    module: Arc<ChannelsModule>,
    request: Request,
) -> Result<Response, ApiError> {
    let room = Room::Discussion(id_param(&request, "discussionId")?);
    sync(&module, &request, room).await
}

/// The room's events after `sinceEventId`, as the Socket.IO sync acks them.
async fn sync(
    module: &ChannelsModule,
    request: &Request,
    room: Room,
) -> Result<Response, ApiError> {
    let viewer = module.viewer(request)?;
    let since = request
        .query_param("sinceEventId")
        .filter(|text| !text.is_empty())
        .map(|text| {
            events::parse_event_id(&text)
                .ok_or_else(|| ApiError::validation("`sinceEventId` is not an event id (a UUID)"))
        })
        .transpose()?;
    let limit = request.limit_param(DEFAULT_PAGE, MAX_PAGE)?;
    module
        .answer(move |store, durable| query::sync(store, &viewer, room, since, limit, durable))
        .await
}

fn post_ids(request: &Request) -> Result<(u64, u64), ApiError> {
    Ok((
        id_param(request, "channelId")?,
        id_param(request, "postId")?,
    ))
}

fn message_ids(request: &Request) -> Result<(u64, u64), ApiError> {
    Ok((
        id_param(request, "discussionId")?,
        id_param(request, "messageId")?,
    ))
}

/// `GET /channels/{channelId}/posts?before=&limit=`
async fn list_posts(module: Arc<ChannelsModule>, request: Request) -> Result<Response, ApiError> {
    let viewer = module.viewer(&request)?;
    let at = (
        id_param(&request, "channelId")?,
        id_query(&request, "before")?,
    );
    let limit = request.limit_param(DEFAULT_PAGE, MAX_PAGE)?;
    module
        .answer(move |store, latest| query::posts(store, &viewer, at, limit, latest))
        .await
}

/// `POST /channels/{channelId}/posts`
async fn create_post(
    module: Arc<ChannelsModule>,
    mut request: Request,
) -> Result<Response, ApiError> {
    let write = module
        .prepare::<NewPost>(&mut request, "channels.post", Body::Json)
        .await?;
    let channel = id_param(&request, "channelId")?;
    module
        .commit(write, StatusCode::CREATED, move |change, acting, input| {
            posts::create(change, acting, channel, input)
        })
        .await
}

/// `GET /channels/{channelId}/posts/{postId}`
async fn get_post(module: Arc<ChannelsModule>, request: Request) -> Result<Response, ApiError> {
    let viewer = module.viewer(&request)?;
    let ids = post_ids(&request)?;
    module
        .answer(move |store, _| query::post(store, &viewer, ids))
        .await
}

/// `PATCH /channels/{channelId}/posts/{postId}`
async fn edit_post(
    module: Arc<ChannelsModule>,
    mut request: Request,
) -> Result<Response, ApiError> {
    let write = module
        .prepare::<PostEdit>(&mut request, "channels.post.edit", Body::Json)
        .await?;
    let ids = post_ids(&request)?;
    module
        .commit(write, StatusCode::OK, move |change, acting, input| {
            posts::edit(change, acting, ids, input)
        })
        .await
}

/// `DELETE /channels/{channelId}/posts/{postId}`
async fn delete_post(
    module: Arc<ChannelsModule>,
    mut request: Request,
) -> Result<Response, ApiError> {
    let write = module
        .prepare::<Value>(&mut request, "channels.post.delete", Body::None)
        .await?;
    let ids = post_ids(&request)?;
    module
        .commit(write, StatusCode::OK, move |change, acting, _| {
            posts::delete(change, acting, ids)
        })
        .await
}

/// `PUT /channels/{channelId}/posts/{postId}/pin` `{"pinned": bool}`
async fn pin_post(module: Arc<ChannelsModule>, mut request: Request) -> Result<Response, ApiError> {
    let write = module
        .prepare::<Pin>(&mut request, "channels.post.pin", Body::Json)
        .await?;
    let ids = post_ids(&request)?;
    module
        .commit(write, StatusCode::OK, move |change, acting, input| {
            posts::pin(change, acting, ids, input)
        })
        .await
}

/// `GET /discussions/{discussionId}/messages?before=&limit=`
async fn list_messages(
    module: Arc<ChannelsModule>,
    request: Request,
) -> Result<Response, ApiError> {
    let viewer = module.viewer(&request)?;
    let at = (
        id_param(&request, "discussionId")?,
        id_query(&request, "before")?,
    );
    let limit = request.limit_param(DEFAULT_PAGE, MAX_PAGE)?;
    module
        .answer(move |store, latest| query::messages(store, &viewer, at, limit, latest))
        .await
}

/// `POST /discussions/{discussionId}/messages`
async fn create_message(
    module: Arc<ChannelsModule>,
    mut request: Request,
) -> Result<Response, ApiError> {
    let write = module
        .prepare::<NewMessage>(&mut request, "channels.message", Body::Json)
        .await?;
    let discussion = id_param(&request, "discussionId")?;
    module
        .commit(write, StatusCode::CREATED, move |change, acting, input| {
            messages::create(change, acting, discussion, input)
        })
        .await
}

/// `GET /discussions/{discussionId}/messages/{messageId}`
async fn get_message(module: Arc<ChannelsModule>, request: Request) -> Result<Response, ApiError> {
    let viewer = module.viewer(&request)?;
    let ids = message_ids(&request)?;
    module
        .answer(move |store, _| query::message(store, &viewer, ids))
        .await
}

/// `PATCH /discussions/{discussionId}/messages/{messageId}`
async fn edit_message(
    module: Arc<ChannelsModule>,
    mut request: Request,
) -> Result<Response, ApiError> {
    let write = module
        .prepare::<MessageEdit>(&mut request, "channels.message.edit", Body::Json)
        .await?;
    let ids = message_ids(&request)?;
    module
        .commit(write, StatusCode::OK, move |change, acting, input| {
            messages::edit(change, acting, ids, input)
        })
        .await
}

/// `DELETE /discussions/{discussionId}/messages/{messageId}`
async fn delete_message(
    module: Arc<ChannelsModule>,
    mut request: Request,
) -> Result<Response, ApiError> {
    let write = module
        .prepare::<Value>(&mut request, "channels.message.delete", Body::None)
        .await?;
    let ids = message_ids(&request)?;
    module
        .commit(write, StatusCode::OK, move |change, acting, _| {
            messages::delete(change, acting, ids)
        })
        .await
}

/// `POST /discussions/{discussionId}/messages/{messageId}/restore`
async fn restore_message(
    module: Arc<ChannelsModule>,
    mut request: Request,
) -> Result<Response, ApiError> {
    let write = module
        .prepare::<Value>(&mut request, "channels.message.restore", Body::None)
        .await?;
    let ids = message_ids(&request)?;
    module
        .commit(write, StatusCode::OK, move |change, acting, _| {
            messages::restore(change, acting, ids)
        })
        .await
}
