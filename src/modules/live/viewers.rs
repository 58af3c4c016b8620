//! Live viewer counts over a cluster's nodes: each node counts the viewers
//! polling it ([`super::state::LiveStream::saw_viewer`]); the module
//! contributes those counts to the shared counts
//! ([`crate::modules::shared_counts`]), and the writer's close adds the
//! other nodes' latest counts to its own ([`total`]), so an interval's
//! `view-count` is the cluster's. An edge's snapshot says what the newest
//! replicated interval says.
//!
//! Invariants: a node contributes only live streams with viewers in the
//! window; the keys name the tenant and the stream, so one tenant's
//! viewers never count in another's stream; on a single node the total is
//! the node's own count.

use super::LiveModule;
use super::state::LiveStream;
use crate::modules::shared_counts::Contributor;

/// The shared key of `stream`'s viewers.
pub fn key(stream: &LiveStream) -> String {
    format!("live/{}/{}", stream.tenant.simple(), stream.id.simple())
}

/// The cluster's viewers of `stream`: `local` (this node's, counted for a
/// close) plus every other node's latest.
pub fn total(module: &LiveModule, stream: &LiveStream, local: u64) -> u64 {
    local.saturating_add(module.core.shared.others(&key(stream)))
}

impl Contributor for LiveModule {
    /// This node's viewers within the window of every live stream.
    fn contribution(&self) -> Vec<(String, u64)> {
        let window = self.limits.viewer_window.as_millis() as u64;
        let since = crate::core::clock::unix_millis().saturating_sub(window);
        self.streams
            .all()
            .into_iter()
            .filter(|stream| stream.record().is_live())
            .filter_map(|stream| {
                let viewers = stream.viewers_since(since);
                (viewers > 0).then(|| (key(&stream), viewers))
            })
            .collect()
    }
}
