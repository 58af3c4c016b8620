//! The one-time backfill of the pending-comment index.
//!
//! Builds before the index stored `pending` comments without their `p` row
//! (see [`super::layout`]), so the moderation queue would not list them. On
//! start, unless the `pending-index` record exists, a background task walks
//! every tenant's comment rows in key order, at most [`PAGE`] rows read per
//! writer change, and writes the `p` row of each comment that is `pending`
//! as that change sees it; the change that reads the last row also writes
//! the `pending-index` record. A fresh data directory gets the record in
//! its first change.
//!
//! Invariants: the module's key space is walked one tenant at a time, each
//! tenant's comment rows after the last one read, so a walk reads each row
//! once; a comment's status is judged inside the change that writes its
//! row (a comment approved, rejected or deleted in an earlier change, even
//! one of the same group not yet stored, gets no row; comments only become
//! pending when created, in the change that writes their row, so nothing
//! the walk does not see needs one); writing a row that exists changes
//! nothing, so a walk cut short (shutdown, crash) is simply redone from the
//! start at the next start, and the record is written only by a walk that
//! reached the end; the task stops between changes once the server stops,
//! and a failed step is retried, waiting longer each time (logged).

use super::DiscussionsApi;
use super::layout;
use super::model::CommentStatus;
use crate::core::lifecycle::Lifecycle;
use crate::core::store::Store;
use crate::core::writer::{Change, Footprint, Writer};
use crate::error::ApiError;
use serde::Deserialize;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// Most comment rows one change reads (each tenant visited also counts one).
pub const PAGE: usize = 1_000;
/// Wait after a first failed step.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Longest wait between retries of a failing step.
const LAST_RETRY: Duration = Duration::from_secs(60);

/// How a backfill ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The `pending-index` record existed: nothing was read.
    AlreadyComplete,
    /// The walk reached the end and wrote the record; `rows` index rows
    /// were missing and written.
    Completed {
        /// Index rows written.
        rows: usize,
    },
    /// The server stopped first; the next start walks again.
    Stopped {
        /// Index rows written before the stop.
        rows: usize,
    },
}

/// Runs the backfill of the module's store (the module's background task)
/// and logs what it did.
pub async fn run(api: Arc<DiscussionsApi>) {
    let core = &api.core;
    match backfill(&core.writer, core.hub.store(), &core.lifecycle, PAGE).await {
        Outcome::AlreadyComplete => {}
        Outcome::Completed { rows } => {
            tracing::info!(rows, "pending-comment index backfilled");
        }
        Outcome::Stopped { rows } => tracing::info!(
            rows,
            "pending-comment index backfill interrupted by shutdown; it runs again at the next start"
        ),
    }
}

/// The backfill, reading at most `page` comment rows per change.
pub async fn backfill(
    writer: &Writer,
    store: &Store,
    lifecycle: &Lifecycle,
    page: usize,
) -> Outcome {
    let complete = retrying(lifecycle, || is_complete(store)).await;
    match complete {
        None => return Outcome::Stopped { rows: 0 },
        Some(true) => return Outcome::AlreadyComplete,
        Some(false) => {}
    }
    let mut from = Start::First;
    let mut rows = 0;
    loop {
        if lifecycle.is_stopping() {
            return Outcome::Stopped { rows };
        }
        let stepped = retrying(lifecycle, || {
            let from = from.clone();
            async move {
                let committed = writer
                    .commit(Footprint::SMALL, move |change| step(change, from, page))
                    .await?;
                Ok(committed.value)
            }
        })
        .await;
        let Some(stepped) = stepped else {
            return Outcome::Stopped { rows };
        };
        rows += stepped.written;
        match stepped.next {
            Some(next) => from = Start::At(next),
            None => return Outcome::Completed { rows },
        }
    }
}

/// True when the `pending-index` record exists.
async fn is_complete(store: &Store) -> Result<bool, ApiError> {
    store
        .run(|store| store.get_blocking(&layout::pending_index_complete()))
        .await
        .map(|record| record.is_some())
        .map_err(|err| err.into_api("reading the pending-index record failed"))
}

/// Runs `attempt` until it succeeds, logging each failure and waiting
/// longer after each; `None` once the server stops.
async fn retrying<T, F, Fut>(lifecycle: &Lifecycle, mut attempt: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    let mut wait = FIRST_RETRY;
    loop {
        match attempt().await {
            Ok(value) => return Some(value),
            Err(err) => tracing::warn!(
                error = %err,
                retry_in = ?wait,
                "pending-comment index backfill: a step failed; retrying"
            ),
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = lifecycle.stopping() => return None,
        }
        wait = (wait * 2).min(LAST_RETRY);
    }
}

/// Where a change resumes the walk.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Start {
    /// At the first tenant of the key space.
    First,
    /// At a tenant, after a comment row (from its first when `None`).
    At(Cursor),
}

/// A tenant and the last of its comment rows read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cursor {
    tenant: Uuid,
    after: Option<Vec<u8>>,
}

/// What one change did, and where the next resumes (`None`: the walk ended
/// and the `pending-index` record is written).
#[derive(Debug)]
struct Stepped {
    next: Option<Cursor>,
    written: usize,
}

/// One change of the walk: reads up to `page` comment rows from `from` on
/// (moving to the next tenants while rows are left to read), writes the
/// missing `p` rows, and the `pending-index` record once no tenant is left.
fn step(change: &mut Change<'_>, from: Start, page: usize) -> Result<Stepped, ApiError> {
    let mut budget = page.max(1);
    let mut written = 0;
    let mut at = match from {
        Start::First => first_tenant_from(change, None)?,
        Start::At(cursor) => Some(cursor),
    };
    while let Some(cursor) = at {
        if budget == 0 {
            return Ok(Stepped {
                next: Some(cursor),
                written,
            });
        }
        let prefix = layout::comments(&cursor.tenant);
        let rows = change.stored_page(&prefix, cursor.after.as_deref(), budget)?;
        written += index_pending(change, &cursor.tenant, &rows)?;
        if rows.len() == budget {
            let after = rows.last().map(|(key, _)| key.clone());
            let next = Cursor { after, ..cursor };
            return Ok(Stepped {
                next: Some(next),
                written,
            });
        }
        budget -= rows.len() + 1;
        at = first_tenant_from(change, Some(&layout::after_tenant(&cursor.tenant)))?;
    }
    change.put(layout::pending_index_complete(), Vec::new());
    Ok(Stepped {
        next: None,
        written,
    })
}

/// The first tenant with keys after `after` (from the start when `None`).
fn first_tenant_from(
    change: &Change<'_>,
    after: Option<&[u8]>,
) -> Result<Option<Cursor>, ApiError> {
    let first = change.stored_page(&layout::prefix(), after, 1)?;
    Ok(first.first().map(|(key, _)| Cursor {
        tenant: layout::tenant_of(key),
        after: None,
    }))
}

/// What the walk reads of a stored comment.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CommentState {
    discussion_id: Uuid,
    status: CommentStatus,
}

/// Writes the missing `p` row of each comment of `rows` that is pending as
/// the change sees it; returns how many it wrote.
fn index_pending(
    change: &mut Change<'_>,
    tenant: &Uuid,
    rows: &[(Vec<u8>, Vec<u8>)],
) -> Result<usize, ApiError> {
    let mut written = 0;
    for (key, stored) in rows {
        if pending(key, stored).is_none() {
            continue;
        }
        // An earlier change of this group may have decided it since it was stored.
        let Some(current) = change.get(key)? else {
            continue;
        };
        let (Some(discussion), Some(id)) = (pending(key, &current), layout::last_id(key)) else {
            continue;
        };
        let row = layout::pending_comment(tenant, &id);
        if change.get(&row)?.is_none() {
            change.put(row, discussion.as_bytes().to_vec());
            written += 1;
        }
    }
    Ok(written)
}

/// The discussion of a stored comment when it is pending; an unreadable
/// record is logged and skipped (it is no pending comment to list).
fn pending(key: &[u8], stored: &[u8]) -> Option<Uuid> {
    match serde_json::from_slice::<CommentState>(stored) {
        Ok(state) => (state.status == CommentStatus::Pending).then_some(state.discussion_id),
        Err(err) => {
            tracing::warn!(
                comment = ?layout::last_id(key),
                error = %err,
                "pending-comment index backfill: an unreadable comment record is skipped"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::hub::HubLimits;
    use crate::modules::discussions::model::{Author, Comment, encode};
    use std::collections::{BTreeMap, BTreeSet};

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Store,
        writer: Writer,
        lifecycle: Lifecycle,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db"), 8 << 20).unwrap();
        let writer = Writer::start_for_tests(store.clone(), HubLimits::minimal()).writer;
        Fixture {
            _dir: dir,
            store,
            writer,
            lifecycle: Lifecycle::new(),
        }
    }

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

    impl Fixture {
        /// Stores comments as a build before the index did: no `p` rows.
        async fn store_comments(&self, tenant: Uuid, comments: &[Comment]) {
            let rows: Vec<(Vec<u8>, Vec<u8>)> = comments
                .iter()
                .map(|c| (layout::comment(&tenant, &c.id), encode(c).unwrap()))
                .collect();
            self.put(rows).await;
        }

        async fn put(&self, rows: Vec<(Vec<u8>, Vec<u8>)>) {
            let written = self.writer.commit(Footprint::SMALL, move |change| {
                for (key, value) in rows {
                    change.put(key, value);
                }
                Ok(())
            });
            written.await.unwrap();
        }

        /// The tenant's `p` rows: comment id → discussion id.
        fn index(&self, tenant: &Uuid) -> BTreeMap<Uuid, Uuid> {
            let mut rows = BTreeMap::new();
            let prefix = layout::pending_comments(tenant);
            self.store
                .for_each_blocking(&prefix, |key, value| {
                    let id = layout::last_id(key).unwrap();
                    rows.insert(id, Uuid::from_slice(value).unwrap());
                    Ok(())
                })
                .unwrap();
            rows
        }

        fn complete(&self) -> bool {
            let key = layout::pending_index_complete();
            self.store.get_blocking(&key).unwrap().is_some()
        }

        async fn step(&self, from: Start, page: usize) -> Stepped {
            let stepped = self
                .writer
                .commit(Footprint::SMALL, move |change| step(change, from, page));
            stepped.await.unwrap().value
        }
    }

    fn pending_of(comments: &[Comment]) -> BTreeMap<Uuid, Uuid> {
        comments
            .iter()
            .filter(|c| c.status == CommentStatus::Pending)
            .map(|c| (c.id, c.discussion_id))
            .collect()
    }

    const STATUSES: [CommentStatus; 4] = [
        CommentStatus::Pending,
        CommentStatus::Published,
        CommentStatus::Rejected,
        CommentStatus::Deleted,
    ];

    #[tokio::test]
    async fn every_tenant_is_walked_in_bounded_changes_and_only_pending_comments_are_indexed() {
        let at = fixture();
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
        let many: Vec<Comment> = (0..25)
            .map(|n| comment([first, second][n % 2], STATUSES[n % 4]))
            .collect();
        let few: Vec<Comment> = (0..3)
            .map(|_| comment(first, CommentStatus::Pending))
            .collect();
        at.store_comments(a, &many).await;
        at.store_comments(c, &few).await;
        // Tenant b has a discussion and no comment; a's first pending
        // comment already has its row (as a newer build writes it).
        at.put(vec![
            (layout::discussion(&b, &first), b"{}".to_vec()),
            (
                layout::pending_comment(&a, &many[0].id),
                many[0].discussion_id.as_bytes().to_vec(),
            ),
        ])
        .await;
        let mut from = Start::First;
        let mut changes = 0;
        let mut written = 0;
        loop {
            let stepped = at.step(from, 10).await;
            changes += 1;
            written += stepped.written;
            assert_eq!(at.complete(), stepped.next.is_none());
            match stepped.next {
                Some(next) => from = Start::At(next),
                None => break,
            }
            assert!(changes < 10, "the walk ends");
        }
        // 28 rows and 3 tenant visits, at most 10 of them per change: 4
        // changes whatever the tenants' order.
        assert_eq!(changes, 4);
        assert_eq!(written, 7 + 3 - 1, "rows that existed are not counted");
        assert_eq!(at.index(&a), pending_of(&many));
        assert!(at.index(&b).is_empty());
        assert_eq!(at.index(&c), pending_of(&few));

        let again = backfill(&at.writer, &at.store, &at.lifecycle, 10).await;
        assert_eq!(again, Outcome::AlreadyComplete);
    }

    #[tokio::test]
    async fn a_walk_redone_after_a_cut_writes_nothing_twice() {
        let at = fixture();
        let tenant = Uuid::new_v4();
        let comments: Vec<Comment> = (0..30)
            .map(|n| comment(Uuid::new_v4(), STATUSES[n % 2]))
            .collect();
        at.store_comments(tenant, &comments).await;
        // A walk cut after its first change, as by a crash.
        let first = at.step(Start::First, 8).await;
        assert_eq!(first.written, 4);
        assert!(first.next.is_some() && !at.complete());

        let redone = backfill(&at.writer, &at.store, &at.lifecycle, 8).await;
        assert_eq!(redone, Outcome::Completed { rows: 11 });
        assert_eq!(at.index(&tenant), pending_of(&comments));
        assert!(at.complete());
    }

    #[tokio::test]
    async fn a_comment_decided_earlier_in_the_group_gets_no_row() {
        let at = fixture();
        let tenant = Uuid::new_v4();
        let discussion = Uuid::new_v4();
        let comments = [
            comment(discussion, CommentStatus::Pending),
            comment(discussion, CommentStatus::Pending),
        ];
        at.store_comments(tenant, &comments).await;
        let mut approved = comments[0].clone();
        approved.status = CommentStatus::Published;
        let written = at.writer.commit(Footprint::SMALL, move |change| {
            // Approved by a change the store has not seen yet.
            change.put(layout::comment(&tenant, &approved.id), encode(&approved)?);
            step(change, Start::First, PAGE)
        });
        let stepped = written.await.unwrap().value;
        assert_eq!(stepped.written, 1);
        assert!(stepped.next.is_none());
        let ids: BTreeSet<Uuid> = at.index(&tenant).into_keys().collect();
        assert_eq!(ids, BTreeSet::from([comments[1].id]));
    }

    #[tokio::test]
    async fn a_fresh_store_is_marked_complete_and_a_stopped_server_walks_nothing() {
        let fresh = fixture();
        let outcome = backfill(&fresh.writer, &fresh.store, &fresh.lifecycle, PAGE).await;
        assert_eq!(outcome, Outcome::Completed { rows: 0 });
        assert!(fresh.complete());

        let stopped = fixture();
        let tenant = Uuid::new_v4();
        let comments = [comment(Uuid::new_v4(), CommentStatus::Pending)];
        stopped.store_comments(tenant, &comments).await;
        stopped.lifecycle.stop();
        let outcome = backfill(&stopped.writer, &stopped.store, &stopped.lifecycle, PAGE).await;
        assert_eq!(outcome, Outcome::Stopped { rows: 0 });
        assert!(!stopped.complete());
        assert!(stopped.index(&tenant).is_empty());
    }

    #[test]
    fn unreadable_records_are_no_pending_comments() {
        let key = layout::comment(&Uuid::new_v4(), &Uuid::new_v4());
        assert_eq!(pending(&key, b"not json"), None);
        let waiting = comment(Uuid::new_v4(), CommentStatus::Pending);
        let stored = encode(&waiting).unwrap();
        assert_eq!(pending(&key, &stored), Some(waiting.discussion_id));
    }
}
