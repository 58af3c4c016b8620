//! Backup and restore: a consistent copy of a data directory (its
//! config.json and every pair of the store) in one checksummed file, taken
//! from a running server ([`online`], `GET /admin/v1/backup`) or from a data
//! directory no server holds ([`output::offline`]), and turned back into a
//! new data directory ([`restore`]). The file format is in [`format`].
//!
//! # Why an online backup is exact
//!
//! sled has no snapshots, so a backup is a fuzzy scan plus a redo journal
//! ([`snapshot`]). Before the scan starts, the writer is tapped
//! (`core::writer::tap`): from then on every batch it makes durable is
//! journaled operation by operation, in apply order. The scan then reads the
//! whole tree in key order, a chunk at a time, while writes go on. Once it
//! has read the last chunk the tap is detached at a batch boundary; call
//! the batches journaled B1 … Bn. Restore writes every scanned pair, then
//! replays B1 … Bn in order. The result is exactly the store after Bn:
//!
//! * every operation is absolute (put this value, delete this key), so
//!   replaying one gives its key the same value whatever it held before;
//! * take any key K. If some Bi touched K, the last such operation is
//!   replayed last, so K ends with the value it had after Bn;
//! * if none touched K, nothing wrote K between the attach and the detach
//!   (every batch whose apply overlapped the scan is journaled: attach and
//!   detach wait for the batch being written). The scan read K (or saw it
//!   absent) inside that window, so what it read is K's value after Bn. A
//!   key beyond the scan's upper bound (the greatest key there was just
//!   after the attach) was absent at that moment, inside the window, so it
//!   is absent after Bn unless a journaled batch wrote it: the scan need
//!   not chase keys appended at the end.
//!
//! The argument is per key, so it holds even though sled may let a reader
//! see a batch half-applied and a chunked scan reads different keys at
//! different moments. Only durable batches count: a batch is journaled
//! after its flush, and a failed batch or a store recovery fails the
//! journal, so the backup ends with a failure record instead of a trailer
//! and no file is kept. Restore applies all scan records before any journal
//! record; the file interleaves them as they were produced, so the journal
//! never waits in memory for the scan to end (its waiting part is bounded by
//! `--backup-max-journal-bytes`).
//!
//! Ids keep increasing after a restore because everything they are derived
//! from is in the store: the newest event id (`m newest-id`, stamped in
//! every batch), the modules' counters (ticket and chat numbers), timers.

pub mod format;
pub mod online;
pub mod output;
pub mod restore;
pub mod snapshot;

pub use online::{BackupSettings, OnlineBackups};

#[cfg(test)]
mod tests;
