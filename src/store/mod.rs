//! The embedded database (sled 0.34) behind a small API of our own.
//!
//! Invariants: the database is opened once per process (the data directory
//! lock guarantees one process); nothing is acknowledged as durable before
//! [`Store::flush`] returned; blocking sled calls run on the blocking pool,
//! never on the async workers.
//!
//! Power-loss note: sled's flush uses `sync_file_range`, which survives a
//! process crash but not every power loss; the README says so.

use crate::error::StartupError;
use std::path::Path;

/// Tree holding the store's own records (schema version, probes).
const META_TREE: &str = "meta";
/// Key rewritten by the readiness probe.
const PROBE_KEY: &[u8] = b"readiness-probe";

/// Handle to the open database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
}

impl Store {
    /// Opens (or creates) the database at `path` with a page cache of `cache_bytes`.
    pub fn open(path: &Path, cache_bytes: u64) -> Result<Self, StartupError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            .flush_every_ms(None)
            .open()
            .map_err(|err| StartupError::io(format!("opening database {}", path.display()), err))?;
        Ok(Self { db })
    }

    /// Writes and flushes a probe record: succeeds only if the store accepts durable writes.
    pub async fn check_writable(&self) -> Result<(), String> {
        let db = self.db.clone();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        tokio::task::spawn_blocking(move || -> sled::Result<()> {
            db.open_tree(META_TREE)?
                .insert(PROBE_KEY, &now.to_be_bytes())?;
            db.flush()?;
            Ok(())
        })
        .await
        .map_err(|err| format!("store probe task failed: {err}"))?
        .map_err(|err| format!("store write failed: {err}"))
    }

    /// Makes everything written so far durable.
    pub async fn flush(&self) -> Result<(), String> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|err| format!("store flush task failed: {err}"))?
            .map(|_| ())
            .map_err(|err| format!("store flush failed: {err}"))
    }
}
