//! An edge's first copy of the writer's data: the writer's online backup,
//! restored into the edge's data directory before anything else opens it;
//! and a fresh copy when the replica is older than the stream keeps.
//!
//! * The backup is fetched with `GET {writer}/admin/v1/backup` and the
//!   writer's admin key (`--writer-key`) into `DATA_DIR/bootstrap.backup`
//!   (through `.partial`, checked whole: `ops::backup::output::receive`),
//!   then written into the store by the restore code
//!   (`ops::backup::restore::fill`), without the writer's outbox rows, and
//!   removed. The data directory gets the writer's `config.json` (the same
//!   admin key, tenant and realm secrets).
//! * At every start with a replica, when NATS answers within
//!   [`STREAM_CHECK`], the replica's next batch must still be in the
//!   stream; if the stream begins later, or lost that batch, the replica is
//!   replaced by a fresh copy. When NATS does not answer, the edge serves
//!   the replica it has.
//!
//! Invariants: a data directory with a `config.json` holds a whole copy
//! (the config is written last, and removed first when a copy is
//! replaced), so an interrupted bootstrap is redone at the next start;
//! the backup holds the writer's store after one of its batches, and the
//! `m batch-number` record in it says which.

use super::position::{self, Located, Lost};
use super::replica::stored_batch;
use super::settings::WriterKey;
use super::writer_client::WriterClient;
use crate::core::datadir::{DataDir, sync_parent_dir};
use crate::core::store::{Store, layout};
use crate::error::StartupError;
use crate::ops::backup::{output, restore};
use async_nats::jetstream;
use http_body_util::Full;
use std::path::Path;
use std::time::Duration;

/// How long a start waits for NATS to say whether the replica is recent enough.
pub const STREAM_CHECK: Duration = Duration::from_secs(5);
/// Name of the backup file while it is fetched and restored.
const BACKUP_FILE: &str = "bootstrap.backup";

/// What a bootstrap needs.
pub struct Source<'a> {
    /// The writer.
    pub writer: &'a WriterClient,
    /// The writer's admin key.
    pub key: &'a WriterKey,
    /// The shared log.
    pub nats: &'a jetstream::Context,
    /// The stream's name.
    pub stream: &'a str,
}

/// Opens the edge's store in `dir`, first fetching the writer's data when
/// the directory holds none or an outdated copy.
pub async fn prepare(
    dir: &DataDir,
    source: &Source<'_>,
    cache_bytes: u64,
) -> Result<Store, StartupError> {
    let store = Store::open(&dir.db_path(), cache_bytes)?;
    if dir.config_path().exists() {
        let applied =
            stored_batch(&store).map_err(|err| StartupError::io("reading the replica", err))?;
        match stream_lost(source, applied + 1).await {
            None => return Ok(store),
            Some(lost) => {
                tracing::warn!(
                    applied,
                    ?lost,
                    "this edge's replica cannot follow the stream (older than it keeps, or the stream lost its next batch); fetching a fresh copy from the writer"
                );
                forget_copy(dir, &store)?;
            }
        }
    }
    fetch(dir, &store, source).await?;
    Ok(store)
}

/// Why the stream can no longer give batch `wanted`; `None` when it holds
/// it (or will), or NATS did not say within [`STREAM_CHECK`].
async fn stream_lost(source: &Source<'_>, wanted: u64) -> Option<Lost> {
    let check = async {
        let stream = source.nats.get_stream_no_info(source.stream).await.ok()?;
        position::locate(&stream, wanted).await.ok()
    };
    match tokio::time::timeout(STREAM_CHECK, check).await {
        Ok(Some(Located::Lost(lost))) => Some(lost),
        Ok(_) => None,
        Err(_) => {
            tracing::warn!("NATS did not answer at start; serving the replica as it is");
            None
        }
    }
}

/// Removes the config (first, durably) and every record of a copy.
fn forget_copy(dir: &DataDir, store: &Store) -> Result<(), StartupError> {
    let config = dir.config_path();
    std::fs::remove_file(&config)
        .and_then(|()| sync_parent_dir(&config))
        .map_err(|err| StartupError::io(format!("removing {}", config.display()), err))?;
    restore::remove_prefix(store, &[])
        .and_then(|()| store.flush_blocking())
        .map_err(|err| StartupError::io("clearing the replica", err))
}

/// Fetches the writer's backup and writes it into `store` and `dir`.
async fn fetch(dir: &DataDir, store: &Store, source: &Source<'_>) -> Result<(), StartupError> {
    let file = dir.root().join(BACKUP_FILE);
    remove_if_present(&file)?;
    let summary = download(&file, source).await?;
    let filled = restore::readable(&file, &summary)
        .and_then(|()| restore::fill(dir, store, &file, &summary, Some(&[layout::OUTBOX])));
    remove_if_present(&file)?;
    filled?;
    let applied =
        stored_batch(store).map_err(|err| StartupError::io("reading the replica", err))?;
    tracing::info!(
        writer = %source.writer.address,
        batch = applied,
        pairs = summary.counts.scan_pairs,
        "fetched the writer's data"
    );
    Ok(())
}

/// Streams the writer's backup into `file`.
async fn download(
    file: &Path,
    source: &Source<'_>,
) -> Result<crate::ops::backup::format::Summary, StartupError> {
    let partial = output::PartialFile::create(file)?;
    let writer = &source.writer.address;
    let uri = writer
        .uri("/admin/v1/backup")
        .map_err(|err| StartupError::Config(format!("--writer {writer}: {err}")))?;
    let request = http::Request::get(uri)
        .header("x-api-key", source.key.expose())
        .body(Full::default())
        .map_err(|err| StartupError::Config(format!("--writer-key: {err}")))?;
    let response = source.writer.http.request(request).await.map_err(|err| {
        StartupError::Io(format!(
            "this edge has no copy of the writer's data yet, and the writer at {writer} did not answer ({err}); start the writer first"
        ))
    })?;
    output::receive(partial, response)
        .await
        .map_err(|err| match err {
            StartupError::Config(reason) => StartupError::Config(format!(
                "fetching the writer's backup from {writer}: {reason} (is --writer-key the writer's admin key?)"
            )),
            other => StartupError::Io(format!("fetching the writer's backup from {writer}: {other}")),
        })
}

fn remove_if_present(file: &Path) -> Result<(), StartupError> {
    match std::fs::remove_file(file) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(StartupError::io(
            format!("removing {}", file.display()),
            err,
        )),
        _ => Ok(()),
    }
}
