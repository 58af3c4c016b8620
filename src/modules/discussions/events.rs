//! The events of a discussion (spec 000) and their payloads.
//!
//! Every event goes to the discussion's own topic `~discussion/<id>` (the
//! module's namespace), in the same atomic change as the state it describes;
//! the writer stages it for the tenant's webhook endpoints in that change (the
//! module declares [`event_data`] as the body). Its `data` is the payload the
//! spec's clients receive as SSE `data:` and webhooks as their POST body:
//!
//! * comment and reaction events carry `originatedBy: {userId}` (internal
//!   id; `null` when the backend or an operator acts);
//! * `reaction_toggled` also carries `externalUserId`;
//! * lifecycle events carry `actor`, `at` and `reason`;
//! * `notification_reply` carries `recipientUserId` and neither of the above.
//!
//! Invariant: a comment inside a payload is always its reader view, so a
//! pending comment's body never reaches a stream.

use super::actor::Acting;
use super::model::{Comment, DeletedBy, Discussion};
use crate::core::log::TopicRef;
use crate::core::log::namespace::Namespace;
use crate::core::writer::Change;
use crate::error::ApiError;
#[cfg(doc)]
use crate::transport::webhook::event_data;
use serde_json::{Value, json};
use uuid::Uuid;

/// Name of the module's topic namespace: `~discussion/<id>`.
const NAMESPACE_NAME: &str = "discussion";

/// The module's topic namespace.
pub const NAMESPACE: Namespace = Namespace::Module(NAMESPACE_NAME);

/// The topic carrying a discussion's events.
pub fn topic(tenant: Uuid, discussion: &Uuid) -> TopicRef {
    TopicRef::internal(tenant, NAMESPACE_NAME, &discussion.to_string())
}

/// Appends events of one discussion inside a change.
pub struct Emitter<'a> {
    topic: TopicRef,
    discussion_id: Uuid,
    acting: &'a Acting,
}

impl<'a> Emitter<'a> {
    /// An emitter for `discussion`'s events caused by `acting`.
    pub fn new(tenant: Uuid, discussion: &Discussion, acting: &'a Acting) -> Self {
        Self {
            topic: topic(tenant, &discussion.id),
            discussion_id: discussion.id,
            acting,
        }
    }

    fn emit(&self, change: &mut Change<'_>, event_type: &str, data: Value) -> Result<(), ApiError> {
        let actor = match self.acting.user_id() {
            Some(user) => Value::String(user.to_string()),
            None => Value::String(self.acting.name.clone()),
        };
        change.append(&self.topic, event_type, actor, data)?;
        Ok(())
    }

    fn originated_by(&self) -> Value {
        json!({ "userId": self.acting.user_id() })
    }

    /// `comment_created`, `comment_edited`, `comment_approved`,
    /// `comment_pinned` or `comment_unpinned`: the comment's reader view.
    pub fn comment(
        &self,
        change: &mut Change<'_>,
        event_type: &str,
        comment: &Comment,
    ) -> Result<(), ApiError> {
        let data = json!({
            "discussionId": self.discussion_id,
            "commentId": comment.id,
            "comment": comment.reader_view(),
            "originatedBy": self.originated_by(),
        });
        self.emit(change, event_type, data)
    }

    /// `comment_deleted` with `deletedBy`.
    pub fn deleted(
        &self,
        change: &mut Change<'_>,
        comment: &Comment,
        deleted_by: &DeletedBy,
    ) -> Result<(), ApiError> {
        let data = json!({
            "discussionId": self.discussion_id,
            "commentId": comment.id,
            "parentId": comment.parent_id,
            "deletedBy": deleted_by,
            "originatedBy": self.originated_by(),
        });
        self.emit(change, "comment_deleted", data)
    }

    /// `comment_rejected` (no body: it was never public).
    pub fn rejected(
        &self,
        change: &mut Change<'_>,
        comment: &Comment,
        reason: Option<&str>,
    ) -> Result<(), ApiError> {
        let data = json!({
            "discussionId": self.discussion_id,
            "commentId": comment.id,
            "parentId": comment.parent_id,
            "reason": reason,
            "originatedBy": self.originated_by(),
        });
        self.emit(change, "comment_rejected", data)
    }

    /// `reaction_toggled`, with the reacting reader's external id.
    pub fn reaction(
        &self,
        change: &mut Change<'_>,
        comment: &Comment,
        reaction: &str,
        active: bool,
    ) -> Result<(), ApiError> {
        let external = self
            .acting
            .reader
            .as_ref()
            .map(|reader| reader.external_user_id.clone());
        let data = json!({
            "discussionId": self.discussion_id,
            "commentId": comment.id,
            "reaction": reaction,
            "active": active,
            "count": comment.reactions.get(reaction).copied().unwrap_or(0),
            "reactions": comment.reactions,
            "originatedBy": self.originated_by(),
            "externalUserId": external,
        });
        self.emit(change, "reaction_toggled", data)
    }

    /// `discussion_locked`, `discussion_unlocked` or `discussion_archived`.
    pub fn lifecycle(
        &self,
        change: &mut Change<'_>,
        event_type: &str,
        discussion: &Discussion,
        at: &str,
    ) -> Result<(), ApiError> {
        let data = json!({
            "discussionId": self.discussion_id,
            "status": discussion.status,
            "actor": { "userId": self.acting.user_id(), "name": self.acting.name },
            "at": at,
            "reason": discussion.status_reason,
        });
        self.emit(change, event_type, data)
    }

    /// `notification_reply` when `reply` (now visible) answers another
    /// reader's comment `parent`.
    pub fn reply_notification(
        &self,
        change: &mut Change<'_>,
        parent: &Comment,
        reply: &Comment,
    ) -> Result<(), ApiError> {
        if parent.author.user_id == reply.author.user_id {
            return Ok(());
        }
        let data = json!({
            "discussionId": self.discussion_id,
            "recipientUserId": parent.author.user_id,
            "commentId": reply.id,
            "parentId": parent.id,
            "replyAuthor": reply.author,
            "excerpt": reply.body.as_deref().map(excerpt),
        });
        self.emit(change, "notification_reply", data)
    }
}

/// Characters of a reply quoted in its notification.
const EXCERPT_CHARS: usize = 140;

fn excerpt(body: &str) -> String {
    let mut chars = body.chars();
    let mut out: String = chars.by_ref().take(EXCERPT_CHARS).collect();
    if chars.next().is_some() {
        out.push('…');
    }
    out
}
