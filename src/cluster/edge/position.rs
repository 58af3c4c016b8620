//! Where a batch record is in the stream: the stream sequence to start
//! reading at so that the record a replica needs next comes first.
//!
//! The writer publishes every batch once, in number order, and nothing else
//! publishes on the stream, so the sequence of batch n is n + k for a
//! constant k: the start is guessed from the stream's last message (its
//! sequence minus its [`BATCH_HEADER`]) and checked; when the guess is
//! wrong (the stream was recreated, messages were deleted), the sequence is
//! searched for (numbers grow with sequences). A reader still checks every
//! record's number: starting early only costs duplicates, which it skips.
//!
//! A reader that already read the record before the wanted one knows its
//! sequence: [`resume`] starts right after it, checked against the stream's
//! state alone (answered by the stream leader). It reads no message, because
//! a replica still catching up after a restart answers message reads with
//! "JetStream system temporarily unavailable", sooner than the leader, for
//! as long as it catches up. Message reads ([`locate`]) fall back to a
//! direct get, which any current replica answers.
//!
//! Invariants: [`Located::From`] never starts after the wanted record while
//! the stream holds it; [`Lost::Gone`] is said only when the stream's
//! first message is a later batch (retention removed the wanted one), and
//! [`Lost::Missing`] only when the stream's leader holds an earlier and a
//! later batch but not the wanted one.

use crate::cluster::record::BATCH_HEADER;
use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::{RawMessageErrorKind, State, Stream};

/// Where reading should start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Located {
    /// Read from this stream sequence (the wanted record, or where it will
    /// be published when the stream does not hold it yet).
    From {
        /// The stream sequence.
        sequence: u64,
        /// The number of the stream's last record (0: empty).
        last_batch: u64,
    },
    /// The stream can no longer give the wanted record.
    Lost(Lost),
}

/// Why the stream can no longer give a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lost {
    /// The stream no longer holds it: its oldest record is `first`.
    Gone {
        /// The number of the oldest record the stream holds.
        first: u64,
    },
    /// The stream holds records before and after it, but not it: a hole
    /// (the stream lost records it had acknowledged) no reader can cross.
    Missing {
        /// The number of the first record after the hole.
        next: u64,
    },
}

/// Where to read from for batch `wanted` (the first one a replica lacks).
pub async fn locate<I>(stream: &Stream<I>, wanted: u64) -> Result<Located, String> {
    let state = state_of(stream).await?;
    locate_in(stream, &state, wanted).await
}

/// Where to read from for batch `wanted` when batch `wanted - 1` was read
/// at stream sequence `previous`: right after it while the stream still
/// holds it (sequences grow with numbers), found by [`locate`] otherwise
/// (the stream was recreated, or retention reached it).
pub async fn resume<I>(stream: &Stream<I>, wanted: u64, previous: u64) -> Result<Located, String> {
    let state = state_of(stream).await?;
    if state.messages == 0 || previous < state.first_sequence || previous > state.last_sequence {
        return locate_in(stream, &state, wanted).await;
    }
    Ok(Located::From {
        sequence: previous + 1,
        last_batch: wanted - 1 + (state.last_sequence - previous),
    })
}

/// The stream's state, as its leader tells it.
async fn state_of<I>(stream: &Stream<I>) -> Result<State, String> {
    let info = stream
        .get_info()
        .await
        .map_err(|err| format!("reading the stream's state: {err}"))?;
    Ok(info.state)
}

/// [`locate`] in a stream whose state is `state`.
async fn locate_in<I>(stream: &Stream<I>, state: &State, wanted: u64) -> Result<Located, String> {
    if state.messages == 0 {
        return Ok(Located::From {
            sequence: state.last_sequence + 1,
            last_batch: 0,
        });
    }
    let last_batch = number_at(stream, state.last_sequence).await?;
    let from = |sequence| Located::From {
        sequence,
        last_batch,
    };
    if wanted > last_batch {
        return Ok(from(state.last_sequence + 1));
    }
    let first = number_at(stream, state.first_sequence).await?;
    if wanted < first {
        return Ok(Located::Lost(Lost::Gone { first }));
    }
    let guess = state
        .last_sequence
        .checked_sub(last_batch - wanted)
        .filter(|guess| *guess >= state.first_sequence);
    if let Some(guess) = guess
        && number_at(stream, guess).await.ok() == Some(wanted)
    {
        return Ok(from(guess));
    }
    match search(stream, state.first_sequence, state.last_sequence, wanted).await {
        Ok(sequence) => match number_at(stream, sequence).await? {
            found if found == wanted => Ok(from(sequence)),
            next => Ok(Located::Lost(Lost::Missing { next })),
        },
        // A hole (a deleted message): read from the start, skipping duplicates.
        Err(Missing::Hole) => Ok(from(state.first_sequence)),
        Err(Missing::Failed(err)) => Err(err),
    }
}

/// Why a search did not find its sequence.
enum Missing {
    /// A message in the range was deleted.
    Hole,
    /// Reading failed.
    Failed(String),
}

/// The smallest sequence in `low..=high` whose batch is `wanted` or later
/// (batches grow with sequences; the last one is at least `wanted`).
async fn search<I>(
    stream: &Stream<I>,
    mut low: u64,
    mut high: u64,
    wanted: u64,
) -> Result<u64, Missing> {
    while low < high {
        let middle = low + (high - low) / 2;
        let number = match stream.get_raw_message(middle).await {
            Ok(message) => batch_of(&message.headers).map_err(Missing::Failed)?,
            Err(err) if matches!(err.kind(), RawMessageErrorKind::NoMessageFound) => {
                return Err(Missing::Hole);
            }
            Err(err) => return Err(Missing::Failed(format!("reading message {middle}: {err}"))),
        };
        if number < wanted {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    Ok(low)
}

/// The batch number of the message at `sequence`.
async fn number_at<I>(stream: &Stream<I>, sequence: u64) -> Result<u64, String> {
    batch_of(&message_at(stream, sequence).await?.headers)
}

/// The message at `sequence`: asked of the stream leader, then, when that
/// request fails (a replica that is catching up answered first that the
/// stream is unavailable), of any replica through a direct get.
async fn message_at<I>(stream: &Stream<I>, sequence: u64) -> Result<StreamMessage, String> {
    let failed = match stream.get_raw_message(sequence).await {
        Ok(message) => return Ok(message),
        Err(err) => err,
    };
    stream
        .direct_get(sequence)
        .await
        .map_err(|err| format!("reading message {sequence}: {failed}; then directly: {err}"))
}

/// The batch number a message's headers carry.
pub fn batch_of(headers: &async_nats::HeaderMap) -> Result<u64, String> {
    headers
        .get(BATCH_HEADER)
        .and_then(|value| value.as_str().parse().ok())
        .ok_or_else(|| format!("a message of the stream has no {BATCH_HEADER} header"))
}
