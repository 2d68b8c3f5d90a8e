//! The state machine's snapshot format: metadata only, never consume-queue units.
//!
//! Layout: `b"RMQBSM"`, a version byte (1), then the bincode 1.3 encoding (fixed-width
//! big-endian integers, no trailing bytes) of [`SnapshotV1`]. Every collection is written in
//! a defined order (ordered maps, or apply order for the idempotency window), so replicas
//! that applied the same commands produce byte-identical snapshots.

use bincode::Options;
use raftmq_protocol::body::topic::{DataVersion, TopicConfig};
use raftmq_raft::types::{LogId, StoredMembership};
use serde::{Deserialize, Serialize};

use super::key_index::DedupEntry;
use super::offsets::ConsumerOffsets;

const MAGIC: &[u8; 6] = b"RMQBSM";
/// Current snapshot format version.
pub const SNAPSHOT_VERSION: u8 = 1;

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

/// Version 1 of the snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotV1 {
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
}

fn options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_big_endian()
        .reject_trailing_bytes()
}

impl SnapshotV1 {
    /// Serializes the snapshot.
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let mut out = MAGIC.to_vec();
        out.push(SNAPSHOT_VERSION);
        options()
            .serialize_into(&mut out, self)
            .map_err(|e| format!("snapshot does not serialize: {e}"))?;
        Ok(out)
    }

    /// Parses [`SnapshotV1::encode`]; a clear error for anything else.
    pub fn decode(data: &[u8]) -> Result<SnapshotV1, String> {
        let body = data
            .strip_prefix(&MAGIC[..])
            .ok_or("not a RaftMQ broker snapshot (bad magic)")?;
        let (&version, body) = body.split_first().ok_or("broker snapshot truncated")?;
        if version != SNAPSHOT_VERSION {
            return Err(format!("unsupported broker snapshot version {version}"));
        }
        options()
            .with_limit(body.len() as u64)
            .deserialize(body)
            .map_err(|e| format!("malformed broker snapshot: {e}"))
    }
}
