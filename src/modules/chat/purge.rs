//! Removing a deleted room's messages in bounded steps.
//!
//! A room may hold any number of messages, so its deletion does not remove
//! them in its own change (one unbounded batch): it removes the room, its
//! members and receipts, and schedules a durable timer; each firing removes
//! at most [`PURGE_BATCH`] message and thread-index keys in one change and
//! schedules the next while any are left.
//!
//! Invariants: the purge starts in the change that deletes the room (so a
//! crash at any point leaves a timer that finishes it); room ids are never
//! reused and every read checks the room first, so keys still waiting for
//! their purge are never visible.

use super::layout;
use crate::core::writer::{Change, Timer};
use crate::error::ApiError;
use uuid::Uuid;

/// Name of the purge timer's handler.
pub const PURGE_TIMER: &str = "chat.purge";
/// Most keys one purge step removes.
pub const PURGE_BATCH: usize = 1000;

/// Schedules the purge of `room`'s messages (now, after this change).
pub fn schedule(change: &mut Change<'_>, tenant: &Uuid, room: u64) -> Result<(), ApiError> {
    let mut payload = tenant.as_bytes().to_vec();
    payload.extend_from_slice(&room.to_be_bytes());
    let due = change.now_ms();
    change.schedule(due, PURGE_TIMER, &payload)?;
    Ok(())
}

/// The purge timer's handler: one step, and the next one while keys remain.
pub fn on_timer(change: &mut Change<'_>, timer: &Timer) -> Result<(), ApiError> {
    let Some((tenant, room)) = decode(&timer.payload) else {
        tracing::error!(timer = ?timer.id, "a chat purge timer has a damaged payload; dropped");
        return Ok(());
    };
    if step(change, &tenant, room)? {
        schedule(change, &tenant, room)?;
    }
    Ok(())
}

/// Removes up to [`PURGE_BATCH`] of `room`'s message and thread keys;
/// true when some may be left.
pub fn step(change: &mut Change<'_>, tenant: &Uuid, room: u64) -> Result<bool, ApiError> {
    let mut removed = 0;
    for prefix in [
        layout::messages(tenant, room),
        layout::threads(tenant, room),
    ] {
        for key in change.stored_keys(&prefix, PURGE_BATCH - removed)? {
            change.delete(key);
            removed += 1;
        }
        if removed == PURGE_BATCH {
            return Ok(true);
        }
    }
    Ok(false)
}

fn decode(payload: &[u8]) -> Option<(Uuid, u64)> {
    let (tenant, room) = payload.split_at_checked(16)?;
    Some((
        Uuid::from_slice(tenant).ok()?,
        u64::from_be_bytes(room.try_into().ok()?),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::hub::HubLimits;
    use crate::core::store::Store;
    use crate::core::writer::{Footprint, Writer};

    fn count(store: &Store, prefix: &[u8]) -> usize {
        let mut keys = 0;
        store
            .for_each_blocking(prefix, |_, _| {
                keys += 1;
                Ok(())
            })
            .unwrap();
        keys
    }

    #[tokio::test]
    async fn each_step_removes_at_most_a_batch_of_the_room_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db"), 8 << 20).unwrap();
        let writer = Writer::start_for_tests(store.clone(), HubLimits::minimal()).writer;
        let tenant = Uuid::new_v4();
        for chunk in 0..5u64 {
            let written = writer.commit(Footprint::SMALL, move |change| {
                for message in chunk * 500..(chunk + 1) * 500 {
                    change.put(layout::message(&tenant, 7, message), vec![1]);
                    change.put(layout::message(&tenant, 8, message), vec![1]);
                }
                Ok(())
            });
            written.await.unwrap();
        }
        let mut thread_key = layout::threads(&tenant, 7);
        thread_key.extend_from_slice(&[0; 8]);
        let put = thread_key.clone();
        let written = writer.commit(Footprint::SMALL, move |change| {
            change.put(put, vec![1]);
            Ok(())
        });
        written.await.unwrap();

        let mut steps = Vec::new();
        loop {
            let stepped = writer.commit(Footprint::SMALL, move |change| step(change, &tenant, 7));
            let more = stepped.await.unwrap().value;
            steps.push(count(&store, &layout::messages(&tenant, 7)));
            if !more || steps.len() > 5 {
                break;
            }
        }
        assert_eq!(
            steps,
            [1500, 500, 0],
            "2 500 messages and a thread key, 1 000 a step"
        );
        assert_eq!(count(&store, &thread_key), 0);
        assert_eq!(count(&store, &layout::messages(&tenant, 8)), 2500);
    }

    #[test]
    fn payloads_round_trip_and_damaged_ones_are_refused() {
        let tenant = Uuid::new_v4();
        let mut payload = tenant.as_bytes().to_vec();
        payload.extend_from_slice(&42u64.to_be_bytes());
        assert_eq!(decode(&payload), Some((tenant, 42)));
        assert_eq!(decode(&payload[..20]), None);
        assert_eq!(decode(&[]), None);
    }
}
