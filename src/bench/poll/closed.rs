//! Closed-interval load (`--mode closed`): C keep-alive HTTP/1.1 connections
//! ask for already-closed intervals as fast as they are answered, like
//! `wrk -t<threads> -c<C>`, and every 200 body is compared with the bytes of
//! its interval fetched once before the run.
//!
//! The connections run on `--threads` OS threads of their own, each a
//! single-threaded tokio runtime (the load generator then costs what wrk's
//! event loop costs, not a work-stealing scheduler's hops). Connection `c`
//! cycles through the intervals starting at `c mod intervals`. Every
//! connection is open before the clock starts; a connection that fails is
//! reopened once per failure and counted.

use crate::bench::error::BenchError;
use crate::bench::histogram::Histogram;
use crate::bench::keepalive::KeepAlive;
use crate::bench::target::Target;
use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// What one run asks.
#[derive(Debug, Clone)]
pub struct ClosedPlan {
    /// Where the connections go.
    pub target: Target,
    /// For every connection, one prepared request per interval.
    pub requests: Vec<Vec<Vec<u8>>>,
    /// The reference body of every interval, in the same order.
    pub expected: Arc<Vec<Vec<u8>>>,
    /// Client threads.
    pub threads: usize,
    /// How long to send.
    pub duration: Duration,
}

/// What one run measured.
#[derive(Debug, Clone, Default)]
pub struct ClosedOutcome {
    /// Answered requests.
    pub requests: u64,
    /// 200 answers whose body was the interval's reference.
    pub identical: u64,
    /// 200 answers whose body differed.
    pub mismatched: u64,
    /// Answers other than 200, by status.
    pub other_statuses: BTreeMap<u16, u64>,
    /// Requests that got no answer (connection errors).
    pub errors: u64,
    /// The first few error messages.
    pub problems: Vec<String>,
    /// Request latency, µs.
    pub latency: Histogram,
    /// From the start signal to the last answer.
    pub elapsed: Duration,
}

impl ClosedOutcome {
    /// Answered requests per second.
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn merge(&mut self, other: ClosedOutcome) {
        self.requests += other.requests;
        self.identical += other.identical;
        self.mismatched += other.mismatched;
        for (status, count) in other.other_statuses {
            *self.other_statuses.entry(status).or_default() += count;
        }
        self.errors += other.errors;
        for problem in other.problems {
            crate::bench::protocol::note_problem(&mut self.problems, &problem);
        }
        self.latency.merge(&other.latency);
    }

    /// Whether every request got a 200 with its interval's bytes.
    pub fn is_clean(&self) -> bool {
        self.mismatched == 0 && self.errors == 0 && self.other_statuses.is_empty()
    }

    /// The non-200 statuses as `404×3, 503×1`.
    pub fn statuses_text(&self) -> String {
        if self.other_statuses.is_empty() {
            return "none".into();
        }
        self.other_statuses
            .iter()
            .map(|(status, count)| format!("{status}×{count}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Runs the plan on its own threads (call from async code: it waits on a blocking task).
pub async fn run(plan: ClosedPlan) -> Result<ClosedOutcome, BenchError> {
    tokio::task::spawn_blocking(move || run_threads(plan))
        .await
        .map_err(|err| BenchError::context("the closed-interval load", err))?
}

/// Starts the threads, opens every connection, releases them together and merges their results.
fn run_threads(plan: ClosedPlan) -> Result<ClosedOutcome, BenchError> {
    let threads = plan.threads.clamp(1, plan.requests.len().max(1));
    let start = Arc::new(Barrier::new(threads + 1));
    let mut shares: Vec<Vec<(usize, Vec<Vec<u8>>)>> = vec![Vec::new(); threads];
    for (index, requests) in plan.requests.into_iter().enumerate() {
        shares[index % threads].push((index, requests));
    }
    let handles: Vec<_> = shares
        .into_iter()
        .map(|share| {
            let target = plan.target.clone();
            let expected = Arc::clone(&plan.expected);
            let start = Arc::clone(&start);
            let duration = plan.duration;
            std::thread::spawn(move || client_thread(&target, share, expected, &start, duration))
        })
        .collect();
    start.wait();
    let started = Instant::now();
    let mut total = ClosedOutcome::default();
    let mut failure = None;
    for handle in handles {
        match handle.join() {
            Ok(Ok(outcome)) => total.merge(outcome),
            Ok(Err(err)) => failure = Some(err),
            Err(_) => failure = Some(BenchError::run("a client thread panicked")),
        }
    }
    total.elapsed = started.elapsed();
    failure.map_or(Ok(total), Err)
}

/// One client thread: connects its share, waits for the start, then loads until the deadline.
fn client_thread(
    target: &Target,
    share: Vec<(usize, Vec<Vec<u8>>)>,
    expected: Arc<Vec<Vec<u8>>>,
    start: &Barrier,
    duration: Duration,
) -> Result<ClosedOutcome, BenchError> {
    let prepared = connect_share(target, share.len());
    // Every thread reaches the barrier, even a failed one, so nobody waits forever.
    start.wait();
    let (runtime, connections) = prepared?;
    let deadline = Instant::now() + duration;
    runtime.block_on(async {
        let tasks: Vec<_> = share
            .into_iter()
            .zip(connections)
            .map(|((index, requests), connection)| {
                let target = target.clone();
                let expected = Arc::clone(&expected);
                tokio::spawn(async move {
                    load(&target, connection, index, &requests, &expected, deadline).await
                })
            })
            .collect();
        let mut total = ClosedOutcome::default();
        for task in tasks {
            let outcome = task
                .await
                .map_err(|err| BenchError::context("a connection task", err))?;
            total.merge(outcome);
        }
        Ok(total)
    })
}

/// The thread's runtime and its `count` open connections.
fn connect_share(
    target: &Target,
    count: usize,
) -> Result<(tokio::runtime::Runtime, Vec<KeepAlive>), BenchError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| BenchError::context("starting a client thread's runtime", err))?;
    let connections = runtime.block_on(async {
        let mut connections = Vec::with_capacity(count);
        for _ in 0..count {
            connections.push(KeepAlive::connect(target).await?);
        }
        Ok::<_, BenchError>(connections)
    })?;
    Ok((runtime, connections))
}

/// One connection's loop until `deadline`.
async fn load(
    target: &Target,
    mut connection: KeepAlive,
    index: usize,
    requests: &[Vec<u8>],
    expected: &[Vec<u8>],
    deadline: Instant,
) -> ClosedOutcome {
    let mut outcome = ClosedOutcome::default();
    let mut next = index;
    loop {
        let sent = Instant::now();
        if sent >= deadline {
            break;
        }
        let interval = next % requests.len();
        next += 1;
        match connection.exchange(&requests[interval]).await {
            Ok(answer) => {
                outcome
                    .latency
                    .record(u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX));
                outcome.requests += 1;
                if answer.status != 200 {
                    *outcome.other_statuses.entry(answer.status).or_default() += 1;
                } else if answer.body == expected[interval].as_slice() {
                    outcome.identical += 1;
                } else {
                    outcome.mismatched += 1;
                }
            }
            Err(err) => {
                outcome.errors += 1;
                crate::bench::protocol::note_problem(&mut outcome.problems, &err.to_string());
                match KeepAlive::connect(target).await {
                    Ok(fresh) => connection = fresh,
                    Err(_) => break,
                }
            }
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_merge_and_judge_cleanliness() {
        let mut total = ClosedOutcome::default();
        let mut one = ClosedOutcome {
            requests: 10,
            identical: 10,
            ..ClosedOutcome::default()
        };
        one.latency.record(100);
        total.merge(one);
        assert!(total.is_clean());
        let mut two = ClosedOutcome {
            requests: 3,
            identical: 1,
            mismatched: 1,
            ..ClosedOutcome::default()
        };
        two.other_statuses.insert(404, 1);
        total.merge(two);
        assert_eq!(
            (total.requests, total.identical, total.mismatched),
            (13, 11, 1)
        );
        assert!(!total.is_clean());
        assert_eq!(total.statuses_text(), "404×1");
        total.elapsed = Duration::from_secs(2);
        assert_eq!(total.per_second(), 6.5);
        assert_eq!(total.latency.count(), 1);
    }
}
