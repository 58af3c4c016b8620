//! Writers for `--ingest`: hearts, chats and quiz answers from viewer tokens,
//! each kind at its own rate, while the viewers poll.
//!
//! Each kind has `--ingest-connections` keep-alive connections sending its
//! rate between them on a fixed schedule (open loop: a slow answer does not
//! lower the rate until every connection of the kind is busy; a connection
//! more than [`MAX_LAG`] behind its schedule skips ahead and counts the
//! skipped sends as `behind`). Hearts (`{"count":1}`) and chats (kind
//! `message`) come from the viewers in turn; every answer comes from the
//! next viewer that has not answered the open quiz yet, and when all have,
//! the quiz is closed and a new one opened (through the producer API), so
//! no answer is refused as a repeat. An answer holds the quiz (a read lock)
//! until its answer is back, and the rotation takes the write lock, so a
//! quiz is never closed under an answer still on its way.

use super::api::{Producer, QUIZ_CHOICES, Viewer, ViewerRequests};
use crate::bench::error::BenchError;
use crate::bench::histogram::{AtomicHistogram, Histogram};
use crate::bench::keepalive::KeepAlive;
use crate::bench::target::Target;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::RwLock;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How far a writer may fall behind its schedule before it skips ahead.
pub const MAX_LAG: Duration = Duration::from_secs(1);

/// The three kinds of writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `POST …/hearts`, expects 202.
    Hearts,
    /// `POST …/chats`, expects 201.
    Chats,
    /// `POST …/quizzes/{id}/answers`, expects 201.
    Answers,
}

impl Kind {
    /// All kinds, in report order.
    pub const ALL: [Kind; 3] = [Kind::Hearts, Kind::Chats, Kind::Answers];

    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hearts => "hearts",
            Self::Chats => "chats",
            Self::Answers => "answers",
        }
    }

    fn expected_status(self) -> u16 {
        match self {
            Self::Hearts => 202,
            Self::Chats | Self::Answers => 201,
        }
    }
}

/// Requests per second of each kind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    /// Heart requests per second.
    pub hearts: f64,
    /// Chats per second.
    pub chats: f64,
    /// Answers per second.
    pub answers: f64,
}

impl Rates {
    fn of(&self, kind: Kind) -> f64 {
        match kind {
            Kind::Hearts => self.hearts,
            Kind::Chats => self.chats,
            Kind::Answers => self.answers,
        }
    }
}

/// What the writers need.
#[derive(Debug, Clone)]
pub struct IngestPlan {
    /// The server.
    pub target: Target,
    /// Request builder for the stream.
    pub requests: ViewerRequests,
    /// The viewers whose tokens write.
    pub viewers: Arc<Vec<Viewer>>,
    /// Rates per kind.
    pub rates: Rates,
    /// Connections per kind.
    pub connections: usize,
    /// The stream (for quizzes).
    pub stream_id: String,
    /// Duration of every quiz opened (longer than the run: quizzes are closed by the bench).
    pub quiz_duration: Duration,
}

#[derive(Debug, Default)]
struct KindCounters {
    latency: AtomicHistogram,
    accepted: AtomicU64,
    refused: AtomicU64,
    errors: AtomicU64,
    behind: AtomicU64,
}

/// The figures of one kind.
#[derive(Debug, Clone, Default)]
pub struct KindFigures {
    /// Requests answered with the expected status.
    pub accepted: u64,
    /// Requests answered with another status.
    pub refused: u64,
    /// Requests without an answer.
    pub errors: u64,
    /// Sends skipped because the writer was more than [`MAX_LAG`] behind.
    pub behind: u64,
    /// Request latency, µs.
    pub latency: Histogram,
}

/// The open quiz and who answered it.
#[derive(Debug)]
struct Quiz {
    id: String,
    /// The next viewer to answer (may run past the last viewer: then the quiz is full).
    next_viewer: AtomicUsize,
    opened: u64,
    producer: Producer,
}

#[derive(Debug)]
struct Shared {
    plan: IngestPlan,
    counters: [KindCounters; 3],
    quiz: RwLock<Quiz>,
    stop: AtomicBool,
    problems: std::sync::Mutex<Vec<String>>,
}

impl Shared {
    fn note(&self, problem: &str) {
        let mut problems = self.problems.lock().unwrap_or_else(|e| e.into_inner());
        crate::bench::protocol::note_problem(&mut problems, problem);
    }
}

/// The running writers.
#[derive(Debug)]
pub struct Ingest {
    shared: Arc<Shared>,
    tasks: JoinSet<()>,
    started: Instant,
}

/// What the writers did.
#[derive(Debug, Clone)]
pub struct IngestOutcome {
    /// Figures per kind, in [`Kind::ALL`] order.
    pub kinds: Vec<(Kind, KindFigures)>,
    /// Quizzes opened.
    pub quizzes: u64,
    /// How long the writers ran.
    pub elapsed: Duration,
    /// The first few distinct problems.
    pub problems: Vec<String>,
}

impl Ingest {
    /// Opens the first quiz and starts every writer.
    pub async fn start(plan: IngestPlan, mut producer: Producer) -> Result<Self, BenchError> {
        let quiz_id = producer
            .open_quiz(&plan.stream_id, plan.quiz_duration)
            .await?;
        let connections = plan.connections.max(1);
        let shared = Arc::new(Shared {
            counters: Default::default(),
            quiz: RwLock::new(Quiz {
                id: quiz_id,
                next_viewer: AtomicUsize::new(0),
                opened: 1,
                producer,
            }),
            stop: AtomicBool::new(false),
            problems: std::sync::Mutex::new(Vec::new()),
            plan,
        });
        let mut tasks = JoinSet::new();
        for kind in Kind::ALL {
            let rate = shared.plan.rates.of(kind);
            if rate <= 0.0 {
                continue;
            }
            let gap = Duration::from_secs_f64(connections as f64 / rate);
            for index in 0..connections {
                let shared = Arc::clone(&shared);
                // Connections of a kind start spread over one gap.
                let offset = gap.mul_f64(index as f64 / connections as f64);
                tasks.spawn(async move { writer(kind, index, gap, offset, &shared).await });
            }
        }
        Ok(Self {
            shared,
            tasks,
            started: Instant::now(),
        })
    }

    /// Stops every writer after its current request and returns the figures.
    pub async fn stop(mut self) -> Result<IngestOutcome, BenchError> {
        self.shared.stop.store(true, Ordering::Relaxed);
        while let Some(joined) = self.tasks.join_next().await {
            joined.map_err(|err| BenchError::context("an ingest writer", err))?;
        }
        let elapsed = self.started.elapsed();
        let kinds = Kind::ALL
            .iter()
            .enumerate()
            .map(|(index, kind)| {
                let counters = &self.shared.counters[index];
                let figures = KindFigures {
                    accepted: counters.accepted.load(Ordering::Relaxed),
                    refused: counters.refused.load(Ordering::Relaxed),
                    errors: counters.errors.load(Ordering::Relaxed),
                    behind: counters.behind.load(Ordering::Relaxed),
                    latency: counters.latency.snapshot(),
                };
                (*kind, figures)
            })
            .collect();
        let quiz = self.shared.quiz.read().await;
        let problems = self
            .shared
            .problems
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Ok(IngestOutcome {
            kinds,
            quizzes: quiz.opened,
            elapsed,
            problems,
        })
    }
}

/// One writer connection of `kind`: sends every `gap`, starting after `offset`.
async fn writer(kind: Kind, index: usize, gap: Duration, offset: Duration, shared: &Shared) {
    let counters = &shared.counters[kind as usize];
    let mut connection: Option<KeepAlive> = None;
    let mut due = Instant::now() + offset;
    let mut sent = index;
    while !shared.stop.load(Ordering::Relaxed) {
        tokio::time::sleep_until(due).await;
        due += gap;
        let now = Instant::now();
        if now > due + MAX_LAG {
            let skipped = (now - due).as_secs_f64() / gap.as_secs_f64();
            counters.behind.fetch_add(skipped as u64, Ordering::Relaxed);
            due = now;
        }
        let started = Instant::now();
        let written = write_once(kind, sent, shared, &mut connection).await;
        sent += shared.plan.connections.max(1);
        match written {
            Ok((status, body)) => {
                counters
                    .latency
                    .record(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
                if status == kind.expected_status() {
                    counters.accepted.fetch_add(1, Ordering::Relaxed);
                } else {
                    counters.refused.fetch_add(1, Ordering::Relaxed);
                    shared.note(&format!("{} answered {status}: {body}", kind.name()));
                }
            }
            Err(err) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                shared.note(&err.to_string());
                connection = None;
            }
        }
    }
}

/// Sends one request on the writer's connection (opening it when needed).
async fn send(
    connection: &mut Option<KeepAlive>,
    target: &Target,
    request: &[u8],
) -> Result<(u16, String), BenchError> {
    if connection.is_none() {
        *connection = Some(KeepAlive::connect(target).await?);
    }
    let Some(open) = connection.as_mut() else {
        return Err(BenchError::run("no connection"));
    };
    let answer = open.exchange(request).await?;
    let excerpt = if answer.status >= 300 {
        String::from_utf8_lossy(&answer.body[..answer.body.len().min(200)]).into_owned()
    } else {
        String::new()
    };
    Ok((answer.status, excerpt))
}

/// Sends the next write of `kind`; `sent` numbers this writer's writes.
async fn write_once(
    kind: Kind,
    sent: usize,
    shared: &Shared,
    connection: &mut Option<KeepAlive>,
) -> Result<(u16, String), BenchError> {
    let plan = &shared.plan;
    let viewer = &plan.viewers[sent % plan.viewers.len()];
    let request = match kind {
        Kind::Hearts => plan.requests.heart(viewer)?,
        Kind::Chats => plan.requests.chat(viewer, &format!("bench chat {sent}"))?,
        Kind::Answers => return send_answer(shared, connection).await,
    };
    send(connection, &plan.target, &request).await
}

/// Sends an answer from the next viewer that has not answered the open
/// quiz, holding the quiz until the answer is back; rotates a full quiz.
async fn send_answer(
    shared: &Shared,
    connection: &mut Option<KeepAlive>,
) -> Result<(u16, String), BenchError> {
    let plan = &shared.plan;
    loop {
        {
            let quiz = shared.quiz.read().await;
            let index = quiz.next_viewer.fetch_add(1, Ordering::Relaxed);
            if let Some(viewer) = plan.viewers.get(index) {
                let choice = QUIZ_CHOICES[index % QUIZ_CHOICES.len()];
                let request = plan.requests.answer(&quiz.id, choice, viewer)?;
                return send(connection, &plan.target, &request).await;
            }
        }
        rotate_quiz(shared).await?;
    }
}

/// Closes the full quiz and opens the next (unless another writer just did).
async fn rotate_quiz(shared: &Shared) -> Result<(), BenchError> {
    let mut quiz = shared.quiz.write().await;
    if quiz.next_viewer.load(Ordering::Relaxed) < shared.plan.viewers.len() {
        return Ok(());
    }
    let stream = shared.plan.stream_id.clone();
    let old = quiz.id.clone();
    quiz.producer.close_quiz(&stream, &old).await?;
    quiz.id = quiz
        .producer
        .open_quiz(&stream, shared.plan.quiz_duration)
        .await?;
    quiz.next_viewer.store(0, Ordering::Relaxed);
    quiz.opened += 1;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_expect_their_status_and_rate() {
        let rates = Rates {
            hearts: 5000.0,
            chats: 1000.0,
            answers: 2000.0,
        };
        assert_eq!(rates.of(Kind::Chats), 1000.0);
        assert_eq!(Kind::Hearts.expected_status(), 202);
        assert_eq!(Kind::Answers.expected_status(), 201);
        assert_eq!(Kind::ALL.map(Kind::name), ["hearts", "chats", "answers"]);
    }
}
