//! The state-machine hook the broker implements, and its openraft adapter.
//!
//! openraft applies committed entries in log order on every replica by calling
//! [`SmAdapter`] (its `RaftStateMachine`), which hands them to a [`StateMachine`] with the
//! byte position of each payload in the log, so the broker can derive physical offsets
//! that are identical on every replica. A snapshot is the state machine's metadata only,
//! never the purged log; it also carries the log position at which the entry after it
//! begins ([`SnapshotEnvelope`]), so a node that installs it continues its log at the same
//! byte positions as the others ([`crate::log_store::rebase`]).

use std::io::Cursor;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, RaftSnapshotBuilder, SnapshotMeta, StorageIOError};

use crate::log_store::{LogSyncer, RebaseHint, RebasePoint};
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
    /// Global byte position of the command's bytes in the replicated log, when known (the
    /// same on every replica; `None` for non-commands and entries no longer in the log).
    /// Several commands may share one entry (leader-side batching); each has its own position.
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
    /// Called once the local log is open, before raft starts (and before any entry is
    /// re-applied): state machines that persist their own checkpoints use `syncer` to make
    /// the log durable first, so a checkpoint never gets ahead of the local log.
    fn on_log_open(&mut self, syncer: LogSyncer) {
        let _ = syncer;
    }
}

/// Maps a log index to global byte positions in the log (implemented by the log store).
pub trait PayloadPositions: Send + Sync + 'static {
    /// Position of the payload of entry `index`, if the entry is still in the log.
    fn payload_position(&self, index: u64) -> Option<u64>;
    /// Position just past entry `index`, where entry `index + 1` begins, if the log knows it
    /// (the entry is present, or it is the last purged one).
    fn end_of(&self, index: u64) -> Option<u64>;
}

/// No positions (tests that don't need them).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPositions;

impl PayloadPositions for NoPositions {
    fn payload_position(&self, _: u64) -> Option<u64> {
        None
    }

    fn end_of(&self, _: u64) -> Option<u64> {
        None
    }
}

/// The bytes of a snapshot: the state machine's own snapshot plus the log position at which
/// the entry after the snapshot's last log id begins on the node that built it.
///
/// Layout (version 1): `b"RMQSNAP"`, version byte `1`, a flag byte (1 if the position is
/// known), the position as `u64` little-endian (0 if unknown), then the state bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotEnvelope {
    /// Global byte position of entry `last_log_id.index + 1` (0 for an empty snapshot);
    /// `None` only if the builder had no log positions ([`NoPositions`]).
    pub next_position: Option<u64>,
    /// [`StateMachine::snapshot`]'s bytes.
    pub state: Vec<u8>,
}

const ENVELOPE_MAGIC: &[u8; 7] = b"RMQSNAP";
const ENVELOPE_VERSION: u8 = 1;
const ENVELOPE_HEADER_BYTES: usize = 7 + 1 + 1 + 8;

impl SnapshotEnvelope {
    /// Serializes the envelope.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENVELOPE_HEADER_BYTES + self.state.len());
        out.extend_from_slice(ENVELOPE_MAGIC);
        out.push(ENVELOPE_VERSION);
        out.push(u8::from(self.next_position.is_some()));
        out.extend_from_slice(&self.next_position.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&self.state);
        out
    }

    /// Parses an envelope; the reason if the bytes are not one.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let Some((header, state)) = bytes.split_at_checked(ENVELOPE_HEADER_BYTES) else {
            return Err(format!(
                "snapshot of {} bytes is shorter than its {ENVELOPE_HEADER_BYTES}-byte header",
                bytes.len()
            ));
        };
        if &header[..7] != ENVELOPE_MAGIC {
            return Err("not a RaftMQ snapshot (bad magic)".into());
        }
        if header[7] != ENVELOPE_VERSION {
            return Err(format!("unsupported snapshot version {}", header[7]));
        }
        let mut pos = [0u8; 8];
        pos.copy_from_slice(&header[9..17]);
        let next_position = match header[8] {
            0 => None,
            1 => Some(u64::from_le_bytes(pos)),
            flag => return Err(format!("bad snapshot position flag {flag}")),
        };
        Ok(Self {
            next_position,
            state: state.to_vec(),
        })
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
    rebase: Option<Arc<RebaseHint>>,
}

impl<S> std::fmt::Debug for SmAdapter<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmAdapter").finish_non_exhaustive()
    }
}

impl<S: StateMachine> SmAdapter<S> {
    /// Wraps `sm`; `positions` resolves payload positions at apply time and the log
    /// position a built snapshot carries.
    pub fn new(sm: S, positions: Arc<dyn PayloadPositions>) -> Self {
        SmAdapter {
            inner: Arc::new(Mutex::new(Inner {
                sm,
                current: None,
                snapshot_seq: 0,
            })),
            positions,
            rebase: None,
        }
    }

    /// Records the log position carried by every installed snapshot in `hint` (the log
    /// store's [`crate::log_store::SegmentedLogStore::rebase_hint`]), so the store continues
    /// an emptied log at the replicated position. Without it, installs do not move the log.
    pub fn with_rebase_hint(mut self, hint: Arc<RebaseHint>) -> Self {
        self.rebase = Some(hint);
        self
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

/// Expands entries into committed commands: a normal entry is a batch envelope
/// ([`crate::batch`]) holding one or more commands, each with its own byte position.
/// Returns the commands and, per entry, how many of them it produced (`None` = not a batch).
fn expand(
    entries: impl IntoIterator<Item = Entry>,
    positions: &dyn PayloadPositions,
) -> Result<(Vec<Committed>, Vec<Option<usize>>), SmError> {
    let mut out = Vec::new();
    let mut shape = Vec::new();
    for entry in entries {
        let log_id = entry.log_id;
        match entry.payload {
            EntryPayload::Blank => {
                out.push(Committed {
                    log_id,
                    payload: CommittedPayload::Blank,
                    payload_position: None,
                });
                shape.push(None);
            }
            EntryPayload::Membership(m) => {
                let payload = CommittedPayload::Membership(StoredMembership::new(Some(log_id), m));
                out.push(Committed {
                    log_id,
                    payload,
                    payload_position: None,
                });
                shape.push(None);
            }
            EntryPayload::Normal(env) => {
                let base = positions.payload_position(log_id.index);
                let items = crate::batch::decode_envelope(&env)
                    .map_err(|e| SmError(format!("entry {log_id}: {e}")))?;
                shape.push(Some(items.len()));
                for (offset, command) in items {
                    out.push(Committed {
                        log_id,
                        payload: CommittedPayload::Normal(command),
                        payload_position: base.map(|b| b + offset as u64),
                    });
                }
            }
        }
    }
    Ok((out, shape))
}

#[allow(clippy::result_large_err)] // openraft's own error type
fn build<S: StateMachine>(
    inner: &Mutex<Inner<S>>,
    positions: &dyn PayloadPositions,
    rebase: Option<&RebaseHint>,
) -> Result<Snapshot<TypeConfig>, StorageError> {
    let mut g = lock(inner);
    let (last, membership) = g.sm.applied_state();
    let state = g.sm.snapshot().map_err(sm_err)?;
    // The applied entries are committed: the last one is still in the log, or it is the
    // purge point (a snapshot never covers less than what was purged). Right after a
    // snapshot install the log may not be rebased yet (that waits for the next append), so
    // the installed snapshot's own position, a fact, comes first.
    let next_position = match last {
        None => Some(0),
        Some(l) => {
            let p = rebase
                .and_then(RebaseHint::get)
                .filter(|r| r.first_index == l.index + 1)
                .map(|r| r.position)
                .or_else(|| positions.end_of(l.index));
            if p.is_none() {
                tracing::warn!(
                    index = l.index,
                    "log position after the snapshot is unknown; the snapshot cannot place later entries"
                );
            }
            p
        }
    };
    let data = SnapshotEnvelope {
        next_position,
        state,
    }
    .encode();
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
    positions: Arc<dyn PayloadPositions>,
    rebase: Option<Arc<RebaseHint>>,
}

impl<S> std::fmt::Debug for SnapshotBuilder<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotBuilder").finish_non_exhaustive()
    }
}

impl<S: StateMachine> RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder<S> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        build(&self.inner, self.positions.as_ref(), self.rebase.as_deref())
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
        let (commands, shape) = expand(entries, positions).map_err(sm_err)?;
        let replies = lock(&self.inner).sm.apply(&commands).map_err(sm_err)?;
        if replies.len() != commands.len() {
            return Err(sm_err(SmError(format!(
                "apply returned {} replies for {} commands",
                replies.len(),
                commands.len()
            ))));
        }
        // One reply per entry: batches get their commands' replies back as an envelope.
        let mut replies = replies.into_iter();
        let per_entry = shape
            .into_iter()
            .map(|n| match n {
                None => replies.next().unwrap_or_default(),
                Some(n) => {
                    crate::batch::encode_envelope(&replies.by_ref().take(n).collect::<Vec<_>>())
                }
            })
            .collect();
        Ok(per_entry)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            inner: self.inner.clone(),
            positions: self.positions.clone(),
            rebase: self.rebase.clone(),
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
        let envelope = SnapshotEnvelope::decode(&data).map_err(|e| {
            StorageError::from(StorageIOError::read_snapshot(
                Some(meta.signature()),
                &std::io::Error::other(format!("snapshot {}: {e}", meta.snapshot_id)),
            ))
        })?;
        // The rebase point is recorded (durably) before the state changes: it is a fact about
        // the replicated log, true whether or not the install below completes.
        if let (Some(hint), Some(last)) = (&self.rebase, meta.last_log_id) {
            let Some(position) = envelope.next_position else {
                return Err(StorageIOError::read_snapshot(
                    Some(meta.signature()),
                    &std::io::Error::other(format!(
                        "snapshot {} does not say where entry {} begins in the log",
                        meta.snapshot_id,
                        last.index + 1
                    )),
                )
                .into());
            };
            hint.record(RebasePoint {
                first_index: last.index + 1,
                position,
            })
            .map_err(|e| {
                StorageError::from(StorageIOError::write_snapshot(
                    Some(meta.signature()),
                    &std::io::Error::other(e.to_string()),
                ))
            })?;
        }
        let mut g = lock(&self.inner);
        g.sm.install_snapshot(
            meta.last_log_id,
            meta.last_membership.clone(),
            &envelope.state,
        )
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
                        // Reply: log index and payload position (unique per command).
                        let mut r = e.log_id.index.to_be_bytes().to_vec();
                        r.extend_from_slice(&e.payload_position.unwrap_or(u64::MAX).to_be_bytes());
                        replies.push(Bytes::from(r));
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

#[cfg(test)]
mod tests;
