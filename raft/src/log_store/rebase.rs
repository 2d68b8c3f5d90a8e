//! Rebasing an emptied log onto the replicated byte positions after a snapshot install.
//!
//! A node that catches up through a snapshot has no entries up to the snapshot's last index,
//! so its own end position says nothing about where entry `last + 1` begins on the other
//! replicas. The snapshot carries that position (see
//! [`crate::state_machine::SnapshotEnvelope`]); the state-machine adapter records it here
//! as a [`RebasePoint`] when it installs the snapshot, and the store moves its end there once
//! every entry is purged (see `SegmentedLogStore::rebase` in `writer.rs`).
//!
//! A rebase point is a fact about the replicated log ("committed entry `first_index - 1`
//! ends at byte `position`"), so recording it early, or keeping an old one, is always safe:
//! it is only acted on when the log is empty and its purge point is `first_index - 1`.
//!
//! Why the store does not rely on the order of the adapter's and its own calls: openraft
//! 0.9.25 (`FollowingHandler::install_full_snapshot`) queues the state-machine install for
//! the state-machine worker and then queues `PurgeLog`, which `RaftCore` runs at once,
//! without waiting for the worker. So the purge usually reaches the store *before* the
//! adapter has recorded the point. What openraft does order after the install is the reply
//! to the leader (`Respond` waits on `Condition::StateMachineCommand`), and every command
//! queued after that reply, appends included. Hence the store checks for a matching point
//! when it purges (the point may already be there) *and* before every append to an empty
//! log (the first append after the install always finds it). The point is also persisted
//! (sled, flushed) before the state machine takes the snapshot, so a restart in between
//! still finds it (at open, and when openraft purges up to the applied log id at startup).

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::LogStoreError;
use crate::meta::Meta;

/// Where the replicated log continues: entry `first_index` begins at global byte `position`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebasePoint {
    /// The first log index after an installed snapshot (its last index + 1).
    pub first_index: u64,
    /// Global byte position at which that entry begins on every replica.
    pub position: u64,
}

/// The latest [`RebasePoint`], shared by the state-machine adapter (which records it when it
/// installs a snapshot) and the log store (which acts on it when its log becomes empty).
///
/// Obtained from [`super::SegmentedLogStore::rebase_hint`]; recording persists the point in
/// the store's metadata before it becomes visible.
#[derive(Debug)]
pub struct RebaseHint {
    point: Mutex<Option<RebasePoint>>,
    meta: Meta,
}

impl RebaseHint {
    pub(crate) fn new(meta: Meta, point: Option<RebasePoint>) -> Self {
        Self {
            point: Mutex::new(point),
            meta,
        }
    }

    /// The latest recorded point.
    pub fn get(&self) -> Option<RebasePoint> {
        *self.point.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `point` durably (flushed), then makes it visible to the store. A point older
    /// than the one recorded (a lower `first_index`) is ignored: snapshots only move forward.
    pub fn record(&self, point: RebasePoint) -> Result<(), LogStoreError> {
        let mut cur = self.point.lock().unwrap_or_else(|e| e.into_inner());
        if cur.is_some_and(|c| c.first_index > point.first_index) {
            tracing::debug!(?point, current = ?*cur, "ignoring an older rebase point");
            return Ok(());
        }
        if *cur != Some(point) {
            self.meta.save_rebase(&point)?;
            tracing::info!(
                first_index = point.first_index,
                position = point.position,
                "recorded log rebase point"
            );
        }
        *cur = Some(point);
        Ok(())
    }
}
