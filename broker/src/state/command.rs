//! Commands the leader proposes (one raft command each) and the replies apply returns.
//!
//! Every command is a 1-byte tag ([`tags`]) followed by its body:
//!
//! - [`tags::APPEND`] has a custom big-endian layout so that the byte offset of each record
//!   inside the command is trivial, because a record's physical offset is
//!   `payload_position + its offset within the command bytes`:
//!
//!   ```text
//!   u8 tag = 1 | u8 flags | i64 store_timestamp_ms | u32 count | count × stored record (§3.1)
//!   ```
//!
//!   Records are complete stored-format records, self-delimiting by TOTALSIZE, with
//!   QUEUEOFFSET and PHYSICALOFFSET written as 0 (apply assigns them; readers patch them in
//!   with `set_queue_offset` / `set_physical_offset` when serving). `flags` bit 0
//!   ([`APPEND_FLAG_DEDUP`]) asks apply to answer a repeated `(topic, UNIQ_KEY)` from the
//!   idempotency window instead of appending it again; the leader sets it for producer sends
//!   only, never for internal re-puts (retry, delay delivery, transaction half/commit copies
//!   keep the original UNIQ_KEY and must be stored again).
//! - every other command: the tag, then the bincode 1.3 encoding (fixed-width big-endian
//!   integers, no trailing bytes, at most [`COMMAND_BYTES_MAX`]) of its fields.
//!
//! Replies ([`Reply`]) have their own compact layout, see [`Reply::encode`].

use bincode::Options;
use bytes::{BufMut, Bytes, BytesMut};
use raftmq_protocol::body::topic::TopicConfig;
use raftmq_protocol::body::MessageQueue;
use raftmq_protocol::message::peek_total_size;
use serde::{Deserialize, Serialize};

/// Command tags (the first byte of every command).
///
/// Tags 18 and up are reserved for commands that are designed but not implemented yet; a
/// node that meets one stops (its apply fails) rather than skip a state change it does not
/// understand, which would make it diverge from upgraded replicas.
pub mod tags {
    /// [`super::Command::Append`]: message records (custom layout).
    pub const APPEND: u8 = 1;
    /// [`super::Command::CommitOffsets`]: a batch of consumer offsets.
    pub const COMMIT_OFFSETS: u8 = 2;
    /// [`super::Command::UpsertTopic`]: create or replace a topic config.
    pub const UPSERT_TOPIC: u8 = 3;
    /// [`super::Command::DeleteTopic`]: delete a topic, its queues and offsets.
    pub const DELETE_TOPIC: u8 = 4;
    /// [`super::Command::Purge`]: retention, drop index entries below a physical offset.
    pub const PURGE: u8 = 5;
    /// [`super::Command::LockQueues`]: `LOCK_BATCH_MQ`, grant queue locks to a client.
    pub const LOCK_QUEUES: u8 = 16;
    /// [`super::Command::UnlockQueues`]: `UNLOCK_BATCH_MQ`, release a client's queue locks.
    pub const UNLOCK_QUEUES: u8 = 17;
    /// Reserved: "deliver due messages of delay level L up to offset N" — appends the real
    /// messages and advances the level's delivery offset in one step.
    pub const DELIVER_DELAYED: u8 = 18;
    /// Reserved: `END_TRANSACTION` — op record plus, on commit, the real message.
    pub const END_TRANSACTION: u8 = 19;
    /// Reserved: transaction-check progress (check times, op-queue offsets).
    pub const TRANSACTION_CHECK: u8 = 20;
    /// Reserved: create/update a subscription group config.
    pub const UPSERT_SUBSCRIPTION_GROUP: u8 = 21;
    /// Reserved: delete a subscription group config.
    pub const DELETE_SUBSCRIPTION_GROUP: u8 = 22;

    /// True for tags reserved for later commands.
    pub fn is_reserved(tag: u8) -> bool {
        (DELIVER_DELAYED..=DELETE_SUBSCRIPTION_GROUP).contains(&tag)
    }
}

/// Bit 0 of an append's flags: deduplicate by `(topic, UNIQ_KEY)` (producer sends).
pub const APPEND_FLAG_DEDUP: u8 = 1;
/// Bytes of an append before its first record: tag, flags, timestamp, count.
pub const APPEND_HEADER_BYTES: usize = 1 + 1 + 8 + 4;
/// Largest bincode body accepted by [`Command::decode`].
pub const COMMAND_BYTES_MAX: u64 = 64 << 20;
/// Smallest TOTALSIZE an append's framing accepts (a full check happens at apply).
const RECORD_FRAME_MIN: usize = 8;

/// A command that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// Zero bytes.
    #[error("empty command")]
    Empty,
    /// A tag this version does not know, or one reserved for a later version.
    #[error("unknown command tag {0} (written by a newer RaftMQ?)")]
    UnknownTag(u8),
    /// A known tag with a malformed body.
    #[error("malformed {what} command: {detail}")]
    Malformed {
        /// Which command.
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
}

fn malformed(what: &'static str, detail: impl Into<String>) -> CommandError {
    CommandError::Malformed {
        what,
        detail: detail.into(),
    }
}

/// One consumer offset in a [`Command::CommitOffsets`] batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetCommit {
    /// Consumer group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Queue id.
    pub queue_id: i32,
    /// Next offset to consume.
    pub offset: i64,
}

/// Message records to append (see the module docs for the layout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Append {
    /// Answer repeated `(topic, UNIQ_KEY)`s from the idempotency window.
    pub dedup: bool,
    /// The leader's clock when it proposed, ms; the store time of every record.
    pub store_timestamp_ms: i64,
    /// Complete stored records (§3.1), each exactly TOTALSIZE bytes.
    pub records: Vec<Bytes>,
}

impl Append {
    /// Offset of record `k` within the encoded command (`None` past the end).
    pub fn record_offset(&self, k: usize) -> Option<usize> {
        (k < self.records.len())
            .then(|| APPEND_HEADER_BYTES + self.records[..k].iter().map(Bytes::len).sum::<usize>())
    }

    /// Encoded length.
    pub fn encoded_len(&self) -> usize {
        APPEND_HEADER_BYTES + self.records.iter().map(Bytes::len).sum::<usize>()
    }
}

/// A state-machine command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Append message records; apply assigns queue and physical offsets.
    Append(Append),
    /// Store consumer offsets (last write wins, backwards too: offset resets are allowed).
    CommitOffsets(Vec<OffsetCommit>),
    /// Create or replace a topic config; bumps the data version with `timestamp_ms`.
    UpsertTopic {
        /// The new config (its name is the key).
        config: TopicConfig,
        /// Leader's clock, ms (DataVersion timestamp).
        timestamp_ms: i64,
    },
    /// Delete a topic's config, consume queues, key index and consumer offsets.
    DeleteTopic {
        /// Topic name.
        topic: String,
        /// Leader's clock, ms (DataVersion timestamp).
        timestamp_ms: i64,
    },
    /// Retention: drop consume-queue units and key-index entries whose record starts below
    /// `upto_physical_offset`, raising each queue's min offset accordingly.
    Purge {
        /// First physical offset that is kept.
        upto_physical_offset: i64,
    },
    /// Orderly-consumption locks: grant each queue to `client_id` unless another client
    /// holds a live lock on it (see [`super::locks`]); answered [`Reply::Locked`].
    LockQueues(QueueLockRequest),
    /// Release those of the queues that `client_id` holds.
    UnlockQueues(QueueLockRequest),
}

/// The body of [`Command::LockQueues`] / [`Command::UnlockQueues`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueLockRequest {
    /// Consumer group.
    pub group: String,
    /// The requesting client's id.
    pub client_id: String,
    /// The queues, as the client named them.
    pub queues: Vec<MessageQueue>,
    /// The leader's clock when it proposed, ms: lock ages are measured with it, never with
    /// the applying node's clock.
    pub now_ms: i64,
}

fn bincode_options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_big_endian()
        .with_limit(COMMAND_BYTES_MAX)
        .reject_trailing_bytes()
}

fn with_tag<T: Serialize>(tag: u8, value: &T) -> Bytes {
    let mut out = vec![tag];
    // Serializing plain data into a Vec only fails over the size limit, which the leader's
    // validation (message and batch size limits) keeps us far from.
    if let Err(e) = bincode_options().serialize_into(&mut out, value) {
        tracing::error!(tag, error = %e, "command does not serialize");
    }
    Bytes::from(out)
}

fn from_body<'a, T: Deserialize<'a>>(
    what: &'static str,
    body: &'a [u8],
) -> Result<T, CommandError> {
    bincode_options()
        .deserialize(body)
        .map_err(|e| malformed(what, e.to_string()))
}

/// Encodes an append from borrowed records (the leader's proposal path).
pub fn encode_append(dedup: bool, store_timestamp_ms: i64, records: &[&[u8]]) -> Bytes {
    let len = APPEND_HEADER_BYTES + records.iter().map(|r| r.len()).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    append_header(&mut out, dedup, store_timestamp_ms, records.len() as u32);
    for r in records {
        out.extend_from_slice(r);
    }
    Bytes::from(out)
}

/// Writes the header of an `Append` command carrying `count` records; the caller then
/// encodes the records straight after it (the send path: no buffer per record).
pub fn append_header(out: &mut Vec<u8>, dedup: bool, store_timestamp_ms: i64, count: u32) {
    out.push(tags::APPEND);
    out.push(if dedup { APPEND_FLAG_DEDUP } else { 0 });
    out.extend_from_slice(&store_timestamp_ms.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
}

impl Command {
    /// The command's tag.
    pub fn tag(&self) -> u8 {
        match self {
            Command::Append(_) => tags::APPEND,
            Command::CommitOffsets(_) => tags::COMMIT_OFFSETS,
            Command::UpsertTopic { .. } => tags::UPSERT_TOPIC,
            Command::DeleteTopic { .. } => tags::DELETE_TOPIC,
            Command::Purge { .. } => tags::PURGE,
            Command::LockQueues(_) => tags::LOCK_QUEUES,
            Command::UnlockQueues(_) => tags::UNLOCK_QUEUES,
        }
    }

    /// Encodes the command (tag, then body).
    pub fn encode(&self) -> Bytes {
        match self {
            Command::Append(a) => {
                let records: Vec<&[u8]> = a.records.iter().map(|r| r.as_ref()).collect();
                encode_append(a.dedup, a.store_timestamp_ms, &records)
            }
            Command::CommitOffsets(v) => with_tag(tags::COMMIT_OFFSETS, v),
            Command::UpsertTopic {
                config,
                timestamp_ms,
            } => with_tag(tags::UPSERT_TOPIC, &(config, timestamp_ms)),
            Command::DeleteTopic {
                topic,
                timestamp_ms,
            } => with_tag(tags::DELETE_TOPIC, &(topic, timestamp_ms)),
            Command::Purge {
                upto_physical_offset,
            } => with_tag(tags::PURGE, upto_physical_offset),
            Command::LockQueues(r) => with_tag(tags::LOCK_QUEUES, r),
            Command::UnlockQueues(r) => with_tag(tags::UNLOCK_QUEUES, r),
        }
    }

    /// Decodes a command; records of an append are sliced out of `bytes` without copying.
    pub fn decode(bytes: &Bytes) -> Result<Command, CommandError> {
        let (&tag, body) = bytes.split_first().ok_or(CommandError::Empty)?;
        match tag {
            tags::APPEND => decode_append(bytes).map(Command::Append),
            tags::COMMIT_OFFSETS => from_body("CommitOffsets", body).map(Command::CommitOffsets),
            tags::UPSERT_TOPIC => {
                let (config, timestamp_ms) = from_body("UpsertTopic", body)?;
                Ok(Command::UpsertTopic {
                    config,
                    timestamp_ms,
                })
            }
            tags::DELETE_TOPIC => {
                let (topic, timestamp_ms) = from_body("DeleteTopic", body)?;
                Ok(Command::DeleteTopic {
                    topic,
                    timestamp_ms,
                })
            }
            tags::PURGE => Ok(Command::Purge {
                upto_physical_offset: from_body("Purge", body)?,
            }),
            tags::LOCK_QUEUES => from_body("LockQueues", body).map(Command::LockQueues),
            tags::UNLOCK_QUEUES => from_body("UnlockQueues", body).map(Command::UnlockQueues),
            other => Err(CommandError::UnknownTag(other)),
        }
    }
}

fn decode_append(bytes: &Bytes) -> Result<Append, CommandError> {
    const WHAT: &str = "Append";
    let header = bytes.get(..APPEND_HEADER_BYTES).ok_or_else(|| {
        malformed(
            WHAT,
            format!("{} bytes, shorter than the header", bytes.len()),
        )
    })?;
    let flags = header[1];
    if flags & !APPEND_FLAG_DEDUP != 0 {
        return Err(malformed(WHAT, format!("unknown flags {flags:#04x}")));
    }
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&header[2..10]);
    let count = u32::from_be_bytes([header[10], header[11], header[12], header[13]]) as usize;
    let rest = bytes.len() - APPEND_HEADER_BYTES;
    if count > rest / RECORD_FRAME_MIN {
        return Err(malformed(
            WHAT,
            format!("count {count} does not fit in {rest} bytes"),
        ));
    }
    let mut records = Vec::with_capacity(count);
    let mut pos = APPEND_HEADER_BYTES;
    for k in 0..count {
        let avail = &bytes[pos..];
        let size = peek_total_size(avail)
            .filter(|&s| (RECORD_FRAME_MIN..=avail.len()).contains(&s))
            .ok_or_else(|| malformed(WHAT, format!("record {k}: bad TOTALSIZE at byte {pos}")))?;
        records.push(bytes.slice(pos..pos + size));
        pos += size;
    }
    if pos != bytes.len() {
        return Err(malformed(
            WHAT,
            format!("{} trailing bytes after {count} records", bytes.len() - pos),
        ));
    }
    Ok(Append {
        dedup: flags & APPEND_FLAG_DEDUP != 0,
        store_timestamp_ms: i64::from_be_bytes(ts),
        records,
    })
}

/// Where one appended record went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendResult {
    /// Queue id.
    pub queue_id: i32,
    /// Logical offset in the queue.
    pub queue_offset: i64,
    /// Physical offset (byte position in the replicated log) of the record.
    pub physical_offset: i64,
    /// True when the record repeated a `(topic, UNIQ_KEY)` still in the idempotency window:
    /// nothing was appended and the offsets are those of the first copy.
    pub duplicate: bool,
}

/// What apply answers for one command.
///
/// Layout: `u8 kind`, then for kind 1 `u32 count | count × (i32 queue_id | i64 queue_offset |
/// i64 physical_offset | u8 duplicate)`, for kind 2 the UTF-8 reason, for kind 3
/// `u32 count | count × u32 position`; big-endian.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Applied (commands without a result).
    Done,
    /// An append: one result per record, in command order.
    Appended(Vec<AppendResult>),
    /// The command was malformed or invalid and changed nothing (the same on every replica).
    Rejected(String),
    /// A [`Command::LockQueues`]: positions in its `queues` of those the client now holds,
    /// ascending.
    Locked(Vec<u32>),
}

const REPLY_DONE: u8 = 0;
const REPLY_APPENDED: u8 = 1;
const REPLY_REJECTED: u8 = 2;
const REPLY_LOCKED: u8 = 3;
const APPEND_RESULT_BYTES: usize = 4 + 8 + 8 + 1;

impl Reply {
    /// Encodes the reply.
    pub fn encode(&self) -> Bytes {
        match self {
            Reply::Done => Bytes::from_static(&[REPLY_DONE]),
            Reply::Appended(results) => {
                let mut out = BytesMut::with_capacity(5 + results.len() * APPEND_RESULT_BYTES);
                out.put_u8(REPLY_APPENDED);
                out.put_u32(results.len() as u32);
                for r in results {
                    out.put_i32(r.queue_id);
                    out.put_i64(r.queue_offset);
                    out.put_i64(r.physical_offset);
                    out.put_u8(u8::from(r.duplicate));
                }
                out.freeze()
            }
            Reply::Rejected(reason) => {
                let mut out = Vec::with_capacity(1 + reason.len());
                out.push(REPLY_REJECTED);
                out.extend_from_slice(reason.as_bytes());
                Bytes::from(out)
            }
            Reply::Locked(positions) => {
                let mut out = BytesMut::with_capacity(5 + positions.len() * 4);
                out.put_u8(REPLY_LOCKED);
                out.put_u32(positions.len() as u32);
                for p in positions {
                    out.put_u32(*p);
                }
                out.freeze()
            }
        }
    }

    /// Decodes a reply; `None` for anything [`Reply::encode`] cannot produce.
    pub fn decode(bytes: &[u8]) -> Option<Reply> {
        let (&kind, body) = bytes.split_first()?;
        match kind {
            REPLY_DONE if body.is_empty() => Some(Reply::Done),
            REPLY_APPENDED => {
                let (count, mut rest) = body.split_at_checked(4)?;
                let count = u32::from_be_bytes(count.try_into().ok()?) as usize;
                if rest.len() != count.checked_mul(APPEND_RESULT_BYTES)? {
                    return None;
                }
                let mut results = Vec::with_capacity(count);
                while let Some((item, tail)) = rest.split_at_checked(APPEND_RESULT_BYTES) {
                    let duplicate = match item[20] {
                        0 => false,
                        1 => true,
                        _ => return None,
                    };
                    results.push(AppendResult {
                        queue_id: i32::from_be_bytes(item[0..4].try_into().ok()?),
                        queue_offset: i64::from_be_bytes(item[4..12].try_into().ok()?),
                        physical_offset: i64::from_be_bytes(item[12..20].try_into().ok()?),
                        duplicate,
                    });
                    rest = tail;
                }
                Some(Reply::Appended(results))
            }
            REPLY_REJECTED => Some(Reply::Rejected(String::from_utf8(body.to_vec()).ok()?)),
            REPLY_LOCKED => {
                let (count, rest) = body.split_at_checked(4)?;
                let count = u32::from_be_bytes(count.try_into().ok()?) as usize;
                if rest.len() != count.checked_mul(4)? {
                    return None;
                }
                let positions = rest
                    .chunks_exact(4)
                    .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                Some(Reply::Locked(positions))
            }
            _ => None,
        }
    }
}
