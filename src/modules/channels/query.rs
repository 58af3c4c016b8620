//! The read side: channels, pages of posts and discussion messages (REST,
//! the source of truth), members, stored grants, and sync by event id.
//!
//! * REST pages are newest first, `before` a post or message id, and carry
//!   `latestEventId`: a position in the log read *before* the state, so a
//!   client that syncs from it after rendering the page misses nothing
//!   (an event both in the page and the sync is applied twice, idempotently;
//!   clients dedupe by `eventId`).
//! * Sync answers the room's events after `sinceEventId` (from the oldest
//!   kept without it), oldest first, at most `limit`, with `hasMore`;
//!   `status` says `too_old` when retention removed events after the id and
//!   `unknown` when the id is after everything this server committed (then
//!   `events` is empty and the client falls back to REST).
//!
//! Invariants: every read checks the reader's access with [`super::access`]
//! first; users never see a deleted post's or message's text (tombstones);
//! sync never serves the internal `communication.access.changed` events,
//! but its `latestEventId` moves past them.

use super::access::{self, Reader};
use super::events::{self, Room};
use super::layout;
use super::model::{Channel, DiscussionMessage, Post};
use super::service;
use crate::core::log::read::{Cursor, GapReason, PageLimit, read_page};
use crate::core::store::Store;
use crate::error::ApiError;
use crate::modules::records::decode;
use serde::Serialize;
use serde_json::Value;
use ulid::Ulid;
use uuid::Uuid;

/// Stored JSON bytes after which a sync page stops early.
const SYNC_PAGE_BYTES: usize = 512 << 10;

/// Who reads in which tenant.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// The tenant.
    pub tenant: Uuid,
    /// Who.
    pub reader: Reader,
}

impl Viewer {
    /// A channel the viewer may read.
    pub fn channel(&self, store: &Store, id: u64) -> Result<Channel, ApiError> {
        let channel = service::channel(store, &self.tenant, id)?;
        let standing = service::standing(store, &self.tenant, &channel, &self.reader)?;
        access::read_channel(&channel, &self.reader, &standing)?;
        Ok(channel)
    }

    /// The channel of a discussion the viewer may join now.
    pub fn discussion(&self, store: &Store, discussion: u64) -> Result<Channel, ApiError> {
        let channel = service::discussion_channel(store, &self.tenant, discussion)?;
        let standing = service::standing(store, &self.tenant, &channel, &self.reader)?;
        let now = crate::core::clock::unix_millis();
        access::join_discussion(&channel, &self.reader, &standing, now)?;
        Ok(channel)
    }

    /// The room's access check: Ok when the viewer may join `room` now.
    pub fn may_join(&self, store: &Store, room: Room) -> Result<Channel, ApiError> {
        match room {
            Room::Posts(channel) => self.channel(store, channel),
            Room::Discussion(discussion) => self.discussion(store, discussion),
        }
    }
}

/// A page of posts or messages.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    /// Newest first.
    pub items: Vec<T>,
    /// The `before` of the next page, or null at the end.
    pub next_cursor: Option<u64>,
    /// The position to sync the room from (see the module doc).
    pub latest_event_id: String,
}

/// A post as `viewer` may see it (a user sees a deleted one's tombstone).
fn shown_post(viewer: &Viewer, mut post: Post) -> Post {
    if post.is_deleted && viewer.reader.sub().is_some() {
        post.text.clear();
    }
    post
}

/// A message as `viewer` may see it.
fn shown_message(viewer: &Viewer, mut message: DiscussionMessage) -> DiscussionMessage {
    if message.is_deleted && viewer.reader.sub().is_some() {
        message.text.clear();
    }
    message
}

/// The newest records under `prefix` before the key `before`, newest
/// first, skipping tombstones; at most `limit`, and the id to continue
/// before when the page is full.
fn newest<T: serde::de::DeserializeOwned>(
    store: &Store,
    prefix: &[u8],
    before: Option<Vec<u8>>,
    limit: usize,
    deleted: impl Fn(&T) -> bool,
) -> Result<(Vec<T>, Option<u64>), ApiError> {
    let mut items = Vec::new();
    let mut cursor = before;
    loop {
        let rows = store
            .scan_back_blocking(prefix, cursor.as_deref(), limit)
            .map_err(|err| err.into_api("reading channels failed"))?;
        let exhausted = rows.len() < limit;
        for (key, value) in rows {
            let record: T = decode(&value)?;
            if !deleted(&record) {
                items.push(record);
            }
            if items.len() == limit {
                return Ok((items, layout::last_number(&key)));
            }
            cursor = Some(key.to_vec());
        }
        if exhausted {
            return Ok((items, None));
        }
    }
}

/// `GET /channels/{channelId}/posts`: the channel's posts, newest first.
pub fn posts(
    store: &Store,
    viewer: &Viewer,
    (channel, before): (u64, Option<u64>),
    limit: usize,
    latest: Ulid,
) -> Result<Page<Post>, ApiError> {
    viewer.channel(store, channel)?;
    let prefix = layout::posts(&viewer.tenant, channel);
    let before = before.map(|id| layout::post(&viewer.tenant, channel, id));
    let (items, next_cursor) =
        newest(store, &prefix, before, limit, |post: &Post| post.is_deleted)?;
    Ok(Page {
        items: items
            .into_iter()
            .map(|post| shown_post(viewer, post))
            .collect(),
        next_cursor,
        latest_event_id: events::event_id(latest),
    })
}

/// `GET /discussions/{discussionId}/messages`: newest first.
pub fn messages(
    store: &Store,
    viewer: &Viewer,
    (discussion, before): (u64, Option<u64>),
    limit: usize,
    latest: Ulid,
) -> Result<Page<DiscussionMessage>, ApiError> {
    viewer.discussion(store, discussion)?;
    let prefix = layout::messages(&viewer.tenant, discussion);
    let before = before.map(|id| layout::message(&viewer.tenant, discussion, id));
    let deleted = |message: &DiscussionMessage| message.is_deleted;
    let (items, next_cursor) = newest(store, &prefix, before, limit, deleted)?;
    Ok(Page {
        items: items
            .into_iter()
            .map(|message| shown_message(viewer, message))
            .collect(),
        next_cursor,
        latest_event_id: events::event_id(latest),
    })
}

/// One post as the viewer may see it.
pub fn post(store: &Store, viewer: &Viewer, (channel, id): (u64, u64)) -> Result<Post, ApiError> {
    viewer.channel(store, channel)?;
    Ok(shown_post(
        viewer,
        service::post(store, &viewer.tenant, channel, id)?,
    ))
}

/// One message as the viewer may see it.
pub fn message(
    store: &Store,
    viewer: &Viewer,
    (discussion, id): (u64, u64),
) -> Result<DiscussionMessage, ApiError> {
    viewer.discussion(store, discussion)?;
    let message = service::message(store, &viewer.tenant, discussion, id)?;
    Ok(shown_message(viewer, message))
}

/// A channel's explicit members (user ids), in id order.
pub fn members(store: &Store, tenant: &Uuid, channel: u64) -> Result<Vec<String>, ApiError> {
    service::channel(store, tenant, channel)?;
    let prefix = layout::members(tenant, channel);
    let mut members = Vec::new();
    store
        .for_each_blocking(&prefix, |key, _| {
            members.extend(layout::sub_after(key, &prefix).map(str::to_string));
            Ok(())
        })
        .map_err(|err| err.into_api("reading channels failed"))?;
    Ok(members)
}

/// What sync answers.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncPage {
    /// The room's name.
    pub room: String,
    /// `ok`, `too_old` or `unknown`.
    pub status: &'static str,
    /// Envelopes, oldest first.
    pub events: Vec<Value>,
    /// True when more events follow this page.
    pub has_more: bool,
    /// Where the next sync starts: the last event of the page, or a later
    /// position when the page reached the end.
    pub latest_event_id: Option<String>,
}

/// The room's events after `since` (from the oldest kept when `None`).
pub fn sync(
    store: &Store,
    viewer: &Viewer,
    room: Room,
    since: Option<Ulid>,
    limit: usize,
    durable: Ulid,
) -> Result<SyncPage, ApiError> {
    viewer.may_join(store, room)?;
    let topic = room.topic(viewer.tenant);
    let cursor = since.map_or(Cursor::Start, Cursor::After);
    let page_limit = PageLimit {
        events: limit,
        bytes: SYNC_PAGE_BYTES,
    };
    let page = read_page(store, &topic, cursor, page_limit, durable)
        .map_err(|err| err.into_api("reading channels failed"))?;
    if let Some(gap) = page.gap {
        let status = match gap.reason {
            GapReason::Expired => "too_old",
            GapReason::Unknown => "unknown",
        };
        return Ok(SyncPage {
            room: room.name(),
            status,
            events: Vec::new(),
            has_more: false,
            latest_event_id: None,
        });
    }
    let last = page.events.last().map(|event| event.id());
    let position = if page.more {
        last
    } else {
        Some(last.unwrap_or(durable).max(durable))
    };
    Ok(SyncPage {
        room: room.name(),
        status: "ok",
        events: page
            .events
            .iter()
            .filter(|event| events::is_client_event(event))
            .map(|event| events::envelope(event))
            .collect(),
        has_more: page.more,
        latest_event_id: position.map(events::event_id),
    })
}
