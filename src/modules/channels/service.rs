//! What every channels operation runs with: who acts, the records as a
//! change or the store sees them, and a user's standing for the access
//! policy.
//!
//! Invariants: records are read through [`Records`], implemented by a
//! writer change (what the change sees, its own writes included) and by the
//! store (committed state), so writes and reads load, decode and judge them
//! with the same code; a missing channel, discussion, post or message is a
//! 404 naming it.

use super::access::{Reader, Standing};
use super::events::{self, Emitter};
use super::layout;
use super::model::{Ban, Channel, ChannelsLimits, DiscussionMessage, Grants, Post};
use crate::core::store::decode_u64;
use crate::core::writer::Change;
use crate::error::ApiError;
pub use crate::modules::records::Records;
use crate::modules::records::{decode, encode, load, not_found};
use serde::Serialize;
use uuid::Uuid;

/// A channel (404 when missing).
pub fn channel(records: &impl Records, tenant: &Uuid, id: u64) -> Result<Channel, ApiError> {
    load(records, &layout::channel(tenant, id), "channel")
}

/// The channel of a discussion (404 when missing).
pub fn discussion_channel(
    records: &impl Records,
    tenant: &Uuid,
    discussion: u64,
) -> Result<Channel, ApiError> {
    let bytes = records
        .record(&layout::discussion(tenant, discussion))?
        .ok_or_else(|| not_found("discussion"))?;
    channel(records, tenant, decode_u64(&bytes))
}

/// A post of a channel (404 when missing).
pub fn post(
    records: &impl Records,
    tenant: &Uuid,
    channel: u64,
    id: u64,
) -> Result<Post, ApiError> {
    load(records, &layout::post(tenant, channel, id), "post")
}

/// A message of a discussion (404 when missing).
pub fn message(
    records: &impl Records,
    tenant: &Uuid,
    discussion: u64,
    id: u64,
) -> Result<DiscussionMessage, ApiError> {
    load(records, &layout::message(tenant, discussion, id), "message")
}

/// A user's stored entitlements and features (none stored: empty).
pub fn grants(records: &impl Records, tenant: &Uuid, sub: &str) -> Result<Grants, ApiError> {
    match records.record(&layout::grants(tenant, sub))? {
        Some(bytes) => decode(&bytes),
        None => Ok(Grants::default()),
    }
}

/// What the store says of `reader` and `channel` (the backend: nothing).
pub fn standing(
    records: &impl Records,
    tenant: &Uuid,
    channel: &Channel,
    reader: &Reader,
) -> Result<Standing, ApiError> {
    let Some(sub) = reader.sub() else {
        return Ok(Standing::default());
    };
    let member = records
        .record(&layout::member(tenant, channel.id, sub))?
        .is_some();
    let ban = match &channel.discussion {
        Some(discussion) => records
            .record(&layout::ban(tenant, discussion.discussion_id, sub))?
            .map(|bytes| decode::<Ban>(&bytes))
            .transpose()?,
        None => None,
    };
    Ok(Standing {
        member,
        grants: grants(records, tenant, sub)?,
        ban,
    })
}

/// Stores a record.
pub fn save<T: serde::Serialize>(
    change: &mut Change<'_>,
    key: Vec<u8>,
    value: &T,
) -> Result<(), ApiError> {
    change.put(key, encode(value)?);
    Ok(())
}

/// The next id of a counter.
pub fn next_id(
    change: &mut Change<'_>,
    tenant: &Uuid,
    counter: layout::Counter,
) -> Result<u64, ApiError> {
    let key = layout::counter(tenant, counter);
    let next = change.get(&key)?.map_or(0, |bytes| decode_u64(&bytes)) + 1;
    change.put(key, next.to_be_bytes().to_vec());
    Ok(next)
}

/// The change's time as RFC 3339 (ms).
pub fn now(change: &Change<'_>) -> String {
    crate::core::clock::rfc3339_millis(change.now_ms())
}

/// A write's answer: the record as it is now and the id of the event the
/// write appended (null when it changed nothing), so a client can tell the
/// event it caused when it arrives or sync from it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Written<T> {
    /// The record.
    #[serde(flatten)]
    pub record: T,
    /// The event appended, as clients see its id.
    pub event_id: Option<String>,
}

impl<T> Written<T> {
    /// A write that appended `event`.
    pub fn with_event(record: T, event: ulid::Ulid) -> Self {
        Self {
            record,
            event_id: Some(events::event_id(event)),
        }
    }

    /// A write that changed nothing.
    pub fn unchanged(record: T) -> Self {
        Self {
            record,
            event_id: None,
        }
    }
}

/// Who acts in a change: the tenant, the reader behind the credential, the
/// actor events name, and the limits.
#[derive(Debug, Clone)]
pub struct Acting {
    /// The tenant.
    pub tenant: Uuid,
    /// Who, with their claims.
    pub reader: Reader,
    /// Who events name: the user, or whom the backend named (`actorId`).
    pub actor: Option<String>,
    /// Module limits.
    pub limits: ChannelsLimits,
}

impl Acting {
    /// True for the backend.
    pub fn is_backend(&self) -> bool {
        matches!(self.reader, Reader::Backend)
    }

    /// The emitter of this actor's events.
    pub fn emitter(&self) -> Emitter {
        Emitter::new(self.tenant, self.actor.as_deref())
    }
}
