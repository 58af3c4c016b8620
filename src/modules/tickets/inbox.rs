//! A user's inbox and preferences: the counts, pages of notifications
//! newest first, marking notifications read (by id or all of them), and
//! which notification types the user wants.
//!
//! Invariants: the `c` row moves with every `i` row changed, in the same
//! change, so `{unread, total}` stay exact; a notification is marked read
//! once (an already read one counts for nothing); reads are bounded: a page
//! examines at most `limit` rows, or [`SCAN_FACTOR`] × `limit` for unread
//! ones (then hands a cursor to go on, even with fewer items); marking all
//! read takes one change per [`MARK_PAGE`] rows and stops at the newest
//! notification stored when it began; marking by id takes at most
//! [`MAX_READ_IDS`] ids; preferences name only the 14 types (anything else
//! is a 400), and a type not named keeps its setting.

use super::layout::{self, InboxCounts, UserKey};
use super::model::{Notification, NotificationType, Preferences};
use super::service::save;
use crate::core::store::Store;
use crate::core::writer::Change;
use crate::error::ApiError;
use crate::modules::records::{Records, decode, encode};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;
use ulid::Ulid;
use uuid::Uuid;

/// Most ids one `PUT /ticket/notification/read` names.
pub const MAX_READ_IDS: usize = 200;
/// An unread-only page examines at most this many rows per item asked.
pub const SCAN_FACTOR: usize = 10;
/// Rows one change of "mark all read" goes through.
pub const MARK_PAGE: usize = 1_000;

/// Whose inbox: the tenant and the user's key.
#[derive(Debug, Clone, Copy)]
pub struct Owner {
    /// The tenant.
    pub tenant: Uuid,
    /// The user.
    pub user: UserKey,
}

impl Owner {
    /// The inbox of `user` in `tenant`.
    pub fn of(tenant: Uuid, user: &str) -> Self {
        Self {
            tenant,
            user: UserKey::of(user),
        }
    }

    fn prefix(&self) -> Vec<u8> {
        layout::inbox(&self.tenant, &self.user)
    }

    fn counts_key(&self) -> Vec<u8> {
        layout::inbox_counts(&self.tenant, &self.user)
    }
}

/// A page of notifications, newest first.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    /// The notifications.
    pub items: Vec<Notification>,
    /// Where the next page starts (the last notification examined), or
    /// `null` after the oldest.
    pub next_cursor: Option<String>,
}

/// What to list.
#[derive(Debug, Clone, Copy)]
pub struct ListQuery {
    /// Start after (older than) this notification; `None`: the newest.
    pub cursor: Option<Ulid>,
    /// Most items.
    pub limit: usize,
    /// Only unread ones.
    pub unread_only: bool,
}

/// The answer to marking read.
#[derive(Debug, Serialize)]
pub struct Marked {
    /// Notifications this request marked read.
    pub updated: u64,
    /// Unread notifications left.
    pub unread: u64,
}

/// How far one change of "mark all read" got.
#[derive(Debug)]
pub struct Progress {
    /// Notifications it marked read.
    pub updated: u64,
    /// The key to go on after; `None` when done.
    pub next: Option<Vec<u8>>,
}

/// The inbox counts `{unread, total}`.
pub fn counts(records: &impl Records, owner: &Owner) -> Result<InboxCounts, ApiError> {
    Ok(records
        .record(&owner.counts_key())?
        .map(|bytes| InboxCounts::decode(&bytes))
        .unwrap_or_default())
}

/// The counts as served.
pub fn counts_view(counts: InboxCounts) -> Value {
    json!({ "unread": counts.unread, "total": counts.total })
}

/// A page of the inbox, newest first (see [`ListQuery`]).
pub fn list(store: &Store, owner: &Owner, query: ListQuery) -> Result<Page, ApiError> {
    let before = query
        .cursor
        .map(|id| layout::notification(&owner.tenant, &owner.user, id.0));
    let budget = if query.unread_only {
        query.limit.saturating_mul(SCAN_FACTOR)
    } else {
        query.limit
    };
    let rows = store
        .scan_back_blocking(&owner.prefix(), before.as_deref(), budget + 1)
        .map_err(|err| err.into_api("reading the inbox failed"))?;
    let mut items = Vec::new();
    let mut next_cursor = None;
    for (index, (_, value)) in rows.iter().take(budget).enumerate() {
        let notification: Notification = decode(value)?;
        let more = index + 1 < rows.len();
        next_cursor = more.then(|| notification.id.clone());
        if !(query.unread_only && notification.read) {
            items.push(notification);
        }
        if items.len() == query.limit {
            break;
        }
    }
    Ok(Page { items, next_cursor })
}

/// Marks the notification under `key` read; true when it was unread.
fn mark(change: &mut Change<'_>, key: Vec<u8>, counts: &mut InboxCounts) -> Result<bool, ApiError> {
    let Some(bytes) = change.get(&key)? else {
        return Ok(false);
    };
    let mut notification: Notification = decode(&bytes)?;
    if notification.read {
        return Ok(false);
    }
    notification.read = true;
    change.put(key, encode(&notification)?);
    counts.unread = counts.unread.saturating_sub(1);
    Ok(true)
}

/// Marks the notifications `ids` read (unknown ones count for nothing).
pub fn mark_ids(change: &mut Change<'_>, owner: &Owner, ids: &[Ulid]) -> Result<Marked, ApiError> {
    let mut counts = counts(change, owner)?;
    let mut updated = 0;
    for id in ids.iter().collect::<BTreeSet<_>>() {
        let key = layout::notification(&owner.tenant, &owner.user, id.0);
        updated += u64::from(mark(change, key, &mut counts)?);
    }
    if updated > 0 {
        change.put(owner.counts_key(), counts.encode());
    }
    Ok(Marked {
        updated,
        unread: counts.unread,
    })
}

/// The key of the newest notification stored, where "mark all read" stops.
pub fn newest(store: &Store, owner: &Owner) -> Result<Option<Vec<u8>>, ApiError> {
    let newest = store
        .scan_back_blocking(&owner.prefix(), None, 1)
        .map_err(|err| err.into_api("reading the inbox failed"))?;
    Ok(newest.into_iter().next().map(|(key, _)| key.to_vec()))
}

/// One change of "mark all read": the next [`MARK_PAGE`] stored rows after
/// `after`, up to the key `through`.
pub fn mark_page(
    change: &mut Change<'_>,
    owner: &Owner,
    after: Option<&[u8]>,
    through: &[u8],
) -> Result<Progress, ApiError> {
    let mut counts = counts(change, owner)?;
    let mut progress = Progress {
        updated: 0,
        next: None,
    };
    if counts.unread == 0 {
        return Ok(progress);
    }
    let page = change.stored_page(&owner.prefix(), after, MARK_PAGE)?;
    let full = page.len() == MARK_PAGE;
    let mut last = None;
    for (key, _) in page
        .into_iter()
        .take_while(|(key, _)| key.as_slice() <= through)
    {
        last = Some(key.clone());
        progress.updated += u64::from(mark(change, key, &mut counts)?);
    }
    progress.next = last.filter(|last| full && last.as_slice() < through);
    if progress.updated > 0 {
        change.put(owner.counts_key(), counts.encode());
    }
    Ok(progress)
}

/// The reply of "mark all read" once its pages are done.
pub fn marked_all(records: &impl Records, owner: &Owner, updated: u64) -> Result<Marked, ApiError> {
    Ok(Marked {
        updated,
        unread: counts(records, owner)?.unread,
    })
}

/// The user's preferences (every type on until they store some).
pub fn preferences(records: &impl Records, owner: &Owner) -> Result<Preferences, ApiError> {
    let key = layout::preferences(&owner.tenant, &owner.user);
    match records.record(&key)? {
        Some(bytes) => decode(&bytes),
        None => Ok(Preferences::default()),
    }
}

/// Preferences as served: `{"types": {<type>: bool, …}}`, all 14 types.
pub fn preferences_view(preferences: &Preferences) -> Value {
    let types: Map<String, Value> = NotificationType::ALL
        .iter()
        .map(|kind| (kind.as_str().to_string(), preferences.wants(*kind).into()))
        .collect();
    json!({ "types": types })
}

/// Sets the types `types` names (`{<type>: bool}`) and keeps the others;
/// 400 for an unknown type or a value that is not a boolean.
pub fn set_preferences(
    change: &mut Change<'_>,
    owner: &Owner,
    types: &Map<String, Value>,
) -> Result<Value, ApiError> {
    let mut wanted: Vec<(NotificationType, bool)> = Vec::with_capacity(types.len());
    for (name, value) in types {
        let kind = NotificationType::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
            .ok_or_else(|| unknown_type(name))?;
        let on = value
            .as_bool()
            .ok_or_else(|| ApiError::validation(format!("`types.{name}` must be true or false")))?;
        wanted.push((kind, on));
    }
    let current = preferences(change, owner)?;
    let wants = |kind: NotificationType| {
        wanted
            .iter()
            .find(|(named, _)| *named == kind)
            .map_or_else(|| current.wants(kind), |(_, on)| *on)
    };
    let updated = Preferences {
        disabled: NotificationType::ALL
            .into_iter()
            .filter(|kind| !wants(*kind))
            .collect(),
    };
    save(
        change,
        layout::preferences(&owner.tenant, &owner.user),
        &updated,
    )?;
    Ok(preferences_view(&updated))
}

fn unknown_type(name: &str) -> ApiError {
    let known: Vec<&str> = NotificationType::ALL
        .iter()
        .map(|kind| kind.as_str())
        .collect();
    ApiError::validation(format!(
        "`{name}` is not a notification type (one of: {})",
        known.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::hub::HubLimits;
    use crate::core::writer::{Footprint, Writer};
    use crate::modules::tickets::model::{Metadata, Person, Priority};

    fn notification(id: u128, read: bool) -> Notification {
        let person = Person {
            id: "a".into(),
            name: "a".into(),
            avatar: None,
        };
        Notification {
            id: uuid::Uuid::from_u128(id).to_string(),
            kind: NotificationType::Assignment,
            ticket_id: "1".into(),
            ticket_number: "INC-2026-000001".into(),
            title: "t".into(),
            message: "m".into(),
            priority: Priority::High,
            category: String::new(),
            created_at: "2026-01-01T00:00:00.000Z".into(),
            read,
            action_url: "/tickets/1".into(),
            actor: person,
            metadata: Metadata::default(),
        }
    }

    /// Stores notifications `ids` (every third one read) and their counts.
    async fn seed(writer: &Writer, owner: Owner, ids: std::ops::Range<u128>) {
        let written = writer.commit(Footprint::SMALL, move |change| {
            let mut counts = counts(change, &owner)?;
            for id in ids {
                let read = id % 3 == 0;
                let key = layout::notification(&owner.tenant, &owner.user, id);
                change.put(key, encode(&notification(id, read))?);
                counts.total += 1;
                counts.unread += u64::from(!read);
            }
            change.put(owner.counts_key(), counts.encode());
            Ok(())
        });
        written.await.unwrap();
    }

    #[tokio::test]
    async fn marking_all_read_goes_a_page_a_change_up_to_the_newest_at_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db"), 8 << 20).unwrap();
        let writer = Writer::start_for_tests(store.clone(), HubLimits::minimal()).writer;
        let owner = Owner::of(Uuid::new_v4(), "ann");
        let other = Owner::of(owner.tenant, "bob");
        seed(&writer, owner, 1..2_501).await;
        seed(&writer, other, 1..11).await;
        let through = newest(&store, &owner).unwrap().unwrap();
        // 2 501 … 2 505 come after the start: three of them unread.
        seed(&writer, owner, 2_501..2_506).await;

        let mut after: Option<Vec<u8>> = None;
        let mut pages = Vec::new();
        loop {
            let through = through.clone();
            let progress = writer
                .commit(Footprint::SMALL, move |change| {
                    mark_page(change, &owner, after.as_deref(), &through)
                })
                .await
                .unwrap()
                .value;
            pages.push(progress.updated);
            match progress.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let unread_before = 2_500 - 2_500 / 3;
        assert_eq!(pages.iter().sum::<u64>(), unread_before);
        assert_eq!(pages.len(), 3, "1 000 rows a change: {pages:?}");
        let left = counts(&store, &owner).unwrap();
        assert_eq!(
            (left.unread, left.total),
            (3, 2_505),
            "newer ones stay unread"
        );
        let listed = list(
            &store,
            &owner,
            ListQuery {
                cursor: None,
                limit: 200,
                unread_only: true,
            },
        )
        .unwrap();
        assert_eq!(listed.items.len(), 3, "the counts match the rows");
        assert_eq!(counts(&store, &other).unwrap().unread, 7, "bob's untouched");
    }

    #[test]
    fn the_preferences_view_names_every_type() {
        let preferences = Preferences {
            disabled: vec![NotificationType::Comment],
        };
        let view = preferences_view(&preferences);
        let types = view["types"].as_object().unwrap();
        assert_eq!(types.len(), 14);
        assert_eq!(types["comment"], false);
        assert_eq!(types["slaBreach"], true);
        assert!(
            unknown_type("bogus")
                .message
                .contains("assignment, reassignment")
        );
    }
}
