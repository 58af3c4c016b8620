//! The chat read side: rooms (the caller's, the public ones, one), members,
//! messages page by page in both directions, threads and receipts. Reads see
//! committed state and never write.
//!
//! Invariants: a private room and everything in it is reported missing
//! (404) to whoever is not its member; a public room's messages, members and
//! receipts are readable by every user of the tenant; pages are oldest first
//! within the page.

use super::directory::{self, user_rooms};
use super::layout;
use super::model::{
    Member, MemberRecord, Message, Receipt, Role, Room, StoredMessage, StoredRoom, decode,
    not_found,
};
use crate::core::store::{Store, StoreError};
use crate::error::ApiError;
use serde::Serialize;
use uuid::Uuid;

fn store_error(err: StoreError) -> ApiError {
    err.into_api("reading chat failed")
}

/// Who reads: the tenant and the user id (`Some(0)`: the backend; `None`: a
/// user with no id yet, so a member of nothing).
#[derive(Debug, Clone, Copy)]
pub struct Viewer {
    /// The tenant.
    pub tenant: Uuid,
    /// The user id, if any.
    pub user: Option<u64>,
}

fn get<T: serde::de::DeserializeOwned>(store: &Store, key: &[u8]) -> Result<Option<T>, ApiError> {
    store
        .get_blocking(key)
        .map_err(store_error)?
        .map(|bytes| decode(&bytes))
        .transpose()
}

impl Viewer {
    fn role_in(&self, store: &Store, room: u64) -> Result<Option<Role>, ApiError> {
        match self.user {
            None => Ok(None),
            Some(0) => Ok(Some(Role::Owner)),
            Some(user) => Ok(get::<MemberRecord>(
                store,
                &layout::member(&self.tenant, room, user),
            )?
            .map(|member| member.role)),
        }
    }

    /// A room the viewer may see, with their role; 404 otherwise.
    pub fn room(&self, store: &Store, room: u64) -> Result<(StoredRoom, Option<Role>), ApiError> {
        let stored: StoredRoom =
            get(store, &layout::room(&self.tenant, room))?.ok_or_else(|| not_found("room"))?;
        let role = self.role_in(store, room)?;
        if stored.room.private && role.is_none() {
            return Err(not_found("room"));
        }
        Ok((stored, role))
    }
}

/// One of the caller's rooms as listed.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MyRoom {
    /// The room.
    #[serde(flatten)]
    pub room: Room,
    /// The caller's role.
    pub role: Role,
    /// Messages after the caller's receipt not written by them.
    pub unread_count: u64,
    /// The newest message, if it still exists.
    pub last_message: Option<Message>,
    /// The caller's receipt.
    pub last_read_message_id: Option<u64>,
    #[serde(skip)]
    activity: (u64, u64),
}

/// A page of rooms and the cursor of the next one.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomPage<T> {
    /// The rooms.
    pub rooms: Vec<T>,
    /// Cursor of the next page, `null` at the end.
    pub next_cursor: Option<String>,
}

/// The caller's rooms, by last activity (newest first); `cursor` is the
/// `nextCursor` of the page before.
pub fn my_rooms(
    store: &Store,
    viewer: Viewer,
    limit: usize,
    cursor: Option<(u64, u64)>,
) -> Result<RoomPage<MyRoom>, ApiError> {
    let Some(user) = viewer.user.filter(|user| *user != 0) else {
        return Ok(RoomPage {
            rooms: Vec::new(),
            next_cursor: None,
        });
    };
    let tenant = viewer.tenant;
    let mut rooms = Vec::new();
    for spans in user_rooms(store, tenant, user).map_err(store_error)? {
        if spans.member_now() {
            rooms.extend(my_room(store, viewer, user, spans.room)?);
        }
    }
    rooms.sort_by_key(|room| std::cmp::Reverse(room.activity));
    rooms.retain(|room| cursor.is_none_or(|cursor| room.activity < cursor));
    let more = rooms.len() > limit;
    rooms.truncate(limit);
    let next_cursor = more
        .then(|| {
            rooms
                .last()
                .map(|room| format!("{}-{}", room.activity.0, room.activity.1))
        })
        .flatten();
    Ok(RoomPage { rooms, next_cursor })
}

fn my_room(
    store: &Store,
    viewer: Viewer,
    user: u64,
    room: u64,
) -> Result<Option<MyRoom>, ApiError> {
    let tenant = viewer.tenant;
    let Some(stored) = get::<StoredRoom>(store, &layout::room(&tenant, room))? else {
        return Ok(None);
    };
    let Some(member) = get::<MemberRecord>(store, &layout::member(&tenant, room, user))? else {
        return Ok(None);
    };
    let receipt: Receipt = get(store, &layout::receipt(&tenant, room, user))?.unwrap_or_default();
    let last_message = match stored.last_message_id {
        Some(id) => get::<StoredMessage>(store, &layout::message(&tenant, room, id))?
            .map(|stored| stored.message),
        None => None,
    };
    Ok(Some(MyRoom {
        activity: (stored.last_activity_ms, room),
        unread_count: receipt.unread(stored.seq),
        last_read_message_id: receipt.last_read_message_id,
        role: member.role,
        last_message,
        room: stored.room,
    }))
}

/// Parses a `GET /rooms` cursor (`<ms>-<roomId>`).
pub fn parse_activity_cursor(text: &str) -> Option<(u64, u64)> {
    let (ms, room) = text.split_once('-')?;
    Some((ms.parse().ok()?, room.parse().ok()?))
}

/// The tenant's public rooms by id; `after` is the `nextCursor` of the page before.
pub fn public_rooms(
    store: &Store,
    tenant: Uuid,
    limit: usize,
    after: Option<u64>,
) -> Result<RoomPage<Room>, ApiError> {
    let prefix = layout::public_rooms(&tenant);
    let after = after.map(|room| layout::public_room(&tenant, room));
    let entries = store
        .scan_blocking(&prefix, after.as_deref(), limit + 1)
        .map_err(store_error)?;
    let more = entries.len() > limit;
    let mut rooms = Vec::new();
    for (key, _) in entries.iter().take(limit) {
        let Some(room) = layout::last_number(key) else {
            continue;
        };
        if let Some(stored) = get::<StoredRoom>(store, &layout::room(&tenant, room))? {
            rooms.push(stored.room);
        }
    }
    let next_cursor = more
        .then(|| rooms.last().map(|room| room.room_id.to_string()))
        .flatten();
    Ok(RoomPage { rooms, next_cursor })
}

/// A room's members, by user id.
pub fn members(store: &Store, viewer: Viewer, room: u64) -> Result<Vec<Member>, ApiError> {
    viewer.room(store, room)?;
    let mut members = Vec::new();
    let prefix = layout::members(&viewer.tenant, room);
    let mut pairs = Vec::new();
    store
        .for_each_blocking(&prefix, |key, value| {
            pairs.push((layout::last_number(key), value.to_vec()));
            Ok(())
        })
        .map_err(store_error)?;
    for (user, value) in pairs {
        let Some(user) = user else { continue };
        let record: MemberRecord = decode(&value)?;
        members.push(Member {
            user_id: user,
            sub: directory::sub_of(store, &viewer.tenant, user).map_err(store_error)?,
            role: record.role,
            joined_at: record.joined_at,
        });
    }
    Ok(members)
}

/// One receipt as listed.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptView {
    /// The member.
    pub user_id: u64,
    /// Their newest message read.
    pub last_read_message_id: Option<u64>,
}

/// A room's read receipts, by user id.
pub fn receipts(store: &Store, viewer: Viewer, room: u64) -> Result<Vec<ReceiptView>, ApiError> {
    viewer.room(store, room)?;
    let mut receipts = Vec::new();
    let mut failed = None;
    store
        .for_each_blocking(&layout::receipts(&viewer.tenant, room), |key, value| {
            match (layout::last_number(key), decode::<Receipt>(value)) {
                (Some(user), Ok(receipt)) => receipts.push(ReceiptView {
                    user_id: user,
                    last_read_message_id: receipt.last_read_message_id,
                }),
                (_, Err(err)) => failed = Some(err),
                _ => {}
            }
            Ok(())
        })
        .map_err(store_error)?;
    failed.map_or(Ok(receipts), Err)
}

/// One message of a room the viewer may see.
pub fn message(store: &Store, viewer: Viewer, room: u64, id: u64) -> Result<Message, ApiError> {
    viewer.room(store, room)?;
    load_message(store, &viewer.tenant, room, id)?.ok_or_else(|| not_found("message in this room"))
}

fn load_message(
    store: &Store,
    tenant: &Uuid,
    room: u64,
    id: u64,
) -> Result<Option<Message>, ApiError> {
    Ok(
        get::<StoredMessage>(store, &layout::message(tenant, room, id))?
            .map(|stored| stored.message),
    )
}

/// Where a page of messages starts.
#[derive(Debug, Clone, Copy)]
pub enum Position {
    /// The newest messages.
    Newest,
    /// The newest messages older than this id.
    Before(u64),
    /// The oldest messages newer than this id.
    After(u64),
}

/// A page of messages, oldest first.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessagePage {
    /// The messages.
    pub messages: Vec<Message>,
    /// True when more messages lie beyond the page in its direction.
    pub has_more: bool,
}

/// A page of the messages under `parent` (0: top-level messages).
pub fn messages(
    store: &Store,
    tenant: &Uuid,
    room: u64,
    parent: u64,
    position: Position,
    limit: usize,
) -> Result<MessagePage, ApiError> {
    let prefix = layout::thread(tenant, room, parent);
    let entry = |id| layout::thread_entry(tenant, room, parent, id);
    let mut entries = match position {
        Position::Newest => store.scan_back_blocking(&prefix, None, limit + 1),
        Position::Before(id) => store.scan_back_blocking(&prefix, Some(&entry(id)), limit + 1),
        Position::After(id) => store.scan_blocking(&prefix, Some(&entry(id)), limit + 1),
    }
    .map_err(store_error)?;
    let has_more = entries.len() > limit;
    entries.truncate(limit);
    if !matches!(position, Position::After(_)) {
        entries.reverse();
    }
    let mut messages = Vec::with_capacity(entries.len());
    for (key, _) in entries {
        if let Some(id) = layout::last_number(&key) {
            messages.extend(load_message(store, tenant, room, id)?);
        }
    }
    Ok(MessagePage { messages, has_more })
}

/// A thread: the parent and a page of its comments.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Thread {
    /// The top-level message.
    pub parent: Message,
    /// Its comments, oldest first.
    pub messages: Vec<Message>,
    /// True when more comments follow.
    pub has_more: bool,
}

/// The thread of top-level message `id`: comments after `after`.
pub fn thread(
    store: &Store,
    viewer: Viewer,
    room: u64,
    id: u64,
    after: u64,
    limit: usize,
) -> Result<Thread, ApiError> {
    let parent = message(store, viewer, room, id)?;
    if parent.parent_message_id.is_some() {
        return Err(ApiError::validation(
            "this message is a comment: threads hang from top-level messages",
        ));
    }
    let page = messages(
        store,
        &viewer.tenant,
        room,
        id,
        Position::After(after),
        limit,
    )?;
    Ok(Thread {
        parent,
        messages: page.messages,
        has_more: page.has_more,
    })
}
