//! Per-node counters summed over a cluster's nodes: what one process counts
//! in memory (the live viewers polling it) and a cluster needs in total.
//!
//! Each node's modules register a [`Contributor`]; about every
//! [`PERIOD`] the cluster's transport (core NATS, `cluster::edge::counts`)
//! publishes this node's [`SharedCounts::ours`] and hands every other
//! node's latest to [`SharedCounts::heard`]. A module adds
//! [`SharedCounts::others`] to its own count. A single node has no
//! transport: `others` is always 0 and nothing changes for it.
//!
//! Invariants: a node's counts replace its previous ones (never added);
//! a node not heard from for [`SILENCE`] counts 0 and is forgotten (a
//! killed node stops counting within [`SILENCE`] of its last message);
//! at most [`MAX_NODES`] other nodes and [`MAX_KEYS`] keys per node are
//! kept, so memory is bounded whatever arrives. Counts are per node: a
//! client counted on two nodes (a viewer polling both within the window)
//! counts twice.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How often a node publishes its counts.
pub const PERIOD: Duration = Duration::from_secs(1);
/// A node silent this long no longer counts.
pub const SILENCE: Duration = Duration::from_secs(3);
/// Most other nodes whose counts are kept.
pub const MAX_NODES: usize = 256;
/// Most keys kept of one node's counts.
pub const MAX_KEYS: usize = 100_000;

/// Something a node counts in memory, under keys the other nodes share.
pub trait Contributor: Send + Sync {
    /// This node's nonzero counts now, by key.
    fn contribution(&self) -> Vec<(String, u64)>;
}

/// One node's counts, as the transport carries them.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Contribution {
    /// The sending node (a random id per process).
    pub node: String,
    /// Its counts by key.
    pub counts: BTreeMap<String, u64>,
}

/// This node's contributors and the other nodes' latest counts.
#[derive(Default)]
pub struct SharedCounts {
    contributors: Mutex<Vec<Arc<dyn Contributor>>>,
    others: Mutex<HashMap<String, Heard>>,
}

/// Another node's latest counts and when they arrived.
struct Heard {
    at: Instant,
    counts: BTreeMap<String, u64>,
}

impl SharedCounts {
    /// Adds a contributor of this node's counts.
    pub fn contribute(&self, contributor: Arc<dyn Contributor>) {
        lock(&self.contributors).push(contributor);
    }

    /// This node's counts now, every contributor's.
    pub fn ours(&self) -> BTreeMap<String, u64> {
        let contributors = lock(&self.contributors).clone();
        contributors
            .iter()
            .flat_map(|contributor| contributor.contribution())
            .collect()
    }

    /// Records `node`'s latest counts (replacing what it sent before).
    pub fn heard(&self, node: String, mut counts: BTreeMap<String, u64>) {
        if counts.len() > MAX_KEYS {
            tracing::warn!(
                node,
                keys = counts.len(),
                "a node's shared counts exceed {MAX_KEYS} keys; the rest are left out"
            );
            counts = counts.into_iter().take(MAX_KEYS).collect();
        }
        let mut others = lock(&self.others);
        forget_silent(&mut others);
        if others.len() >= MAX_NODES && !others.contains_key(&node) {
            tracing::warn!(
                node,
                "more than {MAX_NODES} nodes share counts; this one is left out"
            );
            return;
        }
        let at = Instant::now();
        others.insert(node, Heard { at, counts });
    }

    /// The sum of `key` over the other nodes heard within [`SILENCE`].
    pub fn others(&self, key: &str) -> u64 {
        let mut others = lock(&self.others);
        forget_silent(&mut others);
        others
            .values()
            .filter_map(|heard| heard.counts.get(key))
            .fold(0, |sum, count| sum.saturating_add(*count))
    }

    /// How many other nodes count now.
    pub fn nodes(&self) -> usize {
        let mut others = lock(&self.others);
        forget_silent(&mut others);
        others.len()
    }
}

fn forget_silent(others: &mut HashMap<String, Heard>) {
    others.retain(|_, heard| heard.at.elapsed() < SILENCE);
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Vec<(String, u64)>);

    impl Contributor for Fixed {
        fn contribution(&self) -> Vec<(String, u64)> {
            self.0.clone()
        }
    }

    fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(k, v)| ((*k).to_string(), *v)).collect()
    }

    #[test]
    fn other_nodes_latest_counts_are_summed_and_ours_collected() {
        let shared = SharedCounts::default();
        shared.contribute(Arc::new(Fixed(vec![("a".into(), 2)])));
        shared.contribute(Arc::new(Fixed(vec![("b".into(), 1)])));
        assert_eq!(shared.ours(), counts(&[("a", 2), ("b", 1)]));
        assert_eq!(shared.others("a"), 0, "alone, nobody else counts");
        shared.heard("n1".into(), counts(&[("a", 5)]));
        shared.heard("n2".into(), counts(&[("a", 7), ("b", 1)]));
        shared.heard("n1".into(), counts(&[("a", 3)]));
        assert_eq!(shared.others("a"), 10, "n1's latest replaces its earlier");
        assert_eq!(shared.others("c"), 0);
        assert_eq!(shared.nodes(), 2);
    }

    #[test]
    fn a_silent_node_stops_counting() {
        let shared = SharedCounts::default();
        shared.heard("gone".into(), counts(&[("a", 4)]));
        lock(&shared.others).get_mut("gone").unwrap().at = Instant::now() - SILENCE;
        shared.heard("here".into(), counts(&[("a", 1)]));
        assert_eq!(shared.others("a"), 1);
        assert_eq!(shared.nodes(), 1, "the silent node is forgotten");
    }

    #[test]
    fn what_is_kept_is_bounded() {
        let shared = SharedCounts::default();
        for node in 0..MAX_NODES + 5 {
            shared.heard(node.to_string(), counts(&[("a", 1)]));
        }
        assert_eq!(shared.nodes(), MAX_NODES);
        let many = (0..MAX_KEYS + 10).map(|n| (n.to_string(), 1)).collect();
        shared.heard("0".into(), many);
        assert_eq!(lock(&shared.others)["0"].counts.len(), MAX_KEYS);
    }
}
