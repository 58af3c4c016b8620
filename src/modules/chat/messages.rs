//! Message writes (post, edit, delete) and read receipts, each inside the
//! caller's change with its events.
//!
//! Invariants: only members (and the backend) post; `System` messages come
//! from owners, admins and the backend only (the backend's default); a
//! comment's parent is a top-level message of the same room holding fewer
//! than `--chat-max-thread-comments` comments, so deleting a parent deletes
//! every comment in the same change (one `TextMessageDeleted` each, then the
//! parent's); only the author edits; the author, owners, admins and the
//! backend delete; a read receipt never moves backwards.

use super::directory::next_id;
use super::layout::{self, Counter};
use super::model::{
    Message, MessageType, Receipt, StoredMessage, check_chars, decode, encode, forbidden,
    not_found, over_limit,
};
use super::service::{Acting, now, save_room};
use crate::core::writer::Change;
use crate::error::ApiError;
use crate::modules::discussions::model::require_text;
use serde::{Deserialize, Serialize};

/// `POST /rooms/{roomId}/messages` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewMessage {
    /// Text.
    pub text: String,
    /// Regular (users' default) or System (the backend's default).
    #[serde(default)]
    pub message_type: Option<MessageType>,
    /// The top-level message this one comments.
    #[serde(default)]
    pub parent_message_id: Option<u64>,
}

/// The answer of a message's deletion.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Deleted {
    /// The message.
    pub message_id: u64,
    /// Always true.
    pub deleted: bool,
}

/// The answer of a read receipt.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadState {
    /// The room.
    pub room_id: u64,
    /// The reader.
    pub user_id: u64,
    /// The newest message read.
    pub last_read_message_id: Option<u64>,
    /// Messages after it not written by the reader (see [`Receipt`]).
    pub unread_count: u64,
}

/// Reads a message of `room` inside a change (404 when missing).
pub fn load(
    change: &Change<'_>,
    acting: &Acting,
    room: u64,
    id: u64,
) -> Result<StoredMessage, ApiError> {
    let bytes = change
        .get(&layout::message(&acting.tenant, room, id))?
        .ok_or_else(|| not_found("message in this room"))?;
    decode(&bytes)
}

fn save(change: &mut Change<'_>, acting: &Acting, stored: &StoredMessage) -> Result<(), ApiError> {
    let message = &stored.message;
    let key = layout::message(&acting.tenant, message.room_id, message.message_id);
    change.put(key, encode(stored)?);
    Ok(())
}

fn check_text(acting: &Acting, text: &str) -> Result<(), ApiError> {
    let max = acting.limits.max_message_chars;
    check_chars("text", text, max, "chat-max-message-chars")?;
    require_text("text", text, max, true)
}

/// Posts a message (members; `System` from owners, admins and the backend).
pub fn post(
    change: &mut Change<'_>,
    acting: &Acting,
    room: u64,
    input: NewMessage,
) -> Result<Message, ApiError> {
    check_text(acting, &input.text)?;
    let (mut stored_room, role) = acting.member_room(change, room)?;
    let default_type = if acting.is_backend() {
        MessageType::System
    } else {
        MessageType::Regular
    };
    let message_type = input.message_type.unwrap_or(default_type);
    if message_type == MessageType::System && !role.moderates() {
        return Err(forbidden(
            "only owners, admins and the backend post System messages",
        ));
    }
    if let Some(parent) = input.parent_message_id {
        take_comment_slot(change, acting, room, parent)?;
    }
    let tenant = &acting.tenant;
    let id = next_id(change, tenant, Counter::Message)?;
    stored_room.seq += 1;
    stored_room.last_message_id = Some(id);
    stored_room.last_activity_ms = change.now_ms();
    save_room(change, tenant, &stored_room)?;
    let message = Message {
        message_id: id,
        message_type,
        room_id: room,
        text: input.text,
        user_id: acting.user,
        parent_message_id: input.parent_message_id,
        created_at: now(change),
        edited_at: None,
    };
    let stored = StoredMessage {
        message,
        seq: stored_room.seq,
        comments: 0,
    };
    save(change, acting, &stored)?;
    let parent = input.parent_message_id.unwrap_or(0);
    change.put(layout::thread_entry(tenant, room, parent, id), Vec::new());
    count_own(change, acting, room, stored.seq)?;
    acting.emitter().message_created(change, &stored.message)?;
    Ok(stored.message)
}

/// Checks that `parent` is a top-level message of `room` with room for one
/// more comment, and counts the comment.
fn take_comment_slot(
    change: &mut Change<'_>,
    acting: &Acting,
    room: u64,
    parent: u64,
) -> Result<(), ApiError> {
    let mut stored =
        load(change, acting, room, parent).map_err(|_| not_found("parent message in this room"))?;
    if stored.message.parent_message_id.is_some() {
        return Err(ApiError::validation(
            "`parentMessageId` must name a top-level message (comments have no comments)",
        )
        .with_details(serde_json::json!({ "field": "parentMessageId" })));
    }
    let limit = acting.limits.max_thread_comments;
    if stored.comments >= limit as u64 {
        return Err(over_limit(
            "the thread is full",
            "chat-max-thread-comments",
            limit,
        ));
    }
    stored.comments += 1;
    save(change, acting, &stored)
}

/// Counts the poster's own new message in their receipt (not unread for them).
fn count_own(
    change: &mut Change<'_>,
    acting: &Acting,
    room: u64,
    seq: u64,
) -> Result<(), ApiError> {
    if acting.is_backend() {
        return Ok(());
    }
    let key = layout::receipt(&acting.tenant, room, acting.user);
    let mut receipt: Receipt = change
        .get(&key)?
        .map(|b| decode(&b))
        .transpose()?
        .unwrap_or_default();
    receipt.own += 1;
    receipt.own_seq = seq;
    change.put(key, encode(&receipt)?);
    Ok(())
}

/// Edits a message's text (its author only).
pub fn edit(
    change: &mut Change<'_>,
    acting: &Acting,
    room: u64,
    id: u64,
    text: String,
) -> Result<Message, ApiError> {
    check_text(acting, &text)?;
    acting.member_room(change, room)?;
    let mut stored = load(change, acting, room, id)?;
    if stored.message.user_id != acting.user {
        return Err(forbidden("only the message's author may edit it"));
    }
    stored.message.text = text;
    stored.message.edited_at = Some(now(change));
    save(change, acting, &stored)?;
    acting.emitter().message_updated(change, &stored.message)?;
    Ok(stored.message)
}

/// Deletes a message (its author, owners, admins, the backend); a
/// top-level message's comments go with it, each announced before it.
pub fn delete(
    change: &mut Change<'_>,
    acting: &Acting,
    room: u64,
    id: u64,
) -> Result<Deleted, ApiError> {
    let (_, role) = acting.member_room(change, room)?;
    let stored = load(change, acting, room, id)?;
    if stored.message.user_id != acting.user && !role.moderates() {
        return Err(forbidden(
            "only the message's author, the room's owner or admins may delete it",
        ));
    }
    let tenant = acting.tenant;
    match stored.message.parent_message_id {
        Some(parent) => {
            let mut parent = load(change, acting, room, parent)?;
            parent.comments = parent.comments.saturating_sub(1);
            save(change, acting, &parent)?;
        }
        None => {
            for (key, _) in change.scan_prefix(&layout::thread(&tenant, room, id))? {
                if let Some(comment) = layout::last_number(&key) {
                    let comment = load(change, acting, room, comment)?;
                    remove(change, acting, &comment.message)?;
                }
            }
        }
    }
    remove(change, acting, &stored.message)?;
    Ok(Deleted {
        message_id: id,
        deleted: true,
    })
}

/// Removes one message's records and announces it.
fn remove(change: &mut Change<'_>, acting: &Acting, message: &Message) -> Result<(), ApiError> {
    let (tenant, room, id) = (&acting.tenant, message.room_id, message.message_id);
    let parent = message.parent_message_id.unwrap_or(0);
    change.delete(layout::message(tenant, room, id));
    change.delete(layout::thread_entry(tenant, room, parent, id));
    acting.emitter().message_deleted(change, message)
}

/// Moves the reader's receipt forward to `id` (never back) and announces it.
pub fn read(
    change: &mut Change<'_>,
    acting: &Acting,
    room: u64,
    id: u64,
) -> Result<ReadState, ApiError> {
    let user = acting.require_user()?;
    let (stored_room, _) = acting.member_room(change, room)?;
    let message = load(change, acting, room, id)?;
    let key = layout::receipt(&acting.tenant, room, user);
    let mut receipt: Receipt = change
        .get(&key)?
        .map(|b| decode(&b))
        .transpose()?
        .unwrap_or_default();
    if receipt.last_read_message_id.is_none_or(|last| last < id) {
        receipt.last_read_message_id = Some(id);
        receipt.seq = receipt.seq.max(message.seq);
        if receipt.seq >= receipt.own_seq {
            receipt.own = 0;
        }
        change.put(key, encode(&receipt)?);
        acting.emitter().receipt(change, room, user, id)?;
    }
    Ok(ReadState {
        room_id: room,
        user_id: user,
        last_read_message_id: receipt.last_read_message_id,
        unread_count: receipt.unread(stored_room.seq),
    })
}
