//! Checkpoints of the state machine: what to write ([`CheckpointJob`]) and how to rebuild
//! the state from one ([`BrokerStateMachine::restore`]).
//!
//! A checkpoint = the metadata snapshot (topics, offsets, queue bases, queue locks, dedup
//! window, last applied log id) + the [`super::journal`] of consume-queue units and key entries.
//! After a restart the state machine starts from its last checkpoint and openraft re-applies
//! only the log after it, so recovery is proportional to the tail, not to the log.
//!
//! Jobs are made under the state-machine lock and handed to a [`CheckpointSink`] in apply
//! order (the broker's writer thread does the I/O): a journal only ever grows by what the
//! previous job left out. [`BrokerStateMachine::snapshot`] waits for its job to be durable,
//! so a raft log purge (which follows a snapshot) never passes the last checkpoint.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use raftmq_raft::log_store::LogSyncer;
use raftmq_raft::types::LogId;

use super::command::AppendResult;
use super::consume_queue::{ConsumeQueue, QueueTable};
use super::journal::{self, Block, KeyRec};
use super::key_index::{DedupWindow, IndexEntry, KeyIndex, DEDUP_WINDOW_MAX};
use super::snapshot::Snapshot;
use super::topics::TopicTable;
use super::BrokerStateMachine;

/// The dedup journal is rewritten from the live window once it holds this many windows'
/// worth of inserts (a rewrite is one window: ~6 MB at 100,000 keys).
const DEDUP_REWRITE_WINDOWS: usize = 4;

/// What one checkpoint writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointJob {
    /// Last applied log id the checkpoint covers.
    pub last_applied: Option<LogId>,
    /// The metadata snapshot ([`Snapshot`] bytes).
    pub meta: Vec<u8>,
    /// Journal blocks: appended to the current journal, or a whole new one if `rewrite`.
    pub journal: Vec<u8>,
    /// Start a new journal generation with `journal` as its whole content (and a new
    /// dedup generation with `dedup`).
    pub rewrite: bool,
    /// Idempotency-window inserts: appended to the dedup journal, or its whole new content
    /// if `dedup_rewrite` (or `rewrite`).
    pub dedup: Vec<u8>,
    /// Start a new dedup-journal generation (the old one holds mostly evicted keys).
    pub dedup_rewrite: bool,
    /// Bytes a fresh rewrite would take now (for the writer's compaction decision).
    pub live_bytes: u64,
}

/// Where checkpoint jobs go (the broker's writer thread); jobs arrive in apply order.
pub trait CheckpointSink: Send + Sync + std::fmt::Debug {
    /// Queues a job; `Err` if the writer is gone.
    fn submit(&self, job: CheckpointJob) -> Result<(), String>;
    /// Queues a job and waits until it is durable.
    fn submit_and_wait(&self, job: CheckpointJob) -> Result<(), String>;
    /// True when the writer needs the next job to be a full rewrite (after a failed write,
    /// or to compact a journal mostly made of purged data).
    fn rewrite_requested(&self) -> bool;
    /// The local raft log is open: jobs sync it before they are written.
    fn log_opened(&self, syncer: LogSyncer) {
        let _ = syncer;
    }
}

/// Bookkeeping of what the journal already holds (not replicated state).
#[derive(Debug, Clone, Default)]
pub struct CheckpointTracker {
    sink: Option<Arc<dyn CheckpointSink>>,
    /// Per queue, the offset up to which units are in the journal.
    persisted: HashMap<(String, i32), i64>,
    /// Key entries applied since the last job, per topic.
    pending_keys: BTreeMap<String, Vec<KeyRec>>,
    /// Window sequence number from which inserts are not journaled yet (the window numbers
    /// its inserts, so the next job reads them from the window: apply records nothing).
    dedup_seq: u64,
    /// Inserts in the current dedup journal generation.
    dedup_journaled: usize,
    /// Last applied log id of the last job.
    checkpointed: Option<LogId>,
    /// The next job must rewrite (install, topic deletion).
    rewrite: bool,
}

impl CheckpointTracker {
    /// True when checkpoints are on (key entries are then remembered for the next job).
    pub fn enabled(&self) -> bool {
        self.sink.is_some()
    }

    /// Remembers a key entry for the next job.
    pub fn key_added(&mut self, topic: &str, rec: KeyRec) {
        match self.pending_keys.get_mut(topic) {
            Some(v) => v.push(rec),
            None => {
                self.pending_keys.insert(topic.to_owned(), vec![rec]);
            }
        }
    }

    /// The state was replaced or lost a topic: the next job rewrites everything.
    pub fn reset(&mut self) {
        self.rewrite = true;
        self.persisted.clear();
        self.pending_keys.clear();
    }
}

impl BrokerStateMachine {
    /// Turns checkpoints on: key entries are tracked from now on and
    /// [`BrokerStateMachine::checkpoint`] / snapshots hand jobs to `sink`.
    pub fn enable_checkpoints(&mut self, sink: Arc<dyn CheckpointSink>) {
        self.ckpt.sink = Some(sink);
        self.ckpt.dedup_seq = self.dedup.end_seq();
        if self.ckpt.checkpointed.is_none() && self.ckpt.persisted.is_empty() {
            // Nothing journaled by this process yet: start a generation of our own.
            self.ckpt.rewrite = true;
        }
    }

    /// The checkpoint sink, if checkpoints are on.
    pub fn ckpt_sink(&self) -> Option<Arc<dyn CheckpointSink>> {
        self.ckpt.sink.clone()
    }

    /// Makes the next checkpoint job, or `None` if nothing changed since the last one (and
    /// `force` is false).
    pub fn checkpoint_job(&mut self, force: bool) -> Option<CheckpointJob> {
        let requested = self
            .ckpt
            .sink
            .as_ref()
            .is_some_and(|s| s.rewrite_requested());
        let rewrite = self.ckpt.rewrite || requested;
        if !rewrite && !force && self.ckpt.checkpointed == self.last_applied {
            return None;
        }
        // The idempotency window is journaled (below), not rewritten in every meta.
        let meta = match self.snapshot_bytes_with(false) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e.0, "checkpoint metadata does not encode");
                return None;
            }
        };
        let mut out = Vec::new();
        let mut live_units = 0u64;
        for (topic, queue_id, q) in self.queues.iter() {
            live_units += (q.max_offset() - q.min_offset()) as u64;
            let from = if rewrite {
                q.min_offset()
            } else {
                self.ckpt
                    .persisted
                    .get(&(topic.to_owned(), queue_id))
                    .copied()
                    .unwrap_or(0)
                    .max(q.min_offset())
            };
            let (units, times) = q.tail(from);
            if !units.is_empty() {
                journal::put_units(&mut out, topic, queue_id, from, units, times);
            }
        }
        let mut persisted = HashMap::with_capacity(self.ckpt.persisted.len());
        for (topic, queue_id, q) in self.queues.iter() {
            persisted.insert((topic.to_owned(), queue_id), q.max_offset());
        }
        self.ckpt.persisted = persisted;
        if rewrite {
            let mut per_topic: BTreeMap<&str, Vec<KeyRec>> = BTreeMap::new();
            for (topic, hash, e) in self.keys.entries() {
                per_topic.entry(topic).or_default().push(KeyRec {
                    hash,
                    physical_offset: e.physical_offset,
                    store_time: e.store_time,
                });
            }
            for (topic, recs) in &per_topic {
                journal::put_keys(&mut out, topic, recs);
            }
        } else {
            for (topic, recs) in &self.ckpt.pending_keys {
                journal::put_keys(&mut out, topic, recs);
            }
        }
        self.ckpt.pending_keys.clear();
        // The dedup journal restarts from the window once it holds 4 windows' worth.
        // Inserts evicted before this job are not journaled: every key still in the window
        // is, so the journal's last window-length of entries is still the window.
        // Window sequence numbers only restart when a topic is deleted, which rewrites.
        debug_assert!(rewrite || self.ckpt.dedup_seq <= self.dedup.end_seq());
        let new_dedup = self.dedup.since(self.ckpt.dedup_seq).len();
        let dedup_rewrite = rewrite
            || self.ckpt.dedup_journaled + new_dedup
                > DEDUP_REWRITE_WINDOWS * self.dedup.capacity().max(1);
        let mut dedup_out = Vec::new();
        if dedup_rewrite {
            let entries = self.dedup.entries();
            journal::put_dedup(
                &mut dedup_out,
                entries.iter().map(|e| {
                    (
                        e.topic.as_str(),
                        e.uniq_key.as_str(),
                        e.result.queue_id,
                        e.result.queue_offset,
                        e.result.physical_offset,
                    )
                }),
            );
            self.ckpt.dedup_journaled = entries.len();
        } else {
            journal::put_dedup(
                &mut dedup_out,
                self.dedup
                    .since(self.ckpt.dedup_seq)
                    .map(|(t, u, r)| (t, u, r.queue_id, r.queue_offset, r.physical_offset)),
            );
            self.ckpt.dedup_journaled += new_dedup;
        }
        self.ckpt.dedup_seq = self.dedup.end_seq();
        self.ckpt.rewrite = false;
        self.ckpt.checkpointed = self.last_applied;
        Some(CheckpointJob {
            last_applied: self.last_applied,
            meta,
            journal: out,
            rewrite,
            dedup: dedup_out,
            dedup_rewrite,
            live_bytes: live_units * journal::UNIT_BYTES as u64
                + self.keys.len() as u64 * journal::KEY_BYTES as u64,
        })
    }

    /// Hands a checkpoint job to the sink: queued, or durable before returning if `wait`.
    /// Without a sink (checkpoints off) this does nothing.
    pub fn checkpoint(&mut self, wait: bool) -> Result<(), String> {
        let Some(sink) = self.ckpt.sink.clone() else {
            return Ok(());
        };
        match self.checkpoint_job(wait) {
            Some(job) if wait => sink.submit_and_wait(job),
            Some(job) => sink.submit(job),
            None => Ok(()),
        }
    }

    /// Rebuilds the state from a checkpoint's metadata and the journal prefixes it vouches
    /// for. Errors name what is inconsistent; they mean the checkpoint is corrupt.
    pub fn restore(
        meta: &[u8],
        journal_bytes: &[u8],
        dedup_bytes: &[u8],
    ) -> Result<BrokerStateMachine, String> {
        let s = Snapshot::decode(meta)?;
        let mut queues = QueueTable::default();
        let mut keys = KeyIndex::default();
        // Size every collection once: growing them by doubling costs more than filling them.
        let mut unit_counts: HashMap<(String, i32), usize> = HashMap::new();
        for (kind, topic, queue_id, n) in journal::counts(journal_bytes) {
            if kind == journal::BLOCK_UNITS {
                *unit_counts.entry((topic, queue_id)).or_default() += n;
            }
        }
        // The window is FIFO and every journaled insert was of a key not in it, so replaying
        // any suffix of at least a window's length rebuilds it exactly: skip older blocks.
        let mut dedup = DedupWindow::from_entries(DEDUP_WINDOW_MAX, s.dedup.clone());
        let dedup_total: usize = journal::counts(dedup_bytes)
            .iter()
            .filter(|c| c.0 == journal::BLOCK_DEDUP)
            .map(|c| c.3)
            .sum();
        let skip = dedup_total.saturating_sub(dedup.capacity());
        let mut dedup_blocks = Vec::new();
        journal::parse_skipping_dedup(dedup_bytes, skip, |block| match block {
            Block::Dedup(recs) => {
                dedup_blocks.push(recs);
                Ok(())
            }
            _ => Err("a non-dedup block in the dedup journal".into()),
        })
        .map_err(|e| format!("dedup journal: {e}"))?;
        for r in dedup_blocks.into_iter().flatten() {
            let result = AppendResult {
                queue_id: r.queue_id,
                queue_offset: r.queue_offset,
                physical_offset: r.physical_offset,
                duplicate: false,
            };
            dedup.insert(&r.topic, &r.uniq_key, result);
        }
        for ((topic, queue_id), n) in &unit_counts {
            queues.get_or_create(topic, *queue_id).reserve(*n);
        }
        journal::parse(journal_bytes, |block| {
            match block {
                Block::Units {
                    topic,
                    queue_id,
                    first_offset,
                    units,
                } => {
                    let q = queues.get_or_create(&topic, queue_id);
                    if first_offset < q.max_offset() {
                        return Err(format!(
                            "units of {topic}:{queue_id} from offset {first_offset} overlap \
                             those up to {}",
                            q.max_offset()
                        ));
                    }
                    if first_offset > q.max_offset() {
                        // The units in between were purged before they were journaled.
                        *q = ConsumeQueue::starting_at(first_offset);
                    }
                    for (u, t) in units {
                        q.append(u, t);
                    }
                }
                Block::Dedup(_) => return Err("dedup entries in the main journal".into()),
                Block::Keys { topic, keys: recs } => {
                    keys.extend_hashes(
                        &topic,
                        recs.iter().map(|r| {
                            (
                                r.hash,
                                IndexEntry {
                                    physical_offset: r.physical_offset,
                                    store_time: r.store_time,
                                },
                            )
                        }),
                    );
                }
            }
            Ok(())
        })?;
        // The metadata knows each queue's retained range; the journal must cover it (units
        // before it were purged, possibly before they were ever journaled).
        let mut restored = QueueTable::default();
        for b in &s.queues {
            let q = match queues.take(&b.topic, b.queue_id) {
                _ if b.min_offset == b.next_offset => ConsumeQueue::starting_at(b.next_offset),
                Some(mut q)
                    if q.max_offset() == b.next_offset && q.min_offset() <= b.min_offset =>
                {
                    q.drop_before(b.min_offset);
                    q
                }
                q => {
                    let (min, max) = q.map_or((0, 0), |q| (q.min_offset(), q.max_offset()));
                    return Err(format!(
                        "journal has {}:{} offsets [{min}, {max}), metadata says [{}, {})",
                        b.topic, b.queue_id, b.min_offset, b.next_offset
                    ));
                }
            };
            restored.insert(&b.topic, b.queue_id, q);
        }
        keys.purge_below(s.purged_upto);
        let mut persisted = HashMap::new();
        for (topic, queue_id, q) in restored.iter() {
            persisted.insert((topic.to_owned(), queue_id), q.max_offset());
        }
        let mut sm = BrokerStateMachine::new();
        sm.last_applied = s.last_applied;
        sm.membership = s.membership;
        sm.topics = TopicTable::from_parts(s.topics, s.data_version);
        sm.queues = restored;
        sm.offsets = s.offsets;
        sm.keys = keys;
        sm.dedup = dedup;
        sm.last_store_time = s.last_store_time;
        sm.purged_upto = s.purged_upto;
        sm.locks = s.locks;
        sm.ckpt.persisted = persisted;
        sm.ckpt.checkpointed = s.last_applied;
        sm.ckpt.dedup_journaled = dedup_total;
        sm.ckpt.dedup_seq = sm.dedup.end_seq();
        Ok(sm)
    }
}
