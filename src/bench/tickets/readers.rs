//! The `inbox` mode's readers: concurrent users, each on its own
//! keep-alive connection, asking for their unread count
//! (`GET /ticket/notification/count`) and their first page
//! (`GET /ticket/notification/list?limit=20`) in turn, as fast as they are
//! answered, for a fixed time.
//!
//! Invariants: every request is timed from send to the end of its body;
//! anything but a 200 (or a failed request) counts as an error of its
//! endpoint and fails the run.

use super::api::Reader;
use super::identity::{Identity, Realm};
use crate::bench::error::BenchError;
use crate::bench::histogram::Histogram;
use crate::bench::progress::Progress;
use crate::bench::protocol::note_problem;
use crate::bench::target::Target;
use http::StatusCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// The count endpoint (under the API base).
pub const COUNT_PATH: &str = "/ticket/notification/count";

/// The first page of the list (under the API base).
pub const LIST_PATH: &str = "/ticket/notification/list?limit=20";

/// Progress refresh while reading.
const TICK: Duration = Duration::from_millis(250);

/// The figures of one endpoint.
#[derive(Debug, Clone, Default)]
pub struct Endpoint {
    /// Requests answered 200.
    pub ok: u64,
    /// Requests answered otherwise, or failed.
    pub errors: u64,
    /// Latency of the 200s, µs.
    pub latency: Histogram,
    /// The first few distinct errors.
    pub problems: Vec<String>,
}

impl Endpoint {
    fn merge(&mut self, other: &Endpoint) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.latency.merge(&other.latency);
        for problem in &other.problems {
            note_problem(&mut self.problems, problem);
        }
    }

    /// Times one request of this endpoint.
    async fn time(&mut self, reader: &mut Reader, path: &str) {
        let began = Instant::now();
        match reader.get(path).await {
            Ok(StatusCode::OK) => {
                self.ok += 1;
                let took = began.elapsed().as_micros();
                self.latency.record(u64::try_from(took).unwrap_or(u64::MAX));
            }
            Ok(status) => {
                self.errors += 1;
                note_problem(&mut self.problems, &format!("{path} answered {status}"));
            }
            Err(err) => {
                self.errors += 1;
                note_problem(&mut self.problems, &format!("{path}: {err}"));
            }
        }
    }
}

/// What the readers measured.
#[derive(Debug, Clone, Default)]
pub struct ReadOutcome {
    /// `GET …/count`.
    pub count: Endpoint,
    /// `GET …/list?limit=20`.
    pub list: Endpoint,
    /// From the first request to the last answer.
    pub window: Duration,
}

/// Runs `readers` readers (reader `r` is user `r mod users`) for `duration`.
pub async fn run(
    target: &Target,
    realm: &Realm,
    users: &[Identity],
    readers: usize,
    duration: Duration,
    progress: &mut Progress,
) -> Result<ReadOutcome, BenchError> {
    let mut connected = Vec::with_capacity(readers);
    for index in 0..readers {
        let who = users[index % users.len()].clone();
        connected.push(Reader::connect(target, realm, who).await?);
    }
    let done = Arc::new(AtomicU64::new(0));
    let began = Instant::now();
    let deadline = began + duration;
    let mut tasks = JoinSet::new();
    for reader in connected {
        tasks.spawn(read(reader, deadline, done.clone()));
    }
    let mut outcome = ReadOutcome::default();
    let mut ticker = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                None => break,
                Some(Ok((count, list))) => {
                    outcome.count.merge(&count);
                    outcome.list.merge(&list);
                }
                Some(Err(err)) => return Err(BenchError::context("a reader failed", err)),
            },
            _ = ticker.tick() => progress.update(&format!(
                "reading inboxes · {} requests", done.load(Ordering::Relaxed)
            )),
        }
    }
    outcome.window = began.elapsed();
    Ok(outcome)
}

/// One reader: count, then list, until the deadline.
async fn read(mut reader: Reader, deadline: Instant, done: Arc<AtomicU64>) -> (Endpoint, Endpoint) {
    let (mut count, mut list) = (Endpoint::default(), Endpoint::default());
    while Instant::now() < deadline {
        count.time(&mut reader, COUNT_PATH).await;
        list.time(&mut reader, LIST_PATH).await;
        done.fetch_add(2, Ordering::Relaxed);
    }
    (count, list)
}
