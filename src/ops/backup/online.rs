//! `GET /admin/v1/backup`: a consistent backup of the running server,
//! streamed as it is read.
//!
//! Invariants: one backup at a time (409 for another while it runs); the
//! journal is attached before the response starts, so a refusal (409, or
//! 503 while the store recovers) is an error envelope; one task produces the
//! body and hands it over through a channel of [`PIPE`] pieces, so the scan
//! advances only as fast as the client reads; a piece the client does not
//! take within `--backup-idle-timeout`, a client that goes away, or the
//! server stopping ends the task, which lets go of the journal (the writer
//! stops journaling at its next batch) and makes room for the next backup.

use super::format::{Header, Source};
use super::snapshot::{self, Sink, Stop};
use crate::core::lifecycle::Lifecycle;
use crate::core::store::Store;
use crate::core::writer::Writer;
use crate::error::ApiError;
use crate::http::Response;
use crate::modules::platform::ModuleContext;
use bytes::Bytes;
use http::{HeaderValue, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Pieces (scan chunks of about 1 MiB, with the journal since the previous
/// one) produced ahead of what the client took.
const PIPE: usize = 2;

/// How online backups run.
#[derive(Debug, Clone)]
pub struct BackupSettings {
    /// The data directory (its config.json goes into the backup).
    pub data_dir: PathBuf,
    /// A client that takes nothing for this long ends its backup.
    pub idle_timeout: Duration,
    /// Most bytes of journaled writes waiting to be sent; beyond, the backup fails.
    pub max_journal_bytes: usize,
}

/// The online backups of one server.
pub struct OnlineBackups {
    writer: Writer,
    store: Store,
    lifecycle: Arc<Lifecycle>,
    settings: BackupSettings,
}

impl OnlineBackups {
    /// Online backups on the core's shared parts.
    pub fn new(context: &ModuleContext, settings: BackupSettings) -> Self {
        Self {
            writer: context.writer.clone(),
            store: context.hub.store().clone(),
            lifecycle: context.lifecycle.clone(),
            settings,
        }
    }

    /// Starts a backup and answers with its streaming body: 409 while
    /// another runs, 503 while the store is not healthy (both from the
    /// writer's tap, which owns the one-backup-at-a-time rule).
    pub async fn start(&self) -> Result<Response, ApiError> {
        let config_path = self.settings.data_dir.join("config.json");
        let config = tokio::fs::read(&config_path).await.map_err(|err| {
            ApiError::internal(format!("reading {}: {err}", config_path.display()))
        })?;
        let journal = self
            .writer
            .attach_journal(self.settings.max_journal_bytes)
            .await?;
        let (sender, receiver) = mpsc::channel(PIPE);
        let mut sink = ChannelSink {
            sender,
            idle_timeout: self.settings.idle_timeout,
            lifecycle: self.lifecycle.clone(),
        };
        let store = self.store.clone();
        self.lifecycle.spawn_session(async move {
            let started = Instant::now();
            let header = Header::now(Source::Online);
            let outcome =
                snapshot::produce(&store, Some(journal), &header, &config, &mut sink).await;
            log_outcome(&outcome, started);
        });
        Ok(streaming(receiver))
    }
}

fn log_outcome(outcome: &Result<super::format::Counts, Stop>, started: Instant) {
    let seconds = started.elapsed().as_secs_f64();
    match outcome {
        Ok(counts) => tracing::info!(
            seconds,
            scan_pairs = counts.scan_pairs,
            journal_ops = counts.journal_ops,
            "online backup sent"
        ),
        Err(stop) => tracing::warn!(seconds, reason = %stop, "online backup aborted"),
    }
}

/// Hands pieces to the response body, waiting at most the idle timeout.
struct ChannelSink {
    sender: mpsc::Sender<Bytes>,
    idle_timeout: Duration,
    lifecycle: Arc<Lifecycle>,
}

impl Sink for ChannelSink {
    async fn send(&mut self, bytes: Bytes) -> Result<(), String> {
        let sent = tokio::time::timeout(self.idle_timeout, self.sender.send(bytes));
        tokio::select! {
            sent = sent => match sent {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err("the client went away".into()),
                Err(_) => Err(format!(
                    "the client read nothing for {} (--backup-idle-timeout)",
                    humantime::format_duration(self.idle_timeout)
                )),
            },
            () = self.lifecycle.stopping() => Err("the server is stopping".into()),
        }
    }
}

/// The response whose body is what the producer sends.
fn streaming(receiver: mpsc::Receiver<Bytes>) -> Response {
    let pieces = futures_util::stream::unfold(receiver, |mut receiver| async move {
        let piece = receiver.recv().await?;
        Some((Ok::<_, Infallible>(Frame::data(piece)), receiver))
    });
    let mut response = http::Response::new(StreamBody::new(pieces).boxed());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
