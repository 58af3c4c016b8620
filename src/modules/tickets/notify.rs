//! Raising notifications: one per recipient, stored in their inbox and
//! appended to their notifications topic inside the change that caused it.
//!
//! Invariants: the actor never notifies themselves; a recipient named twice
//! gets one notification; a recipient whose preferences switch the type off
//! gets none; each delivered notification is an event of the recipient's
//! topic and an inbox row keyed by that event's id, and the inbox counts
//! row moves with them, all in the caller's change (so they exist exactly
//! when the ticket change commits); an inbox holds at most
//! `--tickets-inbox-max` notifications: the oldest stored ones leave in the
//! same change (the counts follow what was actually removed, so they stay
//! exact).

use super::events::{self, NOTIFICATION};
use super::inbox::{Owner, preferences};
use super::layout::{self, InboxCounts, UserKey};
use super::model::{Metadata, Notification, NotificationType, Person, Ticket};
use super::service::settings;
use crate::core::writer::Change;
use crate::error::ApiError;
use crate::modules::records::{decode, encode};
use serde_json::json;
use std::collections::BTreeSet;
use uuid::Uuid;

/// What raises notifications: the type, the ticket as the change leaves it,
/// who acted, the type's metadata and, for some types, a detail the
/// message names (the decision of an approval, the ticket merged into).
pub struct Cause<'a> {
    /// The type.
    pub kind: NotificationType,
    /// The ticket after the change.
    pub ticket: &'a Ticket,
    /// Who acted ([`super::service::system`] for SLA timers).
    pub actor: &'a Person,
    /// Type-specific fields.
    pub metadata: Metadata,
    /// `approved`/`rejected` for `approvalDecision`, the target's number for `merge`.
    pub detail: Option<String>,
}

/// Raises `cause` for each of `recipients` (except the actor and those who
/// switched the type off) inside `change`; returns who got one.
pub fn notify<'r>(
    change: &mut Change<'_>,
    tenant: &Uuid,
    inbox_max: usize,
    recipients: impl IntoIterator<Item = &'r str>,
    cause: &Cause<'_>,
) -> Result<Vec<String>, ApiError> {
    let recipients: BTreeSet<&str> = recipients
        .into_iter()
        .filter(|user| *user != cause.actor.id)
        .collect();
    if recipients.is_empty() {
        return Ok(Vec::new());
    }
    let action_url = settings(change, tenant)?.action_url(cause.ticket);
    let mut notification = Notification {
        id: String::new(),
        kind: cause.kind,
        ticket_id: cause.ticket.id.to_string(),
        ticket_number: cause.ticket.number.clone(),
        title: cause.ticket.title.clone(),
        message: message(cause),
        priority: cause.kind.priority_for(cause.ticket.priority),
        category: cause.ticket.category.clone(),
        created_at: crate::core::clock::rfc3339_millis(change.now_ms()),
        read: false,
        action_url,
        actor: cause.actor.clone(),
        metadata: cause.metadata.clone(),
    };
    let mut delivered = Vec::new();
    for user in recipients {
        let owner = Owner {
            tenant: *tenant,
            user: UserKey::of(user),
        };
        if !preferences(change, &owner)?.wants(cause.kind) {
            continue;
        }
        deliver(change, tenant, &owner.user, &mut notification, inbox_max)?;
        delivered.push(user.to_string());
    }
    Ok(delivered)
}

fn deliver(
    change: &mut Change<'_>,
    tenant: &Uuid,
    user: &UserKey,
    notification: &mut Notification,
    inbox_max: usize,
) -> Result<(), ApiError> {
    notification.id.clear();
    let mut data = serde_json::to_value(&*notification)
        .map_err(|err| ApiError::internal(format!("encoding a notification: {err}")))?;
    if let Some(fields) = data.as_object_mut() {
        fields.remove("id");
    }
    let actor = json!({ "id": notification.actor.id, "name": notification.actor.name });
    let topic = events::notifications_topic(*tenant, user);
    let event = change.append(&topic, NOTIFICATION, actor, data)?.id();
    notification.id = events::notification_id(event);
    change.put(
        layout::notification(tenant, user, event.0),
        encode(&*notification)?,
    );
    let counts_key = layout::inbox_counts(tenant, user);
    let mut counts = change
        .get(&counts_key)?
        .map(|bytes| InboxCounts::decode(&bytes))
        .unwrap_or_default();
    counts.unread += 1;
    counts.total += 1;
    trim(change, tenant, user, &mut counts, inbox_max)?;
    change.put(counts_key, counts.encode());
    Ok(())
}

/// Removes the oldest stored notifications past `inbox_max`.
fn trim(
    change: &mut Change<'_>,
    tenant: &Uuid,
    user: &UserKey,
    counts: &mut InboxCounts,
    inbox_max: usize,
) -> Result<(), ApiError> {
    let excess = counts.total.saturating_sub(inbox_max.max(1) as u64) as usize;
    if excess == 0 {
        return Ok(());
    }
    for key in change.stored_keys(&layout::inbox(tenant, user), excess)? {
        let Some(bytes) = change.get(&key)? else {
            continue;
        };
        let old: Notification = decode(&bytes)?;
        change.delete(key);
        counts.total -= 1;
        if !old.read {
            counts.unread = counts.unread.saturating_sub(1);
        }
    }
    Ok(())
}

/// The human-readable message of a notification.
pub fn message(cause: &Cause<'_>) -> String {
    use NotificationType::*;
    let number = &cause.ticket.number;
    let actor = &cause.actor.name;
    let meta = &cause.metadata;
    let detail = cause.detail.as_deref().unwrap_or("");
    let sla = meta.sla_type.as_deref().unwrap_or("");
    let target = meta.sla_target.as_deref().unwrap_or("");
    match cause.kind {
        Assignment => format!("You have been assigned ticket {number}"),
        Reassignment => format!("Ticket {number} has been reassigned from you"),
        StatusChange => format!(
            "Ticket {number} changed from {} to {}",
            meta.previous_status.as_deref().unwrap_or(""),
            meta.new_status.as_deref().unwrap_or("")
        ),
        Comment => format!("{actor} commented on ticket {number}"),
        Mention => format!("{actor} mentioned you on ticket {number}"),
        SlaWarning => format!("The {sla} SLA of ticket {number} is due at {target}"),
        SlaBreach => format!("The {sla} SLA of ticket {number} was breached at {target}"),
        Approval => format!("{actor} requests your approval on ticket {number}"),
        ApprovalDecision => format!("{actor} {detail} the approval request on ticket {number}"),
        Escalation => format!(
            "Ticket {number} was escalated to level {}",
            cause.ticket.escalation_level
        ),
        Merge => format!("Ticket {number} was merged into {detail}"),
        Resolution => format!("Ticket {number} was resolved"),
        Reopened => format!("Ticket {number} was reopened"),
        WatchAdded => format!("You were added as a watcher of ticket {number}"),
    }
}
