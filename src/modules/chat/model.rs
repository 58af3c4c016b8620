//! Rooms, members, messages and read receipts as stored and as served, the
//! module's limits and the rules of roles.
//!
//! Invariants: the objects served (`Room`, `Message`, member, my-room item)
//! have exactly the contract's camelCase fields; what only the server needs
//! (a room's message sequence and last activity, a message's sequence number
//! and comment count) is stored beside them and never served; a room has
//! one owner, who may not leave or be removed; every stored string has a
//! limit in characters, refused with 400 `VALIDATION_ERROR` naming the
//! field, the flag and the limit.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Limits of the chat module (flags `--chat-*`).
#[derive(Debug, Clone, Copy)]
pub struct ChatLimits {
    /// Longest message text, in characters.
    pub max_message_chars: usize,
    /// Most members of one room.
    pub max_room_members: usize,
    /// Most rooms one user is a member of.
    pub max_rooms_per_user: usize,
    /// Longest room name, in characters.
    pub max_name_chars: usize,
    /// Longest room description, in characters.
    pub max_description_chars: usize,
    /// Most members named when a room is created.
    pub max_initial_members: usize,
    /// Most comments under one message (a parent's deletion deletes them all).
    pub max_thread_comments: usize,
    /// How long a stream that was idle lingers after its first new event so
    /// messages posted close together go out as one frame (0: not at all).
    pub batch_window: Duration,
}

/// A member's role in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The creator: everything, and only they delete the room.
    Owner,
    /// Edits the room, adds and removes members, deletes messages.
    Admin,
    /// Reads and posts.
    Member,
}

impl Role {
    /// True for owners and admins.
    pub fn moderates(self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }

    /// The role as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }
}

/// Whether a message is a person's or the system's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum MessageType {
    /// Written by a member.
    #[default]
    Regular,
    /// Written by the backend, an owner or an admin as a notice.
    System,
}

/// A room as served.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Room {
    /// Id (per tenant, from 1).
    pub room_id: u64,
    /// Name.
    pub name: String,
    /// Description (empty when none).
    pub description: String,
    /// Private rooms are seen by their members only.
    pub private: bool,
    /// The creator's user id (0: the backend).
    pub created_by: u64,
    /// Creation time (RFC 3339, ms).
    pub created_at: String,
    /// Last change of the room record (RFC 3339, ms).
    pub updated_at: String,
    /// Members now.
    pub member_count: u64,
}

/// A room as stored: the served room plus its message bookkeeping.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredRoom {
    /// The served part.
    #[serde(flatten)]
    pub room: Room,
    /// Messages ever posted (top level and comments): the unread arithmetic.
    pub seq: u64,
    /// The newest message posted.
    pub last_message_id: Option<u64>,
    /// Unix ms of the last message, or of the creation.
    pub last_activity_ms: u64,
}

/// A message as served.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// Id (per tenant, increasing).
    pub message_id: u64,
    /// Regular or System.
    pub message_type: MessageType,
    /// The room.
    pub room_id: u64,
    /// Text.
    pub text: String,
    /// The author (0: the backend).
    pub user_id: u64,
    /// The top-level message this one comments, if any.
    pub parent_message_id: Option<u64>,
    /// Creation time (RFC 3339, ms).
    pub created_at: String,
    /// Last edit, if edited.
    pub edited_at: Option<String>,
}

/// A message as stored: the served message plus its room sequence number
/// and (top level) its comment count.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredMessage {
    /// The served part.
    #[serde(flatten)]
    pub message: Message,
    /// The room's `seq` after this message was posted.
    pub seq: u64,
    /// Comments under it now.
    #[serde(default)]
    pub comments: u64,
}

/// A member as stored under the room.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberRecord {
    /// Role.
    pub role: Role,
    /// When the membership began (RFC 3339, ms).
    pub joined_at: String,
}

/// A member as served.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// User id.
    pub user_id: u64,
    /// The user's JWT subject.
    pub sub: Option<String>,
    /// Role.
    pub role: Role,
    /// When the membership began.
    pub joined_at: String,
}

/// One user's read position in one room. Unread messages are approximated
/// by sequence numbers: `room.seq - seq - own`, where `own` counts the
/// user's own messages posted after the position (reset once the position
/// passes the newest of them). Deleted messages still count.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    /// The newest message read, if any.
    pub last_read_message_id: Option<u64>,
    /// The room's `seq` at that message (or at the join).
    pub seq: u64,
    /// The user's own messages after the position.
    pub own: u64,
    /// The `seq` of the user's newest own message.
    pub own_seq: u64,
}

impl Receipt {
    /// Unread messages of a room whose `seq` is `room_seq`.
    pub fn unread(&self, room_seq: u64) -> u64 {
        room_seq.saturating_sub(self.seq).saturating_sub(self.own)
    }
}

pub use crate::modules::records::{check_chars, decode, encode, forbidden, not_found, over_limit};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unread_counts_others_messages_after_the_position() {
        let receipt = Receipt {
            last_read_message_id: Some(4),
            seq: 3,
            own: 2,
            own_seq: 6,
        };
        assert_eq!(receipt.unread(10), 5);
        assert_eq!(receipt.unread(2), 0);
    }

    #[test]
    fn stored_records_serve_only_the_contract_fields() {
        let message = Message {
            message_id: 1,
            message_type: MessageType::System,
            room_id: 2,
            text: "hi".into(),
            user_id: 0,
            parent_message_id: None,
            created_at: "t".into(),
            edited_at: None,
        };
        let stored = StoredMessage {
            message,
            seq: 9,
            comments: 0,
        };
        let back: StoredMessage = decode(&encode(&stored).unwrap()).unwrap();
        assert_eq!(back.seq, 9);
        let served = serde_json::to_value(&back.message).unwrap();
        assert_eq!(
            served,
            json!({"messageId":1,"messageType":"System","roomId":2,"text":"hi","userId":0,
                   "parentMessageId":null,"createdAt":"t","editedAt":null})
        );
    }
}
