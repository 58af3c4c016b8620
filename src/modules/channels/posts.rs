//! Post writes: create, edit, delete (a tombstone) and pin or unpin, by the
//! tenant's backend, each with its event in the same change.
//!
//! Invariants: a deleted post keeps its record with `isDeleted` and
//! `deletedAt` and takes no edit or pin; an edit that changes nothing and a
//! pin that is already so append nothing; a broadcast post schedules its
//! push hand-off ([`super::push`]) in the change that creates it.

use super::model::Post;
use super::push;
use super::service::{self, Acting, Written, now, save};
use super::{layout, layout::Counter};
use crate::core::writer::Change;
use crate::error::ApiError;
use crate::modules::discussions::model::require_text;
use crate::modules::records::forbidden;
use serde::Deserialize;

/// `POST /channels/{channelId}/posts` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewPost {
    /// Text.
    pub text: String,
    /// The author as the backend knows them.
    pub author_id: String,
    /// Hand the post to push services for the channel's members.
    #[serde(default)]
    pub broadcast: bool,
}

/// `PATCH /channels/{channelId}/posts/{postId}` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PostEdit {
    /// New text.
    pub text: String,
}

/// `PUT /channels/{channelId}/posts/{postId}/pin` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pin {
    /// Pinned or not.
    pub pinned: bool,
}

fn backend_only(acting: &Acting) -> Result<(), ApiError> {
    if acting.is_backend() {
        Ok(())
    } else {
        Err(forbidden(
            "posts are written by the tenant's backend (API key)",
        ))
    }
}

fn live_post(
    change: &Change<'_>,
    acting: &Acting,
    channel: u64,
    id: u64,
) -> Result<Post, ApiError> {
    backend_only(acting)?;
    let post = service::post(change, &acting.tenant, channel, id)?;
    if post.is_deleted {
        return Err(ApiError::new(
            crate::error::ErrorCode::Conflict,
            "this post is deleted".to_string(),
        ));
    }
    Ok(post)
}

/// Creates a post in a channel.
pub fn create(
    change: &mut Change<'_>,
    acting: &Acting,
    channel: u64,
    input: NewPost,
) -> Result<Written<Post>, ApiError> {
    backend_only(acting)?;
    service::channel(change, &acting.tenant, channel)?;
    require_text("text", &input.text, acting.limits.max_text_chars, true)?;
    super::model::check_user("authorId", &input.author_id)?;
    let at = now(change);
    let post = Post {
        id: service::next_id(change, &acting.tenant, Counter::Post)?,
        channel_id: channel,
        text: input.text,
        author_id: input.author_id,
        broadcast: input.broadcast,
        is_pinned: false,
        pinned_at: None,
        is_deleted: false,
        deleted_at: None,
        created_at: at.clone(),
        updated_at: at,
    };
    save(
        change,
        layout::post(&acting.tenant, channel, post.id),
        &post,
    )?;
    let event = acting.emitter().post_created(change, &post)?;
    if post.broadcast {
        push::schedule(change, &acting.tenant, &post, acting.actor.as_deref())?;
    }
    Ok(Written::with_event(post, event))
}

/// Edits a post's text.
pub fn edit(
    change: &mut Change<'_>,
    acting: &Acting,
    (channel, id): (u64, u64),
    input: PostEdit,
) -> Result<Written<Post>, ApiError> {
    let mut post = live_post(change, acting, channel, id)?;
    require_text("text", &input.text, acting.limits.max_text_chars, true)?;
    if post.text == input.text {
        return Ok(Written::unchanged(post));
    }
    post.text = input.text;
    post.updated_at = now(change);
    save(change, layout::post(&acting.tenant, channel, id), &post)?;
    let event = acting.emitter().post_updated(change, &post)?;
    Ok(Written::with_event(post, event))
}

/// Deletes a post (a tombstone).
pub fn delete(
    change: &mut Change<'_>,
    acting: &Acting,
    (channel, id): (u64, u64),
) -> Result<Written<Post>, ApiError> {
    let mut post = live_post(change, acting, channel, id)?;
    let at = now(change);
    post.is_deleted = true;
    post.deleted_at = Some(at.clone());
    post.updated_at = at;
    save(change, layout::post(&acting.tenant, channel, id), &post)?;
    let event = acting.emitter().post_deleted(change, &post)?;
    Ok(Written::with_event(post, event))
}

/// Pins or unpins a post.
pub fn pin(
    change: &mut Change<'_>,
    acting: &Acting,
    (channel, id): (u64, u64),
    input: Pin,
) -> Result<Written<Post>, ApiError> {
    let mut post = live_post(change, acting, channel, id)?;
    if post.is_pinned == input.pinned {
        return Ok(Written::unchanged(post));
    }
    let at = now(change);
    post.is_pinned = input.pinned;
    post.pinned_at = input.pinned.then(|| at.clone());
    post.updated_at = at;
    save(change, layout::post(&acting.tenant, channel, id), &post)?;
    let event = acting.emitter().post_pinned(change, &post)?;
    Ok(Written::with_event(post, event))
}
