//! In-process proofs of the backup's consistency: a scan interleaved with
//! commits restores to exactly the store after some commit, never a mix;
//! a store failure during the backup fails it.

use super::format::{self, Header, ReadError, Source};
use super::restore::load;
use super::snapshot::{Sink, Stop, produce};
use crate::core::hub::HubLimits;
use crate::core::store::Store;
use crate::core::writer::{Footprint, Writer};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const CONFIG_JSON: &[u8] = br#"{"formatVersion":1,"createdAt":"2026-01-01T00:00:00Z","adminKey":"adm_x",
    "defaultTenant":{"id":"00000000-0000-0000-0000-000000000000","slug":"default"},"jwtRealms":[]}"#;

/// Keys the tests write (all under `x/`).
const SEEDED: usize = 30_000;

type State = BTreeMap<Vec<u8>, Vec<u8>>;
/// One committed change: its writes, in order.
type Writes = Vec<(Vec<u8>, Option<Vec<u8>>)>;

fn key(i: usize) -> Vec<u8> {
    format!("x/{i:06}").into_bytes()
}

/// A sink that keeps the file and pauses on every piece, so commits land
/// between (and during) the scan's chunks.
struct SlowSink {
    file: Vec<u8>,
    pause: Duration,
}

impl Sink for SlowSink {
    async fn send(&mut self, bytes: Bytes) -> Result<(), String> {
        self.file.extend_from_slice(&bytes);
        tokio::time::sleep(self.pause).await;
        Ok(())
    }
}

fn start(dir: &std::path::Path) -> (Store, Writer) {
    let store = Store::open(&dir.join("db"), 8 << 20).unwrap();
    let writer = Writer::start_for_tests(store.clone(), HubLimits::minimal()).writer;
    (store, writer)
}

async fn commit(writer: &Writer, writes: Writes) {
    writer
        .commit(Footprint::SMALL, move |change| {
            for (key, value) in writes {
                match value {
                    Some(value) => change.put(key, value),
                    None => change.delete(key),
                }
            }
            Ok(())
        })
        .await
        .unwrap();
}

async fn seed(writer: &Writer) -> State {
    let mut state = State::new();
    for first in (0..SEEDED).step_by(1000) {
        let writes: Writes = (first..first + 1000)
            .map(|i| (key(i), Some(b"seed".to_vec())))
            .collect();
        state.extend(writes.iter().map(|(k, v)| (k.clone(), v.clone().unwrap())));
        commit(writer, writes).await;
    }
    state
}

/// The change number `n`: overwrites, deletes and creates keys spread over
/// the whole key range (ahead of and behind the scan).
fn change(n: usize) -> Writes {
    let spread = |salt: usize| (n * 7919 + salt * 104_729) % SEEDED;
    let value = format!("c{n}").into_bytes();
    vec![
        (key(spread(1)), Some(value.clone())),
        (key(spread(2)), None),
        (key(SEEDED + n), Some(value.clone())),
        (key(spread(3)), Some(value)),
    ]
}

/// Keys under `x/` of `store`.
fn contents(store: &Store) -> State {
    let mut state = State::new();
    store
        .for_each_blocking(b"x/", |key, value| {
            state.insert(key.to_vec(), value.to_vec());
            Ok(())
        })
        .unwrap();
    state
}

/// How many commits of `log` after `start` give `target`, if any number does.
fn commits_matching(start: State, log: &[Writes], target: &State) -> Option<usize> {
    let mut state = start;
    let differs = |state: &State, key: &Vec<u8>| state.get(key) != target.get(key);
    let mut mismatches = state
        .keys()
        .chain(target.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|key| differs(&state, key))
        .count();
    if mismatches == 0 {
        return Some(0);
    }
    for (done, writes) in log.iter().enumerate() {
        for (key, value) in writes {
            let before = differs(&state, key);
            match value {
                Some(value) => state.insert(key.clone(), value.clone()),
                None => state.remove(key),
            };
            let after = differs(&state, key);
            mismatches = mismatches + usize::from(after) - usize::from(before);
        }
        if mismatches == 0 {
            return Some(done + 1);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_interleaved_with_commits_restores_the_exact_store_after_one_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (store, writer) = start(dir.path());
    let seeded = seed(&writer).await;

    let stop = Arc::new(AtomicBool::new(false));
    let committer = {
        let (writer, stop) = (writer.clone(), stop.clone());
        tokio::spawn(async move {
            let mut log = Vec::new();
            while !stop.load(Ordering::Acquire) {
                let writes = change(log.len());
                commit(&writer, writes.clone()).await;
                log.push(writes);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            log
        })
    };
    // Let commits run before the backup starts, too.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let journal = writer.attach_journal(64 << 20).await.unwrap();
    let mut sink = SlowSink {
        file: Vec::new(),
        pause: Duration::from_millis(30),
    };
    let header = Header::now(Source::Online);
    let counts = produce(&store, Some(journal), &header, CONFIG_JSON, &mut sink)
        .await
        .unwrap();
    // Commits go on after the backup's end; they must not be in it.
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.store(true, Ordering::Release);
    let log = committer.await.unwrap();
    assert!(
        counts.scan_records >= 3,
        "a scan in several chunks: {counts:?}"
    );
    assert!(counts.journal_ops > 0, "commits were journaled: {counts:?}");

    let restored_dir = tempfile::tempdir().unwrap();
    let restored = Store::open(&restored_dir.path().join("db"), 8 << 20).unwrap();
    let file = sink.file;
    load(&restored, || Ok(&file[..])).unwrap();
    let matched = commits_matching(seeded, &log, &contents(&restored));
    let matched = matched.expect("the restored store is the state after some commit");
    assert!(
        matched < log.len(),
        "commits made after the backup ended are not in it ({matched} of {})",
        log.len()
    );
    assert!(
        matched > 0,
        "commits made before the backup started are in it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_failure_during_a_backup_fails_it_and_its_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (store, writer) = start(dir.path());
    seed(&writer).await;

    /// Makes a commit fail to flush while the scan runs.
    struct FailingSink {
        file: Vec<u8>,
        writer: Writer,
    }
    impl Sink for FailingSink {
        async fn send(&mut self, bytes: Bytes) -> Result<(), String> {
            self.file.extend_from_slice(&bytes);
            if self.file.len() == bytes.len() {
                self.writer.faults().fail_flushes(1);
                let failed = self
                    .writer
                    .commit(Footprint::SMALL, |change| {
                        change.put(b"x/lost".to_vec(), b"1".to_vec());
                        Ok(())
                    })
                    .await;
                assert!(failed.is_err(), "the flush was made to fail");
            }
            Ok(())
        }
    }

    let journal = writer.attach_journal(64 << 20).await.unwrap();
    let mut sink = FailingSink {
        file: Vec::new(),
        writer: writer.clone(),
    };
    let header = Header::now(Source::Online);
    let stopped = produce(&store, Some(journal), &header, CONFIG_JSON, &mut sink).await;
    let Err(Stop::Source(reason)) = stopped else {
        panic!("the backup must fail: {stopped:?}");
    };
    assert!(reason.contains("store failed"), "{reason}");
    let refused = format::read(&sink.file[..], |_| Ok::<_, ReadError>(()));
    let Err(ReadError::Bad(why)) = refused else {
        panic!("the file must be refused");
    };
    assert!(why.contains("store failed"), "{why}");
}
