//! The discussions' read side: discussions by id or external id, and comment
//! threads page by page. Reads see committed state.
//!
//! Invariant: readers get reader views only (no pending or rejected
//! comments, no unpublished body); moderators see everything.

use super::layout;
use super::model::{Comment, CommentStatus, Discussion, decode};
use crate::core::store::Store;
use crate::error::{ApiError, ErrorCode};
use serde::Serialize;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use uuid::Uuid;

fn store_error(err: crate::core::store::StoreError) -> ApiError {
    err.into_api("reading discussions failed")
}

fn not_found(what: &str) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("no such {what}"))
}

/// A discussion by id (blocking).
pub fn discussion(store: &Store, tenant: &Uuid, id: &Uuid) -> Result<Discussion, ApiError> {
    let bytes = store
        .get_blocking(&layout::discussion(tenant, id))
        .map_err(store_error)?
        .ok_or_else(|| not_found("discussion"))?;
    decode(&bytes)
}

/// A discussion by the backend's external id (blocking).
pub fn discussion_by_external(
    store: &Store,
    tenant: &Uuid,
    external_id: &str,
) -> Result<Discussion, ApiError> {
    let id = store
        .get_blocking(&layout::external(tenant, external_id))
        .map_err(store_error)?
        .and_then(|bytes| Uuid::from_slice(&bytes).ok())
        .ok_or_else(|| not_found("discussion with this externalId"))?;
    discussion(store, tenant, &id)
}

/// A comment of `discussion` as `moderator` or a reader may see it (blocking).
pub fn comment(
    store: &Store,
    tenant: &Uuid,
    discussion: &Uuid,
    id: &Uuid,
    moderator: bool,
) -> Result<Comment, ApiError> {
    store
        .get_blocking(&layout::comment(tenant, id))
        .map_err(store_error)?
        .map(|bytes| decode::<Comment>(&bytes))
        .transpose()?
        .filter(|c| c.discussion_id == *discussion && (moderator || c.visible_to_readers()))
        .map(|c| c.view(moderator))
        .ok_or_else(|| not_found("comment in this discussion"))
}

/// Which comments a page lists.
#[derive(Debug, Clone)]
pub struct PageRequest {
    /// Replies of this comment; top-level comments when `None`.
    pub parent: Option<Uuid>,
    /// Continue after this comment id.
    pub after: Option<Uuid>,
    /// Most comments returned.
    pub limit: usize,
    /// Moderator view.
    pub moderator: bool,
}

/// A page of comments, oldest first.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommentPage {
    /// The comments.
    pub comments: Vec<Comment>,
    /// Cursor of the next page, `null` at the end.
    pub next_cursor: Option<Uuid>,
}

/// Most entries of the children index read per store scan.
const SCAN: usize = 256;

/// One page of a discussion's comments under one parent (blocking). The
/// page looks one visible comment ahead, so `nextCursor` is set only when
/// another comment the caller may see follows.
pub fn comments(
    store: &Store,
    tenant: &Uuid,
    discussion: &Uuid,
    request: &PageRequest,
) -> Result<CommentPage, ApiError> {
    let prefix = layout::children(tenant, discussion, request.parent.as_ref());
    let mut after = request
        .after
        .map(|id| layout::child(tenant, discussion, request.parent.as_ref(), &id));
    let mut comments = Vec::new();
    while comments.len() <= request.limit {
        let entries = store
            .scan_blocking(
                &prefix,
                after.as_deref(),
                SCAN.min(request.limit + 1 - comments.len()),
            )
            .map_err(store_error)?;
        let Some((last, _)) = entries.last() else {
            break;
        };
        after = Some(last.to_vec());
        for (key, _) in &entries {
            let Some(id) = layout::last_id(key) else {
                continue;
            };
            match self::comment(store, tenant, discussion, &id, request.moderator) {
                Ok(comment) => comments.push(comment),
                Err(err) if err.code == ErrorCode::NotFound => {}
                Err(err) => return Err(err),
            }
        }
    }
    let more = comments.len() > request.limit;
    comments.truncate(request.limit);
    Ok(CommentPage {
        next_cursor: more.then(|| comments.last().map(|c| c.id)).flatten(),
        comments,
    })
}

/// The discussion a pending comment belongs to, as the moderation queue shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscussionRef {
    /// Tidings' id.
    pub id: Uuid,
    /// The backend's id.
    pub external_id: String,
    /// Title.
    pub title: String,
    /// Lifecycle status (an archived discussion's comments can no longer be moderated).
    pub status: super::model::DiscussionStatus,
}

impl DiscussionRef {
    fn of(discussion: &Discussion) -> Self {
        Self {
            id: discussion.id,
            external_id: discussion.external_id.clone(),
            title: discussion.title.clone(),
            status: discussion.status,
        }
    }
}

/// A comment awaiting moderation, with its discussion.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingComment {
    /// The comment (moderator view: with its body).
    #[serde(flatten)]
    pub comment: Comment,
    /// Its discussion.
    pub discussion: DiscussionRef,
}

/// A page of a tenant's pending comments, oldest first.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingPage {
    /// The comments.
    pub comments: Vec<PendingComment>,
    /// Cursor of the next page, `null` at the end.
    pub next_cursor: Option<Uuid>,
}

/// One page of a tenant's comments awaiting moderation, across its
/// discussions, oldest first, after the comment `after` (blocking). Reads
/// `limit + 1` index rows, each comment and (once per page) each discussion;
/// a row whose comment is missing or no longer pending is skipped, so the
/// page lists pending comments only (and may hold fewer than `limit`).
pub fn pending_comments(
    store: &Store,
    tenant: &Uuid,
    after: Option<Uuid>,
    limit: usize,
) -> Result<PendingPage, ApiError> {
    let prefix = layout::pending_comments(tenant);
    let after = after.map(|id| layout::pending_comment(tenant, &id));
    let rows = store
        .scan_blocking(&prefix, after.as_deref(), limit + 1)
        .map_err(store_error)?;
    let more = rows.len() > limit;
    let mut discussions: HashMap<Uuid, Discussion> = HashMap::new();
    let mut comments = Vec::with_capacity(limit.min(rows.len()));
    for (key, value) in rows.iter().take(limit) {
        let (Some(id), Ok(discussion_id)) = (layout::last_id(key), Uuid::from_slice(value)) else {
            continue;
        };
        // A row whose comment is gone or no longer pending is stale: passed over.
        let Some(comment) = store
            .get_blocking(&layout::comment(tenant, &id))
            .map_err(store_error)?
            .map(|bytes| decode::<Comment>(&bytes))
            .transpose()?
            .filter(|c| c.discussion_id == discussion_id && c.status == CommentStatus::Pending)
        else {
            continue;
        };
        let parent = match discussions.entry(discussion_id) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(slot) => slot.insert(discussion(store, tenant, &discussion_id)?),
        };
        comments.push(PendingComment {
            comment: comment.view(true),
            discussion: DiscussionRef::of(parent),
        });
    }
    let last_read = rows.get(limit.saturating_sub(1));
    Ok(PendingPage {
        next_cursor: more
            .then(|| last_read.and_then(|(key, _)| layout::last_id(key)))
            .flatten(),
        comments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::store::WriteBatch;
    use crate::modules::discussions::model::{Author, encode};
    use std::collections::BTreeMap;

    fn comment(discussion: Uuid, status: CommentStatus) -> Comment {
        Comment {
            id: Uuid::now_v7(),
            discussion_id: discussion,
            parent_id: None,
            author: Author {
                user_id: Uuid::new_v4(),
                display_name: None,
            },
            body: Some("text".into()),
            status,
            pinned: false,
            reactions: BTreeMap::new(),
            reply_count: 0,
            created_at: "2024-01-01T00:00:00.000Z".into(),
            published_at: None,
            edited_at: None,
            deleted_at: None,
            deleted_by: None,
            moderation_reason: None,
        }
    }

    #[test]
    fn pending_page_skips_rows_of_missing_or_decided_comments() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db"), 8 << 20).unwrap();
        let (tenant, discussion) = (Uuid::new_v4(), Uuid::new_v4());
        let published = comment(discussion, CommentStatus::Published);
        let missing = Uuid::now_v7();
        let mut batch = WriteBatch::default();
        batch.put(
            layout::comment(&tenant, &published.id),
            encode(&published).unwrap(),
        );
        for id in [published.id, missing] {
            batch.put(layout::pending_comment(&tenant, &id), discussion.as_bytes());
        }
        store.apply_blocking(&batch).unwrap();
        let page = pending_comments(&store, &tenant, None, 10).unwrap();
        assert!(page.comments.is_empty());
        assert_eq!(page.next_cursor, None);
    }
}
