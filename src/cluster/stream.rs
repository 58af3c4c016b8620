//! The JetStream stream the writer publishes its batches to: its settings
//! (`--nats-stream`, `--nats-replicas`, `--nats-max-age`, `--nats-max-bytes`),
//! the stream configuration they make, and its leader elections (which
//! writer and edges follow: a request sent while the stream has no leader
//! waits for its timeout, so they start over at each new leader).
//!
//! Invariants: the configuration holds only fields a 2.9 server accepts
//! (async-nats is built without its `server_2_10`+ features, so it sends
//! none of theirs); the stream has one subject ([`SUBJECT`]), keeps messages
//! on disk, discards the oldest beyond its limits, allows direct gets (edges
//! read it) and recognises a resend of a message id within
//! [`DUPLICATE_WINDOW`]. An existing stream of that name is used as it is.

use crate::cluster::record::SUBJECT;
use async_nats::jetstream::stream::{Config, DiscardPolicy, RetentionPolicy, StorageType};
use futures_util::StreamExt;
use std::time::Duration;

/// Subject prefix of JetStream's advisory that a stream elected a leader
/// (the stream's name follows).
const LEADER_ELECTED: &str = "$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED";

/// How long the stream remembers message ids to drop resends.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// What the writer creates the stream with when it does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSettings {
    /// The stream's name.
    pub name: String,
    /// Copies of each message in the NATS cluster (1 to 5).
    pub replicas: usize,
    /// Messages older than this are removed.
    pub max_age: Duration,
    /// Oldest messages are removed while the stream holds more bytes.
    pub max_bytes: u64,
}

impl StreamSettings {
    /// The stream's configuration.
    pub fn config(&self) -> Config {
        Config {
            name: self.name.clone(),
            subjects: vec![SUBJECT.to_string()],
            retention: RetentionPolicy::Limits,
            storage: StorageType::File,
            discard: DiscardPolicy::Old,
            num_replicas: self.replicas,
            max_age: self.max_age,
            max_bytes: i64::try_from(self.max_bytes).unwrap_or(i64::MAX),
            allow_direct: true,
            duplicate_window: DUPLICATE_WINDOW,
            ..Config::default()
        }
    }
}

/// The leader elections of stream `name`, as `client` hears them.
pub struct LeaderElections(Option<async_nats::Subscriber>);

impl LeaderElections {
    /// Follows the elections (none are heard when the subscription fails:
    /// requests then end on their own timeouts).
    pub async fn follow(client: &async_nats::Client, name: &str) -> Self {
        let subject = format!("{LEADER_ELECTED}.{name}");
        let subscriber = client
            .subscribe(subject)
            .await
            .inspect_err(
                |err| tracing::warn!(error = %err, "cannot follow the stream's leader elections"),
            )
            .ok();
        Self(subscriber)
    }

    /// Waits for the next election (forever once the connection closed).
    pub async fn next(&mut self) {
        if let Some(subscriber) = &mut self.0
            && subscriber.next().await.is_some()
        {
            return;
        }
        self.0 = None;
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_sends_only_fields_a_2_9_server_knows() {
        let settings = StreamSettings {
            name: "TIDINGS".into(),
            replicas: 3,
            max_age: Duration::from_secs(86_400),
            max_bytes: 1 << 30,
        };
        let json = serde_json::to_value(settings.config()).unwrap();
        let fields: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let known = [
            "name",
            "subjects",
            "retention",
            "max_consumers",
            "max_msgs",
            "max_bytes",
            "max_age",
            "max_msgs_per_subject",
            "max_msg_size",
            "discard",
            "storage",
            "num_replicas",
            "duplicate_window",
            "allow_direct",
            "sealed",
            "deny_delete",
            "deny_purge",
            "allow_rollup_hdrs",
        ];
        for field in &fields {
            assert!(
                known.contains(field),
                "{field} is unknown to nats-server 2.9"
            );
        }
        assert_eq!(json["num_replicas"], 3);
        assert_eq!(json["subjects"][0], SUBJECT);
        assert_eq!(json["duplicate_window"], 120_000_000_000u64);
    }
}
