//! The follower: reads the writer's batch records from the stream into the
//! replica, in number order, for as long as the edge runs.
//!
//! Each round locates the record the replica needs next
//! ([`super::position`]), reads the stream from there with an ephemeral,
//! unacknowledged pull consumer, and applies every record
//! ([`super::replica`]): duplicates are skipped; anything else (a gap, a
//! consumer error, NATS unreachable) ends the round, and the next one
//! starts from the replica's number again after a back-off (bounded,
//! [`MAX_BACKOFF`]). Meanwhile the edge serves what its replica holds.
//!
//! Invariants: nothing but the replica's own number decides what is
//! applied, so a restarted round never applies a record twice nor skips
//! one; a record the stream no longer holds ends the follower with an
//! error (the replica is too old: the edge exits, and its next start
//! bootstraps again), as does a record that does not decode or a replica
//! that cannot be written (the process exits; the replica is refetched).

use super::position::{self, Located};
use super::replica::{Replica, Step};
use crate::cluster::record::{BatchRecord, SUBJECT};
use crate::core::lifecycle::Lifecycle;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::{self, stream::Stream};
use futures_util::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// First wait after a round ended on an error.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between rounds.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// A consumer nobody reads for this long is removed by the server.
const CONSUMER_INACTIVE: Duration = Duration::from_secs(30);
/// How long one pull request waits for messages before another is sent.
const PULL_EXPIRES: Duration = Duration::from_secs(5);
/// The server's idle heartbeat on a pull request: two missed mean the
/// consumer is gone (its node died or froze) and the round ends, so the
/// next one makes a consumer on a live node within about twice this.
const PULL_HEARTBEAT: Duration = Duration::from_secs(1);

/// How far the stream is, as the follower last saw it.
#[derive(Debug, Default)]
pub struct Progress {
    last_batch: AtomicU64,
    caught_up: AtomicBool,
}

impl Progress {
    /// The number of the stream's last record (0: not known yet).
    pub fn last_batch(&self) -> u64 {
        self.last_batch.load(Ordering::Relaxed)
    }

    /// Whether the replica held the stream's last record at some moment.
    pub fn caught_up_once(&self) -> bool {
        self.caught_up.load(Ordering::Relaxed)
    }

    /// Notes the stream's last record and whether the replica holds it.
    fn saw(&self, last_batch: u64, applied: u64) {
        self.last_batch.fetch_max(last_batch, Ordering::Relaxed);
        if applied >= self.last_batch() {
            self.caught_up.store(true, Ordering::Relaxed);
        }
    }
}

/// Why a round of reading ended.
enum Ended {
    /// Worth another round after a back-off.
    Interrupted(String),
    /// The edge cannot go on.
    Fatal(String),
}

/// Reads `stream` of `context` into `replica`.
pub struct Follower {
    /// The JetStream context of the edge's NATS connection.
    pub context: jetstream::Context,
    /// The stream's name.
    pub stream: String,
    /// The replica it advances.
    pub replica: Arc<Replica>,
    /// What it saw of the stream.
    pub progress: Arc<Progress>,
}

impl Follower {
    /// Follows until the server stops (`Ok`) or the edge cannot go on
    /// (`Err` with the reason for the operator).
    pub async fn run(self, lifecycle: Arc<Lifecycle>) -> Result<(), String> {
        let mut backoff = FIRST_BACKOFF;
        let mut reported = String::new();
        loop {
            let ended = tokio::select! {
                ended = self.round(&mut backoff) => ended,
                () = lifecycle.stopping() => return Ok(()),
            };
            match ended {
                Ended::Fatal(reason) => return Err(reason),
                // The same reason again (NATS still down) is not news.
                Ended::Interrupted(reason) if reason == reported && backoff == MAX_BACKOFF => {
                    tracing::debug!(%reason, "reading the shared log still paused");
                }
                Ended::Interrupted(reason) => {
                    tracing::warn!(%reason, retry_in = ?backoff, "reading the shared log paused; this edge serves what its replica holds");
                    reported = reason;
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = lifecycle.stopping() => return Ok(()),
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One round: locate, read, apply until something ends it. `backoff`
    /// is reset once a record was applied.
    async fn round(&self, backoff: &mut Duration) -> Ended {
        let stream = match self.context.get_stream_no_info(&self.stream).await {
            Ok(stream) => stream,
            Err(err) => {
                return Ended::Interrupted(format!("opening stream {}: {err}", self.stream));
            }
        };
        let sequence = match self.start(&stream).await {
            Ok(sequence) => sequence,
            Err(ended) => return ended,
        };
        let mut messages = match self.read_from(&stream, sequence).await {
            Ok(messages) => messages,
            Err(reason) => return Ended::Interrupted(reason),
        };
        while let Some(message) = messages.next().await {
            let message = match message {
                Ok(message) => message,
                Err(err) => return Ended::Interrupted(format!("reading the stream: {err}")),
            };
            let pending = message.info().map_or(0, |info| info.pending);
            let record = match BatchRecord::decode(&message.message.payload) {
                Ok(record) => record,
                Err(reason) => {
                    return Ended::Fatal(format!(
                        "a record of stream {} does not decode ({reason}); this edge cannot follow it",
                        self.stream
                    ));
                }
            };
            let number = record.number;
            match self.replica.apply(record).await {
                Ok(Step::Gap { next }) => {
                    return Ended::Interrupted(format!(
                        "the stream gave batch {number} where batch {next} was due"
                    ));
                }
                Ok(Step::Applied | Step::Duplicate) => *backoff = FIRST_BACKOFF,
                Err(err) => return Ended::Fatal(format!("writing the replica failed: {err}")),
            }
            self.progress.saw(number + pending, self.replica.applied());
        }
        Ended::Interrupted("the stream's consumer ended".into())
    }

    /// The sequence to read from for the replica's next batch.
    async fn start(&self, stream: &Stream<()>) -> Result<u64, Ended> {
        let applied = self.replica.applied();
        match position::locate(stream, applied + 1).await {
            Ok(Located::From {
                sequence,
                last_batch,
            }) => {
                self.progress.saw(last_batch, applied);
                Ok(sequence)
            }
            Ok(Located::Gone { first }) => Err(Ended::Fatal(too_old(&self.stream, applied, first))),
            Err(reason) => Err(Ended::Interrupted(reason)),
        }
    }

    /// The stream's records from `sequence` on, unacknowledged, in order.
    async fn read_from(&self, stream: &Stream<()>, sequence: u64) -> Result<pull::Stream, String> {
        let consumer = stream
            .create_consumer(pull::Config {
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: sequence,
                },
                ack_policy: AckPolicy::None,
                filter_subject: SUBJECT.into(),
                inactive_threshold: CONSUMER_INACTIVE,
                ..Default::default()
            })
            .await
            .map_err(|err| format!("creating a consumer: {err}"))?;
        consumer
            .stream()
            .expires(PULL_EXPIRES)
            .heartbeat(PULL_HEARTBEAT)
            .messages()
            .await
            .map_err(|err| format!("reading from the consumer: {err}"))
    }
}

/// The operator's message for a replica older than the stream keeps.
pub fn too_old(stream: &str, applied: u64, first: u64) -> String {
    format!(
        "this edge's replica holds batch {applied}, but stream {stream} now begins at batch {first}: \
         the batches between are gone (the stream's retention); restart this edge: its next start \
         fetches a fresh copy from the writer"
    )
}
