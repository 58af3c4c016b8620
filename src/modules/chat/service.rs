//! What every chat write runs with: who acts (a user by JWT subject, or the
//! tenant's backend by API key), the room and member records as a change
//! sees them, and the permission rules.
//!
//! Invariants: a user's id is resolved (created on first use) inside the
//! change of the action; the backend is user 0, acts as an owner in every
//! room and is never a member; a private room is reported missing (404) to
//! whoever is not its member, so its existence never leaks.

use super::directory;
use super::events::Emitter;
use super::layout;
use super::model::{
    ChatLimits, MemberRecord, Role, StoredRoom, decode, encode, forbidden, not_found,
};
use crate::core::writer::Change;
use crate::error::ApiError;
use uuid::Uuid;

/// Who makes a request, before their id is looked up.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The tenant's backend (an API key): user 0.
    Backend,
    /// A user, by the JWT subject.
    User(String),
}

/// Who acts in a change: the tenant, the user id (0: the backend) and the limits.
#[derive(Debug, Clone)]
pub struct Acting {
    /// The tenant.
    pub tenant: Uuid,
    /// The user id; 0 for the backend.
    pub user: u64,
    /// Module limits.
    pub limits: ChatLimits,
}

impl Acting {
    /// Resolves `caller` inside `change` (creating the user's id on first use).
    pub fn resolve(
        change: &mut Change<'_>,
        tenant: Uuid,
        caller: &Caller,
        limits: ChatLimits,
    ) -> Result<Self, ApiError> {
        let user = match caller {
            Caller::Backend => 0,
            Caller::User(sub) => directory::resolve_user(change, &tenant, sub)?,
        };
        Ok(Self {
            tenant,
            user,
            limits,
        })
    }

    /// True for the backend.
    pub fn is_backend(&self) -> bool {
        self.user == 0
    }

    /// The emitter of this actor's events.
    pub fn emitter(&self) -> Emitter {
        Emitter::new(self.tenant, self.user)
    }

    /// The actor's role in `room`: the backend counts as an owner.
    pub fn role_in(&self, change: &Change<'_>, room: u64) -> Result<Option<Role>, ApiError> {
        if self.is_backend() {
            return Ok(Some(Role::Owner));
        }
        Ok(load_member(change, &self.tenant, room, self.user)?.map(|member| member.role))
    }

    /// A room the actor may see (public, or they are a member) with their role; else 404.
    pub fn visible_room(
        &self,
        change: &Change<'_>,
        room: u64,
    ) -> Result<(StoredRoom, Option<Role>), ApiError> {
        let stored = load_room(change, &self.tenant, room)?;
        let role = self.role_in(change, room)?;
        if stored.room.private && role.is_none() {
            return Err(not_found("room"));
        }
        Ok((stored, role))
    }

    /// A room the actor is a member of (the backend: any), with their role;
    /// 404 when they may not see it, 403 when it is public but they are not in it.
    pub fn member_room(
        &self,
        change: &Change<'_>,
        room: u64,
    ) -> Result<(StoredRoom, Role), ApiError> {
        match self.visible_room(change, room)? {
            (stored, Some(role)) => Ok((stored, role)),
            (_, None) => Err(forbidden("only the room's members may do this")),
        }
    }

    /// [`Acting::member_room`] for owners and admins only (403 otherwise).
    pub fn moderated_room(
        &self,
        change: &Change<'_>,
        room: u64,
    ) -> Result<(StoredRoom, Role), ApiError> {
        let (stored, role) = self.member_room(change, room)?;
        if !role.moderates() {
            return Err(forbidden("only the room's owner or admins may do this"));
        }
        Ok((stored, role))
    }

    /// 400 unless the actor is a user (the backend has no rooms or receipts).
    pub fn require_user(&self) -> Result<u64, ApiError> {
        if self.is_backend() {
            return Err(ApiError::validation(
                "this action is a user's: use the user's JWT (an API key acts as the backend)",
            ));
        }
        Ok(self.user)
    }
}

/// The current time for records (RFC 3339, ms).
pub fn now(change: &Change<'_>) -> String {
    crate::core::clock::rfc3339_millis(change.now_ms())
}

/// Reads a room inside a change (404 when missing).
pub fn load_room(change: &Change<'_>, tenant: &Uuid, room: u64) -> Result<StoredRoom, ApiError> {
    let bytes = change
        .get(&layout::room(tenant, room))?
        .ok_or_else(|| not_found("room"))?;
    decode(&bytes)
}

/// Writes a room inside a change.
pub fn save_room(
    change: &mut Change<'_>,
    tenant: &Uuid,
    room: &StoredRoom,
) -> Result<(), ApiError> {
    change.put(layout::room(tenant, room.room.room_id), encode(room)?);
    Ok(())
}

/// Reads a member of a room inside a change.
pub fn load_member(
    change: &Change<'_>,
    tenant: &Uuid,
    room: u64,
    user: u64,
) -> Result<Option<MemberRecord>, ApiError> {
    change
        .get(&layout::member(tenant, room, user))?
        .map(|bytes| decode(&bytes))
        .transpose()
}
