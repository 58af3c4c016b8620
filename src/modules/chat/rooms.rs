//! Room writes: create, update, delete, each inside the caller's change
//! with its events.
//!
//! Invariants: creating a room appends only user-topic `RoomCreated` events
//! (the creator's first, then each initial member's, each carrying the room
//! with its final `memberCount`) and nothing in the room topic; a room's
//! deletion appends one room-topic `RoomDeleted`, ends every member's
//! membership at its id and removes the room's records (members, receipts,
//! messages, indexes) in the same change; a public room is in the public
//! index exactly while it is public.

use super::directory::{self, next_id};
use super::events::Began;
use super::layout::{self, Counter};
use super::members::{self, MemberRef};
use super::model::{Role, Room, StoredRoom, check_chars, forbidden, over_limit};
use super::purge;
use super::service::{Acting, now, save_room};
use crate::core::writer::Change;
use crate::error::ApiError;
use crate::modules::discussions::model::require_text;
use serde::{Deserialize, Serialize};

/// `POST /rooms` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewRoom {
    /// Name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Private rooms are seen by their members only.
    #[serde(default)]
    pub private: bool,
    /// Initial members (user ids or JWT subjects).
    #[serde(default)]
    pub members: Vec<MemberRef>,
}

/// `PATCH /rooms/{roomId}` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoomPatch {
    /// New name.
    #[serde(default)]
    pub name: Option<String>,
    /// New description.
    #[serde(default)]
    pub description: Option<String>,
    /// New privacy.
    #[serde(default)]
    pub private: Option<bool>,
}

/// The answer of a room's deletion.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Deleted {
    /// The room.
    pub room_id: u64,
    /// Always true.
    pub deleted: bool,
}

fn check_name(acting: &Acting, name: &str) -> Result<(), ApiError> {
    let max = acting.limits.max_name_chars;
    check_chars("name", name, max, "chat-max-name-chars")?;
    require_text("name", name, max, false)
}

fn check_description(acting: &Acting, description: &str) -> Result<(), ApiError> {
    let max = acting.limits.max_description_chars;
    check_chars(
        "description",
        description,
        max,
        "chat-max-description-chars",
    )
}

/// Creates a room owned by the caller (the backend owns none: it is not a member).
pub fn create(change: &mut Change<'_>, acting: &Acting, input: NewRoom) -> Result<Room, ApiError> {
    check_name(acting, &input.name)?;
    check_description(acting, &input.description)?;
    let limit = acting.limits.max_initial_members;
    if input.members.len() > limit {
        return Err(over_limit(
            "too many initial `members`",
            "chat-max-initial-members",
            limit,
        ));
    }
    let tenant = acting.tenant;
    let mut joining = Vec::new();
    if !acting.is_backend() {
        joining.push((acting.user, Role::Owner));
    }
    for member in &input.members {
        let user = member.resolve(change, &tenant)?;
        if !joining.iter().any(|(known, _)| *known == user) {
            joining.push((user, Role::Member));
        }
    }
    let limit = acting.limits.max_room_members;
    if joining.len() > limit {
        return Err(over_limit(
            "too many members",
            "chat-max-room-members",
            limit,
        ));
    }
    let at = now(change);
    let stored = StoredRoom {
        room: Room {
            room_id: next_id(change, &tenant, Counter::Room)?,
            name: input.name,
            description: input.description,
            private: input.private,
            created_by: acting.user,
            created_at: at.clone(),
            updated_at: at,
            member_count: joining.len() as u64,
        },
        seq: 0,
        last_message_id: None,
        last_activity_ms: change.now_ms(),
    };
    save_room(change, &tenant, &stored)?;
    index_publicity(change, &tenant, &stored.room);
    let emitter = acting.emitter();
    for (user, role) in joining {
        members::insert(change, acting, &stored, user, role)?;
        emitter.membership_began(change, user, &stored.room, Began::Created, role)?;
    }
    Ok(stored.room)
}

fn index_publicity(change: &mut Change<'_>, tenant: &uuid::Uuid, room: &Room) {
    let key = layout::public_room(tenant, room.room_id);
    if room.private {
        change.delete(key);
    } else {
        change.put(key, Vec::new());
    }
}

/// Renames, describes or changes a room's privacy (owners and admins);
/// `RoomUpdated` when anything changed.
pub fn update(
    change: &mut Change<'_>,
    acting: &Acting,
    room: u64,
    patch: RoomPatch,
) -> Result<Room, ApiError> {
    let (mut stored, _) = acting.moderated_room(change, room)?;
    let before = serde_json::to_value(&stored.room).unwrap_or_default();
    if let Some(name) = patch.name {
        check_name(acting, &name)?;
        stored.room.name = name;
    }
    if let Some(description) = patch.description {
        check_description(acting, &description)?;
        stored.room.description = description;
    }
    if let Some(private) = patch.private {
        stored.room.private = private;
    }
    if serde_json::to_value(&stored.room).unwrap_or_default() == before {
        return Ok(stored.room);
    }
    stored.room.updated_at = now(change);
    save_room(change, &acting.tenant, &stored)?;
    index_publicity(change, &acting.tenant, &stored.room);
    acting.emitter().room_updated(change, &stored.room)?;
    Ok(stored.room)
}

/// Deletes a room (its owner or the backend).
pub fn delete(change: &mut Change<'_>, acting: &Acting, room: u64) -> Result<Deleted, ApiError> {
    let (_, role) = acting.member_room(change, room)?;
    if role != Role::Owner {
        return Err(forbidden("only the room's owner may delete it"));
    }
    let tenant = acting.tenant;
    let ended = acting.emitter().room_deleted(change, room)?;
    for (key, _) in change.scan_prefix(&layout::members(&tenant, room))? {
        if let Some(user) = layout::last_number(&key) {
            directory::end(change, &tenant, user, room, ended)?;
        }
        change.delete(key);
    }
    for (key, _) in change.scan_prefix(&layout::receipts(&tenant, room))? {
        change.delete(key);
    }
    purge::schedule(change, &tenant, room)?;
    change.delete(layout::public_room(&tenant, room));
    change.delete(layout::room(&tenant, room));
    Ok(Deleted {
        room_id: room,
        deleted: true,
    })
}
