//! [`BrokerStateMachine`]: applies commands, answers queries, snapshots its metadata.
//!
//! Rules (identical on every replica; nothing here reads a clock, a random number or
//! local config):
//!
//! - **Queue offsets** are assigned in apply order, per (topic, queue id), from the queue's
//!   max offset; never reused, even after purge.
//! - **Physical offset** of record k = the command's `payload_position` + the record's
//!   offset within the command bytes. An append without a position is a fatal error.
//! - **Store time** of consume-queue units is the command's timestamp, clamped to be
//!   non-decreasing across applies (a new leader with a slower clock cannot make
//!   SEARCH_OFFSET_BY_TIMESTAMP's binary search wrong); records keep the leader's stamp.
//! - **Unknown topic or queue id out of range** at apply: the record is still indexed; its
//!   queue is created (offsets from 0) and the topic table is *not* changed. Nothing that is
//!   in the log is lost, and once the topic exists (the leader proposes `UpsertTopic` before
//!   appending) its queues are readable. Only a negative queue id (no consumer could address
//!   it) rejects the command.
//! - **All or nothing**: every record of an append is decoded and checked before any is
//!   applied; a malformed command is answered [`Reply::Rejected`] and changes nothing.
//!   A tag this version does not know (or a reserved one) is fatal: skipping a state change
//!   an upgraded replica makes would diverge.
//! - **Idempotency**: for appends flagged dedup, a `(topic, UNIQ_KEY)` still in the window is
//!   answered with its first result (marked duplicate) and adds no unit.
//! - **Queue locks** are granted and aged by the `now_ms` the leader stamped in the lock or
//!   unlock command (see [`super::locks`]); deleting a topic drops its locks.

use std::sync::Arc;

use bytes::Bytes;
use raftmq_protocol::body::topic::{DataVersion, TopicConfig};
use raftmq_protocol::message::properties::keys;
use raftmq_protocol::message::{tag_code, MessageRecord};
use raftmq_raft::state_machine::{Committed, CommittedPayload, SmError, StateMachine};
use raftmq_raft::types::{LogId, StoredMembership};

use super::arrivals::Arrivals;
use super::checkpoint::CheckpointTracker;
use super::command::{
    Append, AppendResult, Command, CommandError, OffsetCommit, QueueLockRequest, Reply,
};
use super::consume_queue::{Boundary, ConsumeQueue, CqUnit, QueueTable};
use super::journal::KeyRec;
use super::key_index::key_hash;
use super::key_index::{DedupWindow, KeyIndex, DEDUP_WINDOW_MAX};
use super::locks::QueueLocks;
use super::offsets::ConsumerOffsets;
use super::pull::{pull, PullLimits, PullResult, TagFilter};
use super::snapshot::{QueueBase, Snapshot};
use super::topics::TopicTable;

/// The broker's replicated state: topics, consume queues, consumer offsets, key index,
/// idempotency window and queue locks. See the module docs for the apply rules.
#[derive(Debug, Clone)]
pub struct BrokerStateMachine {
    pub(super) last_applied: Option<LogId>,
    pub(super) membership: StoredMembership,
    pub(super) topics: TopicTable,
    pub(super) queues: QueueTable,
    pub(super) offsets: ConsumerOffsets,
    pub(super) keys: KeyIndex,
    pub(super) dedup: DedupWindow,
    pub(super) last_store_time: i64,
    pub(super) purged_upto: i64,
    pub(super) locks: QueueLocks,
    /// Apply signals for long polling; not state (never snapshotted), shared by clones.
    pub(super) arrivals: Arc<Arrivals>,
    /// What the checkpoint journal already holds; not state.
    pub(super) ckpt: CheckpointTracker,
}

impl Default for BrokerStateMachine {
    fn default() -> Self {
        Self::new()
    }
}

/// What apply needs from one record, gathered before anything changes (borrowed from the
/// command's bytes: apply runs on every replica for every message, so no copies here).
struct Prepared<'a> {
    offset_in_command: usize,
    topic: &'a str,
    queue_id: i32,
    unit_size: i32,
    tag_code: i64,
    keys: Vec<&'a str>,
    uniq_key: Option<&'a str>,
}

fn prepare(append: &Append) -> Result<Vec<Prepared<'_>>, String> {
    let mut out = Vec::with_capacity(append.records.len());
    let mut offset = super::command::APPEND_HEADER_BYTES;
    for (k, bytes) in append.records.iter().enumerate() {
        let view = MessageRecord::view(bytes).map_err(|e| format!("record {k}: {e}"))?;
        let len = view.total_size;
        if len != bytes.len() {
            return Err(format!("record {k}: TOTALSIZE {len} ≠ {}", bytes.len()));
        }
        if view.queue_id < 0 {
            return Err(format!("record {k}: negative queue id {}", view.queue_id));
        }
        let keys = view
            .property(keys::KEYS)
            .map(|k| k.split(' ').filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        out.push(Prepared {
            offset_in_command: offset,
            queue_id: view.queue_id,
            unit_size: i32::try_from(len).map_err(|_| format!("record {k}: too large"))?,
            tag_code: tag_code(view.property(keys::TAGS)),
            keys,
            uniq_key: view.property(keys::UNIQ_KEY),
            topic: view.topic,
        });
        offset += len;
    }
    Ok(out)
}

impl BrokerStateMachine {
    /// The initial state: seeded system topics, nothing else.
    pub fn new() -> Self {
        BrokerStateMachine {
            last_applied: None,
            membership: StoredMembership::default(),
            topics: TopicTable::default(),
            queues: QueueTable::default(),
            offsets: ConsumerOffsets::default(),
            keys: KeyIndex::default(),
            dedup: DedupWindow::default(),
            last_store_time: 0,
            purged_upto: 0,
            locks: QueueLocks::default(),
            arrivals: Arrivals::shared(),
            ckpt: CheckpointTracker::default(),
        }
    }

    /// Applies one encoded command at `payload_position`; `Err` only for fatal conditions.
    pub fn apply_command(
        &mut self,
        bytes: &Bytes,
        payload_position: Option<u64>,
    ) -> Result<Reply, SmError> {
        let command = match Command::decode(bytes) {
            Ok(c) => c,
            Err(e @ CommandError::UnknownTag(_)) => return Err(SmError(e.to_string())),
            Err(e) => {
                tracing::warn!(error = %e, "rejected a malformed command");
                return Ok(Reply::Rejected(e.to_string()));
            }
        };
        Ok(match command {
            Command::Append(a) => {
                let position = payload_position.ok_or_else(|| {
                    SmError("an append without a log position: physical offsets unknown".into())
                })?;
                self.apply_append(&a, position)
            }
            Command::CommitOffsets(commits) => {
                for OffsetCommit {
                    group,
                    topic,
                    queue_id,
                    offset,
                } in &commits
                {
                    self.offsets.commit(group, topic, *queue_id, *offset);
                }
                Reply::Done
            }
            Command::UpsertTopic {
                config,
                timestamp_ms,
            } => self.apply_upsert(config, timestamp_ms),
            Command::DeleteTopic {
                topic,
                timestamp_ms,
            } => {
                if self.topics.delete(&topic, timestamp_ms) {
                    self.queues.remove_topic(&topic);
                    self.offsets.remove_topic(&topic);
                    self.keys.remove_topic(&topic);
                    self.dedup.remove_topic(&topic);
                    self.locks.remove_topic(&topic);
                    self.ckpt.reset();
                    self.publish_all();
                }
                Reply::Done
            }
            Command::Purge {
                upto_physical_offset,
            } => {
                // Retention only ever cuts below what the log already holds; a point past
                // this very command would also drop messages appended later.
                let beyond = payload_position
                    .is_some_and(|p| upto_physical_offset > i64::try_from(p).unwrap_or(i64::MAX));
                if beyond {
                    return Ok(Reply::Rejected(format!(
                        "purge point {upto_physical_offset} is past the end of the log"
                    )));
                }
                if upto_physical_offset > self.purged_upto {
                    self.purged_upto = upto_physical_offset;
                    self.queues.purge_below(upto_physical_offset);
                    self.keys.purge_below(upto_physical_offset);
                }
                Reply::Done
            }
            Command::LockQueues(QueueLockRequest {
                group,
                client_id,
                queues,
                now_ms,
            }) => Reply::Locked(self.locks.lock(&group, &client_id, &queues, now_ms)),
            Command::UnlockQueues(QueueLockRequest {
                group,
                client_id,
                queues,
                now_ms,
            }) => {
                self.locks.unlock(&group, &client_id, &queues, now_ms);
                Reply::Done
            }
        })
    }

    fn apply_upsert(&mut self, config: TopicConfig, timestamp_ms: i64) -> Reply {
        if config.topic_name.is_empty() {
            return Reply::Rejected("topic config without a name".into());
        }
        if config.read_queue_nums < 0 || config.write_queue_nums < 0 {
            return Reply::Rejected(format!("topic {}: negative queue count", config.topic_name));
        }
        self.topics.upsert(config, timestamp_ms);
        Reply::Done
    }

    fn apply_append(&mut self, append: &Append, position: u64) -> Reply {
        let prepared = match prepare(append) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "rejected a malformed append");
                return Reply::Rejected(e);
            }
        };
        let fits = i64::try_from(position)
            .ok()
            .and_then(|p| p.checked_add(append.encoded_len() as i64))
            .is_some();
        if !fits {
            return Reply::Rejected(format!("log position {position} out of range"));
        }
        let store_time = append.store_timestamp_ms.max(self.last_store_time);
        self.last_store_time = store_time;
        let mut results = Vec::with_capacity(prepared.len());
        for p in &prepared {
            let mut vacancy = None;
            if let Some(u) = p.uniq_key.filter(|_| append.dedup) {
                match self.dedup.check(p.topic, u) {
                    Ok(first) => {
                        results.push(AppendResult {
                            duplicate: true,
                            ..first
                        });
                        continue;
                    }
                    Err(v) => vacancy = Some((v, u)),
                }
            }
            // Cannot overflow: checked for the command's end above.
            let physical_offset = position as i64 + p.offset_in_command as i64;
            let unit = CqUnit {
                physical_offset,
                size: p.unit_size,
                tag_code: p.tag_code,
            };
            let queue_offset = self
                .queues
                .get_or_create(p.topic, p.queue_id)
                .append(unit, store_time);
            for key in p.keys.iter().chain(p.uniq_key.as_ref()) {
                if key.is_empty() {
                    continue;
                }
                let hash = key_hash(key);
                self.keys
                    .add_hash(p.topic, hash, physical_offset, store_time);
                if self.ckpt.enabled() {
                    self.ckpt.key_added(
                        p.topic,
                        KeyRec {
                            hash,
                            physical_offset,
                            store_time,
                        },
                    );
                }
            }
            let result = AppendResult {
                queue_id: p.queue_id,
                queue_offset,
                physical_offset,
                duplicate: false,
            };
            if let Some((v, u)) = vacancy {
                self.dedup.fill(v, p.topic, u, result);
            }
            results.push(result);
        }
        // One signal per queue per command: a batch targets one queue, a single one too.
        for (i, p) in prepared.iter().enumerate() {
            let seen = prepared[..i]
                .iter()
                .any(|o| o.queue_id == p.queue_id && o.topic == p.topic);
            if !seen {
                self.arrivals
                    .publish(p.topic, p.queue_id, self.max_offset(p.topic, p.queue_id));
            }
        }
        Reply::Appended(results)
    }

    fn publish_all(&self) {
        self.arrivals
            .publish_all(|topic, queue_id| self.max_offset(topic, queue_id));
    }

    /// The apply signals of long polling (shared with the broker's pull handler).
    pub fn arrivals(&self) -> Arc<Arrivals> {
        self.arrivals.clone()
    }

    // ---- queries -------------------------------------------------------------------------

    /// One past the last message of the queue (0 for an unknown queue).
    pub fn max_offset(&self, topic: &str, queue_id: i32) -> i64 {
        self.queues
            .get(topic, queue_id)
            .map_or(0, ConsumeQueue::max_offset)
    }

    /// First retained offset of the queue (0 for an unknown queue).
    pub fn min_offset(&self, topic: &str, queue_id: i32) -> i64 {
        self.queues
            .get(topic, queue_id)
            .map_or(0, ConsumeQueue::min_offset)
    }

    /// The consume queue, if it exists.
    pub fn queue(&self, topic: &str, queue_id: i32) -> Option<&ConsumeQueue> {
        self.queues.get(topic, queue_id)
    }

    /// Up to `max_n` units from offset `from` (empty unless `from` is retained).
    pub fn units(&self, topic: &str, queue_id: i32, from: i64, max_n: usize) -> &[CqUnit] {
        self.queues
            .get(topic, queue_id)
            .map_or(&[][..], |q| q.units(from, max_n))
    }

    /// Reads and classifies a pull (§2.4.4); see [`super::pull::pull`].
    pub fn pull(
        &self,
        topic: &str,
        queue_id: i32,
        queue_offset: i64,
        limits: PullLimits,
        filter: &TagFilter,
    ) -> PullResult {
        pull(
            self.queues.get(topic, queue_id),
            queue_offset,
            limits,
            filter,
        )
    }

    /// SEARCH_OFFSET_BY_TIMESTAMP (§2.4.7); 0 for an unknown queue.
    pub fn search_offset_by_timestamp(
        &self,
        topic: &str,
        queue_id: i32,
        timestamp: i64,
        boundary: Boundary,
    ) -> i64 {
        self.queues
            .get(topic, queue_id)
            .map_or(0, |q| q.search_by_time(timestamp, boundary))
    }

    /// Store time of the queue's first retained message (GET_EARLIEST_MSG_STORETIME).
    pub fn earliest_store_time(&self, topic: &str, queue_id: i32) -> Option<i64> {
        let q = self.queues.get(topic, queue_id)?;
        q.store_time(q.min_offset())
    }

    /// Store time of the message at `offset`, if retained.
    pub fn store_time(&self, topic: &str, queue_id: i32, offset: i64) -> Option<i64> {
        self.queues.get(topic, queue_id)?.store_time(offset)
    }

    /// The committed offset of (group, topic, queue), if any.
    pub fn consumer_offset(&self, group: &str, topic: &str, queue_id: i32) -> Option<i64> {
        self.offsets.get(group, topic, queue_id)
    }

    /// All committed offsets.
    pub fn consumer_offsets(&self) -> &ConsumerOffsets {
        &self.offsets
    }

    /// Physical offsets of records of `topic` with `key` (a KEYS word or UNIQ_KEY) stored
    /// within `[begin, end]` ms, newest first, at most `max`.
    pub fn lookup_keys(
        &self,
        topic: &str,
        key: &str,
        begin: i64,
        end: i64,
        max: usize,
    ) -> Vec<i64> {
        self.keys.lookup(topic, key, begin, end, max)
    }

    /// The topic table.
    pub fn topics(&self) -> &std::collections::BTreeMap<String, TopicConfig> {
        self.topics.all()
    }

    /// One topic's config.
    pub fn topic(&self, name: &str) -> Option<&TopicConfig> {
        self.topics.get(name)
    }

    /// The topic table's version.
    pub fn data_version(&self) -> DataVersion {
        self.topics.data_version()
    }

    /// Index of the last applied log entry.
    pub fn applied_index(&self) -> Option<u64> {
        self.last_applied.map(|l| l.index)
    }

    /// Store time of the last applied append (0 before any): when the key index last grew.
    pub fn last_store_time(&self) -> i64 {
        self.last_store_time
    }

    /// Highest purge point applied (0 if none).
    pub fn purged_upto(&self) -> i64 {
        self.purged_upto
    }

    /// The queue lock table.
    pub fn locks(&self) -> &QueueLocks {
        &self.locks
    }

    /// Keys currently in the idempotency window.
    pub fn dedup_len(&self) -> usize {
        self.dedup.len()
    }

    // ---- snapshots -----------------------------------------------------------------------

    /// The snapshot bytes (see [`super::snapshot`]).
    pub fn snapshot_bytes(&self) -> Result<Vec<u8>, SmError> {
        self.snapshot_bytes_with(true)
    }

    /// The snapshot bytes, with or without the idempotency window (checkpoints journal the
    /// window instead of rewriting it every second).
    pub(super) fn snapshot_bytes_with(&self, dedup: bool) -> Result<Vec<u8>, SmError> {
        Snapshot {
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            data_version: self.topics.data_version(),
            topics: self.topics.all().values().cloned().collect(),
            offsets: self.offsets.clone(),
            queues: self
                .queues
                .iter()
                .map(|(topic, queue_id, q)| QueueBase {
                    topic: topic.to_owned(),
                    queue_id,
                    min_offset: q.min_offset(),
                    next_offset: q.max_offset(),
                })
                .collect(),
            dedup: if dedup {
                self.dedup.entries()
            } else {
                Vec::new()
            },
            last_store_time: self.last_store_time,
            purged_upto: self.purged_upto,
            locks: self.locks.clone(),
        }
        .encode()
        .map_err(SmError)
    }

    /// Replaces the whole state with a snapshot's. Queues start empty at their next offset
    /// (min = max = base): the installing node has no log below the snapshot.
    pub fn install(
        &mut self,
        last: Option<LogId>,
        membership: StoredMembership,
        data: &[u8],
    ) -> Result<(), SmError> {
        let s = Snapshot::decode(data).map_err(SmError)?;
        let mut queues = QueueTable::default();
        for b in &s.queues {
            queues.insert(
                &b.topic,
                b.queue_id,
                ConsumeQueue::starting_at(b.next_offset),
            );
        }
        let mut ckpt = std::mem::take(&mut self.ckpt);
        ckpt.reset();
        *self = BrokerStateMachine {
            ckpt,
            last_applied: last,
            membership,
            topics: TopicTable::from_parts(s.topics, s.data_version),
            queues,
            offsets: s.offsets,
            keys: KeyIndex::default(),
            dedup: DedupWindow::from_entries(DEDUP_WINDOW_MAX, s.dedup),
            last_store_time: s.last_store_time,
            purged_upto: s.purged_upto,
            locks: s.locks,
            arrivals: self.arrivals.clone(),
        };
        self.publish_all();
        Ok(())
    }
}

impl StateMachine for BrokerStateMachine {
    fn apply(&mut self, entries: &[Committed]) -> Result<Vec<Bytes>, SmError> {
        let mut replies = Vec::with_capacity(entries.len());
        for e in entries {
            let reply = match &e.payload {
                CommittedPayload::Blank => Bytes::new(),
                CommittedPayload::Membership(m) => {
                    self.membership = m.clone();
                    Bytes::new()
                }
                CommittedPayload::Normal(cmd) => {
                    self.apply_command(cmd, e.payload_position)?.encode()
                }
            };
            self.last_applied = Some(e.log_id);
            replies.push(reply);
        }
        Ok(replies)
    }

    fn applied_state(&self) -> (Option<LogId>, StoredMembership) {
        (self.last_applied, self.membership.clone())
    }

    fn snapshot(&mut self) -> Result<Vec<u8>, SmError> {
        // A log purge follows a snapshot: the checkpoint must cover at least as much first.
        self.checkpoint(true)
            .map_err(|e| SmError(format!("checkpoint before snapshot failed: {e}")))?;
        self.snapshot_bytes()
    }

    fn install_snapshot(
        &mut self,
        last: Option<LogId>,
        membership: StoredMembership,
        data: &[u8],
    ) -> Result<(), SmError> {
        self.install(last, membership, data)
    }

    fn on_log_open(&mut self, syncer: raftmq_raft::log_store::LogSyncer) {
        if let Some(sink) = self.ckpt_sink() {
            sink.log_opened(syncer);
        }
    }
}
