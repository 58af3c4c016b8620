//! Membership changes: adding, joining, removing, leaving and roles, each
//! inside the caller's change with its events.
//!
//! Invariants: a membership's user-topic `RoomCreated` comes before the
//! room's `RoomUpdated` (new `memberCount`) when it begins, and the
//! `RoomUpdated` before the user-topic `RoomDeleted` when it ends; adding a
//! member twice changes nothing (the member is answered); a room holds at
//! most `--chat-max-room-members` members and a user is in at most
//! `--chat-max-rooms-per-user` rooms; the owner never leaves, is never
//! removed and keeps their role; an admin is removed or demoted by the
//! owner only (or leaves, or steps down, themselves).

use super::directory;
use super::events::{Began, Ended};
use super::layout;
use super::model::{
    Member, MemberRecord, Receipt, Role, StoredRoom, encode, forbidden, not_found, over_limit,
};
use super::service::{Acting, load_member, now, save_room};
use crate::core::writer::Change;
use crate::error::ApiError;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A member named by user id or by JWT subject.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum MemberRef {
    /// An existing user id.
    Id(u64),
    /// A JWT subject (its id is created when missing).
    Sub(String),
}

impl MemberRef {
    /// The user id of the reference inside a change; 404 for an unknown id.
    pub fn resolve(&self, change: &mut Change<'_>, tenant: &Uuid) -> Result<u64, ApiError> {
        match self {
            MemberRef::Id(0) => Err(ApiError::validation(
                "user 0 is the backend, never a member",
            )),
            MemberRef::Id(user) if directory::user_exists(change, tenant, *user)? => Ok(*user),
            MemberRef::Id(user) => Err(not_found(&format!("user {user}"))),
            MemberRef::Sub(sub) => directory::resolve_user(change, tenant, sub),
        }
    }
}

/// What a membership change answers: whether it created the member, and the member.
pub type Admitted = (bool, Member);

/// The served member `user` of `record`.
pub fn view(
    change: &Change<'_>,
    tenant: &Uuid,
    user: u64,
    record: MemberRecord,
) -> Result<Member, ApiError> {
    let sub = change
        .get(&layout::sub_of_user(tenant, user))?
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
    Ok(Member {
        user_id: user,
        sub,
        role: record.role,
        joined_at: record.joined_at,
    })
}

/// Writes `user`'s member row and first receipt (nothing unread yet); no
/// event, no count. 400 when the user is in too many rooms.
pub fn insert(
    change: &mut Change<'_>,
    acting: &Acting,
    stored: &StoredRoom,
    user: u64,
    role: Role,
) -> Result<MemberRecord, ApiError> {
    let tenant = &acting.tenant;
    let limit = acting.limits.max_rooms_per_user;
    if directory::rooms_now(change, tenant, user)? >= limit {
        return Err(over_limit(
            &format!("user {user} is in too many rooms"),
            "chat-max-rooms-per-user",
            limit,
        ));
    }
    let record = MemberRecord {
        role,
        joined_at: now(change),
    };
    let room = stored.room.room_id;
    change.put(layout::member(tenant, room, user), encode(&record)?);
    let receipt = Receipt {
        seq: stored.seq,
        ..Receipt::default()
    };
    change.put(layout::receipt(tenant, room, user), encode(&receipt)?);
    Ok(record)
}

/// Adds `user` to `stored` (or answers the existing member): user-topic
/// `RoomCreated`, then the room's `RoomUpdated`.
pub fn admit(
    change: &mut Change<'_>,
    acting: &Acting,
    mut stored: StoredRoom,
    user: u64,
    role: Role,
    reason: Began,
) -> Result<Admitted, ApiError> {
    let tenant = &acting.tenant;
    let room = stored.room.room_id;
    if let Some(existing) = load_member(change, tenant, room, user)? {
        return Ok((false, view(change, tenant, user, existing)?));
    }
    let limit = acting.limits.max_room_members;
    if stored.room.member_count >= limit as u64 {
        return Err(over_limit(
            "the room is full",
            "chat-max-room-members",
            limit,
        ));
    }
    let record = insert(change, acting, &stored, user, role)?;
    stored.room.member_count += 1;
    stored.room.updated_at = now(change);
    save_room(change, tenant, &stored)?;
    let emitter = acting.emitter();
    emitter.membership_began(change, user, &stored.room, reason, role)?;
    emitter.room_updated(change, &stored.room)?;
    Ok((true, view(change, tenant, user, record)?))
}

/// Ends `user`'s membership of `stored`: the room's `RoomUpdated`, then the
/// user-topic `RoomDeleted`.
fn discharge(
    change: &mut Change<'_>,
    acting: &Acting,
    mut stored: StoredRoom,
    user: u64,
    reason: Ended,
) -> Result<Departed, ApiError> {
    let tenant = &acting.tenant;
    let room = stored.room.room_id;
    change.delete(layout::member(tenant, room, user));
    change.delete(layout::receipt(tenant, room, user));
    stored.room.member_count = stored.room.member_count.saturating_sub(1);
    stored.room.updated_at = now(change);
    save_room(change, tenant, &stored)?;
    let emitter = acting.emitter();
    emitter.room_updated(change, &stored.room)?;
    emitter.membership_ended(change, user, room, reason)?;
    Ok(Departed {
        room_id: room,
        user_id: user,
        removed: reason == Ended::Removed,
        left: reason == Ended::Left,
    })
}

/// The answer of a removal or a departure.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Departed {
    /// The room.
    pub room_id: u64,
    /// The user no longer in it.
    pub user_id: u64,
    /// True when someone else removed the user.
    pub removed: bool,
    /// True when the user left.
    pub left: bool,
}

/// `POST /rooms/{roomId}/members`: owners and admins add a member.
pub fn add(
    change: &mut Change<'_>,
    acting: &Acting,
    room: u64,
    target: &MemberRef,
    role: Role,
) -> Result<Admitted, ApiError> {
    if role == Role::Owner {
        return Err(role_error());
    }
    let (stored, _) = acting.moderated_room(change, room)?;
    let user = target.resolve(change, &acting.tenant)?;
    admit(change, acting, stored, user, role, Began::Added)
}

/// `POST /rooms/{roomId}/join`: a user joins a public room.
pub fn join(change: &mut Change<'_>, acting: &Acting, room: u64) -> Result<Admitted, ApiError> {
    let user = acting.require_user()?;
    let (stored, _) = acting.visible_room(change, room)?;
    if stored.room.private {
        return Err(not_found("room"));
    }
    admit(change, acting, stored, user, Role::Member, Began::Joined)
}

/// `POST /rooms/{roomId}/leave`, or a user removing themselves.
pub fn leave(change: &mut Change<'_>, acting: &Acting, room: u64) -> Result<Departed, ApiError> {
    let user = acting.require_user()?;
    let (stored, role) = acting.member_room(change, room)?;
    if role == Role::Owner {
        return Err(forbidden(
            "the owner may not leave the room (delete it instead)",
        ));
    }
    discharge(change, acting, stored, user, Ended::Left)
}

/// `DELETE /rooms/{roomId}/members/{userId}`: owners remove anyone but
/// themselves, admins remove members; a user removing themselves leaves.
pub fn remove(
    change: &mut Change<'_>,
    acting: &Acting,
    room: u64,
    user: u64,
) -> Result<Departed, ApiError> {
    if user == acting.user {
        return leave(change, acting, room);
    }
    let (stored, role) = acting.moderated_room(change, room)?;
    let target = load_member(change, &acting.tenant, room, user)?
        .ok_or_else(|| not_found("member of this room"))?;
    match target.role {
        Role::Owner => Err(forbidden("the owner may not be removed")),
        Role::Admin if role != Role::Owner => Err(forbidden("only the owner may remove an admin")),
        _ => discharge(change, acting, stored, user, Ended::Removed),
    }
}

/// `PATCH /rooms/{roomId}/members/{userId}`: owners and admins make a
/// member an admin; the owner (or the admin themselves) makes an admin a
/// member, as only the owner removes an admin; ownership never moves.
pub fn set_role(
    change: &mut Change<'_>,
    acting: &Acting,
    room: u64,
    user: u64,
    role: Role,
) -> Result<Member, ApiError> {
    if role == Role::Owner {
        return Err(role_error());
    }
    let (_, actor_role) = acting.moderated_room(change, room)?;
    let tenant = &acting.tenant;
    let mut record =
        load_member(change, tenant, room, user)?.ok_or_else(|| not_found("member of this room"))?;
    match record.role {
        Role::Owner => return Err(forbidden("the owner's role does not change")),
        Role::Admin if actor_role != Role::Owner && user != acting.user => {
            return Err(forbidden("only the owner may change another admin's role"));
        }
        _ => {}
    }
    if record.role != role {
        record.role = role;
        change.put(layout::member(tenant, room, user), encode(&record)?);
    }
    view(change, tenant, user, record)
}

fn role_error() -> ApiError {
    ApiError::validation("`role` must be \"admin\" or \"member\" (ownership does not move)")
        .with_details(serde_json::json!({ "field": "role" }))
}
