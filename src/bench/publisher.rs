//! Publishing: concurrent publisher tasks over keep-alive HTTP/1.1 or shared
//! HTTP/2 connections, closed-loop (as fast as acknowledged) or paced.
//!
//! Every event carries a stamp with its topic's next sequence number and its
//! send time. The publisher remembers which numbers were not acknowledged so
//! that receivers can tell a loss from an event that was never stored: see
//! [`TopicExpectation`].

use super::chat;
use super::discussions;
use super::error::BenchError;
use super::histogram::{AtomicHistogram, Histogram};
use super::http::{Body, HttpClient, Protocol, Reply};
use super::ledger::TopicExpectation;
use super::payload::{Stamp, publish_body, unix_micros};
use super::peer;
use super::protocol::note_problem;
use super::target::Target;
use bytes::Bytes;
use http::{Method, StatusCode, header};
use serde::Deserialize;
use serde::de::IgnoredAny;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How long a throttled request may keep retrying after the run's end.
const RETRY_GRACE: Duration = Duration::from_secs(5);

/// Longest pause honoured from a `Retry-After` header.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(1);

/// What to publish and how.
#[derive(Debug, Clone)]
pub struct PublishPlan {
    /// Topic names; requests go round robin over them.
    pub topics: Vec<String>,
    /// Events per request.
    pub batch: usize,
    /// Bytes of each event's data.
    pub size: usize,
    /// Events per second over all publishers; `None` publishes as fast as acknowledged.
    pub rate: Option<f64>,
    /// How long to publish.
    pub duration: Duration,
    /// Concurrent publisher tasks.
    pub publishers: usize,
    /// HTTP version.
    pub protocol: Protocol,
    /// Connections for HTTP/2 (HTTP/1.1 uses one per publisher).
    pub h2_connections: usize,
}

/// Per-topic numbering.
#[derive(Debug, Default)]
struct TopicBook {
    next: AtomicU64,
    unacknowledged: Mutex<Vec<u64>>,
}

/// Counters shared by the publisher tasks, readable while they run.
#[derive(Debug, Default)]
pub struct PublishStats {
    /// Requests acknowledged.
    pub requests: AtomicU64,
    /// Events acknowledged.
    pub events: AtomicU64,
    /// 503/429 answers (retried).
    pub throttled: AtomicU64,
    /// Requests that failed for good.
    pub failed: AtomicU64,
    /// Acknowledgement latency per request (µs).
    pub ack: AtomicHistogram,
    next_request: AtomicU64,
    books: Vec<TopicBook>,
    problems: Mutex<Vec<String>>,
}

impl PublishStats {
    fn problem(&self, message: &str) {
        if let Ok(mut problems) = self.problems.lock() {
            note_problem(&mut problems, message);
        }
    }
}

/// The result of a publishing run.
#[derive(Debug, Clone)]
pub struct PublishOutcome {
    /// Requests acknowledged.
    pub requests: u64,
    /// Events acknowledged.
    pub events: u64,
    /// Throttled answers.
    pub throttled: u64,
    /// Requests that failed for good.
    pub failed: u64,
    /// From the first request to the last acknowledgement.
    pub elapsed: Duration,
    /// Acknowledgement latency (µs).
    pub ack: Histogram,
    /// First few distinct problems.
    pub problems: Vec<String>,
    /// What each topic's subscribers must have received.
    pub expectations: Vec<TopicExpectation>,
}

/// A running publisher.
pub struct Publisher {
    stats: Arc<PublishStats>,
    tasks: JoinSet<()>,
    started: Instant,
}

/// One publisher task's fixed inputs.
struct Lane {
    client: HttpClient,
    /// The last reply said `Connection: close` (Pushpin's publish API always does).
    closing: bool,
    target: Target,
    plan: Arc<PublishPlan>,
    stats: Arc<PublishStats>,
    start: Instant,
    end: Instant,
}

impl Publisher {
    /// Opens the connections (failing fast if the server is unreachable) and starts publishing.
    pub async fn start(target: &Target, plan: PublishPlan) -> Result<Self, BenchError> {
        let target = &target.publish_target();
        let clients = open_clients(target, &plan).await?;
        let stats = Arc::new(PublishStats {
            books: (0..plan.topics.len())
                .map(|_| TopicBook::default())
                .collect(),
            ..PublishStats::default()
        });
        let plan = Arc::new(plan);
        let start = Instant::now();
        let end = start + plan.duration;
        let mut tasks = JoinSet::new();
        for client in clients {
            let lane = Lane {
                client,
                closing: false,
                target: target.clone(),
                plan: plan.clone(),
                stats: stats.clone(),
                start,
                end,
            };
            tasks.spawn(lane.run());
        }
        Ok(Self {
            stats,
            tasks,
            started: start,
        })
    }

    /// Live counters.
    pub fn stats(&self) -> &PublishStats {
        &self.stats
    }

    /// Whether every publisher task has finished.
    pub fn is_finished(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Waits for one task to end (or forever when none is left).
    pub async fn join_one(&mut self) {
        if self.tasks.join_next().await.is_none() {
            std::future::pending::<()>().await;
        }
    }

    /// Waits for all tasks and returns the figures.
    pub async fn finish(mut self) -> PublishOutcome {
        while self.tasks.join_next().await.is_some() {}
        let elapsed = self.started.elapsed();
        let stats = &self.stats;
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        PublishOutcome {
            requests: read(&stats.requests),
            events: read(&stats.events),
            throttled: read(&stats.throttled),
            failed: read(&stats.failed),
            elapsed,
            ack: stats.ack.snapshot(),
            problems: stats.problems.lock().map(|p| p.clone()).unwrap_or_default(),
            expectations: stats.books.iter().map(expectation_of).collect(),
        }
    }
}

/// The final expectation of one topic.
fn expectation_of(book: &TopicBook) -> TopicExpectation {
    let mut unacknowledged = book
        .unacknowledged
        .lock()
        .map(|list| list.clone())
        .unwrap_or_default();
    unacknowledged.sort_unstable();
    TopicExpectation {
        issued: book.next.load(Ordering::Relaxed),
        unacknowledged,
    }
}

/// One client per publisher (HTTP/1.1) or publishers sharing a few connections (HTTP/2).
async fn open_clients(target: &Target, plan: &PublishPlan) -> Result<Vec<HttpClient>, BenchError> {
    let connections = match plan.protocol {
        Protocol::Http1 => plan.publishers,
        Protocol::Http2 => plan.h2_connections.clamp(1, plan.publishers),
    };
    let mut clients = Vec::with_capacity(plan.publishers);
    for _ in 0..connections {
        clients.push(HttpClient::connect(target, plan.protocol).await?);
    }
    for index in connections..plan.publishers {
        let shared = clients[index % connections]
            .share()
            .ok_or_else(|| BenchError::run("an HTTP/1.1 connection cannot be shared"))?;
        clients.push(shared);
    }
    Ok(clients)
}

/// Why one attempt did not get an acknowledgement.
enum Failure {
    /// 503 or 429: wait and send again.
    Throttled(Duration),
    /// Anything else: give up on these events.
    Final(String),
}

impl Lane {
    /// Publishes until the run's end.
    async fn run(mut self) {
        loop {
            let index = self.stats.next_request.fetch_add(1, Ordering::Relaxed);
            if !self.wait_for_turn(index).await {
                break;
            }
            let topic = (index % self.plan.topics.len() as u64) as usize;
            let batch = self.plan.batch as u64;
            let first = self.stats.books[topic]
                .next
                .fetch_add(batch, Ordering::Relaxed);
            self.publish(topic, first).await;
        }
    }

    /// Sleeps until request `index` is due; false once the run is over.
    async fn wait_for_turn(&self, index: u64) -> bool {
        let Some(rate) = self.plan.rate else {
            return Instant::now() < self.end;
        };
        let due =
            self.start + Duration::from_secs_f64((index * self.plan.batch as u64) as f64 / rate);
        if due >= self.end {
            return false;
        }
        tokio::time::sleep_until(due).await;
        true
    }

    /// Sends events `first..first + batch` of `topic`, retrying while throttled.
    async fn publish(&mut self, topic: usize, first: u64) {
        let give_up = self.end + RETRY_GRACE;
        loop {
            match self.attempt(topic, first).await {
                Ok(()) => return,
                Err(Failure::Throttled(pause)) if Instant::now() + pause < give_up => {
                    self.stats.throttled.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(pause).await;
                }
                Err(Failure::Throttled(_)) => {
                    self.fail(
                        topic,
                        first,
                        "still throttled (503/429) after the run ended",
                    );
                    return;
                }
                Err(Failure::Final(message)) => {
                    self.fail(topic, first, &message);
                    return;
                }
            }
        }
    }

    /// Records events that were not acknowledged.
    fn fail(&self, topic: usize, first: u64, message: &str) {
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
        self.stats.problem(message);
        if let Ok(mut list) = self.stats.books[topic].unacknowledged.lock() {
            list.extend(first..first + self.plan.batch as u64);
        }
    }

    /// One request with fresh send times.
    async fn attempt(&mut self, topic: usize, first: u64) -> Result<(), Failure> {
        if std::mem::take(&mut self.closing) || self.client.is_closed() {
            self.client = HttpClient::connect(&self.target, self.plan.protocol)
                .await
                .map_err(|err| Failure::Final(err.to_string()))?;
        }
        let sent_us = unix_micros();
        let stamps: Vec<Stamp> = (first..first + self.plan.batch as u64)
            .map(|seq| Stamp {
                topic: topic as u32,
                seq,
                sent_us,
            })
            .collect();
        let name = &self.plan.topics[topic];
        let body = match (&self.target.peer, stamps.as_slice()) {
            (Some(_), _) => peer::publish_body(name, &stamps, self.plan.size),
            (None, [single]) if !self.target.discussions.is_empty() => {
                discussions::publish_body(*single, self.plan.size)
            }
            (None, [single]) if !self.target.rooms.is_empty() => {
                chat::message_body(*single, self.plan.size)
            }
            (None, _) => publish_body(&stamps, self.plan.size),
        };
        let path = self.target.events_path(name);
        let request = self
            .client
            .request(Method::POST, &path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::new(Bytes::from(body)))
            .map_err(|err| Failure::Final(format!("building a publish request: {err}")))?;
        let began = Instant::now();
        let reply = self
            .client
            .fetch(request)
            .await
            .map_err(|err| Failure::Final(err.to_string()))?;
        self.closing = announces_close(&reply.headers);
        match &self.target.peer {
            Some(_) => check_peer_ack(&reply)?,
            None => check_ack(&reply, stamps.len())?,
        }
        let micros = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.stats.ack.record(micros);
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        self.stats
            .events
            .fetch_add(stamps.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// Checks that a reply acknowledges exactly `count` events.
fn check_ack(reply: &Reply, count: usize) -> Result<(), Failure> {
    match reply.status {
        StatusCode::CREATED => {}
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
            return Err(Failure::Throttled(retry_after(reply)));
        }
        status => {
            return Err(Failure::Final(format!(
                "publish answered {status}: {}",
                reply.body_excerpt()
            )));
        }
    }
    let acknowledged = acknowledged_count(&reply.body, count > 1).ok_or_else(|| {
        Failure::Final(format!(
            "publish answered 201 with an unexpected body: {}",
            reply.body_excerpt()
        ))
    })?;
    if acknowledged == count {
        Ok(())
    } else {
        Err(Failure::Final(format!(
            "publish acknowledged {acknowledged} events of {count}"
        )))
    }
}

/// Whether a reply ends its connection (`Connection: close`).
fn announces_close(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("close"))
}

/// Checks that a peer accepted a publish (it acknowledges the request, not each event).
fn check_peer_ack(reply: &Reply) -> Result<(), Failure> {
    match reply.status {
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
            Err(Failure::Throttled(retry_after(reply)))
        }
        status if peer::accepted(status) => Ok(()),
        status => Err(Failure::Final(format!(
            "publish answered {status}: {}",
            reply.body_excerpt()
        ))),
    }
}

/// The pause a throttled reply asks for (capped), 100 ms when it does not say.
fn retry_after(reply: &Reply) -> Duration {
    reply
        .headers
        .get(header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.trim().parse::<u64>().ok())
        .map_or(Duration::from_millis(100), Duration::from_secs)
        .min(MAX_RETRY_AFTER)
}

/// How many events a 201 body acknowledges: `{"data":EVENT}` or `{"data":{"events":[…]}}`.
fn acknowledged_count(body: &[u8], batch: bool) -> Option<usize> {
    #[derive(Deserialize)]
    struct Envelope<T> {
        data: T,
    }
    #[derive(Deserialize)]
    struct Single {
        /// A topic event's or comment's `id`, a chat message's `messageId`.
        #[serde(alias = "messageId")]
        #[allow(dead_code)]
        id: IgnoredAny,
    }
    #[derive(Deserialize)]
    struct Batch {
        events: Vec<IgnoredAny>,
    }
    if batch {
        serde_json::from_slice::<Envelope<Batch>>(body)
            .ok()
            .map(|envelope| envelope.data.events.len())
    } else {
        serde_json::from_slice::<Envelope<Single>>(body)
            .ok()
            .map(|_| 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    fn reply(status: StatusCode, body: &str, retry: Option<&str>) -> Reply {
        let mut headers = HeaderMap::new();
        if let Some(value) = retry {
            headers.insert(header::RETRY_AFTER, value.parse().expect("header"));
        }
        Reply {
            status,
            headers,
            body: Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn acknowledgements_are_counted() {
        let single = r#"{"data":{"id":"01J","topic":"t","type":"bench","data":{}}}"#;
        assert!(check_ack(&reply(StatusCode::CREATED, single, None), 1).is_ok());
        let batch = r#"{"data":{"events":[{"id":"a"},{"id":"b"}]}}"#;
        assert!(check_ack(&reply(StatusCode::CREATED, batch, None), 2).is_ok());
        assert!(matches!(
            check_ack(&reply(StatusCode::CREATED, batch, None), 3),
            Err(Failure::Final(_))
        ));
        assert!(matches!(
            check_ack(&reply(StatusCode::CREATED, "{}", None), 1),
            Err(Failure::Final(_))
        ));
        assert!(matches!(
            check_ack(&reply(StatusCode::NOT_FOUND, "{}", None), 1),
            Err(Failure::Final(message)) if message.contains("404")
        ));
    }

    #[test]
    fn throttling_honours_retry_after_within_limits() {
        let throttled = |retry| check_ack(&reply(StatusCode::SERVICE_UNAVAILABLE, "{}", retry), 1);
        assert!(matches!(throttled(Some("0")), Err(Failure::Throttled(d)) if d.is_zero()));
        assert!(
            matches!(throttled(Some("30")), Err(Failure::Throttled(d)) if d == MAX_RETRY_AFTER)
        );
        assert!(
            matches!(throttled(None), Err(Failure::Throttled(d)) if d == Duration::from_millis(100))
        );
    }

    #[test]
    fn closing_replies_are_noticed_and_peer_acks_need_a_success() {
        let mut closing = reply(StatusCode::OK, "Published\n", None);
        closing.headers.insert(
            header::CONNECTION,
            "keep-alive, Close".parse().expect("header"),
        );
        assert!(announces_close(&closing.headers));
        assert!(!announces_close(&HeaderMap::new()));
        assert!(check_peer_ack(&closing).is_ok());
        assert!(matches!(
            check_peer_ack(&reply(StatusCode::BAD_REQUEST, "bad", None)),
            Err(Failure::Final(_))
        ));
    }

    #[test]
    fn expectations_list_unacknowledged_numbers_sorted() {
        let book = TopicBook::default();
        book.next.store(10, Ordering::Relaxed);
        if let Ok(mut list) = book.unacknowledged.lock() {
            list.extend([7, 3]);
        }
        let expect = expectation_of(&book);
        assert_eq!(expect.issued, 10);
        assert_eq!(expect.unacknowledged, vec![3, 7]);
        assert_eq!(expect.expected_count(), 8);
    }
}
