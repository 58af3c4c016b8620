//! The discussions' write operations. Each runs inside one writer change:
//! it reads the current state, checks the rules, writes the new state and
//! appends its events, so state and events commit together or not at all.

use super::actor::Acting;
use super::events::Emitter;
use super::layout;
use super::model::{
    Author, Comment, CommentStatus, DeletedBy, DeleterRole, Discussion, DiscussionStatus,
    Moderation, decode, encode, require_text, state_conflict,
};
use crate::core::writer::Change;
use crate::error::{ApiError, ErrorCode};
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use uuid::Uuid;

/// Longest external id of a discussion.
pub const MAX_EXTERNAL_ID: usize = 200;
/// Longest URL of a discussion.
pub const MAX_URL: usize = 2000;
/// Longest reason of a moderation or lifecycle action.
pub const MAX_REASON: usize = 500;
/// Longest reaction name (e.g. an emoji or `like`).
pub const MAX_REACTION: usize = 32;

/// Limits of the discussions module.
#[derive(Debug, Clone, Copy)]
pub struct DiscussionLimits {
    /// Longest comment body, in characters.
    pub max_comment_chars: usize,
    /// Longest title, in characters.
    pub max_title_chars: usize,
    /// Most distinct reactions on one comment.
    pub max_reaction_kinds: usize,
    /// Most comments in one page.
    pub max_page: usize,
}

/// What every write operation runs with: the tenant acted on and the limits.
#[derive(Clone)]
pub struct Context {
    /// The tenant.
    pub tenant: Uuid,
    /// Module limits.
    pub limits: DiscussionLimits,
}

impl Context {
    fn emitter<'a>(&'a self, discussion: &Discussion, acting: &'a Acting) -> Emitter<'a> {
        Emitter::new(self.tenant, discussion, acting)
    }
}

/// A new discussion.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewDiscussion {
    /// The backend's id.
    pub external_id: String,
    /// Title.
    pub title: String,
    /// Page URL.
    #[serde(default)]
    pub url: Option<String>,
    /// Moderation mode (default `none`).
    #[serde(default)]
    pub moderation: Moderation,
}

/// A lifecycle action on a discussion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleAction {
    /// open → locked.
    Lock,
    /// locked → open.
    Unlock,
    /// open or locked → archived.
    Archive,
}

/// A moderation action on a comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moderate {
    /// pending → published.
    Approve,
    /// pending → rejected.
    Reject,
    /// Pin a published comment.
    Pin,
    /// Unpin it.
    Unpin,
}

fn now() -> String {
    crate::core::clock::rfc3339_millis(crate::core::clock::unix_millis())
}

fn not_found(what: &str) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("no such {what}"))
}

/// Reads a discussion inside a change.
pub fn load_discussion(
    change: &Change<'_>,
    tenant: &Uuid,
    id: &Uuid,
) -> Result<Discussion, ApiError> {
    let bytes = change
        .get(&layout::discussion(tenant, id))?
        .ok_or_else(|| not_found("discussion"))?;
    decode(&bytes)
}

fn save_discussion(
    change: &mut Change<'_>,
    tenant: &Uuid,
    discussion: &Discussion,
) -> Result<(), ApiError> {
    change.put(
        layout::discussion(tenant, &discussion.id),
        encode(discussion)?,
    );
    Ok(())
}

/// Reads a comment of `discussion` inside a change.
fn load_comment(
    change: &Change<'_>,
    tenant: &Uuid,
    discussion: &Uuid,
    id: &Uuid,
) -> Result<Comment, ApiError> {
    let comment: Comment = change
        .get(&layout::comment(tenant, id))?
        .map(|bytes| decode(&bytes))
        .transpose()?
        .filter(|comment: &Comment| comment.discussion_id == *discussion)
        .ok_or_else(|| not_found("comment in this discussion"))?;
    Ok(comment)
}

/// Stores a comment, with its pending-index row while it is pending (a
/// comment leaving `pending` goes through [`leave_pending`]).
fn save_comment(change: &mut Change<'_>, tenant: &Uuid, comment: &Comment) -> Result<(), ApiError> {
    change.put(layout::comment(tenant, &comment.id), encode(comment)?);
    if comment.status == CommentStatus::Pending {
        change.put(
            layout::pending_comment(tenant, &comment.id),
            comment.discussion_id.as_bytes().to_vec(),
        );
    }
    Ok(())
}

/// Removes the pending-index row of a comment that was pending, in the
/// change that gives it another status.
fn leave_pending(change: &mut Change<'_>, tenant: &Uuid, comment: &Comment) {
    change.delete(layout::pending_comment(tenant, &comment.id));
}

/// Creates a discussion; 409 when the external id is taken.
pub fn create_discussion(
    change: &mut Change<'_>,
    ctx: &Context,
    input: NewDiscussion,
) -> Result<Discussion, ApiError> {
    let tenant = &ctx.tenant;
    require_text("externalId", &input.external_id, MAX_EXTERNAL_ID, false)?;
    require_text("title", &input.title, ctx.limits.max_title_chars, false)?;
    if let Some(url) = &input.url {
        require_text("url", url, MAX_URL, false)?;
    }
    let index = layout::external(tenant, &input.external_id);
    if let Some(existing) = change.get(&index)? {
        let existing = Uuid::from_slice(&existing).unwrap_or_default();
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "a discussion with this externalId exists",
        )
        .with_details(json!({ "discussionId": existing })));
    }
    let at = now();
    let discussion = Discussion {
        id: Uuid::new_v4(),
        external_id: input.external_id,
        title: input.title,
        url: input.url,
        moderation: input.moderation,
        status: DiscussionStatus::Open,
        status_reason: None,
        comment_count: 0,
        created_at: at.clone(),
        updated_at: at,
    };
    change.put(index, discussion.id.as_bytes().to_vec());
    save_discussion(change, tenant, &discussion)?;
    Ok(discussion)
}

/// Applies a lifecycle action and emits its event.
pub fn change_lifecycle(
    change: &mut Change<'_>,
    ctx: &Context,
    id: &Uuid,
    action: LifecycleAction,
    reason: Option<String>,
    acting: &Acting,
) -> Result<Discussion, ApiError> {
    let tenant = &ctx.tenant;
    acting.require_moderator()?;
    if let Some(reason) = &reason {
        require_text("reason", reason, MAX_REASON, true)?;
    }
    let mut discussion = load_discussion(change, tenant, id)?;
    let (from_ok, to, event_type) = match action {
        LifecycleAction::Lock => (
            discussion.status == DiscussionStatus::Open,
            DiscussionStatus::Locked,
            "discussion_locked",
        ),
        LifecycleAction::Unlock => (
            discussion.status == DiscussionStatus::Locked,
            DiscussionStatus::Open,
            "discussion_unlocked",
        ),
        LifecycleAction::Archive => (
            discussion.status != DiscussionStatus::Archived,
            DiscussionStatus::Archived,
            "discussion_archived",
        ),
    };
    if !from_ok {
        return Err(state_conflict(&format!(
            "cannot {} a discussion that is {}",
            format!("{action:?}").to_lowercase(),
            json!(discussion.status).as_str().unwrap_or_default()
        )));
    }
    let at = now();
    discussion.status = to;
    discussion.status_reason = reason;
    discussion.updated_at = at.clone();
    save_discussion(change, tenant, &discussion)?;
    ctx.emitter(&discussion, acting)
        .lifecycle(change, event_type, &discussion, &at)?;
    Ok(discussion)
}

/// A new comment.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewComment {
    /// Text.
    pub body: String,
    /// The comment it replies to.
    #[serde(default)]
    pub parent_id: Option<Uuid>,
    /// The reader's display name (kept for later comments too).
    #[serde(default)]
    pub display_name: Option<String>,
}

/// Posts a comment (pending under `pre` moderation unless a moderator posts).
pub fn post_comment(
    change: &mut Change<'_>,
    ctx: &Context,
    discussion_id: &Uuid,
    input: NewComment,
    acting: &Acting,
) -> Result<Comment, ApiError> {
    let tenant = &ctx.tenant;
    let reader = acting.require_reader()?;
    require_text("body", &input.body, ctx.limits.max_comment_chars, true)?;
    let mut discussion = load_discussion(change, tenant, discussion_id)?;
    discussion.require_writable(acting.moderator)?;
    let parent = match &input.parent_id {
        Some(id) => {
            let parent = load_comment(change, tenant, discussion_id, id)?;
            if parent.status != CommentStatus::Published {
                return Err(state_conflict("replies go to published comments only"));
            }
            Some(parent)
        }
        None => None,
    };
    let at = now();
    let pending = discussion.moderation == Moderation::Pre && !acting.moderator;
    let comment = Comment {
        id: Uuid::now_v7(),
        discussion_id: *discussion_id,
        parent_id: input.parent_id,
        author: Author {
            user_id: reader.id,
            display_name: reader.display_name.clone(),
        },
        body: Some(input.body),
        status: if pending {
            CommentStatus::Pending
        } else {
            CommentStatus::Published
        },
        pinned: false,
        reactions: BTreeMap::new(),
        reply_count: 0,
        created_at: at.clone(),
        published_at: (!pending).then_some(at),
        edited_at: None,
        deleted_at: None,
        deleted_by: None,
        moderation_reason: None,
    };
    change.put(
        layout::child(
            tenant,
            discussion_id,
            comment.parent_id.as_ref(),
            &comment.id,
        ),
        Vec::new(),
    );
    save_comment(change, tenant, &comment)?;
    let emitter = ctx.emitter(&discussion, acting);
    emitter.comment(change, "comment_created", &comment)?;
    if !pending {
        publish_effects(change, tenant, &mut discussion, parent, &comment, &emitter)?;
    }
    Ok(comment)
}

/// What a comment becoming visible changes: counts, and the reply notification.
fn publish_effects(
    change: &mut Change<'_>,
    tenant: &Uuid,
    discussion: &mut Discussion,
    parent: Option<Comment>,
    comment: &Comment,
    emitter: &Emitter<'_>,
) -> Result<(), ApiError> {
    discussion.comment_count += 1;
    save_discussion(change, tenant, discussion)?;
    if let Some(mut parent) = parent {
        parent.reply_count += 1;
        save_comment(change, tenant, &parent)?;
        emitter.reply_notification(change, &parent, comment)?;
    }
    Ok(())
}

/// Edits a comment's body (its author or a moderator).
pub fn edit_comment(
    change: &mut Change<'_>,
    ctx: &Context,
    discussion_id: &Uuid,
    comment_id: &Uuid,
    body: String,
    acting: &Acting,
) -> Result<Comment, ApiError> {
    let tenant = &ctx.tenant;
    require_text("body", &body, ctx.limits.max_comment_chars, true)?;
    let (discussion, mut comment) =
        writable_comment(change, tenant, discussion_id, comment_id, acting)?;
    if matches!(
        comment.status,
        CommentStatus::Deleted | CommentStatus::Rejected
    ) {
        return Err(state_conflict(
            "deleted and rejected comments cannot be edited",
        ));
    }
    comment.body = Some(body);
    comment.edited_at = Some(now());
    save_comment(change, tenant, &comment)?;
    ctx.emitter(&discussion, acting)
        .comment(change, "comment_edited", &comment)?;
    Ok(comment)
}

/// The discussion and comment an author or moderator is about to change.
fn writable_comment(
    change: &Change<'_>,
    tenant: &Uuid,
    discussion_id: &Uuid,
    comment_id: &Uuid,
    acting: &Acting,
) -> Result<(Discussion, Comment), ApiError> {
    let discussion = load_discussion(change, tenant, discussion_id)?;
    let comment = load_comment(change, tenant, discussion_id, comment_id)?;
    if !acting.may_change(comment.author.user_id) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "only the comment's author or a moderator may do this",
        ));
    }
    discussion.require_writable(acting.moderator)?;
    Ok((discussion, comment))
}

/// Deletes a comment (a tombstone stays); deleting twice changes nothing.
pub fn delete_comment(
    change: &mut Change<'_>,
    ctx: &Context,
    discussion_id: &Uuid,
    comment_id: &Uuid,
    acting: &Acting,
) -> Result<Comment, ApiError> {
    let tenant = &ctx.tenant;
    let (mut discussion, mut comment) =
        writable_comment(change, tenant, discussion_id, comment_id, acting)?;
    if comment.status == CommentStatus::Deleted {
        return Ok(comment);
    }
    let own = acting.user_id() == Some(comment.author.user_id);
    let deleted_by = DeletedBy {
        user_id: acting.user_id(),
        role: if own {
            DeleterRole::Author
        } else {
            DeleterRole::Moderator
        },
    };
    if comment.status == CommentStatus::Published {
        discussion.comment_count = discussion.comment_count.saturating_sub(1);
        save_discussion(change, tenant, &discussion)?;
    }
    if comment.status == CommentStatus::Pending {
        leave_pending(change, tenant, &comment);
    }
    comment.status = CommentStatus::Deleted;
    comment.body = None;
    comment.pinned = false;
    comment.deleted_at = Some(now());
    comment.deleted_by = Some(deleted_by.clone());
    save_comment(change, tenant, &comment)?;
    ctx.emitter(&discussion, acting)
        .deleted(change, &comment, &deleted_by)?;
    Ok(comment)
}

/// Approves, rejects, pins or unpins a comment (moderators only). Pinning a
/// pinned comment (or unpinning an unpinned one) changes nothing.
pub fn moderate(
    change: &mut Change<'_>,
    ctx: &Context,
    discussion_id: &Uuid,
    comment_id: &Uuid,
    action: Moderate,
    reason: Option<String>,
    acting: &Acting,
) -> Result<Comment, ApiError> {
    let tenant = &ctx.tenant;
    acting.require_moderator()?;
    if let Some(reason) = &reason {
        require_text("reason", reason, MAX_REASON, true)?;
    }
    let mut discussion = load_discussion(change, tenant, discussion_id)?;
    discussion.require_writable(true)?;
    let mut comment = load_comment(change, tenant, discussion_id, comment_id)?;
    let emitter = ctx.emitter(&discussion, acting);
    match action {
        Moderate::Approve | Moderate::Reject if comment.status != CommentStatus::Pending => Err(
            state_conflict("only pending comments can be approved or rejected"),
        ),
        Moderate::Approve => {
            leave_pending(change, tenant, &comment);
            comment.status = CommentStatus::Published;
            comment.published_at = Some(now());
            save_comment(change, tenant, &comment)?;
            emitter.comment(change, "comment_approved", &comment)?;
            let parent = match &comment.parent_id {
                Some(id) => Some(load_comment(change, tenant, discussion_id, id)?),
                None => None,
            };
            publish_effects(change, tenant, &mut discussion, parent, &comment, &emitter)?;
            Ok(comment)
        }
        Moderate::Reject => {
            leave_pending(change, tenant, &comment);
            comment.status = CommentStatus::Rejected;
            comment.moderation_reason = reason;
            save_comment(change, tenant, &comment)?;
            emitter.rejected(change, &comment, comment.moderation_reason.as_deref())?;
            Ok(comment)
        }
        Moderate::Pin | Moderate::Unpin => {
            let pin = action == Moderate::Pin;
            if pin && comment.status != CommentStatus::Published {
                return Err(state_conflict("only published comments can be pinned"));
            }
            if comment.pinned != pin {
                comment.pinned = pin;
                save_comment(change, tenant, &comment)?;
                let event_type = if pin {
                    "comment_pinned"
                } else {
                    "comment_unpinned"
                };
                emitter.comment(change, event_type, &comment)?;
            }
            Ok(comment)
        }
    }
}

/// The outcome of a reaction toggle.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Toggled {
    /// The comment.
    pub comment_id: Uuid,
    /// The reaction.
    pub reaction: String,
    /// True when the reader now has this reaction on the comment.
    pub active: bool,
    /// Readers with this reaction.
    pub count: u64,
    /// Count per reaction.
    pub reactions: BTreeMap<String, u64>,
}

/// Adds the reader's reaction, or removes it when present.
pub fn toggle_reaction(
    change: &mut Change<'_>,
    ctx: &Context,
    discussion_id: &Uuid,
    comment_id: &Uuid,
    reaction: String,
    acting: &Acting,
) -> Result<Toggled, ApiError> {
    let tenant = &ctx.tenant;
    let reader = acting.require_reader()?;
    require_text("reaction", &reaction, MAX_REACTION, false)?;
    if reaction.len() > MAX_REACTION {
        return Err(ApiError::validation(format!(
            "`reaction` is at most {MAX_REACTION} bytes"
        )));
    }
    let discussion = load_discussion(change, tenant, discussion_id)?;
    discussion.require_writable(acting.moderator)?;
    let mut comment = load_comment(change, tenant, discussion_id, comment_id)?;
    if comment.status != CommentStatus::Published {
        return Err(state_conflict("reactions go to published comments only"));
    }
    let key = layout::reaction(tenant, comment_id, &reader.id, &reaction);
    let active = change.get(&key)?.is_none();
    let count = comment.reactions.entry(reaction.clone()).or_insert(0);
    if active {
        *count += 1;
        change.put(key, Vec::new());
    } else {
        *count = count.saturating_sub(1);
        change.delete(key);
    }
    comment.reactions.retain(|_, count| *count > 0);
    if comment.reactions.len() > ctx.limits.max_reaction_kinds {
        return Err(ApiError::validation(format!(
            "a comment holds at most {} different reactions",
            ctx.limits.max_reaction_kinds
        )));
    }
    save_comment(change, tenant, &comment)?;
    ctx.emitter(&discussion, acting)
        .reaction(change, &comment, &reaction, active)?;
    Ok(Toggled {
        comment_id: comment.id,
        count: comment.reactions.get(&reaction).copied().unwrap_or(0),
        reactions: comment.reactions,
        reaction,
        active,
    })
}
