//! The follower: reads the writer's batch records from the stream into the
//! replica, in number order, for as long as the edge runs.
//!
//! Each round locates the record the replica needs next
//! ([`super::position`]: right after the last record read when there was
//! one, so that a round after a NATS failure reads no message to find its
//! start), reads the stream from there with an ephemeral, unacknowledged
//! pull consumer, and applies every record ([`super::replica`]): duplicates
//! are skipped; anything else (a gap, a consumer error, NATS unreachable)
//! ends the round, and the next one starts from the replica's number again
//! after a back-off (bounded, [`MAX_BACKOFF`]). Meanwhile the edge serves
//! what its replica holds.
//!
//! A stalled consumer also ends the round: nats-server places an ephemeral
//! consumer on any replica of the stream, and one placed on a replica that
//! is still catching up (a node restarted after the stream leader died)
//! sends heartbeats but no record until that replica has caught up, which
//! takes seconds. When nothing arrived for [`STALL_CHECK`] while the stream
//! leader says the stream holds more (or does not answer), the consumer is
//! deleted and the next round makes a new one, on another node than the
//! stalled one. A leader election of the stream (JetStream's advisory)
//! ends a round that is waiting on NATS (never one applying a record) and
//! the next starts at once: a request sent while the stream had no leader
//! would wait for its timeout.
//!
//! Invariants: nothing but the replica's own number decides what is
//! applied, so a restarted round never applies a record twice nor skips
//! one; a record the stream no longer holds ends the follower with an
//! error (the replica is too old, or the stream lost records it had
//! acknowledged: the edge exits, and its next start bootstraps again), as
//! does a record that does not decode or a replica that cannot be written
//! (the process exits; the replica is refetched).

use super::position::{self, Located, Lost};
use super::replica::{Replica, Step};
use crate::cluster::record::{BatchRecord, SUBJECT};
use crate::cluster::stream::LeaderElections;
use crate::core::lifecycle::Lifecycle;
use async_nats::jetstream::consumer::{self, AckPolicy, Consumer, DeliverPolicy, pull};
use async_nats::jetstream::{self, stream::Stream};
use futures_util::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// First wait after a round ended on an error.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between rounds: short for the reason the writer's is
/// ([`crate::cluster::publisher::MAX_BACKOFF`]).
pub const MAX_BACKOFF: Duration = Duration::from_millis(500);
/// A consumer nobody reads for this long is removed by the server.
const CONSUMER_INACTIVE: Duration = Duration::from_secs(30);
/// How long one pull request waits for messages before another is sent.
const PULL_EXPIRES: Duration = Duration::from_secs(5);
/// The server's idle heartbeat on a pull request: two missed mean the
/// consumer is gone (its node died or froze) and the round ends, so the
/// next one makes a consumer on a live node within about twice this.
const PULL_HEARTBEAT: Duration = Duration::from_secs(1);
/// A consumer that delivered nothing for this long is checked against the
/// stream's state: stalled when the stream holds a record it did not send.
const STALL_CHECK: Duration = Duration::from_secs(1);
/// How many consumers a round makes at most to get one off the node of a
/// stalled one.
const PLACEMENT_TRIES: usize = 3;

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
    /// The consumer sent nothing while the stream held more: worth another
    /// round with another consumer.
    Stalled(String),
    /// The stream elected a leader: start over at once (a request sent
    /// while it had none would wait for its timeout, and a consumer made
    /// then may hang on a node that is catching up).
    NewLeader,
    /// The edge cannot go on.
    Fatal(String),
}

/// What a round leaves to the next one.
#[derive(Debug)]
struct Carry {
    /// The wait after an interrupted round.
    backoff: Duration,
    /// The number and stream sequence of the last record read.
    last_read: Option<(u64, u64)>,
    /// The NATS node of the last consumer that stalled.
    stalled_on: Option<String>,
}

/// Reads `stream` of `context` into `replica`.
pub struct Follower {
    context: jetstream::Context,
    stream: String,
    replica: Arc<Replica>,
    progress: Arc<Progress>,
    /// Woken at each leader election of the stream.
    elected: Arc<Notify>,
}

impl Follower {
    /// A follower of stream `stream` on `context` (the edge's NATS
    /// connection) into `replica`, noting what it sees in `progress`.
    pub fn new(
        context: jetstream::Context,
        stream: String,
        replica: Arc<Replica>,
        progress: Arc<Progress>,
    ) -> Self {
        Self {
            context,
            stream,
            replica,
            progress,
            elected: Arc::new(Notify::new()),
        }
    }

    /// Follows until the server stops (`Ok`) or the edge cannot go on
    /// (`Err` with the reason for the operator).
    pub async fn run(self, lifecycle: Arc<Lifecycle>) -> Result<(), String> {
        let mut carry = Carry {
            backoff: FIRST_BACKOFF,
            last_read: None,
            stalled_on: None,
        };
        let mut reported = String::new();
        self.follow_elections(lifecycle.clone()).await;
        loop {
            let ended = tokio::select! {
                ended = self.round(&mut carry) => ended,
                () = lifecycle.stopping() => return Ok(()),
            };
            let reason = match ended {
                Ended::Fatal(reason) => return Err(reason),
                Ended::NewLeader => {
                    tracing::info!(stream = %self.stream, "the stream has a new leader; reading from it");
                    carry.backoff = FIRST_BACKOFF;
                    continue;
                }
                Ended::Interrupted(reason) | Ended::Stalled(reason) => reason,
            };
            // The same reason again (NATS still down) is not news.
            if reason == reported && carry.backoff == MAX_BACKOFF {
                tracing::debug!(%reason, "reading the shared log still paused");
            } else {
                tracing::warn!(%reason, retry_in = ?carry.backoff, "reading the shared log paused; this edge serves what its replica holds");
                reported = reason;
            }
            tokio::select! {
                () = tokio::time::sleep(carry.backoff) => {}
                () = self.elected.notified() => {}
                () = lifecycle.stopping() => return Ok(()),
            }
            carry.backoff = (carry.backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Wakes [`Follower::elected`]'s waiters at each leader election of
    /// the stream, until the server stops.
    async fn follow_elections(&self, lifecycle: Arc<Lifecycle>) {
        let mut elections = LeaderElections::follow(&self.context.client(), &self.stream).await;
        let elected = self.elected.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = elections.next() => elected.notify_waiters(),
                    () = lifecycle.stopping() => return,
                }
            }
        });
    }

    /// `step`'s outcome, unless the stream elects a leader first
    /// ([`Ended::NewLeader`]); only for steps that change nothing here.
    async fn unless_new_leader<T>(
        &self,
        step: impl Future<Output = Result<T, Ended>>,
    ) -> Result<T, Ended> {
        tokio::select! {
            outcome = step => outcome,
            () = self.elected.notified() => Err(Ended::NewLeader),
        }
    }

    /// One round: locate, read, apply until something ends it.
    async fn round(&self, carry: &mut Carry) -> Ended {
        let stream = match self.context.get_stream_no_info(&self.stream).await {
            Ok(stream) => stream,
            Err(err) => {
                return Ended::Interrupted(format!("opening stream {}: {err}", self.stream));
            }
        };
        let sequence = match self.unless_new_leader(self.start(&stream, carry)).await {
            Ok(sequence) => sequence,
            Err(ended) => return ended,
        };
        let consumer = self.consumer_at(&stream, sequence, carry.stalled_on.as_deref());
        let consumer = match self
            .unless_new_leader(async { consumer.await.map_err(Ended::Interrupted) })
            .await
        {
            Ok(consumer) => consumer,
            Err(ended) => return ended,
        };
        let ended = self.read(&stream, &consumer, sequence, carry).await;
        if let Ended::Stalled(_) = ended {
            let info = consumer.cached_info();
            carry.stalled_on = node_of(info);
            // A stall took STALL_CHECK already: the next consumer comes soon.
            carry.backoff = FIRST_BACKOFF;
            // Deleted now rather than when inactive (it stays stalled), on
            // the side: the request may wait while NATS recovers.
            let (stream, name) = (stream.clone(), info.name.clone());
            tokio::spawn(async move { stream.delete_consumer(&name).await });
        }
        ended
    }

    /// Applies the records `consumer` sends (from stream sequence
    /// `sequence` on) until something ends the round.
    async fn read(
        &self,
        stream: &Stream<()>,
        consumer: &Consumer<pull::Config>,
        mut sequence: u64,
        carry: &mut Carry,
    ) -> Ended {
        let mut messages = match consumer
            .stream()
            .expires(PULL_EXPIRES)
            .heartbeat(PULL_HEARTBEAT)
            .messages()
            .await
        {
            Ok(messages) => messages,
            Err(err) => return Ended::Interrupted(format!("reading from the consumer: {err}")),
        };
        loop {
            let waited = tokio::select! {
                waited = tokio::time::timeout(STALL_CHECK, messages.next()) => waited,
                () = self.elected.notified() => return Ended::NewLeader,
            };
            let message = match waited {
                Ok(Some(Ok(message))) => message,
                Ok(Some(Err(err))) => {
                    return Ended::Interrupted(format!("reading the stream: {err}"));
                }
                Ok(None) => return Ended::Interrupted("the stream's consumer ended".into()),
                Err(_) => match stalled(stream, consumer, sequence).await {
                    Some(reason) => return Ended::Stalled(reason),
                    None => continue,
                },
            };
            match self.apply(&message, carry).await {
                Ok(read) => sequence = read + 1,
                Err(ended) => return ended,
            }
        }
    }

    /// Applies the record in `message`; its stream sequence when the round
    /// goes on.
    async fn apply(&self, message: &jetstream::Message, carry: &mut Carry) -> Result<u64, Ended> {
        let info = message
            .info()
            .map_err(|err| Ended::Interrupted(format!("a message of the stream: {err}")))?;
        let (sequence, pending) = (info.stream_sequence, info.pending);
        let record = BatchRecord::decode(&message.message.payload).map_err(|reason| {
            Ended::Fatal(format!(
                "a record of stream {} does not decode ({reason}); this edge cannot follow it",
                self.stream
            ))
        })?;
        let number = record.number;
        match self.replica.apply(record).await {
            Ok(Step::Gap { next }) => {
                carry.last_read = None;
                return Err(Ended::Interrupted(format!(
                    "the stream gave batch {number} where batch {next} was due"
                )));
            }
            Ok(Step::Applied | Step::Duplicate) => {
                carry.backoff = FIRST_BACKOFF;
                carry.last_read = Some((number, sequence));
                carry.stalled_on = None;
            }
            Err(err) => return Err(Ended::Fatal(format!("writing the replica failed: {err}"))),
        }
        self.progress.saw(number + pending, self.replica.applied());
        Ok(sequence)
    }

    /// The sequence to read from for the replica's next batch: right after
    /// the last record read when that is the replica's last one.
    async fn start(&self, stream: &Stream<()>, carry: &Carry) -> Result<u64, Ended> {
        let applied = self.replica.applied();
        let located = match carry.last_read {
            Some((number, sequence)) if number == applied => {
                position::resume(stream, applied + 1, sequence).await
            }
            _ => position::locate(stream, applied + 1).await,
        };
        match located {
            Ok(Located::From {
                sequence,
                last_batch,
            }) => {
                self.progress.saw(last_batch, applied);
                Ok(sequence)
            }
            Ok(Located::Lost(lost)) => {
                Err(Ended::Fatal(unusable_replica(&self.stream, applied, lost)))
            }
            Err(reason) => Err(Ended::Interrupted(reason)),
        }
    }

    /// A consumer of the stream's records from `sequence` on,
    /// unacknowledged, in order; placed elsewhere than on node `avoid` when
    /// a few tries allow.
    async fn consumer_at(
        &self,
        stream: &Stream<()>,
        sequence: u64,
        avoid: Option<&str>,
    ) -> Result<Consumer<pull::Config>, String> {
        let config = pull::Config {
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: sequence,
            },
            ack_policy: AckPolicy::None,
            filter_subject: SUBJECT.into(),
            inactive_threshold: CONSUMER_INACTIVE,
            ..Default::default()
        };
        let mut tries = 0;
        loop {
            let consumer = stream
                .create_consumer(config.clone())
                .await
                .map_err(|err| format!("creating a consumer: {err}"))?;
            tries += 1;
            let info = consumer.cached_info();
            if avoid.is_none() || node_of(info).as_deref() != avoid || tries == PLACEMENT_TRIES {
                return Ok(consumer);
            }
            let _ = stream.delete_consumer(&info.name).await;
        }
    }
}

/// The NATS node a consumer runs on, as its information names it.
fn node_of(info: &consumer::Info) -> Option<String> {
    info.cluster.as_ref()?.leader.clone()
}

/// Why `consumer`, which sent nothing for [`STALL_CHECK`] and is due to
/// send stream sequence `sequence` next, is stalled: the stream leader
/// says the stream holds that sequence, or does not answer at all (while
/// NATS recovers from a fault a consumer often hangs on a node that is
/// catching up; a new round makes another, and its requests fail fast
/// while the stream has no leader). None when the stream does not hold
/// that sequence yet: nothing was due.
async fn stalled(
    stream: &Stream<()>,
    consumer: &Consumer<pull::Config>,
    sequence: u64,
) -> Option<String> {
    let node = node_of(consumer.cached_info()).unwrap_or_else(|| "?".into());
    let quiet = format!("the consumer on NATS node {node} sent nothing for {STALL_CHECK:?}");
    match stream.get_info().await {
        Ok(info) if info.state.last_sequence < sequence => None,
        Ok(info) => Some(format!(
            "{quiet} while the stream holds sequences {sequence} to {}: that node is catching up; \
             reading through a new consumer",
            info.state.last_sequence
        )),
        Err(err) => Some(format!(
            "{quiet} and the stream's state could not be had ({err}); reading through a new consumer"
        )),
    }
}

/// The operator's message for a replica holding batch `applied` that
/// cannot follow the stream any more, `lost` saying why.
pub fn unusable_replica(stream: &str, applied: u64, lost: Lost) -> String {
    let why = match lost {
        Lost::Gone { first } => format!(
            "stream {stream} now begins at batch {first}: the batches between are gone (the \
             stream's retention)"
        ),
        Lost::Missing { next } => format!(
            "stream {stream} lacks batch {} although it holds batch {next} (the stream lost \
             batches it had acknowledged)",
            applied + 1
        ),
    };
    format!(
        "this edge's replica holds batch {applied}, but {why}; restart this edge: its next start \
         fetches a fresh copy from the writer"
    )
}
