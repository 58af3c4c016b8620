//! Discussion message writes: create, edit, delete (a tombstone) and
//! restore, each with its event in the same change.
//!
//! Who: a user by JWT who may join the discussion now (the access policy of
//! [`super::access`], checked inside the change) writes as themselves and
//! edits, deletes and restores only their own messages; the tenant's
//! backend writes as the `authorId` it names and moderates every message.
//!
//! Invariants: a deleted message keeps its record and takes no edit; only a
//! deleted message is restored, and its `restored` event carries it whole;
//! a disabled discussion takes no new message (the backend included), and
//! only the backend moderates in it.

use super::access;
use super::model::{DiscussionMessage, check_user};
use super::service::{self, Acting, Written, now, save};
use super::{layout, layout::Counter};
use crate::core::writer::Change;
use crate::error::{ApiError, ErrorCode};
use crate::modules::discussions::model::require_text;
use crate::modules::records::forbidden;
use serde::Deserialize;

/// `POST /discussions/{discussionId}/messages` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewMessage {
    /// Text.
    pub text: String,
    /// The author, when the backend writes (a user writes as themselves).
    #[serde(default)]
    pub author_id: Option<String>,
}

/// `PATCH /discussions/{discussionId}/messages/{messageId}` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MessageEdit {
    /// New text.
    pub text: String,
}

/// The channel of `discussion` and whether it is enabled, when the actor
/// may write in it now (a user only while they may join it).
fn writable(
    change: &Change<'_>,
    acting: &Acting,
    discussion: u64,
) -> Result<(u64, bool), ApiError> {
    let channel = service::discussion_channel(change, &acting.tenant, discussion)?;
    let standing = service::standing(change, &acting.tenant, &channel, &acting.reader)?;
    let settings = access::join_discussion(&channel, &acting.reader, &standing, change.now_ms())?;
    Ok((channel.id, settings.enabled))
}

/// A message the actor may change: their own, or any for the backend.
fn own_message(
    change: &Change<'_>,
    acting: &Acting,
    (discussion, id): (u64, u64),
) -> Result<DiscussionMessage, ApiError> {
    writable(change, acting, discussion)?;
    let message = service::message(change, &acting.tenant, discussion, id)?;
    if !acting.is_backend() && acting.reader.sub() != Some(message.author_id.as_str()) {
        return Err(forbidden(
            "only the author or the backend changes a message",
        ));
    }
    Ok(message)
}

/// Creates a message in a discussion.
pub fn create(
    change: &mut Change<'_>,
    acting: &Acting,
    discussion: u64,
    input: NewMessage,
) -> Result<Written<DiscussionMessage>, ApiError> {
    let (channel, enabled) = writable(change, acting, discussion)?;
    if !enabled {
        return Err(forbidden("this channel's discussion is disabled"));
    }
    require_text("text", &input.text, acting.limits.max_text_chars, true)?;
    let author = match (acting.reader.sub(), input.author_id) {
        (Some(sub), None) => sub.to_string(),
        (Some(_), Some(_)) => {
            return Err(forbidden(
                "a user writes as themselves: leave out `authorId`",
            ));
        }
        (None, Some(author)) => author,
        (None, None) => return Err(ApiError::validation("the backend names the `authorId`")),
    };
    check_user("authorId", &author)?;
    let at = now(change);
    let message = DiscussionMessage {
        id: service::next_id(change, &acting.tenant, Counter::Message)?,
        discussion_id: discussion,
        channel_id: channel,
        text: input.text,
        author_id: author,
        is_deleted: false,
        deleted_at: None,
        created_at: at.clone(),
        updated_at: at,
    };
    save(
        change,
        layout::message(&acting.tenant, discussion, message.id),
        &message,
    )?;
    let event = acting.emitter().message_created(change, &message)?;
    Ok(Written::with_event(message, event))
}

/// Edits a message's text.
pub fn edit(
    change: &mut Change<'_>,
    acting: &Acting,
    ids: (u64, u64),
    input: MessageEdit,
) -> Result<Written<DiscussionMessage>, ApiError> {
    let mut message = own_message(change, acting, ids)?;
    if message.is_deleted {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "this message is deleted".to_string(),
        ));
    }
    require_text("text", &input.text, acting.limits.max_text_chars, true)?;
    if message.text == input.text {
        return Ok(Written::unchanged(message));
    }
    message.text = input.text;
    message.updated_at = now(change);
    save(
        change,
        layout::message(&acting.tenant, ids.0, ids.1),
        &message,
    )?;
    let event = acting.emitter().message_updated(change, &message)?;
    Ok(Written::with_event(message, event))
}

/// Deletes a message (a tombstone); deleting a deleted one changes nothing.
pub fn delete(
    change: &mut Change<'_>,
    acting: &Acting,
    ids: (u64, u64),
) -> Result<Written<DiscussionMessage>, ApiError> {
    let mut message = own_message(change, acting, ids)?;
    if message.is_deleted {
        return Ok(Written::unchanged(message));
    }
    let at = now(change);
    message.is_deleted = true;
    message.deleted_at = Some(at.clone());
    message.updated_at = at;
    save(
        change,
        layout::message(&acting.tenant, ids.0, ids.1),
        &message,
    )?;
    let event = acting.emitter().message_deleted(change, &message)?;
    Ok(Written::with_event(message, event))
}

/// Restores a deleted message; restoring one that is not deleted changes nothing.
pub fn restore(
    change: &mut Change<'_>,
    acting: &Acting,
    ids: (u64, u64),
) -> Result<Written<DiscussionMessage>, ApiError> {
    let mut message = own_message(change, acting, ids)?;
    if !message.is_deleted {
        return Ok(Written::unchanged(message));
    }
    message.is_deleted = false;
    message.deleted_at = None;
    message.updated_at = now(change);
    save(
        change,
        layout::message(&acting.tenant, ids.0, ids.1),
        &message,
    )?;
    let event = acting.emitter().message_restored(change, &message)?;
    Ok(Written::with_event(message, event))
}
