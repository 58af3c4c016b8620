//! The ticket-list index: the `v` rows (a user's requested, assigned and
//! watching lists) and `w` rows (a queue's list) of each ticket, keyed by
//! the ticket's status and id so a list reads newest first without
//! touching other tickets (see [`super::layout`]).
//!
//! Invariants: a ticket has exactly the rows [`rows`] gives it as stored:
//! [`update`] runs in every change that saves a ticket (through
//! [`super::ticket::save`]) and moves the rows from what the ticket was
//! to what it is, so the index never lists a ticket in a list it left.

use super::layout::{self, UserKey, UserList};
use super::model::Ticket;
use crate::core::writer::Change;
use std::collections::BTreeSet;
use uuid::Uuid;

/// The index rows of `ticket`.
pub fn rows(tenant: &Uuid, ticket: &Ticket) -> BTreeSet<Vec<u8>> {
    let status = ticket.status;
    let user_row = |user: &str, list: UserList| {
        let prefix = layout::user_list(tenant, &UserKey::of(user), list, status);
        layout::list_row(&prefix, ticket.id)
    };
    let mut rows = BTreeSet::new();
    rows.insert(user_row(&ticket.requester.id, UserList::Requested));
    if let Some(assignee) = &ticket.assignee {
        rows.insert(user_row(assignee, UserList::Assigned));
    }
    for watcher in &ticket.watchers {
        rows.insert(user_row(watcher, UserList::Watching));
    }
    if let Some(queue) = ticket.queue_id {
        let prefix = layout::queue_list(tenant, queue, status);
        rows.insert(layout::list_row(&prefix, ticket.id));
    }
    rows
}

/// Moves a ticket's rows from `before` (`None`: it is new) to `after`.
pub fn update(change: &mut Change<'_>, tenant: &Uuid, before: Option<&Ticket>, after: &Ticket) {
    let old = before
        .map(|ticket| rows(tenant, ticket))
        .unwrap_or_default();
    let new = rows(tenant, after);
    for gone in old.difference(&new) {
        change.delete(gone.clone());
    }
    for added in new.difference(&old) {
        change.put(added.clone(), Vec::new());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::tickets::model::{Person, SlaState, Status};

    fn ticket() -> Ticket {
        Ticket {
            id: 9,
            number: "INC-2026-000009".into(),
            title: "t".into(),
            description: String::new(),
            category: String::new(),
            priority: Default::default(),
            status: Status::New,
            requester: Person {
                id: "ann".into(),
                name: "ann".into(),
                avatar: None,
            },
            assignee: None,
            queue_id: None,
            watchers: vec!["ann".into()],
            escalation_level: 0,
            merged_into: None,
            first_response_at: None,
            resolved_at: None,
            sla: SlaState::default(),
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    #[test]
    fn a_ticket_has_one_row_per_list_it_is_in() {
        let tenant = Uuid::nil();
        let mut ticket = ticket();
        assert_eq!(rows(&tenant, &ticket).len(), 2, "requested and watching");
        ticket.assignee = Some("bob".into());
        ticket.queue_id = Some(3);
        ticket.watchers.push("cy".into());
        let all = rows(&tenant, &ticket);
        assert_eq!(all.len(), 5);
        let queue = layout::list_row(&layout::queue_list(&tenant, 3, Status::New), 9);
        assert!(all.contains(&queue));
        ticket.status = Status::Open;
        assert!(
            rows(&tenant, &ticket).is_disjoint(&all),
            "every row names the status"
        );
    }
}
