//! The preferred leader (`preferredLeaderId`, DLedger's `preferredLeaderIds`): while this
//! node leads and the preferred node is a healthy follower, hand leadership to it.
//!
//! Every node runs [`Broker::run_preferred_leader`]; only the current leader acts, and the
//! preferred node itself never does. It never flaps: a transfer is attempted only when the
//! preferred node has matched the leader's whole log on [`HEALTHY_CHECKS`] checks in a row
//! (every [`PREFERRED_LEADER_CHECK`]) and its raft port accepts a connection (a node that is
//! down or unreachable is never chosen, even on an idle group where its matched index looks
//! current). A failed transfer (the old leader keeps leading) doubles the wait before the
//! next attempt, up to [`PREFERRED_LEADER_BACKOFF_MAX`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::{info, warn};

use super::admin::TRANSFER_TIMEOUT;
use super::Broker;

/// Interval between checks.
pub const PREFERRED_LEADER_CHECK: Duration = Duration::from_secs(3);
/// Checks in a row the preferred node must be caught up on before a transfer.
pub const HEALTHY_CHECKS: u32 = 2;
/// Longest wait after failed transfers.
pub const PREFERRED_LEADER_BACKOFF_MAX: Duration = Duration::from_secs(300);
/// How long the liveness probe of the preferred node's raft port may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// True when a follower whose matched log index is `matched` has the leader's whole log
/// (`last`, the leader's last log index).
pub fn caught_up(matched: Option<u64>, last: Option<u64>) -> bool {
    matched.is_some() && matched == last
}

impl Broker {
    /// Runs the preferred-leader check until `shutdown` resolves; returns at once when no
    /// `preferredLeaderId` is configured or this node is the preferred one.
    pub async fn run_preferred_leader(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        let Some(preferred) = self.config.preferred_leader_index() else {
            return;
        };
        if preferred == self.node.id() {
            return;
        }
        let addr = self
            .config
            .raft_peers()
            .get(&preferred)
            .cloned()
            .unwrap_or_default();
        tokio::pin!(shutdown);
        let mut healthy = 0;
        let mut backoff = PREFERRED_LEADER_CHECK;
        let mut next = Instant::now() + PREFERRED_LEADER_CHECK;
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep_until(next) => {}
            }
            next = Instant::now() + PREFERRED_LEADER_CHECK;
            if !self.status().is_caught_up_leader() || !self.follower_caught_up(preferred) {
                healthy = 0;
                continue;
            }
            healthy += 1;
            if healthy < HEALTHY_CHECKS {
                continue;
            }
            healthy = 0;
            let reachable = matches!(
                tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(&addr)).await,
                Ok(Ok(_))
            );
            if !reachable {
                continue;
            }
            info!(
                target_node = preferred,
                "handing leadership to the preferred leader"
            );
            match self
                .node
                .transfer_leadership(preferred, TRANSFER_TIMEOUT)
                .await
            {
                Ok(()) => backoff = PREFERRED_LEADER_CHECK,
                Err(e) => {
                    backoff = (backoff * 2).min(PREFERRED_LEADER_BACKOFF_MAX);
                    next = Instant::now() + backoff;
                    warn!(target_node = preferred, error = %e, retry_in = ?backoff,
                        "leadership transfer to the preferred leader failed");
                }
            }
        }
    }

    /// True when this leader's replication to `node` has matched its whole log.
    fn follower_caught_up(&self, node: u64) -> bool {
        let metrics = self.node.raft().metrics();
        let m = metrics.borrow();
        let matched = m
            .replication
            .as_ref()
            .and_then(|r| r.get(&node).cloned().flatten())
            .map(|l| l.index);
        caught_up(matched, m.last_log_index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caught_up_means_the_whole_log() {
        assert!(caught_up(Some(7), Some(7)));
        assert!(!caught_up(Some(6), Some(7)));
        assert!(!caught_up(None, Some(7)));
        assert!(!caught_up(None, None));
    }
}
