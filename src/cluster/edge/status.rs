//! An edge's part of `/readyz` and `/metrics`.
//!
//! `/readyz` reports `cluster: {role: "edge", nats, appliedBatch,
//! streamLastBatch, lagBatches, writer}` and is 503 until the replica has
//! caught up with the stream once (after that, a lagging or disconnected
//! edge still serves what it holds, and says how far behind it is).

use super::follower::Progress;
use super::replica::Replica;
use crate::core::metrics::Metrics;
use crate::ops::EdgeProbe;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// What an edge reports about its replication and its writer.
pub struct EdgeStatus {
    /// The replica.
    pub replica: Arc<Replica>,
    /// What the follower saw of the stream.
    pub progress: Arc<Progress>,
    /// The connection to the shared log.
    pub nats: async_nats::Client,
    /// Whether the writer answered lately.
    pub writer_reachable: Arc<AtomicBool>,
}

impl EdgeStatus {
    /// The batch the replica holds, the stream's last batch (as far as
    /// known) and how many the replica lacks.
    fn batches(&self) -> (u64, u64, u64) {
        let applied = self.replica.applied();
        let last = self.progress.last_batch().max(applied);
        (applied, last, last - applied)
    }
}

impl EdgeProbe for EdgeStatus {
    fn readiness(&self) -> (serde_json::Value, Result<(), String>) {
        let (applied, last, lag) = self.batches();
        let connected = self.nats.connection_state() == async_nats::connection::State::Connected;
        let reachable = self.writer_reachable.load(Ordering::Relaxed);
        let report = json!({
            "role": "edge",
            "nats": if connected { "connected" } else { "disconnected" },
            "appliedBatch": applied,
            "streamLastBatch": last,
            "lagBatches": lag,
            "writer": if reachable { "reachable" } else { "unreachable" },
        });
        let verdict = if self.progress.caught_up_once() {
            Ok(())
        } else {
            Err(format!(
                "this edge has not caught up with the shared log yet (its replica holds batch {applied}, the stream is known to reach {last})"
            ))
        };
        (report, verdict)
    }

    fn update_metrics(&self, metrics: &Metrics) {
        let (applied, _, lag) = self.batches();
        metrics.set_edge(self.replica.records_applied(), applied, lag);
    }
}
