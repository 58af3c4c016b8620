//! The scenarios and what the subscriber scenarios share: the pre-flight check, topic
//! naming and the [`Coordinator`] that drives subscriber groups.

pub mod chat;
pub mod cluster;
pub mod connections;
pub mod delivery;
pub mod fanout;
pub mod poll;
pub mod publish;
pub mod reconnect;
pub mod socketio;
pub mod tickets;

use super::args::{ConnectArgs, PeerArgs, ServerArgs, SubscriberArgs};
use super::error::BenchError;
use super::http::{Body, HttpClient, Protocol};
use super::ledger::TopicExpectation;
use super::peer;
use super::progress::Progress;
use super::protocol::{Command, GroupEvent, GroupJob, GroupResult, Snapshot};
use super::target::{Target, random_prefix, topic_names};
use super::workers::{Fleet, Placement, placement, split};
use http::{Method, StatusCode, header};

/// A run's server and topics, checked before anything is measured.
pub struct Setup {
    /// The server.
    pub target: Target,
    /// The run's topic names.
    pub topics: Vec<String>,
}

/// Names the topics, resolves the server (or `--peer`) and checks that it takes a publish.
pub async fn setup(
    server: &ServerArgs,
    peer: &PeerArgs,
    scenario: &str,
    topics: usize,
) -> Result<Setup, BenchError> {
    let prefix = server.topic_prefix.clone().unwrap_or_else(random_prefix);
    let topics = topic_names(&prefix, scenario, topics)?;
    let preflight_topic = format!("{prefix}.preflight");
    let target = match Target::for_peer(peer).await? {
        Some(target) => {
            preflight_peer(&target, &preflight_topic).await?;
            target
        }
        None => {
            let target = Target::resolve(server).await?;
            preflight(&target, &preflight_topic).await?;
            target
        }
    };
    Ok(Setup { target, topics })
}

/// A client to the server's publish endpoint, failing with a clear message.
async fn publish_client(target: &Target) -> Result<HttpClient, BenchError> {
    let publish = target.publish_target();
    HttpClient::connect(&publish, Protocol::Http1)
        .await
        .map_err(|err| {
            BenchError::run(format!(
                "the server at {} is not reachable: {err}",
                publish.addr
            ))
        })
}

/// Publishes one comment through a peer so that a wrong publish URL fails early.
async fn preflight_peer(target: &Target, topic: &str) -> Result<(), BenchError> {
    let mut client = publish_client(target).await?;
    let request = client
        .request(Method::POST, &target.events_path(topic))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(peer::preflight_body(topic)?))
        .map_err(|err| BenchError::context("building the pre-flight request", err))?;
    let reply = client.fetch(request).await?;
    if peer::accepted(reply.status) {
        return Ok(());
    }
    Err(BenchError::run(format!(
        "pre-flight publish to the peer answered {}: {}",
        reply.status,
        reply.body_excerpt()
    )))
}

/// Publishes one unstamped event so that a wrong URL, key or server build fails clearly and early.
async fn preflight(target: &Target, topic: &str) -> Result<(), BenchError> {
    let mut client = publish_client(target).await?;
    let request = client
        .request(Method::POST, &target.events_path(topic))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"type":"bench","data":{"preflight":true}}"#))
        .map_err(|err| BenchError::context("building the pre-flight request", err))?;
    let reply = client.fetch(request).await?;
    let hint = match reply.status {
        StatusCode::CREATED => return Ok(()),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            "the API key was refused; pass the admin key with --api-key or --data-dir"
        }
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => {
            "this server has no topics API (POST /api/v1/topics/{topic}/events); is it an older build?"
        }
        _ => "the server refused a single publish",
    };
    Err(BenchError::run(format!(
        "pre-flight publish answered {}: {hint} ({})",
        reply.status,
        reply.body_excerpt()
    )))
}

/// How many subscribers listen on topic `index` when `subscribers` are spread over `topics`.
pub fn subscribers_on(index: usize, subscribers: usize, topics: usize) -> u64 {
    (subscribers / topics + usize::from(index < subscribers % topics)) as u64
}

/// Deliveries a run must make: every acknowledged event to every subscriber of its topic.
pub fn expected_deliveries(expectations: &[TopicExpectation], subscribers: usize) -> u64 {
    expectations
        .iter()
        .enumerate()
        .map(|(index, expect)| {
            expect.expected_count() * subscribers_on(index, subscribers, expectations.len())
        })
        .sum()
}

/// Drives the subscriber groups of a run and gathers their events.
pub struct Coordinator {
    fleet: Fleet,
    snapshots: Vec<Snapshot>,
    ready: Vec<bool>,
    results: Vec<Option<GroupResult>>,
    problems: Vec<String>,
    /// Number of worker processes (0 when subscribers run in this process).
    pub processes: usize,
}

impl Coordinator {
    /// Splits the subscribers into groups and starts them; they stream
    /// from `edges` in turn when there are any, else from `target`.
    pub fn start(
        target: &Target,
        edges: &[Target],
        args: &SubscriberArgs,
        topics: Vec<String>,
    ) -> Result<Self, BenchError> {
        let job = GroupJob {
            target: target.clone(),
            transport: args.transport,
            topics,
            first: 0,
            count: 0,
            connect_rate: 0.0,
            connect_timeout_ms: 0,
            h2_streams: args.http2.then_some(args.h2_streams),
            chat: None,
            edges: edges.to_vec(),
        };
        Self::start_job(job, args.subscribers, &args.connect)
    }

    /// Splits `total` subscribers of `job` (whose range and pace this sets)
    /// into groups, in this process or in workers as `connect` says, and starts them.
    pub fn start_job(
        job: GroupJob,
        total: usize,
        connect: &ConnectArgs,
    ) -> Result<Self, BenchError> {
        let placed = placement(total, connect.sockets_per_process, connect.workers)?;
        let (groups, processes) = match placed {
            Placement::InProcess => (1, 0),
            Placement::Workers(count) => (count, count),
        };
        let ranges = split(total, groups);
        let jobs: Vec<GroupJob> = ranges
            .iter()
            .map(|(first, count)| GroupJob {
                first: *first,
                count: *count,
                connect_rate: connect.connect_rate / ranges.len() as f64,
                connect_timeout_ms: u64::try_from(connect.connect_timeout.as_millis())
                    .unwrap_or(u64::MAX),
                ..job.clone()
            })
            .collect();
        let fleet = Fleet::start(jobs, placed)?;
        let size = fleet.len();
        Ok(Self {
            fleet,
            snapshots: vec![Snapshot::default(); size],
            ready: vec![false; size],
            results: vec![None; size],
            problems: Vec::new(),
            processes,
        })
    }

    /// Counters summed over groups.
    pub fn totals(&self) -> Snapshot {
        let mut total = Snapshot::default();
        for snapshot in &self.snapshots {
            total.add(snapshot);
        }
        total
    }

    /// Problems reported with `ready`.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// Handles the next group event; an error when a group failed or all vanished.
    pub async fn pump(&mut self) -> Result<(), BenchError> {
        let Some((index, event)) = self.fleet.next().await else {
            return Err(BenchError::run(
                "every subscriber group stopped unexpectedly",
            ));
        };
        match event {
            GroupEvent::Ready { snapshot, problems } => {
                self.snapshots[index] = snapshot;
                self.ready[index] = true;
                for problem in problems {
                    super::protocol::note_problem(&mut self.problems, &problem);
                }
            }
            GroupEvent::Progress { snapshot } => self.snapshots[index] = snapshot,
            GroupEvent::Done { result } => {
                self.snapshots[index] = result.totals;
                self.ready[index] = true;
                self.results[index] = Some(*result);
            }
            GroupEvent::Failed { message } => {
                return Err(BenchError::run(format!(
                    "subscriber group {index}: {message}"
                )));
            }
        }
        Ok(())
    }

    /// Waits until every group has made all its first connection attempts.
    pub async fn wait_ready(
        &mut self,
        progress: &mut Progress,
        total: usize,
    ) -> Result<Snapshot, BenchError> {
        while !self.ready.iter().all(|ready| *ready) {
            let totals = self.totals();
            progress.update(&format!(
                "connecting {}/{total} · open {} · failed {}",
                totals.attempted, totals.connected, totals.connect_failures
            ));
            self.pump().await?;
        }
        Ok(self.totals())
    }

    /// Fails (after stopping the groups) when any first connection failed.
    pub async fn require_all_connected(&mut self, total: usize) -> Result<(), BenchError> {
        let failures = self.totals().connect_failures;
        if failures == 0 {
            return Ok(());
        }
        self.fleet.broadcast(&Command::Stop).await;
        let reasons = self.problems.join("; ");
        let message = format!("{failures} of {total} subscribers could not connect: {reasons}");
        eprintln!(
            "{}",
            super::report::shout("connect", std::slice::from_ref(&message))
        );
        Err(BenchError::run(message))
    }

    /// Sends a command to every group.
    pub async fn broadcast(&self, command: &Command) {
        self.fleet.broadcast(command).await;
    }

    /// Waits for every group's final result and merges them.
    pub async fn results(
        &mut self,
        progress: &mut Progress,
        label: &str,
    ) -> Result<GroupResult, BenchError> {
        while self.results.iter().any(Option::is_none) {
            let totals = self.totals();
            progress.update(&format!(
                "{label} · open {} · delivered {}",
                totals.connected, totals.deliveries
            ));
            self.pump().await?;
        }
        let mut merged = GroupResult::default();
        for result in self.results.iter().flatten() {
            merged.merge(result);
        }
        Ok(merged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribers_spread_over_topics() {
        assert_eq!(subscribers_on(0, 10, 3), 4);
        assert_eq!(subscribers_on(1, 10, 3), 3);
        assert_eq!(subscribers_on(2, 10, 3), 3);
        let expect = |issued| TopicExpectation {
            issued,
            unacknowledged: vec![],
        };
        assert_eq!(
            expected_deliveries(&[expect(5), expect(2), expect(0)], 10),
            26
        );
    }
}
