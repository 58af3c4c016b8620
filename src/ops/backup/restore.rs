//! `tidings restore FILE --data-dir NEW`: a new data directory from a backup.
//!
//! Invariants: the whole file is checked (magic, version, every record, the
//! counts, the digest) before anything is written; a target that exists and
//! is not an empty directory is refused; the directory is built in a
//! temporary sibling (`.NAME.restore-PID`) and renamed into place only once
//! complete and flushed, so the target is either absent (or empty) or whole;
//! all scan records are written first, then every journal record in file
//! order (the rule that makes an online backup exact, see `ops::backup`).

use super::format::{self, ReadError, Record, Summary};
use crate::core::datadir::{DataDir, sync_parent_dir, write_private_file_atomically};
use crate::core::store::{Op, SCHEMA_VERSION, Store, StoreError, WriteBatch};
use crate::error::StartupError;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// Page cache of the database while it is written.
const RESTORE_CACHE_BYTES: u64 = 64 << 20;

/// Checks `file` whole and returns what it holds (nothing is written).
pub fn verify(file: &Path) -> Result<Summary, StartupError> {
    let input = open(file).map_err(|err| unreadable(file, err))?;
    format::read(input, |_| Ok::<_, ReadError>(())).map_err(|err| refused(file, err.into()))
}

/// Checks `file` whole and that this build reads its data (not of a newer
/// schema); returns what it holds (nothing is written).
pub fn check(file: &Path) -> Result<Summary, StartupError> {
    let summary = verify(file)?;
    readable(file, &summary)?;
    Ok(summary)
}

/// Refuses a verified backup (`summary`) whose data is of a newer schema
/// than this build's.
pub fn readable(file: &Path, summary: &Summary) -> Result<(), StartupError> {
    if summary.header.schema_version > SCHEMA_VERSION {
        return Err(StartupError::Config(format!(
            "{} holds data of schema {}, newer than this build's {SCHEMA_VERSION}; use a newer tidings",
            file.display(),
            summary.header.schema_version
        )));
    }
    Ok(())
}

/// Restores `file` into `target` (which must not exist, or be empty).
pub fn restore(file: &Path, target: &Path) -> Result<Summary, StartupError> {
    check_target(target)?;
    let summary = check(file)?;
    let building = building_dir(target)?;
    let built = build(file, &summary, &building).and_then(|()| move_into_place(&building, target));
    if built.is_err() {
        let _ = std::fs::remove_dir_all(&building);
    }
    built.map(|()| summary)
}

fn open(file: &Path) -> std::io::Result<BufReader<File>> {
    File::open(file).map(|file| BufReader::with_capacity(1 << 20, file))
}

fn unreadable(file: &Path, err: std::io::Error) -> StartupError {
    StartupError::io(format!("reading {}", file.display()), err)
}

/// Why loading a backup into a store stopped.
#[derive(Debug)]
pub enum LoadError {
    /// The file is bad or unreadable.
    File(ReadError),
    /// Writing the store failed.
    Store(StoreError),
}

impl From<ReadError> for LoadError {
    fn from(err: ReadError) -> Self {
        Self::File(err)
    }
}

fn refused(file: &Path, err: LoadError) -> StartupError {
    match err {
        LoadError::File(ReadError::Bad(reason)) => {
            StartupError::Config(format!("{} is refused: {reason}", file.display()))
        }
        LoadError::File(ReadError::Io(err)) => unreadable(file, err),
        LoadError::Store(err) => StartupError::io("writing the restored database", err),
    }
}

/// Refuses a target that exists and is not an empty directory.
fn check_target(target: &Path) -> Result<(), StartupError> {
    let refuse = |what: &str| {
        Err(StartupError::Config(format!(
            "{} {what}; restore only into a new or empty directory",
            target.display()
        )))
    };
    match std::fs::read_dir(target).map(|mut entries| entries.next().is_none()) {
        Ok(true) => Ok(()),
        Ok(false) => refuse("is not empty"),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotADirectory => refuse("is a file"),
        Err(err) => Err(StartupError::io(
            format!("reading {}", target.display()),
            err,
        )),
    }
}

/// The temporary sibling the directory is built in (its parent created
/// when missing).
fn building_dir(target: &Path) -> Result<PathBuf, StartupError> {
    let name = target
        .file_name()
        .ok_or_else(|| StartupError::Config(format!("{} names no directory", target.display())))?;
    let parent = target.parent().filter(|p| !p.as_os_str().is_empty());
    let parent = parent.unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .map_err(|err| StartupError::io(format!("creating {}", parent.display()), err))?;
    let building = parent.join(format!(
        ".{}.restore-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    if building.exists() {
        return Err(StartupError::Config(format!(
            "{} exists (left by an interrupted restore?); remove it first",
            building.display()
        )));
    }
    Ok(building)
}

/// Writes the database and config.json into `building`, durably.
fn build(file: &Path, summary: &Summary, building: &Path) -> Result<(), StartupError> {
    let dir = DataDir::open(building)?;
    let store = Store::open(&dir.db_path(), RESTORE_CACHE_BYTES)?;
    fill(&dir, &store, file, summary, None)
}

/// Writes the checked backup `file` (`summary`: what [`check`] returned)
/// into the data directory `dir` whose database is `store`: every pair,
/// less those under `without`, flushed, and only then config.json (so a
/// directory with a config.json holds its whole backup).
pub fn fill(
    dir: &DataDir,
    store: &Store,
    file: &Path,
    summary: &Summary,
    without: Option<&[u8]>,
) -> Result<(), StartupError> {
    load(store, || open(file)).map_err(|err| refused(file, err))?;
    let written = match without {
        Some(prefix) => remove_prefix(store, prefix),
        None => Ok(()),
    };
    written
        .and_then(|()| store.flush_blocking())
        .map_err(|err| StartupError::io("writing the restored database", err))?;
    write_private_file_atomically(&dir.config_path(), &summary.config)
}

/// Removes every key under `prefix` (every key for an empty one), a page
/// at a time, without a flush.
pub fn remove_prefix(store: &Store, prefix: &[u8]) -> Result<(), StoreError> {
    loop {
        let page = store.scan_blocking(prefix, None, 1000)?;
        if page.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        page.iter().for_each(|(key, _)| batch.delete(key));
        store.apply_blocking(&batch)?;
    }
}

/// Writes a backup into `store`: every scan record, then every journal
/// record in order (two passes over the file from `open`, each checking
/// it whole again; one when the file holds no journal records, as an
/// offline backup's).
pub fn load<R: Read>(
    store: &Store,
    open: impl Fn() -> std::io::Result<R>,
) -> Result<Summary, LoadError> {
    let apply = |ops: Vec<Op>| {
        let mut batch = WriteBatch::default();
        ops.into_iter().for_each(|op| batch.push(op));
        store.apply_blocking(&batch).map_err(LoadError::Store)
    };
    let input = || open().map_err(|err| LoadError::File(ReadError::Io(err)));
    let scanned = format::read(input()?, |record| match record {
        Record::Scan(ops) => apply(ops),
        Record::Journal(_) => Ok(()),
    })?;
    if scanned.counts.journal_records == 0 {
        return Ok(scanned);
    }
    format::read(input()?, |record| match record {
        Record::Journal(ops) => apply(ops),
        Record::Scan(_) => Ok(()),
    })
}

/// Renames the finished directory to `target` (replacing it when it is an
/// empty directory) and makes the rename durable.
fn move_into_place(building: &Path, target: &Path) -> Result<(), StartupError> {
    let context = || format!("moving the restored directory to {}", target.display());
    std::fs::rename(building, target).map_err(|err| StartupError::io(context(), err))?;
    sync_parent_dir(building).map_err(|err| StartupError::io(context(), err))
}
