//! The channels module's stored events, their rooms and the envelope
//! clients receive (spec 003 "Server Event Names", "Event Envelope").
//!
//! * Posts room `communication:channel:{channelId}:posts` is topic
//!   `~channels/c<channelId>`: `communication.channel_post.created`,
//!   `.updated`, `.deleted`, `.pinned`.
//! * Discussion room `communication:discussion:{discussionId}:messages` is
//!   topic `~channels/d<discussionId>`: `communication.discussion_message.created`,
//!   `.updated`, `.deleted`, `.restored`.
//! * Both rooms also carry `communication.access.changed` `{channelId,
//!   discussionId, userId, reason}` (`userId` null: everyone): appended in
//!   the change that narrows who may read the room, so a joined socket meets
//!   it in order, before any later event of the room, re-checks and leaves
//!   when it lost access. It is never sent to Socket.IO clients nor served
//!   by sync (webhooks receive it).
//! * Topic `~channels/push`: `communication.channel_post.broadcast`
//!   `{postId, channelId, recipients, page, last}` for push services.
//!
//! Payloads are deltas: the entity's id, its context ids, timestamps and
//! `actor` `{"id"}` (null id: the tenant's backend); created and restored
//! carry the entity's fields, updated only what changed, deleted is a
//! tombstone (`isDeleted`, `deletedAt`).
//!
//! Invariants: every event is appended in the change that makes the state it
//! describes; the envelope's `eventId` is the log id (a ULID) written as a
//! UUID, so ids sort in commit order as strings and as UUIDs.

use super::model::{DiscussionMessage, Post};
use crate::core::log::encoding::Encoding;
use crate::core::log::namespace::Namespace;
use crate::core::log::{LogEvent, TopicRef};
use crate::core::writer::Change;
use crate::error::ApiError;
use bytes::Bytes;
use serde_json::{Value, json};
use ulid::Ulid;
use uuid::Uuid;

/// Name of the module and of its topic namespace.
pub const NAME: &str = "channels";

/// The module's topic namespace: `~channels/…`.
pub const NAMESPACE: Namespace = Namespace::Module(NAME);

/// The event narrowing who may read a room (never sent to clients).
pub const ACCESS_CHANGED: &str = "communication.access.changed";

/// The event handing a broadcast post's recipients to push services.
pub const BROADCAST: &str = "communication.channel_post.broadcast";

/// A room: a channel's posts or a discussion's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Room {
    /// `communication:channel:{channelId}:posts`.
    Posts(u64),
    /// `communication:discussion:{discussionId}:messages`.
    Discussion(u64),
}

impl Room {
    /// The room's name as clients know it.
    pub fn name(self) -> String {
        match self {
            Room::Posts(channel) => format!("communication:channel:{channel}:posts"),
            Room::Discussion(discussion) => {
                format!("communication:discussion:{discussion}:messages")
            }
        }
    }

    /// The topic holding the room's events.
    pub fn topic(self, tenant: Uuid) -> TopicRef {
        let id = match self {
            Room::Posts(channel) => format!("c{channel}"),
            Room::Discussion(discussion) => format!("d{discussion}"),
        };
        TopicRef::internal(tenant, NAME, &id)
    }
}

/// The topic of broadcast recipients.
pub fn push_topic(tenant: Uuid) -> TopicRef {
    TopicRef::internal(tenant, NAME, "push")
}

/// An event id as clients see it: the ULID as a UUID.
pub fn event_id(id: Ulid) -> String {
    Uuid::from_u128(id.0).to_string()
}

/// The ULID behind a client's event id; `None` when it is not a UUID.
pub fn parse_event_id(text: &str) -> Option<Ulid> {
    Uuid::parse_str(text).ok().map(|uuid| Ulid(uuid.as_u128()))
}

/// True for the events clients receive (not the access notices).
pub fn is_client_event(event: &LogEvent) -> bool {
    event.event.event_type != ACCESS_CHANGED
}

/// The envelope's JSON, built once per event and shared (webhooks, sockets).
pub static ENVELOPE: Encoding = Encoding::new("channels.envelope", |event| {
    Bytes::from(serde_json::to_vec(&envelope(event)).unwrap_or_default())
});

/// The envelope `{"eventId","eventType","occurredAt","data"}` of an event.
pub fn envelope(event: &LogEvent) -> Value {
    json!({
        "eventId": event_id(event.id()),
        "eventType": event.event.event_type,
        "occurredAt": event.event.occurred_at,
        "data": event.event.data,
    })
}

/// Why a room's readers were narrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Narrowed {
    /// The channel's read policy or entitlement key changed.
    Policy,
    /// The discussion was disabled or its required feature changed.
    Discussion,
    /// A member was removed.
    Membership,
    /// A user was banned from the discussion.
    Ban,
    /// A user lost an entitlement or feature.
    Grants,
}

impl Narrowed {
    fn as_str(self) -> &'static str {
        match self {
            Narrowed::Policy => "policy",
            Narrowed::Discussion => "discussion",
            Narrowed::Membership => "membership",
            Narrowed::Ban => "ban",
            Narrowed::Grants => "grants",
        }
    }
}

/// Appends one tenant's channel events inside a change, as one actor.
pub struct Emitter {
    tenant: Uuid,
    actor: Value,
}

impl Emitter {
    /// An emitter for events caused by `actor` (`None`: the backend itself).
    pub fn new(tenant: Uuid, actor: Option<&str>) -> Self {
        Self {
            tenant,
            actor: json!({ "id": actor }),
        }
    }

    fn emit(
        &self,
        change: &mut Change<'_>,
        room: Room,
        event_type: &str,
        mut data: Value,
    ) -> Result<Ulid, ApiError> {
        data["actor"] = self.actor.clone();
        let topic = room.topic(self.tenant);
        Ok(change
            .append(&topic, event_type, self.actor.clone(), data)?
            .id())
    }

    /// `communication.channel_post.created`.
    pub fn post_created(&self, change: &mut Change<'_>, post: &Post) -> Result<Ulid, ApiError> {
        let data = json!({
            "postId": post.id, "channelId": post.channel_id, "text": post.text,
            "authorId": post.author_id, "broadcast": post.broadcast, "isPinned": post.is_pinned,
            "createdAt": post.created_at, "updatedAt": post.updated_at,
        });
        self.emit(
            change,
            Room::Posts(post.channel_id),
            "communication.channel_post.created",
            data,
        )
    }

    /// `communication.channel_post.updated` with the new text.
    pub fn post_updated(&self, change: &mut Change<'_>, post: &Post) -> Result<Ulid, ApiError> {
        let data = json!({
            "postId": post.id, "channelId": post.channel_id, "text": post.text,
            "updatedAt": post.updated_at,
        });
        self.emit(
            change,
            Room::Posts(post.channel_id),
            "communication.channel_post.updated",
            data,
        )
    }

    /// `communication.channel_post.deleted`, a tombstone.
    pub fn post_deleted(&self, change: &mut Change<'_>, post: &Post) -> Result<Ulid, ApiError> {
        let data = json!({
            "postId": post.id, "channelId": post.channel_id, "isDeleted": true,
            "deletedAt": post.deleted_at,
        });
        self.emit(
            change,
            Room::Posts(post.channel_id),
            "communication.channel_post.deleted",
            data,
        )
    }

    /// `communication.channel_post.pinned` (pinned or unpinned).
    pub fn post_pinned(&self, change: &mut Change<'_>, post: &Post) -> Result<Ulid, ApiError> {
        let data = json!({
            "postId": post.id, "channelId": post.channel_id, "isPinned": post.is_pinned,
            "pinnedAt": post.pinned_at, "updatedAt": post.updated_at,
        });
        self.emit(
            change,
            Room::Posts(post.channel_id),
            "communication.channel_post.pinned",
            data,
        )
    }

    /// `communication.discussion_message.created`.
    pub fn message_created(
        &self,
        change: &mut Change<'_>,
        message: &DiscussionMessage,
    ) -> Result<Ulid, ApiError> {
        let data = message_fields(message);
        let room = Room::Discussion(message.discussion_id);
        self.emit(
            change,
            room,
            "communication.discussion_message.created",
            data,
        )
    }

    /// `communication.discussion_message.updated` with the new text.
    pub fn message_updated(
        &self,
        change: &mut Change<'_>,
        message: &DiscussionMessage,
    ) -> Result<Ulid, ApiError> {
        let data = json!({
            "messageId": message.id, "discussionId": message.discussion_id,
            "channelId": message.channel_id, "text": message.text, "updatedAt": message.updated_at,
        });
        let room = Room::Discussion(message.discussion_id);
        self.emit(
            change,
            room,
            "communication.discussion_message.updated",
            data,
        )
    }

    /// `communication.discussion_message.deleted`, a tombstone.
    pub fn message_deleted(
        &self,
        change: &mut Change<'_>,
        message: &DiscussionMessage,
    ) -> Result<Ulid, ApiError> {
        let data = json!({
            "messageId": message.id, "discussionId": message.discussion_id,
            "channelId": message.channel_id, "isDeleted": true, "deletedAt": message.deleted_at,
        });
        let room = Room::Discussion(message.discussion_id);
        self.emit(
            change,
            room,
            "communication.discussion_message.deleted",
            data,
        )
    }

    /// `communication.discussion_message.restored`: the message whole again.
    pub fn message_restored(
        &self,
        change: &mut Change<'_>,
        message: &DiscussionMessage,
    ) -> Result<Ulid, ApiError> {
        let mut data = message_fields(message);
        data["isDeleted"] = json!(false);
        let room = Room::Discussion(message.discussion_id);
        self.emit(
            change,
            room,
            "communication.discussion_message.restored",
            data,
        )
    }

    /// `communication.access.changed` in `room`: who may read it narrowed
    /// (for `user` alone, or for everyone).
    pub fn access_narrowed(
        &self,
        change: &mut Change<'_>,
        room: Room,
        channel: u64,
        user: Option<&str>,
        why: Narrowed,
    ) -> Result<Ulid, ApiError> {
        let discussion = match room {
            Room::Posts(_) => None,
            Room::Discussion(id) => Some(id),
        };
        let data = json!({
            "channelId": channel, "discussionId": discussion, "userId": user, "reason": why.as_str(),
        });
        self.emit(change, room, ACCESS_CHANGED, data)
    }

    /// One page of a broadcast post's push recipients.
    pub fn broadcast(
        &self,
        change: &mut Change<'_>,
        post: &Post,
        recipients: &[String],
        page: u64,
        last: bool,
    ) -> Result<(), ApiError> {
        let data = json!({
            "postId": post.id, "channelId": post.channel_id, "recipients": recipients,
            "page": page, "last": last, "actor": self.actor,
        });
        change.append(
            &push_topic(self.tenant),
            BROADCAST,
            self.actor.clone(),
            data,
        )?;
        Ok(())
    }
}

fn message_fields(message: &DiscussionMessage) -> Value {
    json!({
        "messageId": message.id, "discussionId": message.discussion_id,
        "channelId": message.channel_id, "text": message.text, "authorId": message.author_id,
        "createdAt": message.created_at, "updatedAt": message.updated_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_uuids_that_sort_like_the_log() {
        let (a, b) = (
            Ulid::from_parts(1_700_000_000_000, 5),
            Ulid::from_parts(1_700_000_000_001, 1),
        );
        let (ta, tb) = (event_id(a), event_id(b));
        assert!(ta < tb, "{ta} < {tb}");
        assert_eq!(ta.len(), 36);
        assert_eq!(parse_event_id(&ta), Some(a));
        assert_eq!(parse_event_id("019d"), None);
    }

    #[test]
    fn rooms_have_the_spec_names() {
        assert_eq!(Room::Posts(3).name(), "communication:channel:3:posts");
        assert_eq!(
            Room::Discussion(4).name(),
            "communication:discussion:4:messages"
        );
        assert_eq!(Room::Posts(3).topic(Uuid::nil()).name, "~channels/c3");
        assert_eq!(Room::Discussion(4).topic(Uuid::nil()).name, "~channels/d4");
    }
}
