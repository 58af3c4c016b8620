//! The access policy (spec 003 "Join/Leave Authorization"): who may read a
//! channel's posts and who may join its discussion, as pure functions of the
//! stored records, the reader's JWT claims and the time.
//!
//! * Channel: `public` lets every user of the tenant in; `members` only its
//!   explicit members; `entitled` only users holding its entitlement key,
//!   from the JWT's `entitlements` claim or stored through REST and not lost.
//! * Discussion: the channel's access, the discussion enabled, the
//!   `requiredFeatureKey` held (JWT `features` claim or stored), and no ban
//!   in force.
//! * The tenant's backend (an API key) passes every check.
//!
//! Invariants: a lost entitlement never grants realtime access, grace or not
//! (the grace only widens broadcast push, see [`super::push`]); the same
//! functions decide at join, at sync, at REST reads and when a joined socket
//! re-checks after an access change, so they can never disagree.

use super::model::{Ban, Channel, DiscussionSettings, Grants, ReadPolicy};
use crate::error::ApiError;
use crate::modules::records::{forbidden, not_found};

/// Who reads, with what their credential claims.
#[derive(Debug, Clone)]
pub enum Reader {
    /// The tenant's backend (API key).
    Backend,
    /// A user by JWT.
    User {
        /// The JWT subject.
        sub: String,
        /// The token's `entitlements` claim.
        entitlements: Vec<String>,
        /// The token's `features` claim.
        features: Vec<String>,
    },
}

impl Reader {
    /// The user's subject, or `None` for the backend.
    pub fn sub(&self) -> Option<&str> {
        match self {
            Reader::Backend => None,
            Reader::User { sub, .. } => Some(sub),
        }
    }
}

/// What the store says of one user and one channel, for a decision.
#[derive(Debug, Clone, Default)]
pub struct Standing {
    /// An explicit member of the channel.
    pub member: bool,
    /// The user's stored entitlements and features.
    pub grants: Grants,
    /// The user's ban from the channel's discussion, if any.
    pub ban: Option<Ban>,
}

/// Ok when `reader` may read `channel`'s posts; else 403 saying which rule.
pub fn read_channel(
    channel: &Channel,
    reader: &Reader,
    standing: &Standing,
) -> Result<(), ApiError> {
    let Reader::User { entitlements, .. } = reader else {
        return Ok(());
    };
    match channel.read_policy {
        ReadPolicy::Public => Ok(()),
        ReadPolicy::Members if standing.member => Ok(()),
        ReadPolicy::Members => Err(forbidden("this channel is for its members only")),
        ReadPolicy::Entitled => {
            let key = channel.entitlement_key.as_deref().unwrap_or_default();
            if entitlements.iter().any(|held| held == key) || standing.grants.holds(key) {
                Ok(())
            } else {
                Err(forbidden(
                    "this channel needs an entitlement the user does not hold",
                ))
            }
        }
    }
}

/// The channel's discussion when `reader` may join it at `now_ms`; else
/// 404 (no discussion) or 403 saying which rule.
pub fn join_discussion<'c>(
    channel: &'c Channel,
    reader: &Reader,
    standing: &Standing,
    now_ms: u64,
) -> Result<&'c DiscussionSettings, ApiError> {
    let discussion = channel
        .discussion
        .as_ref()
        .ok_or_else(|| not_found("discussion: this channel has none"))?;
    let Reader::User { features, .. } = reader else {
        return Ok(discussion);
    };
    read_channel(channel, reader, standing)?;
    if !discussion.enabled {
        return Err(forbidden("this channel's discussion is disabled"));
    }
    if let Some(feature) = &discussion.required_feature_key
        && !features.iter().any(|held| held == feature)
        && !standing.grants.features.contains(feature)
    {
        return Err(forbidden(
            "this discussion needs a feature the user does not hold",
        ));
    }
    if standing
        .ban
        .as_ref()
        .is_some_and(|ban| ban.holds_at(now_ms))
    {
        return Err(forbidden("the user is banned from this discussion"));
    }
    Ok(discussion)
}

#[cfg(test)]
mod tests {
    use super::super::model::Entitlement;
    use super::*;

    fn channel(policy: ReadPolicy, discussion: Option<DiscussionSettings>) -> Channel {
        Channel {
            id: 1,
            name: "c".into(),
            read_policy: policy,
            entitlement_key: Some("gold".into()),
            discussion,
            created_at: "t".into(),
            updated_at: "t".into(),
        }
    }

    fn user(entitlements: &[&str], features: &[&str]) -> Reader {
        Reader::User {
            sub: "ann".into(),
            entitlements: entitlements.iter().map(|s| s.to_string()).collect(),
            features: features.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn discussion(enabled: bool, feature: Option<&str>) -> Option<DiscussionSettings> {
        Some(DiscussionSettings {
            discussion_id: 7,
            enabled,
            required_feature_key: feature.map(str::to_string),
        })
    }

    fn stored_gold(lost_at_ms: Option<u64>) -> Standing {
        let mut standing = Standing::default();
        standing.grants.entitlements.insert(
            "gold".into(),
            Entitlement {
                granted_at: "t".into(),
                lost_at: None,
                lost_at_ms,
            },
        );
        standing
    }

    #[test]
    fn each_read_policy_admits_whom_it_says() {
        let none = Standing::default();
        let member = Standing {
            member: true,
            ..Standing::default()
        };
        assert!(read_channel(&channel(ReadPolicy::Public, None), &user(&[], &[]), &none).is_ok());
        let members = channel(ReadPolicy::Members, None);
        assert!(read_channel(&members, &user(&[], &[]), &none).is_err());
        assert!(read_channel(&members, &user(&[], &[]), &member).is_ok());
        assert!(read_channel(&members, &Reader::Backend, &none).is_ok());
        let gated = channel(ReadPolicy::Entitled, None);
        assert!(read_channel(&gated, &user(&[], &[]), &member).is_err());
        assert!(read_channel(&gated, &user(&["gold"], &[]), &none).is_ok());
        assert!(read_channel(&gated, &user(&[], &[]), &stored_gold(None)).is_ok());
        assert!(
            read_channel(&gated, &user(&[], &[]), &stored_gold(Some(5))).is_err(),
            "a lost entitlement never reads, even within its grace"
        );
    }

    #[test]
    fn a_discussion_needs_the_channel_enabled_the_feature_and_no_ban() {
        let now = 1_000;
        let none = Standing::default();
        let reader = user(&[], &["vip"]);
        let open = channel(ReadPolicy::Public, discussion(true, Some("vip")));
        assert_eq!(
            join_discussion(&open, &reader, &none, now)
                .unwrap()
                .discussion_id,
            7
        );
        assert!(join_discussion(&open, &user(&[], &[]), &none, now).is_err());
        let disabled = channel(ReadPolicy::Public, discussion(false, None));
        assert!(join_discussion(&disabled, &reader, &none, now).is_err());
        assert!(join_discussion(&disabled, &Reader::Backend, &none, now).is_ok());
        let gated = channel(ReadPolicy::Entitled, discussion(true, None));
        assert!(join_discussion(&gated, &reader, &none, now).is_err());
        let missing = channel(ReadPolicy::Public, None);
        let err = join_discussion(&missing, &reader, &none, now).unwrap_err();
        assert_eq!(err.code.as_str(), "NOT_FOUND");
        let banned = Standing {
            ban: Some(Ban {
                created_at: "t".into(),
                until: None,
                until_ms: Some(now + 1),
                reason: String::new(),
            }),
            ..Standing::default()
        };
        assert!(join_discussion(&open, &reader, &banned, now).is_err());
        assert!(
            join_discussion(&open, &reader, &banned, now + 1).is_ok(),
            "an expired ban no longer holds"
        );
    }
}
