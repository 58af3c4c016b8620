//! Discussions, comments and readers as stored, and the rules of their states.
//!
//! Invariants: a discussion is `open`, `locked` (readers may not add, edit,
//! delete or react) or `archived` (read-only for everyone, final); a comment
//! is `pending` (only under `pre` moderation, body seen by moderators only),
//! `published`, `rejected` (seen by moderators only) or `deleted` (a tombstone
//! without body, kept so replies keep their place); counts only ever count
//! published comments; every stored string has a limit in characters,
//! refused with 400 `VALIDATION_ERROR` naming the field and the limit.

use crate::error::{ApiError, ErrorCode};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use uuid::Uuid;

/// Whether new comments need a moderator's approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Moderation {
    /// Comments are published at once.
    #[default]
    None,
    /// Comments wait for approval.
    Pre,
}

/// Where a discussion is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiscussionStatus {
    /// Everything allowed.
    Open,
    /// Readers may only read.
    Locked,
    /// Read-only for everyone, for good.
    Archived,
}

/// A discussion.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Discussion {
    /// Tidings' id.
    pub id: Uuid,
    /// The backend's id (unique per tenant), e.g. `article-123`.
    pub external_id: String,
    /// Title.
    pub title: String,
    /// Page the discussion belongs to.
    pub url: Option<String>,
    /// Moderation mode.
    pub moderation: Moderation,
    /// Lifecycle status.
    pub status: DiscussionStatus,
    /// Reason given for the last lifecycle change.
    pub status_reason: Option<String>,
    /// Published comments (not deleted).
    pub comment_count: u64,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Last change of the discussion record (RFC 3339).
    pub updated_at: String,
}

impl Discussion {
    /// Refuses changes by readers unless the discussion is open, and by
    /// anyone once archived.
    pub fn require_writable(&self, moderator: bool) -> Result<(), ApiError> {
        match self.status {
            DiscussionStatus::Open => Ok(()),
            DiscussionStatus::Locked if moderator => Ok(()),
            DiscussionStatus::Locked => Err(state_conflict("the discussion is locked")),
            DiscussionStatus::Archived => {
                Err(state_conflict("the discussion is archived (read-only)"))
            }
        }
    }
}

/// A comment's moderation and lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CommentStatus {
    /// Waiting for a moderator.
    Pending,
    /// Visible to everyone.
    Published,
    /// Refused by a moderator.
    Rejected,
    /// Removed; a tombstone without body.
    Deleted,
}

/// Who wrote a comment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Author {
    /// Internal user id.
    pub user_id: Uuid,
    /// Display name when known.
    pub display_name: Option<String>,
}

/// Who deleted a comment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletedBy {
    /// Internal user id, `null` for the backend or an operator.
    pub user_id: Option<Uuid>,
    /// `author` or `moderator`.
    pub role: DeleterRole,
}

/// In which capacity a comment was deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeleterRole {
    /// The comment's author.
    Author,
    /// A moderator, the backend or an operator.
    Moderator,
}

/// A comment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Comment {
    /// Id (UUID v7, time ordered).
    pub id: Uuid,
    /// Its discussion.
    pub discussion_id: Uuid,
    /// The comment it replies to.
    pub parent_id: Option<Uuid>,
    /// Who wrote it.
    pub author: Author,
    /// Text; `null` once deleted, and in reader views unless published.
    pub body: Option<String>,
    /// State.
    pub status: CommentStatus,
    /// Pinned by a moderator.
    pub pinned: bool,
    /// Count per reaction.
    pub reactions: BTreeMap<String, u64>,
    /// Direct replies readers can see.
    pub reply_count: u64,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// When it was published (at once, or on approval).
    pub published_at: Option<String>,
    /// Last edit.
    pub edited_at: Option<String>,
    /// Deletion time.
    pub deleted_at: Option<String>,
    /// Who deleted it.
    pub deleted_by: Option<DeletedBy>,
    /// Reason given with a rejection.
    pub moderation_reason: Option<String>,
}

impl Comment {
    /// True when readers see the comment (published, or the tombstone of a
    /// once-published comment).
    pub fn visible_to_readers(&self) -> bool {
        match self.status {
            CommentStatus::Published => true,
            CommentStatus::Deleted => self.published_at.is_some(),
            CommentStatus::Pending | CommentStatus::Rejected => false,
        }
    }

    /// The comment as a reader may see it: the body only while published.
    pub fn reader_view(&self) -> Comment {
        let mut view = self.clone();
        if self.status != CommentStatus::Published {
            view.body = None;
        }
        view.moderation_reason = None;
        view
    }

    /// The view for `moderator`s (everything) or readers.
    pub fn view(&self, moderator: bool) -> Comment {
        if moderator {
            self.clone()
        } else {
            self.reader_view()
        }
    }
}

/// A reader: the stable internal id of a (tenant, external user id).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reader {
    /// Internal user id.
    pub id: Uuid,
    /// The backend's user id.
    pub external_user_id: String,
    /// Last display name given.
    pub display_name: Option<String>,
}

/// A 409 about the state of a discussion or comment.
pub fn state_conflict(message: &str) -> ApiError {
    ApiError::new(ErrorCode::Conflict, message)
}

/// Checks a required text field: not blank, at most `max` characters, no
/// control characters except newlines and tabs when `multiline`.
pub fn require_text(field: &str, value: &str, max: usize, multiline: bool) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::validation(format!("`{field}` must not be empty"))
            .with_details(json!({ "field": field })));
    }
    crate::field_limits::check_chars(field, value, max)?;
    let allowed = |c: char| !c.is_control() || (multiline && matches!(c, '\n' | '\t' | '\r'));
    if !value.chars().all(allowed) {
        return Err(
            ApiError::validation(format!("`{field}` contains control characters"))
                .with_details(json!({ "field": field })),
        );
    }
    Ok(())
}

pub use crate::modules::records::{decode, encode};

#[cfg(test)]
mod tests {
    use super::*;

    fn comment(status: CommentStatus, published: bool) -> Comment {
        Comment {
            id: Uuid::now_v7(),
            discussion_id: Uuid::new_v4(),
            parent_id: None,
            author: Author {
                user_id: Uuid::new_v4(),
                display_name: None,
            },
            body: Some("secret".into()),
            status,
            pinned: false,
            reactions: BTreeMap::new(),
            reply_count: 0,
            created_at: String::new(),
            published_at: published.then(String::new),
            edited_at: None,
            deleted_at: None,
            deleted_by: None,
            moderation_reason: Some("spam".into()),
        }
    }

    #[test]
    fn readers_never_see_an_unpublished_body() {
        for status in [CommentStatus::Pending, CommentStatus::Rejected] {
            let pending = comment(status, false);
            assert!(!pending.visible_to_readers());
            assert_eq!(pending.reader_view().body, None);
            assert_eq!(pending.view(true).body.as_deref(), Some("secret"));
        }
        let published = comment(CommentStatus::Published, true);
        assert!(published.visible_to_readers());
        assert_eq!(published.reader_view().body.as_deref(), Some("secret"));
        assert_eq!(published.reader_view().moderation_reason, None);
        assert!(comment(CommentStatus::Deleted, true).visible_to_readers());
        assert!(!comment(CommentStatus::Deleted, false).visible_to_readers());
    }

    #[test]
    fn text_rules() {
        assert!(require_text("body", "hi\nthere", 10, true).is_ok());
        assert!(require_text("title", "a\nb", 10, false).is_err());
        assert!(require_text("body", "   ", 10, true).is_err());
        assert!(require_text("body", "ééééé", 5, true).is_ok());
        assert!(require_text("body", "éééééé", 5, true).is_err());
        assert!(require_text("body", "bell\u{7}", 10, true).is_err());
        let details = require_text("title", "abc", 2, false)
            .unwrap_err()
            .details
            .unwrap();
        assert_eq!(
            details,
            serde_json::json!({ "field": "title", "maxChars": 2, "actualChars": 3 })
        );
    }

    #[test]
    fn lifecycle_gates_writes() {
        let mut discussion = Discussion {
            id: Uuid::new_v4(),
            external_id: "a".into(),
            title: "t".into(),
            url: None,
            moderation: Moderation::None,
            status: DiscussionStatus::Open,
            status_reason: None,
            comment_count: 0,
            created_at: String::new(),
            updated_at: String::new(),
        };
        assert!(discussion.require_writable(false).is_ok());
        discussion.status = DiscussionStatus::Locked;
        assert!(discussion.require_writable(false).is_err());
        assert!(discussion.require_writable(true).is_ok());
        discussion.status = DiscussionStatus::Archived;
        assert!(discussion.require_writable(true).is_err());
    }
}
