//! The push hand-off of broadcast posts: push delivery is the customer's,
//! but who gets it is ours. A broadcast post's recipients are the channel's
//! explicit members who may get it: every member of a `public` or `members`
//! channel; of an `entitled` one, those whose stored entitlement is held or
//! was lost less than `--channels-entitlement-grace` (7 days) ago (the
//! spec's grace window: push only, never realtime).
//!
//! They are listed in `communication.channel_post.broadcast` events on the
//! topic `~channels/push` (webhooks deliver them), [`PUSH_PAGE`] recipients
//! an event, computed by a durable timer scheduled in the post's own change:
//! each firing lists one page and schedules the next while members remain.
//!
//! Invariants: a committed broadcast post always gets its hand-off (the
//! timer is in its change; a crash resumes it at the page it had reached);
//! each member is listed once per post, pages in member order, the last one
//! marked `last`; a deleted post stops its hand-off.

use super::layout;
use super::model::{Post, ReadPolicy};
use super::service::{self, Records};
use crate::core::writer::{Change, Timer};
use crate::error::ApiError;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Name of the hand-off timer's handler.
pub const PUSH_TIMER: &str = "channels.push";
/// Most recipients one broadcast event lists (and one step reads).
pub const PUSH_PAGE: usize = 1000;

/// Where a hand-off is: the post, the page next, the member listed last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Progress {
    tenant: Uuid,
    channel: u64,
    post: u64,
    page: u64,
    after: Option<String>,
    actor: Option<String>,
}

/// Schedules the hand-off of a broadcast post (now, after this change).
pub fn schedule(
    change: &mut Change<'_>,
    tenant: &Uuid,
    post: &Post,
    actor: Option<&str>,
) -> Result<(), ApiError> {
    let progress = Progress {
        tenant: *tenant,
        channel: post.channel_id,
        post: post.id,
        page: 1,
        after: None,
        actor: actor.map(str::to_string),
    };
    resume(change, &progress)
}

fn resume(change: &mut Change<'_>, progress: &Progress) -> Result<(), ApiError> {
    let payload = crate::modules::records::encode(progress)?;
    let due = change.now_ms();
    change.schedule(due, PUSH_TIMER, &payload)?;
    Ok(())
}

/// The timer's handler: lists one page of recipients, and schedules the next.
pub fn on_timer(change: &mut Change<'_>, timer: &Timer, grace_ms: u64) -> Result<(), ApiError> {
    let Ok(progress) = serde_json::from_slice::<Progress>(&timer.payload) else {
        tracing::error!(timer = ?timer.id, "a channels push timer has a damaged payload; dropped");
        return Ok(());
    };
    let tenant = progress.tenant;
    let post = match service::post(change, &tenant, progress.channel, progress.post) {
        Ok(post) if !post.is_deleted => post,
        _ => return Ok(()),
    };
    let channel = service::channel(change, &tenant, post.channel_id)?;
    let prefix = layout::members(&tenant, channel.id);
    let after = progress
        .after
        .as_ref()
        .map(|sub| layout::member(&tenant, channel.id, sub));
    let page = change.stored_page(&prefix, after.as_deref(), PUSH_PAGE)?;
    let last = page.len() < PUSH_PAGE;
    let listed = page
        .last()
        .and_then(|(key, _)| layout::sub_after(key, &prefix).map(str::to_string));
    let mut recipients = Vec::with_capacity(page.len());
    for (key, _) in &page {
        let Some(sub) = layout::sub_after(key, &prefix) else {
            continue;
        };
        if reaches(
            change,
            &tenant,
            channel.read_policy,
            channel.entitlement_key.as_deref(),
            sub,
            grace_ms,
        )? {
            recipients.push(sub.to_string());
        }
    }
    let emitter = super::events::Emitter::new(tenant, progress.actor.as_deref());
    emitter.broadcast(change, &post, &recipients, progress.page, last)?;
    if !last {
        let next = Progress {
            page: progress.page + 1,
            after: listed,
            ..progress
        };
        resume(change, &next)?;
    }
    Ok(())
}

/// Whether member `sub` gets the channel's broadcast push now.
fn reaches(
    records: &impl Records,
    tenant: &Uuid,
    policy: ReadPolicy,
    key: Option<&str>,
    sub: &str,
    grace_ms: u64,
) -> Result<bool, ApiError> {
    let (ReadPolicy::Entitled, Some(key)) = (policy, key) else {
        return Ok(true);
    };
    let grants = service::grants(records, tenant, sub)?;
    let now = crate::core::clock::unix_millis();
    Ok(grants.holds_within_grace(key, now, std::time::Duration::from_millis(grace_ms)))
}
