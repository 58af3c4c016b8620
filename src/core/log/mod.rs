//! The append-only event log: events, topics, ids, reading and retention.
//!
//! An event belongs to one topic of one tenant and is stored once, as the JSON
//! clients receive (`{"id","topic","type","occurredAt","actor","data"}`), under
//! a key ordered by id (see `store::layout`). The writer appends; readers use
//! [`read`]; [`retention`] prunes in the background. How an event looks on
//! a wire is up to its users: each defines an [`encoding::Encoding`], which
//! the event caches.
//!
//! Invariants: ids are ULIDs, strictly increasing per topic and unique across
//! topics (one generator, [`ids`]); an event's JSON is serialized once, each
//! encoding of it is built at most once, and every subscriber shares those
//! bytes.

pub mod encoding;
pub mod ids;
pub mod namespace;
pub mod read;
pub mod retention;

use bytes::Bytes;
use encoding::{Encoding, EncodingCache};
use serde::Serialize;
use serde_json::Value;
use std::borrow::Cow;
use ulid::Ulid;
use uuid::Uuid;

/// Longest topic name.
pub const MAX_TOPIC_LEN: usize = 200;
/// Longest event type.
pub const MAX_TYPE_LEN: usize = 100;

/// A topic of a tenant: the unit of ordering, replay and fan-out.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopicRef {
    /// Owning tenant.
    pub tenant: Uuid,
    /// Validated topic name.
    pub name: String,
}

impl TopicRef {
    /// Validates `name` (`[A-Za-z0-9._:/-]{1,200}`) for `tenant`.
    pub fn new(tenant: Uuid, name: &str) -> Result<Self, String> {
        let valid_chars = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'/' | b'-'));
        if name.is_empty() || name.len() > MAX_TOPIC_LEN || !valid_chars {
            return Err(format!(
                "topic names are 1 to {MAX_TOPIC_LEN} characters of A-Z a-z 0-9 . _ : / -"
            ));
        }
        Ok(Self {
            tenant,
            name: name.to_string(),
        })
    }
}

/// First character of the topics product modules keep for themselves; the
/// generic topics API cannot name them (it is outside the allowed characters).
pub const INTERNAL_TOPIC_MARK: char = '~';

impl TopicRef {
    /// A module's own topic `~<module>/<id>` (e.g. one discussion's events),
    /// unreachable through the generic topics API.
    pub fn internal(tenant: Uuid, module: &str, id: &str) -> Self {
        Self {
            tenant,
            name: format!("{INTERNAL_TOPIC_MARK}{module}/{id}"),
        }
    }
}

/// Checks an event type: 1 to 100 characters of `[A-Za-z0-9._:-]`.
pub fn validate_event_type(event_type: &str) -> Result<(), String> {
    let valid_chars = event_type
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if event_type.is_empty() || event_type.len() > MAX_TYPE_LEN || !valid_chars {
        return Err(format!(
            "event types are 1 to {MAX_TYPE_LEN} characters of A-Z a-z 0-9 . _ : -"
        ));
    }
    Ok(())
}

/// An event as stored and as clients receive it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// ULID, as 26 characters.
    #[serde(with = "ulid_text")]
    pub id: Ulid,
    /// Topic name (without tenant).
    pub topic: String,
    /// Event type (the SSE `event:` name).
    #[serde(rename = "type")]
    pub event_type: String,
    /// When it was committed (RFC 3339, milliseconds, UTC).
    pub occurred_at: String,
    /// Who caused it (an API key name, a user id…), or null.
    #[serde(default)]
    pub actor: Value,
    /// The payload.
    #[serde(default)]
    pub data: Value,
}

/// A committed event shared by the hub and every transport: the event, its
/// stored JSON, and the wire encodings its users asked for, each built at
/// most once (see [`encoding`]).
#[derive(Debug)]
pub struct LogEvent {
    /// Owning tenant.
    pub tenant: Uuid,
    /// The event.
    pub event: Event,
    /// The event's JSON, exactly as stored.
    pub json: Bytes,
    encodings: EncodingCache,
}

impl LogEvent {
    /// Wraps an event and its JSON.
    pub fn new(tenant: Uuid, event: Event, json: Bytes) -> Self {
        Self {
            tenant,
            event,
            json,
            encodings: EncodingCache::default(),
        }
    }

    /// Parses a stored event.
    pub fn decode(tenant: Uuid, json: &[u8]) -> Result<Self, serde_json::Error> {
        let event: Event = serde_json::from_slice(json)?;
        Ok(Self::new(tenant, event, Bytes::copy_from_slice(json)))
    }

    /// The id.
    pub fn id(&self) -> Ulid {
        self.event.id
    }

    /// The event in `encoding`: built on the first request, then the same
    /// bytes lent to every caller (owned only for an encoding past
    /// [`encoding::MAX_ENCODINGS`], rebuilt on each call).
    pub fn encoded(&self, encoding: &Encoding) -> Cow<'_, Bytes> {
        self.encodings.get(encoding, self)
    }

    /// Bytes held by the encodings built so far.
    pub fn encoded_bytes(&self) -> usize {
        self.encodings.bytes()
    }
}

/// Serde for ULIDs as their 26-character text.
pub mod ulid_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use ulid::Ulid;

    /// Writes the id as text.
    pub fn serialize<S: Serializer>(id: &Ulid, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&id.to_string())
    }

    /// Reads the id from text.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Ulid, D::Error> {
        let text = <&str>::deserialize(deserializer)?;
        Ulid::from_string(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_and_type_names_are_validated() {
        let tenant = Uuid::nil();
        assert!(TopicRef::new(tenant, "room/1:chat.main_x-y").is_ok());
        assert!(TopicRef::new(tenant, "").is_err());
        assert!(TopicRef::new(tenant, "has space").is_err());
        assert!(TopicRef::new(tenant, "nul\0byte").is_err());
        assert!(TopicRef::new(tenant, &"a".repeat(201)).is_err());
        assert!(validate_event_type("comment_created").is_ok());
        assert!(validate_event_type("two\nlines").is_err());
    }
}

/// Per-topic bookkeeping stored under `t <tenant> <topic>`: how many events
/// are kept and the newest id retention removed (0 when nothing was pruned).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TopicRecord {
    /// Events currently stored.
    pub count: u64,
    /// Newest pruned id as u128; cursors at or before it are expired.
    pub pruned_through: u128,
}

impl TopicRecord {
    /// 24 bytes: count then pruned-through, big-endian.
    pub fn encode(&self) -> [u8; 24] {
        let mut out = [0u8; 24];
        out[..8].copy_from_slice(&self.count.to_be_bytes());
        out[8..].copy_from_slice(&self.pruned_through.to_be_bytes());
        out
    }

    /// Reads a record; malformed bytes read as empty.
    pub fn decode(bytes: &[u8]) -> Self {
        let count = bytes
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_be_bytes);
        let pruned_through = bytes
            .get(8..24)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u128::from_be_bytes);
        Self {
            count,
            pruned_through,
        }
    }
}

/// The newest id that is durable. The writer raises it after each flush and
/// before publishing; readers never look past it.
#[derive(Debug, Default)]
pub struct DurableMark {
    newest: std::sync::RwLock<Ulid>,
}

impl DurableMark {
    /// A mark at `newest` (the newest stored id at startup).
    pub fn new(newest: Ulid) -> Self {
        Self {
            newest: std::sync::RwLock::new(newest),
        }
    }

    /// The newest durable id.
    pub fn get(&self) -> Ulid {
        *self
            .newest
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Raises the mark (never lowers it).
    pub fn raise(&self, id: Ulid) {
        let mut newest = self
            .newest
            .write()
            .unwrap_or_else(|poison| poison.into_inner());
        if id > *newest {
            *newest = id;
        }
    }
}
