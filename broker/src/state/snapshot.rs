//! The state machine's snapshot format: metadata only, never consume-queue units.
//!
//! Layout: `b"RMQBSM"`, a version byte, then the bincode 1.3 encoding (fixed-width
//! big-endian integers, no trailing bytes) of that version's struct: [`Snapshot`] for
//! version 2 (written now), the same without the lock table for version 1 (still read, as
//! an empty lock table: checkpoints and snapshots of older nodes stay loadable). Every
//! collection is written in a defined order (ordered maps, or apply order for the
//! idempotency window), so replicas that applied the same commands produce byte-identical
//! snapshots.

use bincode::Options;
use raftmq_protocol::body::topic::{DataVersion, TopicConfig};
use raftmq_raft::types::{LogId, StoredMembership};
use serde::{Deserialize, Serialize};

use super::key_index::DedupEntry;
use super::locks::QueueLocks;
use super::offsets::ConsumerOffsets;

const MAGIC: &[u8; 6] = b"RMQBSM";
/// Current snapshot format version (2: the lock table was added).
pub const SNAPSHOT_VERSION: u8 = 2;
/// The first format, without the lock table; still decoded.
const SNAPSHOT_VERSION_V1: u8 = 1;

/// A queue's offsets at the snapshot point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueBase {
    /// Topic.
    pub topic: String,
    /// Queue id.
    pub queue_id: i32,
    /// First retained offset on the node that built the snapshot (informational: an
    /// installing node has no units, so its queue starts at `next_offset`).
    pub min_offset: i64,
    /// The offset the next message of this queue gets.
    pub next_offset: i64,
}

/// The snapshot (format version [`SNAPSHOT_VERSION`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Last applied log id.
    pub last_applied: Option<LogId>,
    /// Membership as of the last applied entry.
    pub membership: StoredMembership,
    /// Topic table version.
    pub data_version: DataVersion,
    /// Topic configs, ordered by name.
    pub topics: Vec<TopicConfig>,
    /// Consumer offsets.
    pub offsets: ConsumerOffsets,
    /// Per-queue bases, ordered by (topic, queue id).
    pub queues: Vec<QueueBase>,
    /// The idempotency window, oldest first.
    pub dedup: Vec<DedupEntry>,
    /// The clamped store time of the last append.
    pub last_store_time: i64,
    /// Highest purge point applied.
    pub purged_upto: i64,
    /// Orderly-consumption locks.
    pub locks: QueueLocks,
}

/// Format version 1: [`Snapshot`] without `locks` (members in the same order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct SnapshotV1 {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    pub data_version: DataVersion,
    pub topics: Vec<TopicConfig>,
    pub offsets: ConsumerOffsets,
    pub queues: Vec<QueueBase>,
    pub dedup: Vec<DedupEntry>,
    pub last_store_time: i64,
    pub purged_upto: i64,
}

impl From<SnapshotV1> for Snapshot {
    fn from(v: SnapshotV1) -> Snapshot {
        Snapshot {
            last_applied: v.last_applied,
            membership: v.membership,
            data_version: v.data_version,
            topics: v.topics,
            offsets: v.offsets,
            queues: v.queues,
            dedup: v.dedup,
            last_store_time: v.last_store_time,
            purged_upto: v.purged_upto,
            locks: QueueLocks::default(),
        }
    }
}

impl SnapshotV1 {
    /// Encodes in format version 1 (tests of the upgrade path).
    #[cfg(test)]
    pub(super) fn encode(&self) -> Result<Vec<u8>, String> {
        let mut out = MAGIC.to_vec();
        out.push(SNAPSHOT_VERSION_V1);
        options()
            .serialize_into(&mut out, self)
            .map_err(|e| e.to_string())?;
        Ok(out)
    }
}

fn options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_big_endian()
        .reject_trailing_bytes()
}

impl Snapshot {
    /// Serializes the snapshot.
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let mut out = MAGIC.to_vec();
        out.push(SNAPSHOT_VERSION);
        options()
            .serialize_into(&mut out, self)
            .map_err(|e| format!("snapshot does not serialize: {e}"))?;
        Ok(out)
    }

    /// Parses [`Snapshot::encode`] or a version 1 snapshot; a clear error for anything else.
    pub fn decode(data: &[u8]) -> Result<Snapshot, String> {
        let body = data
            .strip_prefix(&MAGIC[..])
            .ok_or("not a RaftMQ broker snapshot (bad magic)")?;
        let (&version, body) = body.split_first().ok_or("broker snapshot truncated")?;
        let malformed = |e: bincode::Error| format!("malformed broker snapshot v{version}: {e}");
        let options = options().with_limit(body.len() as u64);
        match version {
            SNAPSHOT_VERSION => options.deserialize(body).map_err(malformed),
            SNAPSHOT_VERSION_V1 => options
                .deserialize::<SnapshotV1>(body)
                .map(Snapshot::from)
                .map_err(malformed),
            _ => Err(format!(
                "unsupported broker snapshot version {version} (written by a newer RaftMQ?)"
            )),
        }
    }
}
