//! Loading the live streams at start: every tenant's stream records, their
//! newest closed interval, and the open quiz with the answers stored so far.
//!
//! Invariant: runs before the server serves (from `Module::start`), so no
//! request sees a stream half loaded; counters start at zero (what the open
//! interval had counted before a crash is lost, as documented). On an edge
//! it holds the module's loading lock, so a record the replica applies
//! meanwhile is followed after it (see `follow`).

use super::layout;
use super::model::{QuizRecord, StreamRecord};
use super::state::LiveStream;
use super::{LiveModule, decode_json};
use crate::core::store::{Store, StoreError, decode_u64};

/// Loads every stream of every tenant into memory.
pub fn load(module: &LiveModule) -> Result<(), StoreError> {
    let _following = module.following();
    let store = module.core.hub.store();
    for tenant in module.core.auth.registry().tenants() {
        let mut records = Vec::new();
        store.for_each_blocking(&layout::streams(&tenant.id), |_, value| {
            match decode_json::<StreamRecord>(value, "stream") {
                Ok(record) => records.push(record),
                Err(err) => tracing::error!(error = %err.message, "a live stream record is unreadable; skipped"),
            }
            Ok(())
        })?;
        for record in records {
            restore(module, store, tenant.id, record)?;
        }
    }
    Ok(())
}

/// Puts one stream in memory as `store` holds it: its record, its marks and
/// its open quiz (call with the module's loading lock held).
pub fn restore(
    module: &LiveModule,
    store: &Store,
    tenant: uuid::Uuid,
    record: StreamRecord,
) -> Result<std::sync::Arc<LiveStream>, StoreError> {
    let through = store
        .get_blocking(&layout::closed_through(&tenant, &record.id))?
        .map_or(record.initial_closed_through(), |bytes| decode_u64(&bytes));
    let expired = store
        .get_blocking(&layout::expired_through(&tenant, &record.id))?
        .map_or(0, |bytes| decode_u64(&bytes));
    let open_quiz = record.open_quiz;
    let stream = module.in_memory(tenant, record, through);
    stream.raise_expired(expired);
    if let Some(quiz) = open_quiz {
        load_quiz(store, &stream, &quiz)?;
    }
    Ok(stream)
}

/// Puts the open quiz back in memory with who answered it.
fn load_quiz(store: &Store, stream: &LiveStream, quiz: &uuid::Uuid) -> Result<(), StoreError> {
    let Some(bytes) = store.get_blocking(&layout::quiz(&stream.tenant, quiz))? else {
        return Ok(());
    };
    let Ok(record) = super::decode_json::<QuizRecord>(&bytes, "quiz") else {
        return Ok(());
    };
    if record.closed {
        return Ok(());
    }
    let prefix = layout::answers(&stream.tenant, quiz);
    let mut answered = Vec::new();
    store.for_each_blocking(&prefix, |key, _| {
        answered.push(String::from_utf8_lossy(&key[prefix.len()..]).into_owned());
        Ok(())
    })?;
    stream.open_quiz(record, answered);
    Ok(())
}
