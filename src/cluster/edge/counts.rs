//! The transport of the modules' shared counts
//! ([`crate::modules::shared_counts`]) over core NATS: every node of a
//! cluster — the writer and each edge — publishes its counts every
//! [`PERIOD`] on one subject per cluster ([`subject`]) and hands what the
//! other nodes publish there to its [`SharedCounts`].
//!
//! Core NATS, not the stream: the counts are current state, replaced every
//! second, and lose nothing worth keeping when a message is lost (the next
//! one replaces it); a node that cannot reach NATS counts only itself,
//! and the others stop counting it after [`crate::modules::shared_counts::SILENCE`].
//!
//! Invariants: a node ignores its own messages (a random id per process);
//! a message that does not parse is skipped; the task ends when the
//! server stops.

use crate::core::lifecycle::Lifecycle;
use crate::error::StartupError;
use crate::modules::shared_counts::{Contribution, PERIOD, SharedCounts};
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;

/// The subject the nodes of the cluster whose stream is `stream` share
/// their counts on (outside the stream's own subject).
pub fn subject(stream: &str) -> String {
    format!("tidings.counts.{stream}")
}

/// A NATS connection for the writer's shared counts (an edge shares its
/// own); it connects in the background, as the publisher's does.
pub async fn connect(
    servers: Vec<async_nats::ServerAddr>,
) -> Result<async_nats::Client, StartupError> {
    async_nats::ConnectOptions::new()
        .name("tidings-counts")
        .retry_on_initial_connect()
        .connect(servers)
        .await
        .map_err(|err| StartupError::Config(format!("--nats: {err}")))
}

/// Publishes this node's counts every [`PERIOD`] and records the other
/// nodes', until the server stops.
pub async fn share(
    nats: async_nats::Client,
    subject: String,
    counts: Arc<SharedCounts>,
    lifecycle: Arc<Lifecycle>,
) {
    let node = uuid::Uuid::new_v4().to_string();
    let mut heard = loop {
        match nats.subscribe(subject.clone()).await {
            Ok(subscriber) => break subscriber,
            Err(err) => {
                tracing::warn!(error = %err, "subscribing to the shared counts failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = lifecycle.stopping() => return,
                }
            }
        }
    };
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => publish(&nats, &subject, &node, &counts).await,
            message = heard.next() => match message {
                Some(message) => receive(&node, &message.payload, &counts),
                None => return,
            },
            () = lifecycle.stopping() => return,
        }
    }
}

/// Publishes this node's counts (a failure is logged at debug: the next
/// period tries again).
async fn publish(nats: &async_nats::Client, subject: &str, node: &str, counts: &SharedCounts) {
    let contribution = Contribution {
        node: node.to_string(),
        counts: counts.ours(),
    };
    let Ok(payload) = serde_json::to_vec(&contribution) else {
        return;
    };
    if let Err(err) = nats.publish(subject.to_string(), payload.into()).await {
        tracing::debug!(error = %err, "publishing the shared counts failed");
    }
}

/// Records another node's counts.
fn receive(node: &str, payload: &[u8], counts: &SharedCounts) {
    match serde_json::from_slice::<Contribution>(payload) {
        Ok(other) if other.node != node => counts.heard(other.node, other.counts),
        Ok(_) => {}
        Err(err) => {
            tracing::debug!(error = %err, "a shared counts message does not parse; skipped")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn a_node_records_the_others_and_skips_itself_and_garbage() {
        let counts = SharedCounts::default();
        let message = |node: &str, value: u64| {
            serde_json::to_vec(&Contribution {
                node: node.into(),
                counts: BTreeMap::from([("k".to_string(), value)]),
            })
            .unwrap()
        };
        receive("me", &message("me", 5), &counts);
        receive("me", b"not json", &counts);
        assert_eq!(counts.others("k"), 0);
        receive("me", &message("other", 2), &counts);
        assert_eq!(counts.others("k"), 2);
        assert_eq!(subject("TIDINGS"), "tidings.counts.TIDINGS");
    }
}
