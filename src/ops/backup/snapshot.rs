//! Producing a backup: the fuzzy scan of the whole store, interleaved with
//! the journal of the batches made durable meanwhile, written to a [`Sink`]
//! a record at a time.
//!
//! Invariants: the journal is attached before the first chunk is read and
//! finished (detached, at a batch boundary) after the last one, so every
//! batch whose apply overlapped the scan is in the file; the scan stops at
//! the greatest key there was once the journal was attached (anything
//! beyond was written later, so it is journaled); chunks are read on
//! the blocking pool, a bounded number of pairs and bytes at a time, and the
//! next one only once the sink took the previous (a slow reader slows the
//! scan, never the writer); nothing is held beyond one chunk and the
//! journal's bounded queue.

use super::format::{CHUNK_BYTES, Encoder, Header};
use crate::core::store::Store;
use crate::core::writer::JournalHandle;
use bytes::Bytes;

/// Most pairs one scan record holds.
const CHUNK_PAIRS: usize = 10_000;

/// Where the file goes, a piece at a time.
pub trait Sink {
    /// Takes the next piece; an error ends the backup (the reason is kept).
    fn send(&mut self, bytes: Bytes) -> impl Future<Output = Result<(), String>> + Send;
}

/// Why producing a backup stopped.
#[derive(Debug)]
pub enum Stop {
    /// The sink refused a piece (its reader went away or stalled): nothing
    /// more can be sent.
    Sink(String),
    /// Reading the store or the journal failed; the file ends with the reason.
    Source(String),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sink(reason) | Self::Source(reason) => f.write_str(reason),
        }
    }
}

/// Writes a whole backup of `store` to `sink`: with `journal` (online) the
/// batches made durable during the scan follow the scan records they
/// interleave with. On a failure of the store or the journal the file ends
/// with a failure record (which readers refuse) and the reason is returned.
pub async fn produce(
    store: &Store,
    journal: Option<JournalHandle>,
    header: &Header,
    config: &[u8],
    sink: &mut impl Sink,
) -> Result<super::format::Counts, Stop> {
    let mut encoder = Encoder::new(header, config).map_err(Stop::Source)?;
    match write_records(store, journal, &mut encoder, sink).await {
        Ok(()) => {
            let counts = encoder.counts();
            let tail = encoder.finish().map_err(Stop::Source)?;
            sink.send(tail).await.map_err(Stop::Sink)?;
            Ok(counts)
        }
        Err(Stop::Source(reason)) => {
            // The reader learns why the file is unusable, if it still listens.
            let _ = sink.send(encoder.failure(&reason)).await;
            Err(Stop::Source(reason))
        }
        Err(stop) => Err(stop),
    }
}

async fn write_records(
    store: &Store,
    journal: Option<JournalHandle>,
    encoder: &mut Encoder,
    sink: &mut impl Sink,
) -> Result<(), Stop> {
    // Keys beyond the last one now can only be written after the journal
    // was attached, so the journal has them: the scan need not chase them.
    let through = store
        .run(Store::last_key_blocking)
        .await
        .map_err(read_failed)?;
    if let Some(through) = through {
        scan(store, through, journal.as_ref(), encoder, sink).await?;
    }
    if let Some(journal) = journal {
        let rest = tokio::task::spawn_blocking(move || journal.finish())
            .await
            .map_err(|err| Stop::Source(format!("finishing the journal failed: {err}")))?;
        journal_batches(rest, encoder)?;
    }
    Ok(())
}

/// Sends the store's pairs up to `through` a chunk at a time, each after
/// what the journal took since the previous one.
async fn scan(
    store: &Store,
    through: sled::IVec,
    journal: Option<&JournalHandle>,
    encoder: &mut Encoder,
    sink: &mut impl Sink,
) -> Result<(), Stop> {
    let mut after: Option<sled::IVec> = None;
    loop {
        if let Some(journal) = journal {
            journal_batches(journal.take(), encoder)?;
        }
        let (from, through) = (after.clone(), through.clone());
        let chunk = store
            .run(move |store| {
                store.chunk_blocking(from.as_deref(), &through, CHUNK_PAIRS, CHUNK_BYTES)
            })
            .await
            .map_err(read_failed)?;
        let Some((last, _)) = chunk.last() else {
            return Ok(());
        };
        after = Some(last.clone());
        encoder.scan(&chunk).map_err(Stop::Source)?;
        sink.send(encoder.take()).await.map_err(Stop::Sink)?;
    }
}

fn read_failed(err: crate::core::store::StoreError) -> Stop {
    Stop::Source(format!("reading the store failed: {err}"))
}

/// Encodes the batches taken from a journal, or its failure.
fn journal_batches(
    taken: Result<Vec<Vec<crate::core::store::Op>>, String>,
    encoder: &mut Encoder,
) -> Result<(), Stop> {
    for batch in taken.map_err(Stop::Source)? {
        encoder.journal(&batch).map_err(Stop::Source)?;
    }
    Ok(())
}
