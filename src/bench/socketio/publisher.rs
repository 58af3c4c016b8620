//! The posting side: `--publishers` keep-alive HTTP/1.1 connections post to
//! the channel at `--rate` posts/s in total, for `--duration`.
//!
//! Post `n` (numbered 0, 1, 2, … over all connections) is due at
//! `start + n / rate`; its text carries the stamp `(n, send time)`
//! ([`super::post::text`]). A post counts as acknowledged only on a 201
//! whose `data.eventId` is a string (Tidings and the reference answer so);
//! anything else is a failed post, remembered so that the clients'
//! accounting excuses it ([`TopicExpectation::unacknowledged`]) and the
//! report fails the run. No post is retried: a retry would be a second post.

use super::api::{Server, posts_path};
use super::post::{PostStamp, text};
use crate::bench::error::BenchError;
use crate::bench::histogram::{AtomicHistogram, Histogram};
use crate::bench::http::{Body, HttpClient, Protocol, Reply};
use crate::bench::ledger::TopicExpectation;
use crate::bench::payload::unix_micros;
use crate::bench::protocol::note_problem;
use bytes::Bytes;
use http::{Method, StatusCode, header};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// The `authorId` of every post.
pub const AUTHOR: &str = "bench-publisher";

/// What to post.
#[derive(Debug, Clone)]
pub struct PostPlan {
    /// Posts per second over all connections.
    pub rate: f64,
    /// How long to post.
    pub duration: Duration,
    /// Bytes of each post's text.
    pub size: usize,
    /// Posting connections.
    pub publishers: usize,
}

/// Counters shared by the posting tasks.
#[derive(Debug, Default)]
struct Stats {
    /// The next number to draw (a lane draws one past the end before it stops).
    next: AtomicU64,
    /// Numbers `0..issued` were due within the duration and sent (numbers are due in order).
    issued: AtomicU64,
    acknowledged: AtomicU64,
    ack: AtomicHistogram,
    unacknowledged: Mutex<Vec<u64>>,
    problems: Mutex<Vec<String>>,
}

/// What the posting side did.
#[derive(Debug, Clone)]
pub struct PostOutcome {
    /// Posts acknowledged.
    pub acknowledged: u64,
    /// Posts not acknowledged.
    pub failed: u64,
    /// From the first post to the last answer.
    pub elapsed: Duration,
    /// Acknowledgement latency (µs).
    pub ack: Histogram,
    /// First few distinct problems.
    pub problems: Vec<String>,
    /// What every client must have received.
    pub expectation: TopicExpectation,
}

/// Posting in progress.
pub struct Publisher {
    stats: Arc<Stats>,
    tasks: JoinSet<()>,
    started: Instant,
}

/// One posting connection's inputs.
struct Lane {
    client: HttpClient,
    server: Arc<Server>,
    plan: Arc<PostPlan>,
    stats: Arc<Stats>,
    start: Instant,
}

impl Publisher {
    /// Opens the connections (failing when the server is unreachable) and starts posting.
    pub async fn start(server: Arc<Server>, plan: PostPlan) -> Result<Self, BenchError> {
        let stats = Arc::new(Stats::default());
        let plan = Arc::new(plan);
        let mut clients = Vec::with_capacity(plan.publishers);
        for _ in 0..plan.publishers {
            clients.push(HttpClient::connect(&server.target, Protocol::Http1).await?);
        }
        let start = Instant::now();
        let mut tasks = JoinSet::new();
        for client in clients {
            let lane = Lane {
                client,
                server: server.clone(),
                plan: plan.clone(),
                stats: stats.clone(),
                start,
            };
            tasks.spawn(lane.run());
        }
        Ok(Self {
            stats,
            tasks,
            started: start,
        })
    }

    /// Posts acknowledged so far.
    pub fn acknowledged(&self) -> u64 {
        self.stats.acknowledged.load(Ordering::Relaxed)
    }

    /// Waits until every connection has posted its share or `deadline`
    /// passes; whether all have finished.
    pub async fn wait_until(&mut self, deadline: Instant) -> bool {
        loop {
            tokio::select! {
                joined = self.tasks.join_next() => if joined.is_none() { return true },
                _ = tokio::time::sleep_until(deadline) => return false,
            }
        }
    }

    /// Waits until every connection has posted its share; the figures.
    pub async fn finish(mut self) -> PostOutcome {
        while self.tasks.join_next().await.is_some() {}
        let stats = &self.stats;
        let issued = stats.issued.load(Ordering::Relaxed);
        let mut unacknowledged = stats
            .unacknowledged
            .lock()
            .map(|list| list.clone())
            .unwrap_or_default();
        unacknowledged.sort_unstable();
        PostOutcome {
            acknowledged: stats.acknowledged.load(Ordering::Relaxed),
            failed: unacknowledged.len() as u64,
            elapsed: self.started.elapsed(),
            ack: stats.ack.snapshot(),
            problems: stats.problems.lock().map(|p| p.clone()).unwrap_or_default(),
            expectation: TopicExpectation {
                issued,
                unacknowledged,
            },
        }
    }
}

impl Lane {
    /// Posts every number it draws until the next one is due after the end.
    async fn run(mut self) {
        let end = self.start + self.plan.duration;
        loop {
            let seq = self.stats.next.fetch_add(1, Ordering::Relaxed);
            let due = self.start + Duration::from_secs_f64(seq as f64 / self.plan.rate);
            if due >= end {
                return;
            }
            self.stats.issued.fetch_max(seq + 1, Ordering::Relaxed);
            tokio::time::sleep_until(due).await;
            match self.post(seq).await {
                Ok(()) => {}
                Err(message) => self.fail(seq, &message),
            }
        }
    }

    /// Records a post that was not acknowledged.
    fn fail(&self, seq: u64, message: &str) {
        if let Ok(mut list) = self.stats.unacknowledged.lock() {
            list.push(seq);
        }
        if let Ok(mut problems) = self.stats.problems.lock() {
            note_problem(&mut problems, message);
        }
    }

    /// Sends post `seq` and checks its acknowledgement.
    async fn post(&mut self, seq: u64) -> Result<(), String> {
        if self.client.is_closed() {
            self.client = HttpClient::connect(&self.server.target, Protocol::Http1)
                .await
                .map_err(|err| err.to_string())?;
        }
        let stamp = PostStamp {
            seq,
            sent_us: unix_micros(),
        };
        let body = json!({ "text": text(stamp, self.plan.size), "authorId": AUTHOR });
        let request = self
            .client
            .request(Method::POST, &posts_path(&self.server))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::new(Bytes::from(body.to_string())))
            .map_err(|err| format!("building a post request: {err}"))?;
        let began = Instant::now();
        let reply = self
            .client
            .fetch(request)
            .await
            .map_err(|err| err.to_string())?;
        check_ack(&reply)?;
        let micros = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.stats.ack.record(micros);
        self.stats.acknowledged.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// A post is acknowledged by `201 {"data":{…,"eventId":"…"}}`.
fn check_ack(reply: &Reply) -> Result<(), String> {
    if reply.status != StatusCode::CREATED {
        return Err(format!(
            "a post answered {}: {}",
            reply.status,
            reply.body_excerpt()
        ));
    }
    let body: Value = serde_json::from_slice(&reply.body).unwrap_or_default();
    if body["data"]["eventId"].is_string() {
        Ok(())
    } else {
        Err(format!(
            "a post answered 201 without data.eventId: {}",
            reply.body_excerpt()
        ))
    }
}
