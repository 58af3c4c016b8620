//! The channels module's key space, inside `s channels 0x00 <tenant:16>`
//! (every number a big-endian u64; `<sub>` a JWT subject's bytes, last):
//!
//! ```text
//! n <kind>                      counter: last id issued (c channels, p posts, d discussions, m messages)
//! c <channel>                   channel with its discussion settings (JSON)
//! d <discussion>                the channel of a discussion (8 bytes)
//! p <channel> <post>            post (JSON)
//! g <discussion> <message>      discussion message (JSON)
//! b <channel> <sub>             explicit member of a channel (JSON)
//! x <discussion> <sub>          ban from a discussion (JSON)
//! a <sub>                       a user's stored entitlements and features (JSON)
//! k <key> 0x00 <channel>        channels gated by entitlement key `key` (empty value)
//! f <key> 0x00 <discussion>     discussions requiring feature `key` (empty value)
//! ```
//!
//! Invariants: ids are issued in increasing order per tenant, so a prefix
//! scan lists oldest first; every key starts with the tenant, so one
//! tenant's keys never reach another's; the `k` and `f` indexes hold
//! exactly the channels and discussions whose stored settings name the key
//! (entitlement and feature keys never contain 0x00: they are validated);
//! these encodings never change once released (the tests pin the bytes).

use crate::core::store::layout as store_layout;
use uuid::Uuid;

/// The module's name in the store.
const MODULE: &str = "channels";

/// The kind of a numeric id, as named in its counter key.
#[derive(Debug, Clone, Copy)]
pub enum Counter {
    /// Channel ids.
    Channel,
    /// Post ids.
    Post,
    /// Discussion ids.
    Discussion,
    /// Discussion message ids.
    Message,
}

/// The prefix of every key of the module: `s channels 0x00`.
pub fn prefix() -> Vec<u8> {
    store_layout::module(MODULE)
}

fn key(tenant: &Uuid, kind: u8, numbers: &[u64]) -> Vec<u8> {
    let mut key = store_layout::module_kind(MODULE, tenant, kind);
    for number in numbers {
        key.extend_from_slice(&number.to_be_bytes());
    }
    key
}

fn with_text(mut key: Vec<u8>, text: &str) -> Vec<u8> {
    key.extend_from_slice(text.as_bytes());
    key
}

/// Key of an id counter.
pub fn counter(tenant: &Uuid, counter: Counter) -> Vec<u8> {
    let mut key = key(tenant, b'n', &[]);
    key.push(match counter {
        Counter::Channel => b'c',
        Counter::Post => b'p',
        Counter::Discussion => b'd',
        Counter::Message => b'm',
    });
    key
}

/// Key of a channel.
pub fn channel(tenant: &Uuid, channel: u64) -> Vec<u8> {
    key(tenant, b'c', &[channel])
}

/// Key of a discussion's channel.
pub fn discussion(tenant: &Uuid, discussion: u64) -> Vec<u8> {
    key(tenant, b'd', &[discussion])
}

/// Prefix of a channel's posts.
pub fn posts(tenant: &Uuid, channel: u64) -> Vec<u8> {
    key(tenant, b'p', &[channel])
}

/// Key of a post.
pub fn post(tenant: &Uuid, channel: u64, post: u64) -> Vec<u8> {
    key(tenant, b'p', &[channel, post])
}

/// Prefix of a discussion's messages.
pub fn messages(tenant: &Uuid, discussion: u64) -> Vec<u8> {
    key(tenant, b'g', &[discussion])
}

/// Key of a discussion message.
pub fn message(tenant: &Uuid, discussion: u64, message: u64) -> Vec<u8> {
    key(tenant, b'g', &[discussion, message])
}

/// Prefix of a channel's explicit members.
pub fn members(tenant: &Uuid, channel: u64) -> Vec<u8> {
    key(tenant, b'b', &[channel])
}

/// Key of one explicit member of a channel.
pub fn member(tenant: &Uuid, channel: u64, sub: &str) -> Vec<u8> {
    with_text(members(tenant, channel), sub)
}

/// Prefix of a discussion's bans.
pub fn bans(tenant: &Uuid, discussion: u64) -> Vec<u8> {
    key(tenant, b'x', &[discussion])
}

/// Key of one user's ban from a discussion.
pub fn ban(tenant: &Uuid, discussion: u64, sub: &str) -> Vec<u8> {
    with_text(bans(tenant, discussion), sub)
}

/// Key of a user's stored entitlements and features.
pub fn grants(tenant: &Uuid, sub: &str) -> Vec<u8> {
    with_text(key(tenant, b'a', &[]), sub)
}

fn index(tenant: &Uuid, kind: u8, name: &str) -> Vec<u8> {
    let mut key = with_text(key(tenant, kind, &[]), name);
    key.push(0);
    key
}

/// Prefix of the channels gated by entitlement `name`.
pub fn gated_by(tenant: &Uuid, name: &str) -> Vec<u8> {
    index(tenant, b'k', name)
}

/// Key of one entry of the entitlement index.
pub fn gated_channel(tenant: &Uuid, name: &str, channel: u64) -> Vec<u8> {
    let mut key = gated_by(tenant, name);
    key.extend_from_slice(&channel.to_be_bytes());
    key
}

/// Prefix of the discussions requiring feature `name`.
pub fn requiring(tenant: &Uuid, name: &str) -> Vec<u8> {
    index(tenant, b'f', name)
}

/// Key of one entry of the feature index.
pub fn requiring_discussion(tenant: &Uuid, name: &str, discussion: u64) -> Vec<u8> {
    let mut key = requiring(tenant, name);
    key.extend_from_slice(&discussion.to_be_bytes());
    key
}

/// The subject ending a member or ban key under `prefix`.
pub fn sub_after<'k>(key: &'k [u8], prefix: &[u8]) -> Option<&'k str> {
    std::str::from_utf8(key.strip_prefix(prefix)?).ok()
}

/// The number ending a key (an id), if the key is long enough.
pub fn last_number(key: &[u8]) -> Option<u64> {
    let tail = key.get(key.len().checked_sub(8)?..)?;
    Some(u64::from_be_bytes(tail.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_are_pinned_byte_for_byte() {
        let tenant = Uuid::from_bytes([0x55; 16]);
        let base = [&b"schannels\0"[..], &[0x55; 16]].concat();
        let k = |tail: &[u8]| [&base[..], tail].concat();
        let (one, two) = (1u64.to_be_bytes(), 2u64.to_be_bytes());
        assert_eq!(counter(&tenant, Counter::Channel), k(b"nc"));
        assert_eq!(counter(&tenant, Counter::Post), k(b"np"));
        assert_eq!(counter(&tenant, Counter::Discussion), k(b"nd"));
        assert_eq!(counter(&tenant, Counter::Message), k(b"nm"));
        assert_eq!(channel(&tenant, 1), k(&[&b"c"[..], &one].concat()));
        assert_eq!(discussion(&tenant, 2), k(&[&b"d"[..], &two].concat()));
        assert_eq!(post(&tenant, 1, 2), k(&[&b"p"[..], &one, &two].concat()));
        assert_eq!(message(&tenant, 1, 2), k(&[&b"g"[..], &one, &two].concat()));
        assert_eq!(
            member(&tenant, 1, "ann"),
            k(&[&b"b"[..], &one, b"ann"].concat())
        );
        assert_eq!(
            ban(&tenant, 2, "bob"),
            k(&[&b"x"[..], &two, b"bob"].concat())
        );
        assert_eq!(grants(&tenant, "cy"), k(b"acy"));
        assert_eq!(
            gated_channel(&tenant, "gold", 1),
            k(&[&b"kgold\0"[..], &one].concat())
        );
        assert_eq!(
            requiring_discussion(&tenant, "vip", 2),
            k(&[&b"fvip\0"[..], &two].concat())
        );
    }

    #[test]
    fn prefixes_nest_and_subjects_read_back() {
        let tenant = Uuid::new_v4();
        let prefix = members(&tenant, 1);
        let key = member(&tenant, 1, "ann");
        assert_eq!(sub_after(&key, &prefix), Some("ann"));
        assert!(!member(&tenant, 10, "a").starts_with(&members(&tenant, 1)));
        assert!(!gated_channel(&tenant, "goldx", 1).starts_with(&gated_by(&tenant, "gold")));
        assert_eq!(last_number(&post(&tenant, 3, 256)), Some(256));
        assert!(post(&tenant, 1, 255) < post(&tenant, 1, 256));
    }
}
