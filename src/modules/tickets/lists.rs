//! Ticket-list updates: a compact event on each affected user's list topic
//! whenever a ticket in their lists is created or changes, for the
//! `/ticket/sse/list/updates` stream.
//!
//! A ticket is in a user's lists when they asked it, are its assignee or a
//! watcher, or are an agent of its queue. Events: `ticketCreated` (the
//! ticket entered the user's lists: `changes` holds every list field),
//! `ticketAdded` (an existing ticket entered them, `changes` likewise),
//! `ticketUpdated` (`changes` holds the fields that changed, with their new
//! values), `ticketRemoved` (it left them); each with `ticketId`,
//! `ticketNumber` and `updatedAt`.
//!
//! Invariants: published in the change that changes the ticket (so updates
//! exist exactly when it commits, in commit order); a change that touches
//! none of the list fields publishes nothing; a user who keeps the ticket
//! gets one `ticketUpdated`, one who gains it one `ticketCreated` or
//! `ticketAdded`, one who
//! loses it one `ticketRemoved`. Changing a queue's agents publishes nothing
//! for the tickets already in it (clients list on connect, then follow).

use super::events::{self, TICKET_ADDED, TICKET_CREATED, TICKET_REMOVED, TICKET_UPDATED};
use super::layout::UserKey;
use super::model::Ticket;
use super::service;
use crate::core::writer::Change;
use crate::error::ApiError;
use crate::modules::records::Records;
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;
use uuid::Uuid;

/// The fields list events carry.
const LIST_FIELDS: [&str; 10] = [
    "title",
    "category",
    "priority",
    "status",
    "assignee",
    "queueId",
    "watchers",
    "escalationLevel",
    "mergedInto",
    "requester",
];

/// Users whose lists hold `ticket`.
pub fn viewers(
    records: &impl Records,
    tenant: &Uuid,
    ticket: &Ticket,
) -> Result<BTreeSet<String>, ApiError> {
    let mut users: BTreeSet<String> = ticket.watchers.iter().cloned().collect();
    users.insert(ticket.requester.id.clone());
    users.extend(ticket.assignee.iter().cloned());
    if let Some(queue) = ticket.queue_id {
        users.extend(service::queue(records, tenant, queue)?.agents);
    }
    Ok(users)
}

/// The list fields of a ticket.
fn list_fields(ticket: &Ticket) -> Map<String, Value> {
    let Ok(Value::Object(all)) = serde_json::to_value(ticket) else {
        return Map::new();
    };
    LIST_FIELDS
        .iter()
        .map(|field| {
            let value = all.get(*field).cloned().unwrap_or(Value::Null);
            (field.to_string(), value)
        })
        .collect()
}

/// Appends the list updates of a ticket going from `before` (`None`: it is
/// new) to `after`.
pub fn publish(
    change: &mut Change<'_>,
    tenant: &Uuid,
    before: Option<&Ticket>,
    after: &Ticket,
) -> Result<(), ApiError> {
    let now = list_fields(after);
    let (old_viewers, changed) = match before {
        Some(before) => {
            let old = list_fields(before);
            let changed: Map<String, Value> = now
                .iter()
                .filter(|(field, value)| old.get(*field) != Some(value))
                .map(|(field, value)| (field.clone(), value.clone()))
                .collect();
            (viewers(change, tenant, before)?, changed)
        }
        None => (BTreeSet::new(), Map::new()),
    };
    let new_viewers = viewers(change, tenant, after)?;
    let head = |changes: Option<&Map<String, Value>>| {
        let mut data = json!({
            "ticketId": after.id.to_string(),
            "ticketNumber": after.number,
            "updatedAt": after.updated_at,
        });
        if let Some(changes) = changes {
            data["changes"] = Value::Object(changes.clone());
        }
        data
    };
    for user in new_viewers.union(&old_viewers) {
        let (event_type, data) = match (old_viewers.contains(user), new_viewers.contains(user)) {
            (false, true) if before.is_none() => (TICKET_CREATED, head(Some(&now))),
            (false, true) => (TICKET_ADDED, head(Some(&now))),
            (true, true) if changed.is_empty() => continue,
            (true, true) => (TICKET_UPDATED, head(Some(&changed))),
            (true, false) => (TICKET_REMOVED, head(None)),
            (false, false) => continue,
        };
        let topic = events::list_topic(*tenant, &UserKey::of(user));
        change.append(&topic, event_type, Value::Null, data)?;
    }
    Ok(())
}
