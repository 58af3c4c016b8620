//! Retention: how many events, and how old, each topic keeps.
//!
//! A policy has defaults (10 000 events, 7 days) and overrides by topic-name
//! prefix (`--retention chat/=1000,1d`); the longest matching prefix wins.
//! [`plan`] computes which of a topic's oldest events to remove; the writer
//! removes them and records the newest removed id, so a later cursor at or
//! before it is reported as an expired gap.

use super::TopicRef;
use crate::core::store::{Store, StoreError, layout};
use std::time::Duration;

/// Limits for one topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most events kept.
    pub max_events: u64,
    /// Oldest event kept.
    pub max_age: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_events: 10_000,
            max_age: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Defaults plus per-prefix overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Limits for topics no override matches.
    pub default: Limits,
    /// `(prefix, limits)` overrides.
    pub overrides: Vec<(String, Limits)>,
}

impl Policy {
    /// The limits for a topic name.
    pub fn limits_for(&self, topic: &str) -> Limits {
        self.overrides
            .iter()
            .filter(|(prefix, _)| topic.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map_or(self.default, |(_, limits)| *limits)
    }
}

/// Parses `PREFIX=COUNT,AGE` (e.g. `chat/=1000,1d`; an empty prefix sets the default).
pub fn parse_override(text: &str) -> Result<(String, Limits), String> {
    let (prefix, limits) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: expected PREFIX=COUNT,AGE such as chat/=1000,1d"))?;
    let (count, age) = limits
        .split_once(',')
        .ok_or_else(|| format!("`{text}`: expected COUNT,AGE after the = sign"))?;
    let max_events = count
        .trim()
        .parse()
        .map_err(|_| format!("`{count}` is not an event count"))?;
    let max_age = humantime::parse_duration(age.trim()).map_err(|err| format!("`{age}`: {err}"))?;
    Ok((
        prefix.to_string(),
        Limits {
            max_events,
            max_age,
        },
    ))
}

/// Builds a policy from parsed overrides; an empty prefix replaces the default.
pub fn policy_from(overrides: Vec<(String, Limits)>) -> Policy {
    let mut policy = Policy::default();
    for (prefix, limits) in overrides {
        if prefix.is_empty() {
            policy.default = limits;
        } else {
            policy.overrides.push((prefix, limits));
        }
    }
    policy
}

/// Ids (as u128, ascending) of the oldest events of `topic` that exceed its
/// limits at `now_ms`, at most `max` of them (blocking).
pub fn plan(
    store: &Store,
    topic: &TopicRef,
    count: u64,
    limits: Limits,
    now_ms: u64,
    max: usize,
) -> Result<Vec<u128>, StoreError> {
    let over_count = usize::try_from(count.saturating_sub(limits.max_events)).unwrap_or(usize::MAX);
    let cutoff_ms =
        now_ms.saturating_sub(u64::try_from(limits.max_age.as_millis()).unwrap_or(u64::MAX));
    let prefix = layout::event_prefix(&topic.tenant, &topic.name);
    let mut doomed = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    while doomed.len() < max {
        let page = store.scan_blocking(&prefix, after.as_deref(), 256)?;
        let Some((last_key, _)) = page.last() else {
            break;
        };
        let last_key = last_key.to_vec();
        for (key, _) in &page {
            let Some(id) = layout::event_id(key) else {
                continue;
            };
            let too_old = ulid::Ulid::from(id).timestamp_ms() < cutoff_ms;
            if (doomed.len() >= over_count && !too_old) || doomed.len() >= max {
                return Ok(doomed);
            }
            doomed.push(id);
        }
        after = Some(last_key);
    }
    Ok(doomed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_prefix_wins_and_an_empty_prefix_sets_the_default() {
        let policy = policy_from(vec![
            parse_override("=50,1h").unwrap(),
            parse_override("chat/=10,1d").unwrap(),
            parse_override("chat/vip/=1000,30d").unwrap(),
        ]);
        assert_eq!(policy.limits_for("other").max_events, 50);
        assert_eq!(policy.limits_for("chat/1").max_events, 10);
        assert_eq!(
            policy.limits_for("chat/vip/7").max_age,
            Duration::from_secs(30 * 86400)
        );
    }

    #[test]
    fn malformed_overrides_are_explained() {
        assert!(
            parse_override("chat")
                .unwrap_err()
                .contains("PREFIX=COUNT,AGE")
        );
        assert!(parse_override("chat=ten,1d").is_err());
        assert!(parse_override("chat=10,soon").is_err());
    }
}
