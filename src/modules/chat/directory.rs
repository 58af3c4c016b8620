//! Users and membership history: the numeric id of each JWT subject, and
//! when each user was a member of each room (what a stream's resume needs
//! to know which room events a user may see).
//!
//! Invariants: a user id is created once per tenant and subject, inside the
//! change of the action that first needs it, and never changes; a
//! membership span begins at the id of the user-topic `RoomCreated` event
//! and ends at the id of the user-topic `RoomDeleted` event (or of the
//! room-topic `RoomDeleted` when the room was deleted); at most
//! [`MAX_SPANS`] spans are kept per user and room (the oldest dropped), and
//! they are kept after the membership ended or the room was deleted. A
//! read that needs a user's id ([`user_id`]) commits only when the user is
//! missing; on a cluster's edge the writer creates it ([`USERS_PATH`]).

use super::layout::{self, Counter};
use crate::core::store::{Store, StoreError, decode_u64};
use crate::core::writer::{Change, Footprint, Writer};
use crate::error::ApiError;
use crate::modules::platform::ModuleContext;
use ulid::Ulid;
use uuid::Uuid;

/// Most spans kept per user and room.
pub const MAX_SPANS: usize = 8;
/// Longest JWT subject taken as a user, in bytes.
pub const MAX_SUB_BYTES: usize = 200;
/// Bytes of one stored span: began and ended (0: still a member), u128 each.
const SPAN_BYTES: usize = 32;

/// One user's membership of one room over time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomSpans {
    /// The room.
    pub room: u64,
    /// `(began, ended)`, oldest first, at most [`MAX_SPANS`].
    pub spans: Vec<(Ulid, Option<Ulid>)>,
}

impl RoomSpans {
    /// True when the user was a member at event `id`.
    pub fn member_at(&self, id: Ulid) -> bool {
        self.spans
            .iter()
            .any(|(began, ended)| *began <= id && ended.is_none_or(|end| id < end))
    }

    /// True when the user is a member now.
    pub fn member_now(&self) -> bool {
        self.spans.last().is_some_and(|(_, ended)| ended.is_none())
    }

    fn decode(room: u64, bytes: &[u8]) -> Self {
        let spans = bytes
            .chunks_exact(SPAN_BYTES)
            .map(|chunk| {
                let began = u128::from_be_bytes(chunk[..16].try_into().unwrap_or_default());
                let ended = u128::from_be_bytes(chunk[16..].try_into().unwrap_or_default());
                (Ulid(began), (ended != 0).then_some(Ulid(ended)))
            })
            .collect();
        Self { room, spans }
    }

    fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.spans.len() * SPAN_BYTES);
        for (began, ended) in &self.spans {
            bytes.extend_from_slice(&began.0.to_be_bytes());
            bytes.extend_from_slice(&ended.map_or(0, |end| end.0).to_be_bytes());
        }
        bytes
    }
}

/// Every room the user is or was (recently) a member of, from the store (no writer).
pub fn user_rooms(store: &Store, tenant: Uuid, user: u64) -> Result<Vec<RoomSpans>, StoreError> {
    let mut rooms = Vec::new();
    store.for_each_blocking(&layout::memberships(&tenant, user), |key, value| {
        if let Some(room) = layout::last_number(key) {
            rooms.push(RoomSpans::decode(room, value));
        }
        Ok(())
    })?;
    Ok(rooms)
}

/// The user's numeric id, if it exists.
pub fn find_user(store: &Store, tenant: Uuid, sub: &str) -> Result<Option<u64>, StoreError> {
    Ok(store
        .get_blocking(&layout::user_by_sub(&tenant, sub))?
        .map(|bytes| decode_u64(&bytes)))
}

/// The internal endpoint through which an edge has the writer create a
/// user's id (the instance admin key only, i.e. an edge's `--writer-key`).
pub const USERS_PATH: &str = "/admin/v1/cluster/chat/users";

/// The body of [`USERS_PATH`]: the JWT subject.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct UserInput {
    /// The subject.
    pub sub: String,
}

/// The body of [`USERS_PATH`]'s answer (its `data`).
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserOutput {
    /// The subject's numeric id.
    pub user_id: u64,
}

/// The user's numeric id for a read (a stream, `GET /me`): read from the
/// store, so a user who exists costs no commit; when missing, created on
/// the writer (on a cluster's edge through `link`, answered once the
/// replica holds it).
pub async fn user_id(core: &ModuleContext, tenant: Uuid, sub: &str) -> Result<u64, ApiError> {
    check_sub(sub)?;
    let wanted = sub.to_string();
    let found = core
        .read("reading chat users failed", move |store| {
            find_user(store, tenant, &wanted)
                .map_err(|err| err.into_api("reading chat users failed"))
        })
        .await?;
    match (found, core.writer_link.as_deref()) {
        (Some(user), _) => Ok(user),
        (None, None) => ensure_user(&core.writer, tenant, sub).await,
        (None, Some(link)) => {
            let body = serde_json::to_vec(&UserInput { sub: sub.into() })
                .map_err(|err| ApiError::internal(err.to_string()))?;
            let answer = link
                .post_as_node(tenant, USERS_PATH.into(), body.into())
                .await?;
            let output: UserOutput = serde_json::from_slice(answer.body())
                .map_err(|err| ApiError::internal(format!("the writer's user id: {err}")))?;
            Ok(output.user_id)
        }
    }
}

/// 400 for an empty subject (no JWT carries one) or one over [`MAX_SUB_BYTES`].
fn check_sub(sub: &str) -> Result<(), ApiError> {
    if sub.is_empty() {
        return Err(ApiError::validation("a user's `sub` is never empty")
            .with_details(serde_json::json!({ "field": "sub" })));
    }
    crate::field_limits::check_len("sub", sub, MAX_SUB_BYTES)
}

/// The user's numeric id, created through the writer when missing.
pub async fn ensure_user(writer: &Writer, tenant: Uuid, sub: &str) -> Result<u64, ApiError> {
    let sub = sub.to_string();
    let footprint = Footprint::data(sub.len() + 64);
    let committed = writer
        .commit(footprint, move |change| resolve_user(change, &tenant, &sub))
        .await?;
    Ok(committed.value)
}

/// The user id of `sub` inside a change, created when missing; 400 for an
/// empty subject (no JWT carries one) or one over [`MAX_SUB_BYTES`].
pub fn resolve_user(change: &mut Change<'_>, tenant: &Uuid, sub: &str) -> Result<u64, ApiError> {
    check_sub(sub)?;
    let key = layout::user_by_sub(tenant, sub);
    if let Some(bytes) = change.get(&key)? {
        return Ok(decode_u64(&bytes));
    }
    let user = next_id(change, tenant, Counter::User)?;
    change.put(key, user.to_be_bytes().to_vec());
    change.put(layout::sub_of_user(tenant, user), sub.as_bytes().to_vec());
    Ok(user)
}

/// True when user `user` exists inside a change.
pub fn user_exists(change: &Change<'_>, tenant: &Uuid, user: u64) -> Result<bool, ApiError> {
    Ok(change.get(&layout::sub_of_user(tenant, user))?.is_some())
}

/// The JWT subject of `user`, from the store.
pub fn sub_of(store: &Store, tenant: &Uuid, user: u64) -> Result<Option<String>, StoreError> {
    Ok(store
        .get_blocking(&layout::sub_of_user(tenant, user))?
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
}

/// Issues the next id of `counter` inside a change (the first is 1).
pub fn next_id(change: &mut Change<'_>, tenant: &Uuid, counter: Counter) -> Result<u64, ApiError> {
    let key = layout::counter(tenant, counter);
    let next = change.get(&key)?.map_or(0, |bytes| decode_u64(&bytes)) + 1;
    change.put(key, next.to_be_bytes().to_vec());
    Ok(next)
}

/// The user's membership history of `room` inside a change.
pub fn spans(
    change: &Change<'_>,
    tenant: &Uuid,
    user: u64,
    room: u64,
) -> Result<RoomSpans, ApiError> {
    let bytes = change.get(&layout::membership(tenant, user, room))?;
    Ok(RoomSpans::decode(room, &bytes.unwrap_or_default()))
}

/// Rooms `user` is a member of now, inside a change.
pub fn rooms_now(change: &Change<'_>, tenant: &Uuid, user: u64) -> Result<usize, ApiError> {
    let pairs = change.scan_prefix(&layout::memberships(tenant, user))?;
    Ok(pairs
        .iter()
        .filter(|(key, value)| {
            layout::last_number(key).is_some_and(|room| RoomSpans::decode(room, value).member_now())
        })
        .count())
}

/// Records that `user`'s membership of `room` began at event `id`.
pub fn begin(
    change: &mut Change<'_>,
    tenant: &Uuid,
    user: u64,
    room: u64,
    id: Ulid,
) -> Result<(), ApiError> {
    let mut history = spans(change, tenant, user, room)?;
    history.spans.push((id, None));
    let excess = history.spans.len().saturating_sub(MAX_SPANS);
    history.spans.drain(..excess);
    change.put(layout::membership(tenant, user, room), history.encode());
    Ok(())
}

/// Records that `user`'s membership of `room` ended at event `id`.
pub fn end(
    change: &mut Change<'_>,
    tenant: &Uuid,
    user: u64,
    room: u64,
    id: Ulid,
) -> Result<(), ApiError> {
    let mut history = spans(change, tenant, user, room)?;
    if let Some((_, ended @ None)) = history.spans.last_mut() {
        *ended = Some(id);
        change.put(layout::membership(tenant, user, room), history.encode());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_say_when_the_user_was_a_member() {
        let (a, b, c, d) = (Ulid(10), Ulid(20), Ulid(30), Ulid(40));
        let spans = RoomSpans {
            room: 7,
            spans: vec![(a, Some(b)), (c, None)],
        };
        assert!(spans.member_at(a) && spans.member_at(Ulid(15)));
        assert!(!spans.member_at(b) && !spans.member_at(Ulid(25)));
        assert!(spans.member_at(c) && spans.member_at(d));
        assert!(spans.member_now());
        let ended = RoomSpans {
            room: 7,
            spans: vec![(a, Some(b))],
        };
        assert!(!ended.member_now());
        assert_eq!(RoomSpans::decode(7, &spans.encode()), spans);
        assert_eq!(RoomSpans::decode(7, &ended.encode()), ended);
    }
}
