//! The embedded database (sled 0.34) behind a small API of our own.
//!
//! Everything (store records, event log, module state) lives in one sled tree
//! so that one [`WriteBatch`] applies atomically: a module change and the
//! events it produces are never half-applied. The core's own records are laid
//! out in [`layout`]; every other owner claims its prefix in [`prefixes`].
//!
//! Invariants: one process opens the database (the data directory lock
//! guarantees it); nothing is acknowledged as durable before
//! [`Store::flush_blocking`] returned; blocking sled calls run on the writer's
//! thread or the blocking pool, never on the async workers; the schema version
//! is checked (and migrations run) before anything else reads the data.
//!
//! A [`Store`] is a shared handle whose sled database can be closed and opened
//! again from disk ([`Store::close`], [`Store::reopen_blocking`]): the writer
//! does so to recover after a failed flush, because sled refuses every
//! operation after an I/O error and its memory may hold writes that are not on
//! disk. No clone keeps the database open: each operation takes the current
//! one and lets it go when done, so closing releases sled's file lock as soon
//! as operations in flight finish. While closed, operations fail with
//! [`StoreError`] (callers answer 503).
//!
//! Power-loss note: sled's flush uses `sync_file_range`, which survives a
//! process crash but not every power loss; the README says so.

pub mod layout;
pub mod prefixes;

use crate::error::{ApiError, StartupError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// The schema this build reads and writes.
pub const SCHEMA_VERSION: u64 = 1;
/// Name of the schema version record.
const SCHEMA_RECORD: &str = "schema-version";
/// Name of the record rewritten by the readiness probe.
pub const PROBE_RECORD: &str = "readiness-probe";

/// A migration from `version - 1` to `version`; runs once, inside one batch.
struct Migration {
    version: u64,
    apply: fn(&sled::Db, &mut WriteBatch) -> sled::Result<()>,
}

/// Migrations in order. Version 1 is the first schema and needs none.
const MIGRATIONS: &[Migration] = &[];

/// A storage failure; callers turn it into an API error with
/// [`StoreError::into_api`] or into a startup error.
#[derive(Debug)]
pub struct StoreError {
    message: String,
    /// The store is closed while the writer recovers it, or the disk failed
    /// an I/O: passing states that a retry can get past.
    transient: bool,
}

impl StoreError {
    /// A failure described by `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            transient: false,
        }
    }

    /// The store is closed while it recovers (see [`Store::close`]).
    fn closed() -> Self {
        Self {
            message: "the store is closed while it recovers".into(),
            transient: true,
        }
    }

    /// The API error for a failed operation described by `context`: 503
    /// with `Retry-After` while the store recovers or after an I/O error
    /// (a full disk), else 500 `INTERNAL`.
    pub fn into_api(self, context: &str) -> ApiError {
        if self.transient {
            ApiError::unavailable_for(
                format!("{context}: {}; retry shortly", self.message),
                std::time::Duration::from_secs(1),
            )
        } else {
            ApiError::internal(format!("{context}: {}", self.message))
        }
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<sled::Error> for StoreError {
    fn from(err: sled::Error) -> Self {
        Self {
            transient: matches!(err, sled::Error::Io(_)),
            message: err.to_string(),
        }
    }
}

/// One write of a batch: a key and its new value, or `None` to remove it.
pub type Op = (sled::IVec, Option<sled::IVec>);

/// Writes that apply together or not at all, kept as their operations in
/// the order given (a later write of a key wins), so that a backup can
/// journal exactly what was applied ([`WriteBatch::into_ops`]).
#[derive(Debug, Default)]
pub struct WriteBatch {
    ops: Vec<Op>,
}

impl WriteBatch {
    /// Sets `key` to `value`.
    pub fn put(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.ops
            .push((key.as_ref().into(), Some(value.as_ref().into())));
    }

    /// Removes `key`.
    pub fn delete(&mut self, key: impl AsRef<[u8]>) {
        self.ops.push((key.as_ref().into(), None));
    }

    /// Appends an operation as read back from a journal.
    pub fn push(&mut self, op: Op) {
        self.ops.push(op);
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The operations, in the order they were given, borrowed.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// The operations, in the order they were given.
    pub fn into_ops(self) -> Vec<Op> {
        self.ops
    }

    /// The sled batch of these operations (the values are shared, not copied).
    fn to_sled(&self) -> sled::Batch {
        let mut batch = sled::Batch::default();
        for (key, value) in &self.ops {
            match value {
                Some(value) => batch.insert(key.clone(), value.clone()),
                None => batch.remove(key.clone()),
            }
        }
        batch
    }
}

/// Handle to the database; cheap to clone, all clones share one database.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    cache_bytes: u64,
    /// The open database, or `None` while closed for recovery.
    db: RwLock<Option<sled::Db>>,
}

fn open_db(path: &Path, cache_bytes: u64) -> sled::Result<sled::Db> {
    sled::Config::new()
        .path(path)
        .cache_capacity(cache_bytes)
        .flush_every_ms(None)
        .open()
}

impl Store {
    /// Opens (or creates) the database at `path` with a page cache of
    /// `cache_bytes`, then brings its schema up to [`SCHEMA_VERSION`].
    pub fn open(path: &Path, cache_bytes: u64) -> Result<Self, StartupError> {
        let db = open_db(path, cache_bytes)
            .map_err(|err| StartupError::io(format!("opening database {}", path.display()), err))?;
        let store = Self {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                cache_bytes,
                db: RwLock::new(Some(db)),
            }),
        };
        store.migrate().map_err(|err| match err {
            MigrateError::TooNew(found) => StartupError::Config(format!(
                "the database in {} has schema {found}, newer than this build's {SCHEMA_VERSION}; use a newer tidings",
                path.display()
            )),
            MigrateError::Store(err) => StartupError::io("migrating the database", err),
        })?;
        Ok(store)
    }

    /// The open database (a cheap clone), or an error while it is closed.
    fn db(&self) -> Result<sled::Db, StoreError> {
        self.inner
            .db
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(StoreError::closed)
    }

    /// Closes the database: later operations fail until
    /// [`Store::reopen_blocking`]; sled lets go of its files once the
    /// operations in flight finish.
    pub fn close(&self) {
        let db = self
            .inner
            .db
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        drop(db);
    }

    /// Closes the database and opens it again from what is on disk (blocking).
    /// Fails (leaving it closed) while sled still holds its files or cannot
    /// open them; the caller retries.
    pub fn reopen_blocking(&self) -> Result<(), StoreError> {
        self.close();
        let db = open_db(&self.inner.path, self.inner.cache_bytes)?;
        *self.inner.db.write().unwrap_or_else(|p| p.into_inner()) = Some(db);
        Ok(())
    }

    fn migrate(&self) -> Result<(), MigrateError> {
        let key = layout::meta(SCHEMA_RECORD);
        let db = self.db().map_err(MigrateError::Store)?;
        let found = match db.get(&key).map_err(|e| MigrateError::Store(e.into()))? {
            Some(value) => decode_u64(&value),
            None if db.is_empty() => 0,
            // Data without a version record predates versioning: schema 1.
            None => 1,
        };
        if found > SCHEMA_VERSION {
            return Err(MigrateError::TooNew(found));
        }
        for migration in MIGRATIONS.iter().filter(|m| m.version > found) {
            let mut batch = WriteBatch::default();
            (migration.apply)(&db, &mut batch).map_err(|e| MigrateError::Store(e.into()))?;
            batch.put(&key, migration.version.to_be_bytes());
            self.apply_blocking(&batch).map_err(MigrateError::Store)?;
            self.flush_blocking().map_err(MigrateError::Store)?;
        }
        if found < SCHEMA_VERSION {
            let mut batch = WriteBatch::default();
            batch.put(&key, SCHEMA_VERSION.to_be_bytes());
            self.apply_blocking(&batch).map_err(MigrateError::Store)?;
            self.flush_blocking().map_err(MigrateError::Store)?;
        }
        Ok(())
    }

    /// Reads one key (blocking).
    pub fn get_blocking(&self, key: &[u8]) -> Result<Option<sled::IVec>, StoreError> {
        Ok(self.db()?.get(key)?)
    }

    /// Pairs under `prefix` whose key is greater than `after` (or all), in key
    /// order, at most `limit` (blocking).
    pub fn scan_blocking(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(sled::IVec, sled::IVec)>, StoreError> {
        let db = self.db()?;
        let iter = match after {
            Some(after) => {
                db.range::<&[u8], _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
            }
            None => db.range::<&[u8], _>(prefix..),
        };
        let mut out = Vec::new();
        for item in iter {
            let (key, value) = item?;
            if !key.starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((key, value));
        }
        Ok(out)
    }

    /// Pairs under `prefix` whose key is less than `before` (or all), in
    /// descending key order, at most `limit` (blocking): the newest entries
    /// of an index whose keys grow with time.
    pub fn scan_back_blocking(
        &self,
        prefix: &[u8],
        before: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(sled::IVec, sled::IVec)>, StoreError> {
        use std::ops::Bound;
        let upper = match before {
            Some(before) => Bound::Excluded(before.to_vec()),
            None => successor(prefix).map_or(Bound::Unbounded, Bound::Excluded),
        };
        let db = self.db()?;
        let mut out = Vec::new();
        for item in db
            .range::<Vec<u8>, _>((Bound::Included(prefix.to_vec()), upper))
            .rev()
        {
            let (key, value) = item?;
            if !key.starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((key, value));
        }
        Ok(out)
    }

    /// How many keys are under `prefix`, counting at most `cap` (blocking):
    /// a bounded count that keeps no pairs.
    pub fn count_prefix_blocking(&self, prefix: &[u8], cap: usize) -> Result<usize, StoreError> {
        let mut count = 0;
        for key in self.db()?.scan_prefix(prefix).keys().take(cap) {
            key?;
            count += 1;
        }
        Ok(count)
    }

    /// The greatest key of the whole tree, if any (blocking).
    pub fn last_key_blocking(&self) -> Result<Option<sled::IVec>, StoreError> {
        Ok(self.db()?.last()?.map(|(key, _)| key))
    }

    /// The next pairs of the whole tree after the key `after` (from the first
    /// key when `None`) up to and including `through`, in key order: at most
    /// `max_pairs`, and no more once their keys and values reach
    /// `max_bytes` (at least one pair when any is left). For walking
    /// everything in bounded steps (backups); blocking.
    pub fn chunk_blocking(
        &self,
        after: Option<&[u8]>,
        through: &[u8],
        max_pairs: usize,
        max_bytes: usize,
    ) -> Result<Vec<(sled::IVec, sled::IVec)>, StoreError> {
        use std::ops::Bound;
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let db = self.db()?;
        let mut out = Vec::new();
        let mut bytes = 0;
        for item in db.range::<&[u8], _>((lower, Bound::Included(through))) {
            if out.len() >= max_pairs || bytes >= max_bytes {
                break;
            }
            let (key, value) = item?;
            bytes += key.len() + value.len();
            out.push((key, value));
        }
        Ok(out)
    }

    /// Calls `visit` with every pair under `prefix`, in key order, reading
    /// a page at a time (blocking).
    pub fn for_each_blocking(
        &self,
        prefix: &[u8],
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self.scan_blocking(prefix, after.as_deref(), 1000)?;
            let Some((last, _)) = page.last() else {
                return Ok(());
            };
            after = Some(last.to_vec());
            for (key, value) in &page {
                visit(key, value)?;
            }
        }
    }

    /// The first pair under `prefix` (blocking).
    pub fn first_blocking(
        &self,
        prefix: &[u8],
    ) -> Result<Option<(sled::IVec, sled::IVec)>, StoreError> {
        Ok(self.scan_blocking(prefix, None, 1)?.pop())
    }

    /// Applies a batch atomically; not yet durable (blocking).
    pub fn apply_blocking(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        Ok(self.db()?.apply_batch(batch.to_sled())?)
    }

    /// Makes everything applied so far durable (blocking).
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.db()?.flush()?;
        Ok(())
    }

    /// Runs a blocking store operation on the blocking pool.
    pub async fn run<T, F>(&self, operation: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || operation(&store))
            .await
            .map_err(|err| StoreError::new(format!("store task failed: {err}")))?
    }

    /// Makes everything written so far durable.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.run(Store::flush_blocking).await
    }
}

enum MigrateError {
    TooNew(u64),
    Store(StoreError),
}

/// The smallest key greater than every key starting with `prefix`, if any
/// (none when the prefix is all `0xff`).
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut upper = prefix.to_vec();
    while let Some(last) = upper.pop() {
        if last < u8::MAX {
            upper.push(last + 1);
            return Some(upper);
        }
    }
    None
}

/// Decodes a big-endian u64 record (0 when malformed).
pub fn decode_u64(bytes: &[u8]) -> u64 {
    bytes.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reopened_store_reads_what_was_flushed_and_refuses_work_while_closed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db"), 1 << 20).unwrap();
        let reader = store.clone();
        let mut batch = WriteBatch::default();
        batch.put(b"k", b"v");
        store.apply_blocking(&batch).unwrap();
        store.flush_blocking().unwrap();
        store.close();
        assert!(reader.get_blocking(b"k").is_err(), "closed for every clone");
        // sled's own threads may hold the files a moment after the close:
        // retry as the callers do.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while let Err(err) = reader.reopen_blocking() {
            assert!(std::time::Instant::now() < deadline, "{err}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(
            store.get_blocking(b"k").unwrap().as_deref(),
            Some(&b"v"[..])
        );
    }

    #[test]
    fn chunks_walk_the_whole_tree_in_bounded_steps_up_to_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db"), 1 << 20).unwrap();
        let mut batch = WriteBatch::default();
        for i in 0..25u8 {
            batch.put([b'x', i], [i; 10]);
        }
        store.apply_blocking(&batch).unwrap();
        let through = store.last_key_blocking().unwrap().unwrap();
        assert_eq!(&through[..], &[b'x', 24]);
        let mut batch = WriteBatch::default();
        batch.put(b"y", b"beyond the bound");
        store.apply_blocking(&batch).unwrap();
        let mut after: Option<sled::IVec> = None;
        let mut sizes = Vec::new();
        loop {
            let chunk = store
                .chunk_blocking(after.as_deref(), &through, 10, 36)
                .unwrap();
            let Some((last, _)) = chunk.last() else { break };
            after = Some(last.clone());
            sizes.push(chunk.len());
        }
        // 25 pairs of 12 bytes after the schema record: 36 bytes make three.
        assert_eq!(sizes.iter().sum::<usize>(), 26);
        assert!(sizes.iter().all(|&n| n <= 3), "{sizes:?}");
        assert_eq!(
            after.as_deref(),
            Some(&through[..]),
            "nothing beyond the bound"
        );
    }

    #[test]
    fn a_backward_scan_stays_inside_its_prefix_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db"), 1 << 20).unwrap();
        let mut batch = WriteBatch::default();
        for key in [&b"a\xff"[..], b"b1", b"b2", b"b3", b"b\xff", b"c"] {
            batch.put(key, b"");
        }
        store.apply_blocking(&batch).unwrap();
        let keys = |pairs: Vec<(sled::IVec, sled::IVec)>| {
            pairs
                .into_iter()
                .map(|(k, _)| k.to_vec())
                .collect::<Vec<_>>()
        };
        let all = keys(store.scan_back_blocking(b"b", None, 10).unwrap());
        assert_eq!(all, [&b"b\xff"[..], b"b3", b"b2", b"b1"]);
        let before = keys(store.scan_back_blocking(b"b", Some(b"b3"), 1).unwrap());
        assert_eq!(before, [b"b2"]);
        assert_eq!(successor(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(successor(b"\xff\xff"), None);
    }
}
