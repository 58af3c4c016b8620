//! Approval requests on tickets: an agent asks a user (the approver) to
//! approve; the approver decides once.
//!
//! Requesting raises `approval` to the approver; deciding raises
//! `approvalDecision` (its message names the decision) to who asked and to
//! the ticket's assignee; both carry `metadata.approvalId`. The approver
//! decides even when they could not otherwise see the ticket (they were
//! asked); anyone else gets 403 (404 when they do not see the ticket).
//!
//! Invariants: an approval goes from `pending` to `approved` or `rejected`
//! exactly once (a second decision is a 409); a ticket holds at most
//! [`MAX_APPROVALS`] approval requests; a merged ticket takes no request or
//! decision (409); each write and its notifications are one change.

use super::layout::{self, Counter};
use super::model::{Metadata, NotificationType, Ticket, id_string};
use super::notify::{self, Cause};
use super::service::{self, Acting, check_user, next_id, now, save as save_record};
use super::ticket;
use crate::core::store::Store;
use crate::core::writer::Change;
use crate::error::{ApiError, ErrorCode};
use crate::modules::records::{check_chars, decode, forbidden, load};
use serde::{Deserialize, Serialize};

/// Most approval requests of one ticket.
pub const MAX_APPROVALS: usize = 100;

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalStatus {
    /// Waiting for the approver.
    Pending,
    /// Approved.
    Approved,
    /// Rejected.
    Rejected,
}

/// An approver's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Approve.
    Approved,
    /// Reject.
    Rejected,
}

impl Verdict {
    fn status(self) -> ApprovalStatus {
        match self {
            Verdict::Approved => ApprovalStatus::Approved,
            Verdict::Rejected => ApprovalStatus::Rejected,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Verdict::Approved => "approved",
            Verdict::Rejected => "rejected",
        }
    }
}

/// An approval request as stored and served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    /// Per-tenant id, served as a string.
    #[serde(with = "id_string")]
    pub id: u64,
    /// The ticket, served as a string.
    #[serde(with = "id_string")]
    pub ticket_id: u64,
    /// Who is asked.
    pub approver_id: String,
    /// Who asked.
    pub requested_by: String,
    /// The request's note.
    pub note: Option<String>,
    /// Where it stands.
    pub status: ApprovalStatus,
    /// Requested (RFC 3339).
    pub created_at: String,
    /// Decided (RFC 3339).
    pub decided_at: Option<String>,
    /// The approver's note with the decision.
    #[serde(default)]
    pub decision_note: Option<String>,
}

/// `POST /ticket/{ticketId}/approvals` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewApproval {
    /// Who is asked.
    pub approver_id: String,
    /// A note for them.
    #[serde(default)]
    pub note: Option<String>,
}

/// `PUT /ticket/{ticketId}/approvals/{approvalId}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// `approved` or `rejected`.
    pub decision: Verdict,
    /// A note with the decision.
    #[serde(default)]
    pub note: Option<String>,
}

fn check_note(acting: &Acting, note: Option<&str>) -> Result<(), ApiError> {
    match note {
        Some(note) => check_chars(
            "note",
            note,
            acting.limits.max_text_chars,
            "tickets-max-text-chars",
        ),
        None => Ok(()),
    }
}

/// An agent asks `approverId` to approve a ticket the agent sees.
pub fn request(
    change: &mut Change<'_>,
    acting: &Acting,
    ticket: u64,
    input: NewApproval,
) -> Result<Approval, ApiError> {
    acting.require_agent()?;
    check_user("approverId", &input.approver_id)?;
    check_note(acting, input.note.as_deref())?;
    let ticket = ticket::writable(change, acting, ticket)?;
    let tenant = acting.tenant;
    if change
        .scan_prefix(&layout::approvals(&tenant, ticket.id))?
        .len()
        >= MAX_APPROVALS
    {
        return Err(ApiError::validation(format!(
            "a ticket holds at most {MAX_APPROVALS} approval requests"
        )));
    }
    let approval = Approval {
        id: next_id(change, &tenant, Counter::Approval)?,
        ticket_id: ticket.id,
        approver_id: input.approver_id,
        requested_by: acting.person.id.clone(),
        note: input.note,
        status: ApprovalStatus::Pending,
        created_at: now(change),
        decided_at: None,
        decision_note: None,
    };
    store(change, acting, &approval)?;
    let recipients = [approval.approver_id.as_str()];
    raise(
        change,
        acting,
        &ticket,
        &approval,
        NotificationType::Approval,
        None,
        recipients,
    )?;
    Ok(approval)
}

/// The approver decides a pending approval.
pub fn decide(
    change: &mut Change<'_>,
    acting: &Acting,
    (ticket, approval): (u64, u64),
    input: Decision,
) -> Result<Approval, ApiError> {
    check_note(acting, input.note.as_deref())?;
    let tenant = acting.tenant;
    let ticket = service::ticket(change, &tenant, ticket)?;
    let mut approval: Approval = load(
        change,
        &layout::approval(&tenant, ticket.id, approval),
        "approval",
    )?;
    if approval.approver_id != acting.person.id {
        if !acting.may_see(&ticket) {
            return Err(crate::modules::records::not_found("ticket"));
        }
        return Err(forbidden("only the approver decides an approval request"));
    }
    ticket.check_not_merged()?;
    if approval.status != ApprovalStatus::Pending {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!("approval {} was already decided", approval.id),
        ));
    }
    approval.status = input.decision.status();
    approval.decided_at = Some(now(change));
    approval.decision_note = input.note;
    store(change, acting, &approval)?;
    let mut recipients = vec![approval.requested_by.as_str()];
    recipients.extend(ticket.assignee.as_deref());
    let detail = Some(input.decision.as_str().to_string());
    raise(
        change,
        acting,
        &ticket,
        &approval,
        NotificationType::ApprovalDecision,
        detail,
        recipients,
    )?;
    Ok(approval)
}

fn store(change: &mut Change<'_>, acting: &Acting, approval: &Approval) -> Result<(), ApiError> {
    let key = layout::approval(&acting.tenant, approval.ticket_id, approval.id);
    save_record(change, key, approval)
}

/// Raises `kind` about `approval` for `recipients`.
fn raise<'r>(
    change: &mut Change<'_>,
    acting: &Acting,
    ticket: &Ticket,
    approval: &Approval,
    kind: NotificationType,
    detail: Option<String>,
    recipients: impl IntoIterator<Item = &'r str>,
) -> Result<(), ApiError> {
    let cause = Cause {
        kind,
        ticket,
        actor: &acting.person,
        metadata: Metadata {
            approval_id: Some(approval.id.to_string()),
            ..Metadata::default()
        },
        detail,
    };
    notify::notify(
        change,
        &acting.tenant,
        acting.limits.inbox_max,
        recipients,
        &cause,
    )?;
    Ok(())
}

/// The approval requests of a ticket the caller sees, oldest first.
pub fn list(store: &Store, acting: &Acting, ticket: u64) -> Result<Vec<Approval>, ApiError> {
    let ticket = service::visible_ticket(store, acting, ticket)?;
    let prefix = layout::approvals(&acting.tenant, ticket.id);
    store
        .scan_blocking(&prefix, None, MAX_APPROVALS)
        .map_err(|err| err.into_api("reading approvals failed"))?
        .iter()
        .map(|(_, value)| decode(value))
        .collect()
}
