//! Who may read what, as the backend stores it: channel memberships,
//! discussion bans (with an optional end) and users' entitlements and
//! features. The tenant's backend only.
//!
//! Invariants: every write that can take access away (a member removed, a
//! ban, an entitlement lost, a feature removed) appends
//! `communication.access.changed` for that user to each room it can affect,
//! in the same change, so joined sockets re-check in order; a lost
//! entitlement is kept with its `lostAt` (the push grace needs it), and a
//! grant clears it.

use super::events::{Narrowed, Room};
use super::layout;
use super::model::{
    Ban, Entitlement, Grants, MAX_GRANTS_PER_USER, Membership, check_key, check_user,
};
use super::service::{self, Acting, now, save};
use super::settings::narrow_channel;
use crate::core::store::decode_u64;
use crate::core::writer::Change;
use crate::error::ApiError;
use crate::modules::records::forbidden;
use serde::{Deserialize, Serialize};

/// `PUT /discussions/{discussionId}/bans/{userId}` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BanInput {
    /// When the ban ends (RFC 3339); absent: never.
    #[serde(default)]
    pub until: Option<String>,
    /// Why, for moderators.
    #[serde(default)]
    pub reason: String,
}

/// What a membership or ban write answers.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Done {
    /// The user.
    pub user_id: String,
    /// Whether the write changed anything.
    pub changed: bool,
}

/// Longest ban reason, in characters.
const MAX_REASON_CHARS: usize = 1000;

fn backend_only(acting: &Acting) -> Result<(), ApiError> {
    if acting.is_backend() {
        Ok(())
    } else {
        Err(forbidden(
            "access is managed by the tenant's backend (API key)",
        ))
    }
}

/// Adds `user` to a channel's explicit members.
pub fn add_member(
    change: &mut Change<'_>,
    acting: &Acting,
    channel: u64,
    user: &str,
) -> Result<Done, ApiError> {
    backend_only(acting)?;
    check_user("userId", user)?;
    service::channel(change, &acting.tenant, channel)?;
    let key = layout::member(&acting.tenant, channel, user);
    let changed = change.get(&key)?.is_none();
    if changed {
        save(
            change,
            key,
            &Membership {
                joined_at: now(change),
            },
        )?;
    }
    Ok(Done {
        user_id: user.to_string(),
        changed,
    })
}

/// Removes `user` from a channel's explicit members.
pub fn remove_member(
    change: &mut Change<'_>,
    acting: &Acting,
    channel: u64,
    user: &str,
) -> Result<Done, ApiError> {
    backend_only(acting)?;
    let found = service::channel(change, &acting.tenant, channel)?;
    let key = layout::member(&acting.tenant, channel, user);
    let changed = change.get(&key)?.is_some();
    if changed {
        change.delete(key);
        narrow_channel(change, acting, &found, Some(user), Narrowed::Membership)?;
    }
    Ok(Done {
        user_id: user.to_string(),
        changed,
    })
}

/// Bans `user` from a discussion (replacing an earlier ban).
pub fn ban(
    change: &mut Change<'_>,
    acting: &Acting,
    discussion: u64,
    user: &str,
    input: BanInput,
) -> Result<Ban, ApiError> {
    backend_only(acting)?;
    check_user("userId", user)?;
    if input.reason.chars().count() > MAX_REASON_CHARS {
        return Err(ApiError::validation(format!(
            "`reason` is longer than {MAX_REASON_CHARS} characters"
        )));
    }
    let channel = service::discussion_channel(change, &acting.tenant, discussion)?;
    let until_ms = input.until.as_deref().map(parse_time).transpose()?;
    let ban = Ban {
        created_at: now(change),
        until: input.until,
        until_ms,
        reason: input.reason,
    };
    save(change, layout::ban(&acting.tenant, discussion, user), &ban)?;
    let room = Room::Discussion(discussion);
    acting
        .emitter()
        .access_narrowed(change, room, channel.id, Some(user), Narrowed::Ban)?;
    Ok(ban)
}

fn parse_time(text: &str) -> Result<u64, ApiError> {
    humantime::parse_rfc3339_weak(text)
        .ok()
        .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|since| since.as_millis() as u64)
        .ok_or_else(|| ApiError::validation(format!("`until` `{text}` is not an RFC 3339 time")))
}

/// Lifts `user`'s ban from a discussion.
pub fn unban(
    change: &mut Change<'_>,
    acting: &Acting,
    discussion: u64,
    user: &str,
) -> Result<Done, ApiError> {
    backend_only(acting)?;
    service::discussion_channel(change, &acting.tenant, discussion)?;
    let key = layout::ban(&acting.tenant, discussion, user);
    let changed = change.get(&key)?.is_some();
    change.delete(key);
    Ok(Done {
        user_id: user.to_string(),
        changed,
    })
}

/// What a grant changes: an entitlement or a feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantKind {
    /// An entitlement key (gates `entitled` channels).
    Entitlement,
    /// A feature key (required by discussions).
    Feature,
}

/// Grants (`held`) or takes away an entitlement or feature of `user`.
pub fn set_grant(
    change: &mut Change<'_>,
    acting: &Acting,
    user: &str,
    (kind, key): (GrantKind, &str),
    held: bool,
) -> Result<Grants, ApiError> {
    backend_only(acting)?;
    check_user("userId", user)?;
    check_key("key", key)?;
    let tenant = acting.tenant;
    let mut grants = service::grants(change, &tenant, user)?;
    let before = grants.clone();
    let at = now(change);
    match (kind, held) {
        (GrantKind::Entitlement, true) => {
            let entitlement = Entitlement {
                granted_at: at,
                lost_at: None,
                lost_at_ms: None,
            };
            grants.entitlements.insert(key.to_string(), entitlement);
        }
        (GrantKind::Entitlement, false) => {
            if let Some(held) = grants
                .entitlements
                .get_mut(key)
                .filter(|held| held.lost_at.is_none())
            {
                held.lost_at = Some(at);
                held.lost_at_ms = Some(change.now_ms());
            }
        }
        (GrantKind::Feature, true) => {
            grants.features.insert(key.to_string());
        }
        (GrantKind::Feature, false) => {
            grants.features.remove(key);
        }
    }
    if grants == before {
        return Ok(grants);
    }
    if grants.entitlements.len() + grants.features.len() > MAX_GRANTS_PER_USER {
        return Err(ApiError::validation(format!(
            "a user holds at most {MAX_GRANTS_PER_USER} entitlements and features"
        )));
    }
    save(change, layout::grants(&tenant, user), &grants)?;
    if !held {
        narrow_grant(change, acting, user, kind, key)?;
    }
    Ok(grants)
}

/// Tells the rooms a lost entitlement or feature can affect.
fn narrow_grant(
    change: &mut Change<'_>,
    acting: &Acting,
    user: &str,
    kind: GrantKind,
    key: &str,
) -> Result<(), ApiError> {
    let tenant = acting.tenant;
    match kind {
        GrantKind::Entitlement => {
            for (entry, _) in change.scan_prefix(&layout::gated_by(&tenant, key))? {
                let Some(id) = layout::last_number(&entry) else {
                    continue;
                };
                let channel = service::channel(change, &tenant, id)?;
                narrow_channel(change, acting, &channel, Some(user), Narrowed::Grants)?;
            }
        }
        GrantKind::Feature => {
            for (entry, _) in change.scan_prefix(&layout::requiring(&tenant, key))? {
                let Some(discussion) = layout::last_number(&entry) else {
                    continue;
                };
                let Some(channel) = change.get(&layout::discussion(&tenant, discussion))? else {
                    continue;
                };
                let room = Room::Discussion(discussion);
                let channel = decode_u64(&channel);
                acting.emitter().access_narrowed(
                    change,
                    room,
                    channel,
                    Some(user),
                    Narrowed::Grants,
                )?;
            }
        }
    }
    Ok(())
}
