//! Ticket lists (`GET /ticket/list`): the caller's `requested`, `assigned`
//! or `watching` tickets, or a queue's (`queue`, agents, with `queueId`),
//! newest first, optionally of some statuses, a page at a time.
//!
//! Invariants: a list is read from the index ([`super::index`]), never by
//! scanning the tenant's tickets: one backward scan of at most `limit + 1`
//! rows per status asked, then `limit` ticket reads, whatever the number
//! of tickets; `cursor` is the id of the last ticket of the previous page
//! and the next page starts below it, so pages neither repeat nor skip a
//! ticket that stays in the list; a user lists only their own tickets
//! (every ticket in them is one they may see); a ticket whose status moved
//! between the index read and the ticket read is left out of the page.

use super::layout::{self, UserKey, UserList};
use super::model::{Status, Ticket};
use super::service::{self, Acting};
use crate::core::store::Store;
use crate::error::ApiError;
use serde::Serialize;
use serde_json::Value;

/// Every status, in workflow order.
const STATUSES: [Status; 5] = [
    Status::New,
    Status::Open,
    Status::Pending,
    Status::Resolved,
    Status::Closed,
];

/// A page of a list.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    /// The entries.
    pub items: Vec<T>,
    /// The id to pass as `cursor` for the next page (`null` at the end).
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page of the first `limit` of `items` (fetched one past the limit
    /// to know whether more follow), whose cursor is the last one's `id`.
    pub fn of(mut items: Vec<T>, limit: usize, id: impl Fn(&T) -> u64) -> Self {
        let more = items.len() > limit;
        items.truncate(limit);
        let next_cursor = items
            .last()
            .filter(|_| more)
            .map(|last| id(last).to_string());
        Self { items, next_cursor }
    }
}

/// Which list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// One of the caller's own lists.
    Own(UserList),
    /// A queue's tickets (agents).
    Queue(u64),
}

/// A list request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// Which list.
    pub view: View,
    /// The statuses asked (every one when none is named).
    pub statuses: Vec<Status>,
    /// The last ticket of the previous page.
    pub cursor: Option<u64>,
    /// Most tickets in the page.
    pub limit: usize,
}

impl ListQuery {
    /// The query of the `view` (default `requested`), `queueId` and
    /// `status` (a name or comma-separated names) parameters; 400 naming a
    /// bad one.
    pub fn parse(
        view: Option<&str>,
        queue: Option<u64>,
        status: Option<&str>,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Self, ApiError> {
        let view = match (view.unwrap_or("requested"), queue) {
            ("requested", _) => View::Own(UserList::Requested),
            ("assigned", _) => View::Own(UserList::Assigned),
            ("watching", _) => View::Own(UserList::Watching),
            ("queue", Some(queue)) => View::Queue(queue),
            ("queue", None) => {
                return Err(ApiError::validation("view=queue needs `queueId`"));
            }
            (other, _) => {
                return Err(ApiError::validation(format!(
                    "view `{other}` is not one of requested, assigned, watching, queue"
                )));
            }
        };
        Ok(Self {
            view,
            statuses: statuses(status.unwrap_or(""))?,
            cursor,
            limit,
        })
    }
}

/// The statuses named in a comma-separated list (all of them for none).
fn statuses(text: &str) -> Result<Vec<Status>, ApiError> {
    let mut named = Vec::new();
    for name in text.split(',').filter(|name| !name.is_empty()) {
        let status = serde_json::from_value(Value::String(name.to_string())).map_err(|_| {
            ApiError::validation(format!(
                "status `{name}` is not one of new, open, pending, resolved, closed"
            ))
        })?;
        if !named.contains(&status) {
            named.push(status);
        }
    }
    Ok(if named.is_empty() {
        STATUSES.to_vec()
    } else {
        named
    })
}

/// The index prefixes of the list, one per status asked.
fn prefixes(store: &Store, acting: &Acting, query: &ListQuery) -> Result<Vec<Vec<u8>>, ApiError> {
    let tenant = &acting.tenant;
    let prefix = |status: Status| match query.view {
        View::Own(list) => layout::user_list(tenant, &UserKey::of(&acting.person.id), list, status),
        View::Queue(queue) => layout::queue_list(tenant, queue, status),
    };
    if let View::Queue(queue) = query.view {
        acting.require_agent()?;
        service::queue(store, tenant, queue)?;
    }
    Ok(query
        .statuses
        .iter()
        .map(|status| prefix(*status))
        .collect())
}

/// A page of a list, newest first.
pub fn list(store: &Store, acting: &Acting, query: &ListQuery) -> Result<Page<Ticket>, ApiError> {
    let mut ids = Vec::new();
    for prefix in prefixes(store, acting, query)? {
        let before = query.cursor.map(|cursor| layout::list_row(&prefix, cursor));
        let rows = store
            .scan_back_blocking(&prefix, before.as_deref(), query.limit + 1)
            .map_err(|err| err.into_api("reading a ticket list failed"))?;
        ids.extend(
            rows.iter()
                .filter_map(|(row, _)| layout::ticket_of_row(row)),
        );
    }
    ids.sort_unstable_by(|a, b| b.cmp(a));
    ids.dedup();
    let page = Page::of(ids, query.limit, |id| *id);
    let mut items = Vec::with_capacity(page.items.len());
    for id in page.items {
        let ticket = service::ticket(store, &acting.tenant, id)?;
        if query.statuses.contains(&ticket.status) {
            items.push(ticket);
        }
    }
    Ok(Page {
        items,
        next_cursor: page.next_cursor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_parameters_are_parsed_or_refused_by_name() {
        let query = ListQuery::parse(None, None, Some("open,closed,open"), Some(9), 5).unwrap();
        assert_eq!(query.view, View::Own(UserList::Requested));
        assert_eq!(query.statuses, vec![Status::Open, Status::Closed]);
        let queue = ListQuery::parse(Some("queue"), Some(3), None, None, 5).unwrap();
        assert_eq!(queue.view, View::Queue(3));
        assert_eq!(queue.statuses.len(), 5);
        let missing = ListQuery::parse(Some("queue"), None, None, None, 5).unwrap_err();
        assert!(missing.to_string().contains("queueId"), "{missing}");
        let view = ListQuery::parse(Some("mine"), None, None, None, 5).unwrap_err();
        assert!(view.to_string().contains("mine"));
        let status = ListQuery::parse(None, None, Some("done"), None, 5).unwrap_err();
        assert!(status.to_string().contains("done"));
    }

    #[test]
    fn a_page_keeps_the_limit_and_names_the_next_cursor_only_when_more_follow() {
        let page = Page::of(vec![9, 7, 5], 2, |id| *id);
        assert_eq!(
            (page.items, page.next_cursor),
            (vec![9, 7], Some("7".into()))
        );
        let last = Page::of(vec![9, 7], 2, |id| *id);
        assert_eq!(last.next_cursor, None);
    }
}
