//! The state-machine hook the broker implements, and its openraft adapter.
//!
//! openraft applies committed entries in log order on every replica by calling
//! [`SmAdapter`] (its `RaftStateMachine`), which hands them to a [`StateMachine`] with the
//! byte position of each payload in the log, so the broker can derive physical offsets
//! that are identical on every replica. A snapshot is the state machine's metadata only,
//! never the purged log.

use std::io::Cursor;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, RaftSnapshotBuilder, SnapshotMeta, StorageIOError};

use crate::types::{Entry, LogId, NodeId, StorageError, StoredMembership, TypeConfig};

/// What a committed entry carries.
#[derive(Debug, Clone, PartialEq)]
pub enum CommittedPayload {
    /// A leader's no-op (start of a term).
    Blank,
    /// An application command.
    Normal(Bytes),
    /// A membership change; persist it with the state (see [`StateMachine::applied_state`]).
    Membership(StoredMembership),
}

/// One committed entry, in log order.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    /// Its log id.
    pub log_id: LogId,
    /// Its content.
    pub payload: CommittedPayload,
    /// Global byte position of the payload in the replicated log, when known (the same on
    /// every replica; `None` only for entries no longer in the local log).
    pub payload_position: Option<u64>,
}

/// An error of the application's state machine; fatal to the node (openraft stops).
#[derive(Debug, thiserror::Error)]
#[error("state machine: {0}")]
pub struct SmError(pub String);

/// The replicated state machine: deterministic, applies entries in log order.
///
/// Everything here must depend only on the entries, never on the local clock or config.
pub trait StateMachine: Send + 'static {
    /// Applies committed entries in order; one reply per entry (empty for non-commands).
    fn apply(&mut self, entries: &[Committed]) -> Result<Vec<Bytes>, SmError>;
    /// The last applied log id and membership as durably recorded (after a restart too).
    fn applied_state(&self) -> (Option<LogId>, StoredMembership);
    /// Serializes the state (metadata only) as of the last applied entry.
    fn snapshot(&mut self) -> Result<Vec<u8>, SmError>;
    /// Replaces the whole state with a snapshot's.
    fn install_snapshot(
        &mut self,
        last: Option<LogId>,
        membership: StoredMembership,
        data: &[u8],
    ) -> Result<(), SmError>;
}

/// Maps a log index to the global byte position of its payload (implemented by the log store).
pub trait PayloadPositions: Send + Sync + 'static {
    /// Position of the payload of entry `index`, if the entry is still in the log.
    fn payload_position(&self, index: u64) -> Option<u64>;
}

/// No positions (tests that don't need them).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPositions;

impl PayloadPositions for NoPositions {
    fn payload_position(&self, _: u64) -> Option<u64> {
        None
    }
}

struct Inner<S> {
    sm: S,
    current: Option<(SnapshotMeta<NodeId, openraft::BasicNode>, Vec<u8>)>,
    snapshot_seq: u64,
}

/// openraft `RaftStateMachine` over a [`StateMachine`].
pub struct SmAdapter<S> {
    inner: Arc<Mutex<Inner<S>>>,
    positions: Arc<dyn PayloadPositions>,
}

impl<S> std::fmt::Debug for SmAdapter<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmAdapter").finish_non_exhaustive()
    }
}

impl<S: StateMachine> SmAdapter<S> {
    /// Wraps `sm`; `positions` resolves payload positions at apply time.
    pub fn new(sm: S, positions: Arc<dyn PayloadPositions>) -> Self {
        SmAdapter {
            inner: Arc::new(Mutex::new(Inner {
                sm,
                current: None,
                snapshot_seq: 0,
            })),
            positions,
        }
    }

    /// Runs `f` with the state machine locked (reads by the broker, tests).
    pub fn with<R>(&self, f: impl FnOnce(&mut S) -> R) -> R {
        f(&mut lock(&self.inner).sm)
    }

    /// A cloneable handle to the same state machine.
    pub fn handle(&self) -> SmHandle<S> {
        SmHandle {
            inner: self.inner.clone(),
        }
    }
}

/// A cloneable handle to the state machine inside a running node.
pub struct SmHandle<S> {
    inner: Arc<Mutex<Inner<S>>>,
}

impl<S> Clone for SmHandle<S> {
    fn clone(&self) -> Self {
        SmHandle {
            inner: self.inner.clone(),
        }
    }
}

impl<S> std::fmt::Debug for SmHandle<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmHandle").finish_non_exhaustive()
    }
}

impl<S: StateMachine> SmHandle<S> {
    /// Runs `f` with the state machine locked.
    pub fn with<R>(&self, f: impl FnOnce(&mut S) -> R) -> R {
        f(&mut lock(&self.inner).sm)
    }
}

fn lock<S>(m: &Mutex<Inner<S>>) -> MutexGuard<'_, Inner<S>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn sm_err(e: SmError) -> StorageError {
    StorageIOError::write_state_machine(&std::io::Error::other(e.0)).into()
}

fn to_committed(entry: Entry, positions: &dyn PayloadPositions) -> Committed {
    let payload = match entry.payload {
        EntryPayload::Blank => CommittedPayload::Blank,
        EntryPayload::Normal(b) => CommittedPayload::Normal(b),
        EntryPayload::Membership(m) => {
            CommittedPayload::Membership(StoredMembership::new(Some(entry.log_id), m))
        }
    };
    Committed {
        payload_position: positions.payload_position(entry.log_id.index),
        log_id: entry.log_id,
        payload,
    }
}

#[allow(clippy::result_large_err)] // openraft's own error type
fn build<S: StateMachine>(inner: &Mutex<Inner<S>>) -> Result<Snapshot<TypeConfig>, StorageError> {
    let mut g = lock(inner);
    let (last, membership) = g.sm.applied_state();
    let data = g.sm.snapshot().map_err(sm_err)?;
    g.snapshot_seq += 1;
    let snapshot_id = match last {
        Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, g.snapshot_seq),
        None => format!("0-0-{}", g.snapshot_seq),
    };
    let meta = SnapshotMeta {
        last_log_id: last,
        last_membership: membership,
        snapshot_id,
    };
    g.current = Some((meta.clone(), data.clone()));
    Ok(Snapshot {
        meta,
        snapshot: Box::new(Cursor::new(data)),
    })
}

/// Builds snapshots of the adapter's state machine.
pub struct SnapshotBuilder<S> {
    inner: Arc<Mutex<Inner<S>>>,
}

impl<S> std::fmt::Debug for SnapshotBuilder<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotBuilder").finish_non_exhaustive()
    }
}

impl<S: StateMachine> RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder<S> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        build(&self.inner)
    }
}

impl<S: StateMachine> RaftStateMachine<TypeConfig> for SmAdapter<S> {
    type SnapshotBuilder = SnapshotBuilder<S>;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok(lock(&self.inner).sm.applied_state())
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Bytes>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let positions = self.positions.as_ref();
        let batch: Vec<Committed> = entries
            .into_iter()
            .map(|e| to_committed(e, positions))
            .collect();
        let replies = lock(&self.inner).sm.apply(&batch).map_err(sm_err)?;
        if replies.len() != batch.len() {
            return Err(sm_err(SmError(format!(
                "apply returned {} replies for {} entries",
                replies.len(),
                batch.len()
            ))));
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            inner: self.inner.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let mut g = lock(&self.inner);
        g.sm.install_snapshot(meta.last_log_id, meta.last_membership.clone(), &data)
            .map_err(sm_err)?;
        g.current = Some((meta.clone(), data));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let g = lock(&self.inner);
        Ok(g.current.as_ref().map(|(meta, data)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(data.clone())),
        }))
    }
}

pub mod testing {
    //! An in-memory [`StateMachine`] for tests: records every applied command.

    use serde::{Deserialize, Serialize};

    use super::*;

    /// Applied commands, in order, with their log ids and payload positions.
    #[derive(Debug, Clone, Default, Serialize, Deserialize)]
    pub struct MemStateMachine {
        /// Last applied log id.
        pub last_applied: Option<LogId>,
        /// Last membership.
        pub membership: StoredMembership,
        /// (log index, command, payload position) of every applied command.
        pub applied: Vec<(u64, Bytes, Option<u64>)>,
    }

    impl StateMachine for MemStateMachine {
        fn apply(&mut self, entries: &[Committed]) -> Result<Vec<Bytes>, SmError> {
            let mut replies = Vec::with_capacity(entries.len());
            for e in entries {
                self.last_applied = Some(e.log_id);
                match &e.payload {
                    CommittedPayload::Blank => replies.push(Bytes::new()),
                    CommittedPayload::Membership(m) => {
                        self.membership = m.clone();
                        replies.push(Bytes::new());
                    }
                    CommittedPayload::Normal(b) => {
                        self.applied
                            .push((e.log_id.index, b.clone(), e.payload_position));
                        // Reply: the log index, so tests can check ordering.
                        replies.push(Bytes::copy_from_slice(&e.log_id.index.to_be_bytes()));
                    }
                }
            }
            Ok(replies)
        }

        fn applied_state(&self) -> (Option<LogId>, StoredMembership) {
            (self.last_applied, self.membership.clone())
        }

        fn snapshot(&mut self) -> Result<Vec<u8>, SmError> {
            bincode::serialize(self).map_err(|e| SmError(e.to_string()))
        }

        fn install_snapshot(
            &mut self,
            last: Option<LogId>,
            membership: StoredMembership,
            data: &[u8],
        ) -> Result<(), SmError> {
            let mut s: MemStateMachine =
                bincode::deserialize(data).map_err(|e| SmError(e.to_string()))?;
            s.last_applied = last;
            s.membership = membership;
            *self = s;
            Ok(())
        }
    }
}
