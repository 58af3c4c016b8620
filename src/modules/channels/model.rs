//! Channels, their discussions, posts, discussion messages, memberships,
//! bans and a user's stored entitlements and features, as stored and as
//! served; the module's limits.
//!
//! Invariants: served objects have camelCase fields and numeric ids as in
//! the spec; what only the server needs (a ban's expiry in ms, an
//! entitlement's loss in ms) is stored beside the served value; entitlement
//! and feature keys are short, printable and never contain 0x00 (they are
//! parts of index keys); a deleted post or message keeps its record as a
//! tombstone (`isDeleted`, `deletedAt`), so a restore brings it back whole.

use crate::error::ApiError;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Limits of the channels module (flags `--channels-*`).
#[derive(Debug, Clone, Copy)]
pub struct ChannelsLimits {
    /// Longest post or discussion message text, in characters.
    pub max_text_chars: usize,
    /// Longest channel name, in characters.
    pub max_name_chars: usize,
    /// Rooms one Socket.IO connection may have joined at once.
    pub max_joined_rooms: usize,
    /// How long after losing an entitlement a channel member still gets
    /// broadcast push (never realtime).
    pub entitlement_grace: Duration,
}

/// Longest entitlement or feature key, in characters.
pub const MAX_KEY_CHARS: usize = 100;
/// Most entitlements or features stored for one user.
pub const MAX_GRANTS_PER_USER: usize = 200;
/// Longest user id (JWT subject) given in a body, in characters.
pub const MAX_USER_CHARS: usize = 256;

/// Who may read a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ReadPolicy {
    /// Every user of the tenant.
    #[default]
    Public,
    /// The channel's explicit members.
    Members,
    /// Users holding the channel's entitlement key.
    Entitled,
}

/// A channel's discussion settings (a channel has at most one discussion).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscussionSettings {
    /// The discussion's id (its room is `communication:discussion:{id}:messages`).
    pub discussion_id: u64,
    /// Whether the discussion takes messages and joins.
    pub enabled: bool,
    /// A feature a user must hold to join, if any.
    pub required_feature_key: Option<String>,
}

/// A channel as stored and served.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Channel {
    /// Id (per tenant, from 1).
    pub id: u64,
    /// Name.
    pub name: String,
    /// Who may read it.
    pub read_policy: ReadPolicy,
    /// The entitlement a reader needs under the `entitled` policy.
    pub entitlement_key: Option<String>,
    /// The discussion, once enabled the first time.
    pub discussion: Option<DiscussionSettings>,
    /// Creation time (RFC 3339, ms).
    pub created_at: String,
    /// Last change of the channel record (RFC 3339, ms).
    pub updated_at: String,
}

/// A channel post as stored and served.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Post {
    /// Id (per tenant, increasing).
    pub id: u64,
    /// The channel.
    pub channel_id: u64,
    /// Text.
    pub text: String,
    /// The author, as the backend named them.
    pub author_id: String,
    /// Whether it was sent to the members' devices as a broadcast push.
    pub broadcast: bool,
    /// Pinned to the top of the channel.
    pub is_pinned: bool,
    /// When it was pinned, while it is.
    pub pinned_at: Option<String>,
    /// A tombstone.
    pub is_deleted: bool,
    /// When it was deleted, while it is.
    pub deleted_at: Option<String>,
    /// Creation time.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
}

/// A discussion message as stored and served.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscussionMessage {
    /// Id (per tenant, increasing).
    pub id: u64,
    /// The discussion.
    pub discussion_id: u64,
    /// The discussion's channel.
    pub channel_id: u64,
    /// Text.
    pub text: String,
    /// The author (a JWT subject, or who the backend named).
    pub author_id: String,
    /// A tombstone.
    pub is_deleted: bool,
    /// When it was deleted, while it is.
    pub deleted_at: Option<String>,
    /// Creation time.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
}

/// An explicit channel membership as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Membership {
    /// When it began.
    pub joined_at: String,
}

/// A ban from a discussion as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ban {
    /// When it began.
    pub created_at: String,
    /// When it ends (RFC 3339), or never.
    pub until: Option<String>,
    /// When it ends, unix ms.
    pub until_ms: Option<u64>,
    /// Why, for moderators.
    #[serde(default)]
    pub reason: String,
}

impl Ban {
    /// True while the ban holds at `now_ms`.
    pub fn holds_at(&self, now_ms: u64) -> bool {
        self.until_ms.is_none_or(|until| now_ms < until)
    }
}

/// One stored entitlement of a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entitlement {
    /// When it was (last) granted.
    pub granted_at: String,
    /// When it was lost, while it is lost.
    pub lost_at: Option<String>,
    /// When it was lost, unix ms.
    pub lost_at_ms: Option<u64>,
}

/// A user's stored entitlements and features (what the backend said
/// through REST; a JWT's `entitlements` and `features` claims add to them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Grants {
    /// Entitlements by key, held or lost.
    #[serde(default)]
    pub entitlements: BTreeMap<String, Entitlement>,
    /// Features held.
    #[serde(default)]
    pub features: BTreeSet<String>,
}

impl Grants {
    /// True when the entitlement `key` is held now.
    pub fn holds(&self, key: &str) -> bool {
        self.entitlements
            .get(key)
            .is_some_and(|held| held.lost_at_ms.is_none())
    }

    /// True when `key` is held, or was lost less than `grace` before `now_ms`.
    pub fn holds_within_grace(&self, key: &str, now_ms: u64, grace: Duration) -> bool {
        self.entitlements.get(key).is_some_and(|held| {
            held.lost_at_ms
                .is_none_or(|lost| now_ms.saturating_sub(lost) < grace.as_millis() as u64)
        })
    }
}

/// 400 unless `key` is a usable entitlement or feature key.
pub fn check_key(field: &str, key: &str) -> Result<(), ApiError> {
    let printable = !key.chars().any(|c| c.is_control() || c.is_whitespace());
    check_id_text(field, key, MAX_KEY_CHARS, printable)
}

/// 400 unless `user` is a usable user id.
pub fn check_user(field: &str, user: &str) -> Result<(), ApiError> {
    check_id_text(
        field,
        user,
        MAX_USER_CHARS,
        !user.chars().any(char::is_control),
    )
}

fn check_id_text(field: &str, text: &str, max: usize, printable: bool) -> Result<(), ApiError> {
    if text.is_empty() || !printable || text.chars().count() > max {
        return Err(ApiError::validation(format!(
            "`{field}` must be 1 to {max} characters without control characters{}",
            if max == MAX_KEY_CHARS {
                " or spaces"
            } else {
                ""
            }
        ))
        .with_details(serde_json::json!({ "field": field, "maxChars": max })));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(lost_at_ms: Option<u64>) -> Grants {
        let mut grants = Grants::default();
        let held = Entitlement {
            granted_at: "t".into(),
            lost_at: lost_at_ms.map(|_| "t".into()),
            lost_at_ms,
        };
        grants.entitlements.insert("gold".into(), held);
        grants
    }

    #[test]
    fn a_lost_entitlement_is_not_held_but_counts_within_its_grace() {
        let week = Duration::from_secs(7 * 86_400);
        assert!(grants(None).holds("gold"));
        assert!(!grants(None).holds("silver"));
        let lost = grants(Some(1_000));
        assert!(!lost.holds("gold"));
        assert!(lost.holds_within_grace("gold", 1_000 + 1, week));
        assert!(!lost.holds_within_grace("gold", 1_000 + week.as_millis() as u64, week));
    }

    #[test]
    fn bans_hold_until_their_end_and_keys_are_checked() {
        let ban = Ban {
            created_at: "t".into(),
            until: None,
            until_ms: Some(10),
            reason: String::new(),
        };
        assert!(ban.holds_at(9) && !ban.holds_at(10));
        assert!(check_key("k", "gold-tier").is_ok());
        assert!(check_key("k", "").is_err());
        assert!(check_key("k", "a\0b").is_err());
        assert!(check_key("k", "a b").is_err());
        assert!(check_user("u", "").is_err());
    }
}
