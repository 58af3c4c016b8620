//! The live module on a cluster's edge: its memory follows the replica.
//!
//! On the writer, a stream's memory (its record, its closed intervals, its
//! marks, its open quiz) changes in the after-commit hooks of the changes
//! that store them. An edge applies the writer's batch records without
//! those hooks; the replica hands each record's operations under the
//! module's prefix to [`replicated`], which makes the same memory changes
//! from the stored values: a new stream record adds the stream, a changed
//! one replaces it, a `c` row publishes the closed intervals stored with it
//! (their `v` rows) and wakes waiting polls, an `x` row raises the expired
//! mark, a quiz record opens or forgets the quiz.
//!
//! Invariants: memory is changed only from values already in the replica
//! (never ahead of the store); one record is followed at a time, never at
//! the same time as the start's load ([`LiveModule::following`]), so a
//! stream loaded at start is never replaced by an older copy; deletes
//! (expired bodies, taken items) change nothing held in memory. What an
//! edge counts itself (its viewers) is not replicated: it is shared
//! ([`super::viewers`]).

use super::LiveModule;
use super::decode_json;
use super::layout;
use super::model::{QuizRecord, StreamRecord};
use super::state::{Closed, LiveStream};
use crate::core::store::{Op, StoreError, decode_u64};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::Arc;
use uuid::Uuid;

/// What one record changed of one stream.
#[derive(Default)]
struct Touched {
    record: Option<StreamRecord>,
    closed: Vec<Closed>,
    through: Option<u64>,
    expired: Option<u64>,
}

/// What one record changed of the module, by stream.
#[derive(Default)]
struct Changes {
    streams: BTreeMap<(Uuid, Uuid), Touched>,
    quizzes: Vec<(Uuid, QuizRecord)>,
}

/// Follows one applied record: `ops` are its operations under the module's
/// prefix, already in the replica.
pub fn replicated(module: &LiveModule, ops: &[&Op]) {
    let _following = module.following();
    let changes = changes_of(ops);
    for ((tenant, id), touched) in changes.streams {
        if let Err(err) = follow_stream(module, tenant, id, touched) {
            tracing::error!(stream = %id, error = %err, "a replicated live stream could not be read; it lags until its next change");
        }
    }
    for (tenant, quiz) in changes.quizzes {
        follow_quiz(module, tenant, quiz);
    }
}

/// Sorts a record's puts by stream (deletes change nothing in memory).
fn changes_of(ops: &[&Op]) -> Changes {
    let mut changes = Changes::default();
    for (key, value) in ops.iter().copied() {
        let (Some(parts), Some(value)) = (layout::parse(key), value) else {
            continue;
        };
        let stream = (parts.tenant, parts.id);
        match parts.kind {
            b's' => {
                if let Some(record) = decoded::<StreamRecord>(value, "stream") {
                    changes.streams.entry(stream).or_default().record = Some(record);
                }
            }
            b'c' => changes.streams.entry(stream).or_default().through = Some(decode_u64(value)),
            b'x' => changes.streams.entry(stream).or_default().expired = Some(decode_u64(value)),
            b'v' => {
                if let Some(interval) = layout::interval_in(parts.rest) {
                    let body = Closed::new(interval, Bytes::copy_from_slice(value));
                    changes.streams.entry(stream).or_default().closed.push(body);
                }
            }
            b'q' => {
                if let Some(quiz) = decoded::<QuizRecord>(value, "quiz") {
                    changes.quizzes.push((parts.tenant, quiz));
                }
            }
            _ => {}
        }
    }
    changes
}

fn decoded<T: serde::de::DeserializeOwned>(value: &[u8], what: &str) -> Option<T> {
    decode_json(value, what)
        .inspect_err(|err| tracing::error!(error = %err.message, "a replicated live {what} is unreadable; skipped"))
        .ok()
}

/// Applies what a record changed of one stream to its memory (loading it
/// from the replica when it is new here).
fn follow_stream(
    module: &LiveModule,
    tenant: Uuid,
    id: Uuid,
    touched: Touched,
) -> Result<(), StoreError> {
    let stream = match (module.streams.get(&tenant, &id), touched.record) {
        (Some(stream), Some(record)) => {
            stream.set_record(record);
            stream
        }
        (Some(stream), None) => stream,
        (None, _) => match load_stream(module, tenant, id)? {
            Some(stream) => stream,
            None => return Ok(()),
        },
    };
    if let Some(expired) = touched.expired {
        stream.raise_expired(expired);
    }
    if let Some(through) = touched.through {
        let mut closed = touched.closed;
        closed.sort_by_key(|closed| closed.interval);
        if let Some(count) = closed.last().and_then(|newest| view_count_of(&newest.body)) {
            stream.set_viewer_count(count);
        }
        stream.publish(closed, through);
    }
    Ok(())
}

/// A stream the replica holds but memory does not, loaded as at start.
fn load_stream(
    module: &LiveModule,
    tenant: Uuid,
    id: Uuid,
) -> Result<Option<Arc<LiveStream>>, StoreError> {
    let store = module.core.hub.store();
    let Some(bytes) = store.get_blocking(&layout::stream(&tenant, &id))? else {
        return Ok(None);
    };
    let Some(record) = decoded::<StreamRecord>(&bytes, "stream") else {
        return Ok(None);
    };
    super::recovery::restore(module, store, tenant, record).map(Some)
}

/// Opens or forgets a quiz as its replicated record says.
fn follow_quiz(module: &LiveModule, tenant: Uuid, quiz: QuizRecord) {
    let Some(stream) = module.streams.get(&tenant, &quiz.stream_id) else {
        return;
    };
    if quiz.closed {
        stream.forget_quiz(quiz.id);
    } else if stream
        .open_quiz_record()
        .is_none_or(|open| open.id != quiz.id)
    {
        stream.open_quiz(quiz, []);
    }
}

/// The `view-count` value a closed interval's body carries, if any.
fn view_count_of(body: &[u8]) -> Option<u64> {
    let body: serde_json::Value = serde_json::from_slice(body).ok()?;
    body.get("events")?
        .as_array()?
        .iter()
        .find(|event| event.get("type").and_then(|kind| kind.as_str()) == Some("view-count"))?
        .get("data")?
        .get("value")?
        .as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::live::model::IntervalBody;

    #[test]
    fn the_view_count_is_read_back_from_a_body() {
        let body = IntervalBody {
            interval: 250,
            view_count: Some(1_234),
            hearts: 2,
            ..IntervalBody::default()
        };
        assert_eq!(view_count_of(&body.encode()), Some(1_234));
        let without = IntervalBody {
            interval: 250,
            ..IntervalBody::default()
        };
        assert_eq!(view_count_of(&without.encode()), None);
    }

    #[test]
    fn puts_are_sorted_by_stream_and_deletes_ignored() {
        let (tenant, stream) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let ops: Vec<Op> = vec![
            (
                layout::body(&tenant, &stream, 500).into(),
                Some(b"{}".to_vec().into()),
            ),
            (layout::body(&tenant, &stream, 250).into(), None),
            (
                layout::closed_through(&tenant, &stream).into(),
                Some(500u64.to_be_bytes().to_vec().into()),
            ),
            (b"elsewhere".to_vec().into(), Some(b"x".to_vec().into())),
        ];
        let refs: Vec<&Op> = ops.iter().collect();
        let changes = changes_of(&refs);
        let touched = &changes.streams[&(tenant, stream)];
        assert_eq!(touched.through, Some(500));
        assert_eq!(touched.closed.len(), 1);
        assert_eq!(touched.closed[0].interval, 500);
        assert!(touched.record.is_none() && changes.quizzes.is_empty());
    }
}
