//! Background upkeep of a node: disk checks, retention decisions (leader) and local log
//! purges after an applied purge point (every node). See [`crate::retention`].

use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use raftmq_raft::status::Role;
use tracing::{info, warn};

use super::{now_ms, Broker};
use crate::retention::{
    hour_of_day, purge_point, segment_ages, RetentionPolicy, DISK_CHECK_INTERVAL,
    RETENTION_CHECK_INTERVAL,
};
use crate::state::{Command, Reply};

impl Broker {
    /// The retention settings of this node's config.
    pub fn retention_policy(&self) -> RetentionPolicy {
        RetentionPolicy {
            reserved_hours: self.config.file_reserved_time_hours,
            delete_hours: self.config.delete_when_hours(),
            max_used_percent: self.config.disk_max_used_space_ratio_percent,
        }
    }

    /// Runs disk checks, retention and local purges until `shutdown` resolves. Every node
    /// runs it (main.rs and the test harness spawn it).
    pub async fn run_maintenance(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(DISK_CHECK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_retention = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tick.tick() => {}
            }
            let disk = self.disk.clone();
            // statvfs may block on a sick disk: keep it off the runtime's workers.
            let _ = tokio::task::spawn_blocking(move || disk.check()).await;
            self.purge_local_log().await;
            if last_retention.elapsed() >= RETENTION_CHECK_INTERVAL {
                last_retention = tokio::time::Instant::now();
                self.retention_round().await;
            }
        }
    }

    /// Leader only: proposes a purge point if segments expired or the disk is under pressure.
    /// Returns the point proposed, if any.
    pub async fn retention_round(&self) -> Option<i64> {
        let status = self.status();
        if !status.is_caught_up_leader() {
            return None;
        }
        let log = self.node.log();
        let ages = segment_ages(&self.config.raft_data_dir().join("log"), &log.segments());
        let purged = self.node.state_machine().with(|sm| sm.purged_upto());
        let (point, reason) = purge_point(
            &ages,
            now_ms(),
            hour_of_day(SystemTime::now()),
            self.disk.last(),
            &self.retention_policy(),
            purged,
        )?;
        info!(point, ?reason, "retention: proposing a purge point");
        let command = Command::Purge {
            upto_physical_offset: point,
        };
        match self.node.propose(command.encode()).await {
            Ok(bytes) => match Reply::decode(&bytes) {
                Some(Reply::Done) => Some(point),
                other => {
                    warn!(?other, "retention: purge refused");
                    None
                }
            },
            Err(e) => {
                warn!(error = %e, "retention: purge not committed");
                None
            }
        }
    }

    /// Every node: once the state machine applied a purge point, purges the local raft log up
    /// to the last entry that ends at or before it (whole segments go; the active one stays).
    pub async fn purge_local_log(&self) {
        let point = self.node.state_machine().with(|sm| sm.purged_upto());
        let Ok(point) = u64::try_from(point) else {
            return;
        };
        if point == 0 {
            return;
        }
        let log = self.node.log();
        let Some(index) = log.last_index_ending_by(point) else {
            return;
        };
        let purged = self.node.raft().metrics().borrow().purged.map(|p| p.index);
        if purged.is_some_and(|p| p >= index) {
            return;
        }
        // Only whole segments can go: skip the snapshot + purge round trip when it would
        // not delete any file.
        let removable = log
            .segments()
            .iter()
            .rev()
            .skip(1)
            .any(|s| s.last_index.is_some_and(|l| l <= index));
        if !removable {
            return;
        }
        if self.status().role == Role::Shutdown {
            return;
        }
        match self.node.purge_upto(index).await {
            Ok(p) => info!(purged = ?p, point, "retention: local log purged"),
            Err(e) => warn!(error = %e, point, "retention: local log purge failed; will retry"),
        }
    }
}
