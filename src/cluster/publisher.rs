//! The publisher: one task of a cluster writer that sends the outbox's
//! durable rows, in number order, to the JetStream stream, and deletes each
//! row once the stream acknowledged it.
//!
//! It connects in the background (the server starts and commits while NATS
//! is down) and, at every (re)connection, **reconciles** with the stream:
//! it reads the stream's last message, its sequence S and its batch number
//! M (`Tidings-Batch`), both from that one message (an empty stream: its
//! last sequence, and the outbox's first row for M). Reading them apart
//! would pair a batch with another batch's sequence when a publish of the
//! previous session lands in between, and a predicted sequence one too low
//! lets the batch after a refused one in: a hole edges can never fill.
//! * M above this writer's last durable batch, or M's message not the one
//!   this writer has (or had) for M (message ids are digests of the
//!   record): another writer published, or this data directory is older
//!   than the stream, so this writer is **fenced** and turns read-only.
//! * Otherwise the rows up to M are deleted (the stream holds them) and the
//!   rows after M are published, each with `Nats-Msg-Id` (the record's
//!   message id), `Tidings-Batch` and the expected last sequence (the
//!   previous one, predicted: this is the stream's only publisher), up to
//!   [`WINDOW`] in flight, their acknowledgements awaited in order.
//!
//! A publish refused for a wrong last sequence, and any other failure
//! (timeout, disconnection, no responders, no quorum, a record larger than
//! the server's `max_payload`), ends the session: the publisher backs off
//! (exponentially, up to [`MAX_BACKOFF`]) and reconciles again, which tells
//! a resend (fine) from another writer (fenced). The stream's
//! leader-elected advisory ends the session too, and the next one starts
//! at once: requests sent while the stream had no leader would each wait
//! for their timeout. Ending a session anywhere is safe: the next one
//! starts from what the stream holds.
//!
//! Invariants: batches reach the stream once each, in number order, with
//! consecutive sequences (a resend of an id within the duplicate window is
//! dropped by the stream and takes no sequence); a row is deleted only once
//! the stream holds its batch; a fenced writer publishes nothing more.

use crate::cluster::outbox::Outbox;
use crate::cluster::record::{BATCH_HEADER, BatchRecord, SUBJECT};
use crate::cluster::stream::{LeaderElections, StreamSettings};
use crate::core::store::{Store, StoreError};
use crate::transport::webhook::backoff::RetryPolicy;
use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, stream::Stream};
use async_nats::{ConnectOptions, Event, ServerAddr, header};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

/// Most batches published and not yet acknowledged.
pub const WINDOW: usize = 256;
/// Longest wait between two attempts after failures: short, because while
/// the stream elects a leader every attempt fails after its own timeout,
/// and a long wait on top delays the first one after the election (the
/// cost, two attempts a second while NATS is down, is nothing).
pub const MAX_BACKOFF: Duration = Duration::from_millis(500);
/// Acknowledged rows deleted together (fewer when nothing else is in flight).
const DELETE_EVERY: u64 = 64;
/// How long a JetStream request (and an acknowledgement) may take: short,
/// as on edges, so a publish or reconnect sent to a stream leader that died
/// gives way within seconds to one that reaches the newly elected leader.
const API_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the connection is checked; two missed pings mean it is dead
/// (a frozen server is left for another within about twice this; edges too).
pub const PING_INTERVAL: Duration = Duration::from_secs(2);
/// Backoff after failed attempts: 100 ms doubling up to [`MAX_BACKOFF`].
const BACKOFF: RetryPolicy = RetryPolicy {
    base: Duration::from_millis(100),
    cap: MAX_BACKOFF,
    retry_for: Duration::MAX,
};

/// The settings of a cluster writer (`serve --nats URL…`).
#[derive(Debug, Clone)]
pub struct WriterSettings {
    /// The NATS servers to connect to (any of them will do).
    pub servers: Vec<ServerAddr>,
    /// The stream batches are published to.
    pub stream: StreamSettings,
    /// Writes are refused (503) while the outbox holds more bytes than this.
    pub outbox_max_bytes: u64,
}

/// Parses `--nats`' URLs (`nats://host:port`, `tls://…`, or `host:port`).
pub fn parse_servers(urls: &[String]) -> Result<Vec<ServerAddr>, String> {
    urls.iter()
        .map(|url| {
            url.trim()
                .parse::<ServerAddr>()
                .map_err(|err| format!("`{url}` is not a NATS server URL: {err}"))
        })
        .collect()
}

/// Starts publishing `outbox` to the stream of `settings` (a task running
/// until the process ends).
pub fn start(settings: &WriterSettings, store: Store, outbox: Arc<Outbox>) {
    let publisher = Publisher {
        servers: settings.servers.clone(),
        stream: settings.stream.clone(),
        store,
        outbox,
        last_acked: None,
        failures: 0,
    };
    tokio::spawn(publisher.run());
}

/// Why a publishing session ended.
enum End {
    /// Another writer owns the stream: publish nothing more.
    Fenced(String),
    /// Back off and reconcile again.
    Failed(String),
    /// The stream elected a leader: reconcile with it at once (requests
    /// sent while it had none would each wait for their timeout).
    NewLeader,
}

impl From<StoreError> for End {
    fn from(err: StoreError) -> Self {
        End::Failed(format!("reading or deleting outbox rows: {err}"))
    }
}

/// Where a session starts publishing.
struct Position {
    /// The stream's last sequence.
    sequence: u64,
    /// The last batch number the stream holds.
    batch: u64,
}

/// A batch published and not yet acknowledged.
struct InFlight {
    number: u64,
    sequence: u64,
    message_id: String,
    ack: PublishAckFuture,
}

struct Publisher {
    servers: Vec<ServerAddr>,
    stream: StreamSettings,
    store: Store,
    outbox: Arc<Outbox>,
    /// The last batch the stream acknowledged, with its message id.
    last_acked: Option<(u64, String)>,
    /// Failed attempts since the last acknowledged batch.
    failures: u32,
}

impl Publisher {
    async fn run(mut self) {
        let context = loop {
            match self.connect().await {
                Ok(client) => {
                    break jetstream::ContextBuilder::new()
                        .timeout(API_TIMEOUT)
                        .build(client);
                }
                Err(problem) => self.back_off(problem).await,
            }
        };
        let mut elections = LeaderElections::follow(&context.client(), &self.stream.name).await;
        loop {
            let end = tokio::select! {
                end = self.session(&context) => end,
                () = elections.next() => End::NewLeader,
            };
            match end {
                End::Fenced(reason) => {
                    self.outbox.fence(reason);
                    return;
                }
                End::Failed(problem) => self.back_off(problem).await,
                End::NewLeader => {
                    tracing::info!(stream = %self.stream.name, "the stream has a new leader; reconciling with it");
                }
            }
        }
    }

    /// A client that connects (and reconnects) in the background,
    /// reporting the connection's state to the outbox.
    async fn connect(&self) -> Result<async_nats::Client, String> {
        let outbox = self.outbox.clone();
        ConnectOptions::new()
            .name("tidings-writer")
            .retry_on_initial_connect()
            .max_reconnects(None)
            .reconnect_delay_callback(|attempts| BACKOFF.ceiling(attempts as u32))
            .connection_timeout(API_TIMEOUT)
            .request_timeout(Some(API_TIMEOUT))
            .ping_interval(PING_INTERVAL)
            .event_callback(move |event| {
                let outbox = outbox.clone();
                async move { report(&outbox, &event) }
            })
            .connect(self.servers.clone())
            .await
            .map_err(|err| format!("connecting to NATS: {err}"))
    }

    async fn back_off(&mut self, problem: String) {
        self.failures = self.failures.saturating_add(1);
        if self.failures == 1 {
            tracing::warn!(problem = %problem, "publishing to the stream failed; retrying until it works");
        } else {
            tracing::debug!(problem = %problem, failures = self.failures, "publishing to the stream failed again");
        }
        self.outbox.failed(problem);
        tokio::time::sleep(BACKOFF.ceiling(self.failures)).await;
    }

    /// Reconciles, then publishes until something fails.
    async fn session(&mut self, context: &jetstream::Context) -> End {
        let mut stream = match self.open_stream(context).await {
            Ok(stream) => stream,
            Err(end) => return end,
        };
        let max_payload = context.client().server_info().max_payload;
        if max_payload > 0 {
            self.outbox.set_max_payload(max_payload);
        }
        let position = match self.reconcile(&mut stream).await {
            Ok(position) => position,
            Err(end) => return end,
        };
        match self.publish_from(context, position).await {
            Ok(never) => match never {},
            Err(end) => end,
        }
    }

    /// The stream, created when missing; it must carry [`SUBJECT`].
    async fn open_stream(&self, context: &jetstream::Context) -> Result<Stream, End> {
        let stream = context
            .get_or_create_stream(self.stream.config())
            .await
            .map_err(|err| End::Failed(format!("opening stream {}: {err}", self.stream.name)))?;
        let subjects = &stream.cached_info().config.subjects;
        if !subjects.iter().any(|subject| subject == SUBJECT) {
            return Err(End::Failed(format!(
                "stream {} exists without the subject {SUBJECT}; use another --nats-stream",
                self.stream.name
            )));
        }
        Ok(stream)
    }

    /// Compares the stream's tail with this writer's batches (fencing it
    /// when they are not its own), deletes the rows the stream holds, and
    /// says where to publish from.
    async fn reconcile(&mut self, stream: &mut Stream) -> Result<Position, End> {
        let state = stream
            .info()
            .await
            .map_err(|err| End::Failed(format!("reading stream {}: {err}", self.stream.name)))?
            .state
            .clone();
        let outbox = self.outbox.clone();
        let first_row = self.blocking(move |store| outbox.first_row(store)).await?;
        // The batch and the sequence come from the same message: a publish
        // of the previous session may land between two reads of the stream.
        let (batch, sequence) = if state.messages > 0 {
            let tail = stream
                .get_last_raw_message_by_subject(SUBJECT)
                .await
                .map_err(|err| End::Failed(format!("reading the stream's last message: {err}")))?;
            let (number, id) = tail_batch(&tail.headers)?;
            self.check_tail(number, &id).await?;
            (number, tail.sequence)
        } else {
            // Empty (new, or everything aged out): nothing to compare with;
            // the outbox says where this writer stands.
            let batch = first_row.map_or(self.outbox.last_durable(), |first| first - 1);
            (batch, state.last_sequence)
        };
        let start = match first_row {
            Some(first) if first > batch + 1 => {
                tracing::error!(
                    stream_batch = batch,
                    first_row = first,
                    "the stream lacks batches it acknowledged (its data was lost or purged); \
                     publishing the outbox from its first row: edges see a gap"
                );
                first - 1
            }
            _ => batch,
        };
        let outbox = self.outbox.clone();
        self.blocking(move |store| outbox.remove_through(store, start))
            .await?;
        self.outbox.stream_holds(start);
        Ok(Position {
            sequence,
            batch: start,
        })
    }

    /// Fences this writer when the stream's last batch `number` (message id
    /// `id`) is not one of its own.
    async fn check_tail(&self, number: u64, id: &str) -> Result<(), End> {
        let last = self.outbox.last_durable();
        if number > last {
            return Err(End::Fenced(format!(
                "the stream holds batch {number}, after this node's last batch {last}"
            )));
        }
        let outbox = self.outbox.clone();
        let row = self
            .blocking(move |store| outbox.row(store, number))
            .await?;
        let ours = match (&row, &self.last_acked) {
            (Some(row), _) => Some(BatchRecord::message_id(number, row)),
            (None, Some((acked, ours))) if *acked == number => Some(ours.clone()),
            _ => None,
        };
        match ours {
            Some(ours) if ours != id => Err(End::Fenced(format!(
                "the stream's batch {number} is not this node's (message {id}, this node's {ours})"
            ))),
            _ => Ok(()),
        }
    }

    /// Publishes the durable rows after `position`, [`WINDOW`] in flight,
    /// deleting them as they are acknowledged; returns only on failure.
    async fn publish_from(
        &mut self,
        context: &jetstream::Context,
        position: Position,
    ) -> Result<std::convert::Infallible, End> {
        let (mut sequence, mut sent) = (position.sequence, position.batch);
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        let mut unremoved = 0u64;
        loop {
            let room = WINDOW - in_flight.len();
            if room > 0 {
                let outbox = self.outbox.clone();
                let rows = self
                    .blocking(move |store| outbox.rows_after(store, sent, room))
                    .await?;
                for (number, row) in rows {
                    if number != sent + 1 {
                        return Err(End::Failed(format!(
                            "the outbox has no row for batch {} (next is {number})",
                            sent + 1
                        )));
                    }
                    in_flight.push_back(publish(context, number, &row, sequence).await?);
                    (sequence, sent) = (sequence + 1, number);
                }
            }
            let Some(next) = in_flight.pop_front() else {
                self.remove_acknowledged(&mut unremoved).await?;
                self.outbox.durable_batch().await;
                continue;
            };
            self.await_ack(next).await?;
            unremoved += 1;
            if unremoved >= DELETE_EVERY || in_flight.is_empty() {
                self.remove_acknowledged(&mut unremoved).await?;
            }
        }
    }

    /// Awaits one acknowledgement, which must be for the predicted sequence.
    async fn await_ack(&mut self, in_flight: InFlight) -> Result<(), End> {
        let number = in_flight.number;
        let ack = in_flight.ack.await.map_err(|err| {
            let why = match err.kind() {
                PublishErrorKind::WrongLastSequence => {
                    "the stream has a message this writer did not expect"
                }
                _ => "no acknowledgement",
            };
            End::Failed(format!("publishing batch {number}: {why}: {err}"))
        })?;
        if ack.sequence != in_flight.sequence {
            return Err(End::Failed(format!(
                "batch {number} is at stream sequence {}, expected {}",
                ack.sequence, in_flight.sequence
            )));
        }
        self.outbox.acknowledged(number);
        self.last_acked = Some((number, in_flight.message_id));
        self.failures = 0;
        Ok(())
    }

    /// Deletes the rows of the batches acknowledged so far.
    async fn remove_acknowledged(&self, unremoved: &mut u64) -> Result<(), End> {
        let Some(through) = self.last_acked.as_ref().map(|(number, _)| *number) else {
            return Ok(());
        };
        if *unremoved == 0 {
            return Ok(());
        }
        let outbox = self.outbox.clone();
        self.blocking(move |store| outbox.remove_through(store, through))
            .await?;
        *unremoved = 0;
        Ok(())
    }

    /// Runs a blocking outbox operation on the blocking pool.
    async fn blocking<T, F>(&self, operation: F) -> Result<T, End>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        Ok(self.store.run(operation).await?)
    }
}

/// Sends batch `number` (its row `row`) expecting the stream's last
/// sequence to be `sequence`.
async fn publish(
    context: &jetstream::Context,
    number: u64,
    row: &[u8],
    sequence: u64,
) -> Result<InFlight, End> {
    let message_id = BatchRecord::message_id(number, row);
    let message = PublishMessage::build()
        .payload(bytes::Bytes::copy_from_slice(row))
        .message_id(&message_id)
        .header(BATCH_HEADER, number.to_string().as_str())
        .expected_last_sequence(sequence);
    let ack = context
        .send_publish(SUBJECT, message)
        .await
        .map_err(|err| match err.kind() {
            PublishErrorKind::MaxPayloadExceeded => End::Failed(format!(
                "batch {number} ({} bytes) is larger than the NATS server's max_payload; \
                 raise max_payload in its configuration: {err}",
                row.len()
            )),
            _ => End::Failed(format!("publishing batch {number}: {err}")),
        })?;
    Ok(InFlight {
        number,
        sequence: sequence + 1,
        message_id,
        ack,
    })
}

/// The batch number and message id of the stream's last message; a
/// message without them is not a Tidings writer's, so this one is fenced.
fn tail_batch(headers: &header::HeaderMap) -> Result<(u64, String), End> {
    let number = headers
        .get(BATCH_HEADER)
        .and_then(|value| value.as_str().parse::<u64>().ok());
    let id = headers.get(header::NATS_MESSAGE_ID);
    match (number, id) {
        (Some(number), Some(id)) => Ok((number, id.as_str().to_string())),
        _ => Err(End::Fenced(format!(
            "the stream's last message has no {BATCH_HEADER} and message id: something else publishes to {SUBJECT}"
        ))),
    }
}

/// Reports a connection event to the outbox and the log.
fn report(outbox: &Outbox, event: &Event) {
    match event {
        Event::Connected => {
            tracing::info!("connected to NATS");
            outbox.set_connected(true);
        }
        Event::Disconnected | Event::Closed => {
            tracing::warn!("disconnected from NATS; reconnecting");
            outbox.set_connected(false);
        }
        other => tracing::info!(event = %other, "NATS connection event"),
    }
}
