//! Writing a backup file on this machine (`tidings backup --out FILE`, and
//! an edge fetching its writer's backup), and the offline backup of a data
//! directory no server holds.
//!
//! Invariants: the bytes go to `FILE.partial` (mode 0600: the file holds the
//! data directory's secrets), which is synced, checked whole with the
//! restore's reader, and only then renamed to `FILE`; a backup that fails
//! leaves neither; an existing `FILE` is never overwritten.

use super::format::{Header, Source, Summary};
use super::restore::verify;
use super::snapshot::{self, Sink, Stop};
use crate::core::datadir::{DataDir, sync_parent_dir};
use crate::core::store::Store;
use crate::error::StartupError;
use bytes::Bytes;
use http_body_util::BodyExt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Page cache of the database while an offline backup reads it.
const OFFLINE_CACHE_BYTES: u64 = 64 << 20;

/// `FILE.partial` while a backup is written to it; removed unless finished.
pub struct PartialFile {
    out: PathBuf,
    partial: PathBuf,
    file: Option<File>,
}

impl PartialFile {
    /// Creates `out.partial` (replacing one left by an interrupted backup);
    /// refuses when `out` exists.
    pub fn create(out: &Path) -> Result<Self, StartupError> {
        if out.exists() {
            return Err(StartupError::Config(format!(
                "{} exists; choose another --out or move it away",
                out.display()
            )));
        }
        let mut partial = out.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&partial)
            .map_err(|err| StartupError::io(format!("creating {}", partial.display()), err))?;
        Ok(Self {
            out: out.to_path_buf(),
            partial,
            file: Some(file),
        })
    }

    /// Appends bytes.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), StartupError> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| StartupError::Io("the file is closed".into()))?;
        file.write_all(bytes)
            .map_err(|err| StartupError::io(format!("writing {}", self.partial.display()), err))
    }

    /// Syncs the file, checks it whole, renames it to its final name and
    /// syncs the directory; returns what it holds.
    pub fn finish(mut self) -> Result<Summary, StartupError> {
        let context = |what: &str| format!("{what} {}", self.partial.display());
        if let Some(file) = self.file.take() {
            file.sync_all()
                .map_err(|err| StartupError::io(context("syncing"), err))?;
        }
        let summary = verify(&self.partial)?;
        std::fs::rename(&self.partial, &self.out)
            .map_err(|err| StartupError::io(context("renaming"), err))?;
        sync_parent_dir(&self.out)
            .map_err(|err| StartupError::io(context("syncing the directory of"), err))?;
        Ok(summary)
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if self.partial.exists() {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

impl Sink for PartialFile {
    /// Writes on the calling thread (the command line's own runtime).
    async fn send(&mut self, bytes: Bytes) -> Result<(), String> {
        self.write(&bytes).map_err(|err| err.to_string())
    }
}

/// Writes the body of a `GET /admin/v1/backup` answer into `file` and
/// finishes it (checked whole, renamed); a refusal (not 2xx) is the
/// server's message, and leaves nothing.
pub async fn receive<B>(
    mut file: PartialFile,
    response: http::Response<B>,
) -> Result<Summary, StartupError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let status = response.status();
    let mut body = response.into_body();
    if !status.is_success() {
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Err(refusal(status, &bytes));
    }
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| StartupError::io("receiving the backup", err))?;
        if let Some(data) = frame.data_ref() {
            file.write(data)?;
        }
    }
    file.finish()
}

/// A refusal by a server, with the message of its error envelope.
pub fn refusal(status: http::StatusCode, body: &[u8]) -> StartupError {
    let reply: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let message = reply["error"]["message"]
        .as_str()
        .unwrap_or("request failed")
        .to_string();
    StartupError::Config(format!("the server refused ({status}): {message}"))
}

/// Backs up the data directory `data_dir`, which no server may hold, to `out`.
pub fn offline(data_dir: &Path, out: &Path) -> Result<Summary, StartupError> {
    let mut file = PartialFile::create(out)?;
    // Fails clearly when there is no data directory there (nothing is created).
    crate::core::datadir::read_existing_config(data_dir)?;
    let dir = DataDir::open(data_dir).map_err(|err| match err {
        StartupError::DataDirInUse(message) => StartupError::DataDirInUse(format!(
            "{message}; to back up the running server, pass --url with its address"
        )),
        other => other,
    })?;
    let config = std::fs::read(dir.config_path())
        .map_err(|err| StartupError::io(format!("reading {}", dir.config_path().display()), err))?;
    let store = Store::open(&dir.db_path(), OFFLINE_CACHE_BYTES)?;
    let header = Header::now(Source::Offline);
    let produced =
        crate::cli::block_on(snapshot::produce(&store, None, &header, &config, &mut file))?;
    produced.map_err(|stop| match stop {
        Stop::Sink(reason) => StartupError::Io(reason),
        Stop::Source(reason) => StartupError::Io(format!("the backup failed: {reason}")),
    })?;
    file.finish()
}
