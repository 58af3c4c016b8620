//! Messages between the coordinating bench process and its subscriber groups.
//!
//! A group runs either inside the coordinator (a task) or in a worker process
//! (`tidings bench worker`); the messages are the same. In a worker they
//! travel as one JSON object per line: [`Command`]s on its stdin, [`GroupEvent`]s
//! on its stdout.

use super::args::Transport;
use super::chat::layout::ChatUsers;
use super::histogram::Histogram;
use super::ledger::TopicExpectation;
use super::target::Target;
use serde::{Deserialize, Serialize};

/// Everything a group needs to start its subscribers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupJob {
    /// The server.
    pub target: Target,
    /// SSE or WebSocket.
    pub transport: Transport,
    /// All topics of the run; subscriber `i` uses topic `i % topics.len()`.
    pub topics: Vec<String>,
    /// Global index of this group's first subscriber.
    pub first: usize,
    /// Number of subscribers in this group.
    pub count: usize,
    /// Connections this group opens per second.
    pub connect_rate: f64,
    /// Deadline for one connection to be established and subscribed, in ms.
    pub connect_timeout_ms: u64,
    /// SSE streams per shared HTTP/2 connection (`--http2`); `None`: one HTTP/1.1 connection each.
    #[serde(default)]
    pub h2_streams: Option<usize>,
    /// Chat users instead of topic subscribers (`tidings bench chat`): user
    /// `i` reads its own event stream and must receive every message of its
    /// rooms (the topics, by index).
    #[serde(default)]
    pub chat: Option<Box<ChatUsers>>,
    /// The servers subscribers stream from instead of `target` (a
    /// cluster's edges; publishes still go to `target`): subscriber `i`
    /// uses `edges[i % edges.len()]`; empty: every one uses `target`.
    #[serde(default)]
    pub edges: Vec<Target>,
}

impl GroupJob {
    /// Why this job cannot run, if it cannot (it may come from another process).
    pub fn problem(&self) -> Option<String> {
        if self.topics.is_empty() {
            return Some("the job has no topics".into());
        }
        if !(self.connect_rate.is_finite() && self.connect_rate >= 0.001) {
            return Some(format!("unusable connect rate {}", self.connect_rate));
        }
        if self.connect_timeout_ms == 0 {
            return Some("the connect timeout is zero".into());
        }
        if self.h2_streams == Some(0) {
            return Some("zero streams per HTTP/2 connection".into());
        }
        let chat = self.chat.as_ref()?;
        if let Err(problem) = chat.layout.check() {
            return Some(problem);
        }
        if chat.layout.rooms != self.topics.len() || self.first + self.count > chat.layout.users {
            return Some("the chat users do not match the job's rooms and range".into());
        }
        None
    }
}

/// What the coordinator tells a group.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "camelCase")]
pub enum Command {
    /// Connect the subscribers (always the first command).
    Start(Box<GroupJob>),
    /// Every subscriber drops its connection now and resumes after its last event.
    Reconnect,
    /// Publishing has stopped: wait until every subscriber has everything, at most `drain_ms`.
    Finish {
        /// Per topic (same order as the job's topics).
        expect: Vec<TopicExpectation>,
        /// Longest wait for the last deliveries.
        drain_ms: u64,
    },
    /// Close everything now and report.
    Stop,
}

/// Counters a group reports while it runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// Subscribers whose first connection attempt has finished.
    pub attempted: u64,
    /// Connections open right now.
    pub connected: u64,
    /// First connection attempts that failed.
    pub connect_failures: u64,
    /// Bench events received (duplicates included).
    pub deliveries: u64,
    /// Deliveries of an event already received.
    pub duplicates: u64,
    /// Successful re-connections after a drop or a server close.
    pub reconnects: u64,
    /// Subscribers that caught up after the reconnect command.
    pub caught_up: u64,
    /// Frames that carried bench events (a chat frame may carry several).
    #[serde(default)]
    pub frames: u64,
}

impl Snapshot {
    /// Adds another group's counters.
    pub fn add(&mut self, other: &Snapshot) {
        self.attempted += other.attempted;
        self.connected += other.connected;
        self.connect_failures += other.connect_failures;
        self.deliveries += other.deliveries;
        self.duplicates += other.duplicates;
        self.reconnects += other.reconnects;
        self.caught_up += other.caught_up;
        self.frames += other.frames;
    }
}

/// Final figures of a group (or, merged, of the whole run).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupResult {
    /// Counters at the end.
    pub totals: Snapshot,
    /// Subscribers in the group.
    pub subscribers: u64,
    /// Distinct bench events received, summed over subscribers.
    pub unique: u64,
    /// Acknowledged events some subscriber never received, summed over subscribers.
    pub lost: u64,
    /// Subscribers that did not receive everything before the drain deadline.
    pub incomplete: u64,
    /// Sequence numbers no publisher could have sent.
    pub out_of_range: u64,
    /// Bench events that arrived on another topic's subscriber.
    pub misrouted: u64,
    /// Events without a bench stamp.
    pub foreign: u64,
    /// History gaps the server announced.
    pub gaps: u64,
    /// Error frames from the server.
    pub server_errors: u64,
    /// Streams the server ended (or announced ending).
    pub server_closes: u64,
    /// Reads that failed (connection reset, malformed stream).
    pub read_errors: u64,
    /// The first few distinct problems, for the report.
    pub problems: Vec<String>,
    /// Publish-to-delivery latency in µs.
    pub latency: Histogram,
    /// Time to connect and be subscribed, in µs.
    pub connect_time: Histogram,
    /// Time from the reconnect command until caught up, in µs.
    pub catch_up: Histogram,
}

/// Most distinct problem messages kept.
pub const MAX_PROBLEMS: usize = 5;

impl GroupResult {
    /// Adds another group's result.
    pub fn merge(&mut self, other: &GroupResult) {
        self.totals.add(&other.totals);
        self.subscribers += other.subscribers;
        self.unique += other.unique;
        self.lost += other.lost;
        self.incomplete += other.incomplete;
        self.out_of_range += other.out_of_range;
        self.misrouted += other.misrouted;
        self.foreign += other.foreign;
        self.gaps += other.gaps;
        self.server_errors += other.server_errors;
        self.server_closes += other.server_closes;
        self.read_errors += other.read_errors;
        for problem in &other.problems {
            note_problem(&mut self.problems, problem);
        }
        self.latency.merge(&other.latency);
        self.connect_time.merge(&other.connect_time);
        self.catch_up.merge(&other.catch_up);
    }
}

/// Keeps the first few distinct problem messages.
pub fn note_problem(problems: &mut Vec<String>, problem: &str) {
    if problems.len() < MAX_PROBLEMS && !problems.iter().any(|known| known == problem) {
        problems.push(problem.to_string());
    }
}

/// What a group tells the coordinator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "camelCase")]
pub enum GroupEvent {
    /// Every subscriber has made its first connection attempt.
    Ready {
        /// Counters at that moment.
        snapshot: Snapshot,
        /// Why connections failed (first few distinct reasons).
        problems: Vec<String>,
    },
    /// Periodic counters.
    Progress {
        /// Counters now.
        snapshot: Snapshot,
    },
    /// The group has finished.
    Done {
        /// Its final figures.
        result: Box<GroupResult>,
    },
    /// The group could not run.
    Failed {
        /// Why.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_as_json_lines() {
        let command = Command::Finish {
            expect: vec![TopicExpectation {
                issued: 3,
                unacknowledged: vec![1],
            }],
            drain_ms: 500,
        };
        let line = serde_json::to_string(&command).expect("serialises");
        assert!(!line.contains('\n'));
        assert!(matches!(
            serde_json::from_str::<Command>(&line),
            Ok(Command::Finish { drain_ms: 500, .. })
        ));
        let mut result = GroupResult::default();
        result.latency.record(1500);
        let line = serde_json::to_string(&GroupEvent::Done {
            result: Box::new(result),
        })
        .expect("serialises");
        let Ok(GroupEvent::Done { result }) = serde_json::from_str::<GroupEvent>(&line) else {
            panic!("parses back");
        };
        assert_eq!(result.latency.count(), 1);
    }

    #[test]
    fn results_merge() {
        let mut a = GroupResult {
            lost: 1,
            problems: vec!["x".into()],
            ..GroupResult::default()
        };
        let b = GroupResult {
            lost: 2,
            totals: Snapshot {
                duplicates: 4,
                ..Snapshot::default()
            },
            problems: vec!["x".into(), "y".into()],
            ..GroupResult::default()
        };
        a.merge(&b);
        assert_eq!(a.lost, 3);
        assert_eq!(a.totals.duplicates, 4);
        assert_eq!(a.problems, vec!["x".to_string(), "y".to_string()]);
    }
}
