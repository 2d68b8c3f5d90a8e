//! Admin and query requests: offsets by time (§2.4.7), topic admin (§2.4.15, §2.4.16,
//! DELETE_TOPIC_IN_BROKER), messages by offset or key (§2.4.13), runtime info (§2.4.17) and
//! RaftMQ's own raft admin codes.
//!
//! ```text
//! SEARCH_OFFSET_BY_TIMESTAMP / GET_EARLIEST_MSG_STORETIME --> applied consume queues (any node)
//! UPDATE_AND_CREATE_TOPIC / DELETE_TOPIC_IN_BROKER --leader--> propose Upsert/DeleteTopic --> poke registrar
//! GET_ALL_TOPIC_CONFIG --> applied topic table (any node)
//! VIEW_MESSAGE_BY_ID --> log().read_at(physical offset) --> checked against the consume queue
//! QUERY_MESSAGE --> key index candidates --> each record read and its keys checked
//! GET_BROKER_RUNTIME_INFO --> counters, log positions, disk, raft status (any node)
//! RAFTMQ_LEADER_TRANSFER (9001) --leader--> RaftNode::transfer_leadership
//! RAFTMQ_GROUP_STATUS (9002) --> this node's NodeStatus as JSON (any node)
//! ```
//!
//! RaftMQ's own codes (also in the README, "Admin request codes of our own"):
//! - **9001 RAFTMQ_LEADER_TRANSFER**: extField `targetId` (`n1` or `1`; absent = the
//!   follower with the most replicated log). Sent to the leader; a follower answers
//!   SYSTEM_BUSY naming the leader, like a send. SUCCESS once the target leads (within
//!   [`TRANSFER_TIMEOUT`]); else SYSTEM_ERROR saying why, and the old leader keeps leading.
//! - **9002 RAFTMQ_GROUP_STATUS**: no header; any node; SUCCESS with a
//!   [`RaftGroupStatus`] JSON body (role, term, leader, committed/applied/last log index,
//!   its raft id, client and raft addresses, the voters).

use std::collections::BTreeMap;
use std::time::Duration;

use raftmq_protocol::body::{
    encode_json, KvTable, RaftGroupStatus, TopicConfig, TopicConfigSerializeWrapper,
    TopicFilterType,
};
use raftmq_protocol::codes::{version, ResponseCode};
use raftmq_protocol::headers::{
    CreateTopicRequestHeader, DeleteTopicRequestHeader, EarliestMsgStoretimeResponseHeader,
    GetAllTopicConfigRequestHeader, GetAllTopicConfigResponseHeader, OffsetResponseHeader,
    QueryMessageRequestHeader, QueryMessageResponseHeader, QueueRequestHeader,
    RaftLeaderTransferRequestHeader, SearchOffsetRequestHeader, ViewMessageRequestHeader,
};
use raftmq_protocol::message::{
    keys, peek_total_size, set_physical_offset, set_queue_offset, MessageRecord,
};
use raftmq_protocol::RemotingCommand;
use raftmq_raft::node::ProposeError;
use raftmq_raft::state_machine::StateMachine;
use raftmq_raft::status::Role;

use super::send::check_topic_name;
use super::stats::{human_bytes, runtime_text, tps_triple};
use super::{bad_header, now_ms, Broker};
use crate::registrar::TopicSource;
use crate::state::topics::system_topics;
use crate::state::{Boundary, Command, ConsumeQueue, Reply};

/// Queue counts UPDATE_AND_CREATE_TOPIC accepts for `readQueueNums` and `writeQueueNums`
/// (the range of `defaultTopicQueueNums`; Java sets no upper bound, but every queue costs
/// memory on every replica).
pub const TOPIC_QUEUE_NUMS: std::ops::RangeInclusive<i32> = 1..=1024;
/// PermName bits a topic may carry: PRIORITY 8 | READ 4 | WRITE 2 | INHERIT 1.
pub const PERM_BITS: i32 = 15;
/// Hits of a `_UNIQUE_KEY_QUERY` (Java's `defaultQueryMaxNum`).
pub const UNIQ_KEY_QUERY_MAX: usize = 32;
/// Most hits of a QUERY_MESSAGE by key (Java's `maxMsgsNumBatch`).
pub const QUERY_MESSAGES_MAX: usize = 64;
/// Index candidates read per hit wanted: the index may return false positives.
const CANDIDATES_PER_HIT: usize = 4;
/// Bytes of records one QUERY_MESSAGE answer carries at most (one record always fits).
pub const QUERY_BODY_BYTES_MAX: usize = 8 << 20;
/// Room for a record's properties, topic and fixed fields beyond its body.
const RECORD_OVERHEAD_BYTES: u64 = 128 << 10;
/// How long RAFTMQ_LEADER_TRANSFER waits for the target to catch up and win.
pub const TRANSFER_TIMEOUT: Duration = Duration::from_secs(10);
/// What GET_BROKER_RUNTIME_INFO reports as `brokerVersionDesc` ([`version::CURRENT`]).
pub const BROKER_VERSION_DESC: &str = "V5_3_3";

/// True for topics admin requests may not create, replace or delete: the seeded system
/// topics (TBW102, SELF_TEST_TOPIC, SCHEDULE_TOPIC_XXXX, the transaction and trace topics …)
/// and Java's `rmq_sys_` / `RMQ_SYS_` prefixes.
pub fn is_system_topic(topic: &str) -> bool {
    topic.starts_with("rmq_sys_")
        || topic.starts_with("RMQ_SYS_")
        || system_topics().iter().any(|t| t.topic_name == topic)
}

/// The config UPDATE_AND_CREATE_TOPIC asks for, replacing `existing` (whose attributes the
/// request's `+k=v` / `-k` edits apply to); `Err` names what is invalid.
pub fn topic_config_from_header(
    h: &CreateTopicRequestHeader,
    existing: Option<&TopicConfig>,
) -> Result<TopicConfig, String> {
    if is_system_topic(&h.topic) {
        return Err(format!(
            "the topic[{}] is conflict with system topic",
            h.topic
        ));
    }
    check_topic_name(&h.topic).map_err(|(_, remark)| remark)?;
    for (key, n) in [
        ("readQueueNums", h.read_queue_nums),
        ("writeQueueNums", h.write_queue_nums),
    ] {
        if !TOPIC_QUEUE_NUMS.contains(&n) {
            return Err(format!(
                "{key} {n} is out of range {}..={}",
                TOPIC_QUEUE_NUMS.start(),
                TOPIC_QUEUE_NUMS.end()
            ));
        }
    }
    if h.perm < 0 || h.perm & !PERM_BITS != 0 {
        return Err(format!(
            "perm {} is not a combination of READ 4, WRITE 2, INHERIT 1 and PRIORITY 8",
            h.perm
        ));
    }
    let topic_filter_type = TopicFilterType::parse(&h.topic_filter_type.to_ascii_uppercase())
        .ok_or_else(|| {
            format!(
                "topicFilterType {} is neither SINGLE_TAG nor MULTI_TAG",
                h.topic_filter_type
            )
        })?;
    let mut attributes = existing.map(|t| t.attributes.clone()).unwrap_or_default();
    alter_attributes(
        &mut attributes,
        h.attributes.as_deref().unwrap_or(""),
        existing.is_none(),
    )?;
    Ok(TopicConfig {
        attributes,
        order: h.order,
        perm: h.perm,
        read_queue_nums: h.read_queue_nums,
        topic_filter_type,
        topic_name: h.topic.clone(),
        topic_sys_flag: h.topic_sys_flag.unwrap_or(0),
        write_queue_nums: h.write_queue_nums,
    })
}

/// Applies 5.x attribute edits `+key=value,-key` (a creation may only add, as in Java).
fn alter_attributes(
    attributes: &mut BTreeMap<String, String>,
    edits: &str,
    creating: bool,
) -> Result<(), String> {
    for item in edits.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if let Some(kv) = item.strip_prefix('+') {
            match kv.split_once('=') {
                Some((k, v)) if !k.is_empty() => {
                    attributes.insert(k.to_owned(), v.to_owned());
                }
                _ => return Err(format!("attribute `{item}` is not +key=value")),
            }
        } else if let Some(k) = item.strip_prefix('-').filter(|k| !k.is_empty()) {
            if creating {
                return Err(format!(
                    "only adding attributes is supported while creating a topic, not `{item}`"
                ));
            }
            attributes.remove(k);
        } else {
            return Err(format!("attribute `{item}` is neither +key=value nor -key"));
        }
    }
    Ok(())
}

/// The logical offset of the unit at `physical_offset` in `q` (units are in log order).
fn queue_offset_of(q: &ConsumeQueue, physical_offset: i64, size: usize) -> Option<i64> {
    let (mut lo, mut hi) = (q.min_offset(), q.max_offset());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if q.unit(mid)?.physical_offset < physical_offset {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    q.unit(lo)
        .filter(|u| u.physical_offset == physical_offset && usize::try_from(u.size) == Ok(size))
        .map(|_| lo)
}

/// True when `record` is a hit of a QUERY_MESSAGE for `key` (the index may return others).
fn record_has_key(record: &MessageRecord, key: &str, uniq_only: bool) -> bool {
    let uniq = record.properties.get(keys::UNIQ_KEY) == Some(key);
    uniq || (!uniq_only
        && record
            .properties
            .get(keys::KEYS)
            .is_some_and(|ks| ks.split(' ').any(|k| k == key)))
}

fn err(req: &RemotingCommand, code: ResponseCode, remark: impl Into<String>) -> RemotingCommand {
    RemotingCommand::error_to(req, code, remark)
}

impl Broker {
    // ---- offsets by time (§2.4.7) ----------------------------------------------------------

    /// SEARCH_OFFSET_BY_TIMESTAMP (29), from applied state on any node.
    pub(super) fn search_offset_by_timestamp(&self, req: &RemotingCommand) -> RemotingCommand {
        let h: SearchOffsetRequestHeader = match req.header() {
            Ok(h) => h,
            Err(e) => return bad_header(req, e),
        };
        let boundary = Boundary::parse(h.boundary_type.as_deref());
        let offset = self
            .node
            .state_machine()
            .with(|sm| sm.search_offset_by_timestamp(&h.topic, h.queue_id, h.timestamp, boundary));
        RemotingCommand::response_to(req, ResponseCode::Success)
            .with_header(&OffsetResponseHeader { offset })
    }

    /// GET_EARLIEST_MSG_STORETIME (32): store time of the queue's first retained message,
    /// -1 when it has none (as Java).
    pub(super) fn earliest_msg_store_time(&self, req: &RemotingCommand) -> RemotingCommand {
        let h: QueueRequestHeader = match req.header() {
            Ok(h) => h,
            Err(e) => return bad_header(req, e),
        };
        let timestamp = self
            .node
            .state_machine()
            .with(|sm| sm.earliest_store_time(&h.topic, h.queue_id))
            .unwrap_or(-1);
        RemotingCommand::response_to(req, ResponseCode::Success)
            .with_header(&EarliestMsgStoretimeResponseHeader { timestamp })
    }

    // ---- topic admin (§2.4.15, §2.4.16) ---------------------------------------------------

    /// UPDATE_AND_CREATE_TOPIC (17): validated, then proposed on the leader.
    pub(super) async fn update_and_create_topic(&self, req: &RemotingCommand) -> RemotingCommand {
        let h: CreateTopicRequestHeader = match req.header() {
            Ok(h) => h,
            Err(e) => return bad_header(req, e),
        };
        let existing = self
            .node
            .state_machine()
            .with(|sm| sm.topic(&h.topic).cloned());
        let config = match topic_config_from_header(&h, existing.as_ref()) {
            Ok(c) => c,
            Err(remark) => return err(req, ResponseCode::InvalidParameter, remark),
        };
        let status = self.status();
        if status.role != Role::Leader {
            return self.not_leader(req, status.leader);
        }
        let command = Command::UpsertTopic {
            config: config.clone(),
            timestamp_ms: now_ms(),
        };
        match self.propose_command(req, &command).await {
            Ok(Reply::Done) => {
                tracing::info!(
                    topic = %config.topic_name,
                    read = config.read_queue_nums,
                    write = config.write_queue_nums,
                    perm = config.perm,
                    created = existing.is_none(),
                    "topic config stored"
                );
                self.poke_registrar();
                RemotingCommand::response_to(req, ResponseCode::Success)
            }
            Ok(other) => err(
                req,
                ResponseCode::SystemError,
                format!("topic update not applied: {other:?}"),
            ),
            Err(resp) => resp,
        }
    }

    /// GET_ALL_TOPIC_CONFIG (21) from applied state on any node. With the 5.x paging fields
    /// `topicSeq` and `maxTopicNum` (> 0) it answers that slice of the name-ordered table;
    /// `totalTopicNum` is always the whole table's size.
    pub(super) fn get_all_topic_config(&self, req: &RemotingCommand) -> RemotingCommand {
        let h: GetAllTopicConfigRequestHeader = match req.header() {
            Ok(h) => h,
            Err(e) => return bad_header(req, e),
        };
        let mut wrapper: TopicConfigSerializeWrapper = self.topic_wrapper();
        let total = wrapper.topic_config_table.len();
        if let (Some(seq), Some(max)) = (h.topic_seq, h.max_topic_num) {
            if max > 0 {
                let skip = usize::try_from(seq).unwrap_or(0);
                let take = usize::try_from(max).unwrap_or(0);
                wrapper.topic_config_table = std::mem::take(&mut wrapper.topic_config_table)
                    .into_iter()
                    .skip(skip)
                    .take(take)
                    .collect();
            }
        }
        RemotingCommand::response_to(req, ResponseCode::Success)
            .with_header(&GetAllTopicConfigResponseHeader {
                total_topic_num: Some(i32::try_from(total).unwrap_or(i32::MAX)),
            })
            .with_body(encode_json(&wrapper))
    }

    /// DELETE_TOPIC_IN_BROKER (215): proposed on the leader; system topics are refused. A
    /// topic that does not exist is deleted successfully (nothing changes).
    pub(super) async fn delete_topic(&self, req: &RemotingCommand) -> RemotingCommand {
        let h: DeleteTopicRequestHeader = match req.header() {
            Ok(h) => h,
            Err(e) => return bad_header(req, e),
        };
        if is_system_topic(&h.topic) {
            return err(
                req,
                ResponseCode::InvalidParameter,
                format!(
                    "the topic[{}] is a system topic and cannot be deleted",
                    h.topic
                ),
            );
        }
        if let Err((_, remark)) = check_topic_name(&h.topic) {
            return err(req, ResponseCode::InvalidParameter, remark);
        }
        let status = self.status();
        if status.role != Role::Leader {
            return self.not_leader(req, status.leader);
        }
        let command = Command::DeleteTopic {
            topic: h.topic.clone(),
            timestamp_ms: now_ms(),
        };
        match self.propose_command(req, &command).await {
            Ok(Reply::Done) => {
                tracing::info!(topic = %h.topic, "topic deleted");
                self.poke_registrar();
                RemotingCommand::response_to(req, ResponseCode::Success)
            }
            Ok(other) => err(
                req,
                ResponseCode::SystemError,
                format!("topic deletion not applied: {other:?}"),
            ),
            Err(resp) => resp,
        }
    }

    // ---- messages by offset or key (§2.4.13) ----------------------------------------------

    /// The stored record at `physical_offset`, with QUEUEOFFSET and PHYSICALOFFSET patched in
    /// as pulls serve them, if it is a message record this node has applied and still
    /// retains: its bytes lie below the applied end of the log, it decodes with a matching
    /// body CRC, and its consume queue has a unit of that size at that offset. `Err` says
    /// why not (for logs; clients get Java's remark).
    fn stored_record(&self, physical_offset: i64) -> Result<(Vec<u8>, MessageRecord), String> {
        let pos = u64::try_from(physical_offset).map_err(|_| "negative offset".to_owned())?;
        let (applied, purged_upto) = self
            .node
            .state_machine()
            .with(|sm| (sm.applied_state().0, sm.purged_upto()));
        if physical_offset < purged_upto {
            return Err(format!("purged by retention (below {purged_upto})"));
        }
        let log = self.node.log();
        let applied_end = applied
            .and_then(|l| log.end_of(l.index))
            .ok_or("nothing applied yet")?;
        let head_end = pos.checked_add(4).filter(|&e| e <= applied_end);
        if head_end.is_none() {
            return Err(format!("beyond the applied end {applied_end}"));
        }
        let head = log.read_at(pos, 4).map_err(|e| e.to_string())?;
        let size = peek_total_size(&head).ok_or("no record size")?;
        let max = u64::from(self.config.max_message_size_bytes) + RECORD_OVERHEAD_BYTES;
        let size_u64 = u64::try_from(size).map_err(|_| "record size too large".to_owned())?;
        if size_u64 > max || pos + size_u64 > applied_end {
            return Err(format!("record size {size} does not fit"));
        }
        let bytes = log.read_at(pos, size_u64).map_err(|e| e.to_string())?;
        let (mut record, len) =
            MessageRecord::decode_verified(&bytes).map_err(|e| e.to_string())?;
        if len != size {
            return Err(format!("TOTALSIZE {size} but the record has {len} bytes"));
        }
        let queue_offset = self
            .node
            .state_machine()
            .with(|sm| {
                sm.queue(&record.topic, record.queue_id)
                    .and_then(|q| queue_offset_of(q, physical_offset, size))
            })
            .ok_or("no consume-queue unit at this offset")?;
        let mut out = bytes.to_vec();
        set_queue_offset(&mut out, queue_offset).map_err(|e| e.to_string())?;
        set_physical_offset(&mut out, physical_offset).map_err(|e| e.to_string())?;
        record.queue_offset = queue_offset;
        record.physical_offset = physical_offset;
        Ok((out, record))
    }

    /// VIEW_MESSAGE_BY_ID (33): the record at a physical offset, from any node that applied it.
    pub(super) fn view_message_by_id(&self, req: &RemotingCommand) -> RemotingCommand {
        let h: ViewMessageRequestHeader = match req.header() {
            Ok(h) => h,
            Err(e) => return bad_header(req, e),
        };
        let found = self.stored_record(h.offset).and_then(|(bytes, record)| {
            match h.topic.as_deref().filter(|t| !t.is_empty()) {
                Some(t) if t != record.topic => {
                    Err(format!("the record is of topic {}, not {t}", record.topic))
                }
                _ => Ok(bytes),
            }
        });
        match found {
            Ok(bytes) => RemotingCommand::response_to(req, ResponseCode::Success).with_body(bytes),
            Err(why) => {
                tracing::debug!(offset = h.offset, why, "VIEW_MESSAGE_BY_ID found nothing");
                err(
                    req,
                    ResponseCode::SystemError,
                    format!("can not find message by the offset, {}", h.offset),
                )
            }
        }
    }

    /// QUERY_MESSAGE (12): records of `topic` whose KEYS (or UNIQ_KEY) hold `key`, stored
    /// within the time range, newest first. The index's candidates are read and checked, so
    /// false positives of the index never reach the client.
    pub(super) fn query_message(&self, req: &RemotingCommand) -> RemotingCommand {
        let h: QueryMessageRequestHeader = match req.header() {
            Ok(h) => h,
            Err(e) => return bad_header(req, e),
        };
        let uniq_only = h.unique_key_query == Some(true);
        let max = if uniq_only {
            UNIQ_KEY_QUERY_MAX
        } else {
            usize::try_from(h.max_num)
                .unwrap_or(1)
                .clamp(1, QUERY_MESSAGES_MAX)
        };
        let (candidates, last_store_time, applied) = self.node.state_machine().with(|sm| {
            (
                sm.lookup_keys(
                    &h.topic,
                    &h.key,
                    h.begin_timestamp,
                    h.end_timestamp,
                    max * CANDIDATES_PER_HIT,
                ),
                sm.last_store_time(),
                sm.applied_state().0,
            )
        });
        let header = QueryMessageResponseHeader {
            index_last_update_timestamp: last_store_time,
            index_last_update_phyoffset: applied
                .and_then(|l| self.node.log().end_of(l.index))
                .and_then(|p| i64::try_from(p).ok())
                .unwrap_or(0),
        };
        let mut body = Vec::new();
        let mut hits = 0;
        for offset in candidates {
            if hits == max {
                break;
            }
            let Ok((bytes, record)) = self.stored_record(offset) else {
                continue;
            };
            if record.topic != h.topic || !record_has_key(&record, &h.key, uniq_only) {
                continue;
            }
            if !body.is_empty() && body.len() + bytes.len() > QUERY_BODY_BYTES_MAX {
                break;
            }
            body.extend_from_slice(&bytes);
            hits += 1;
        }
        if hits == 0 {
            return err(
                req,
                ResponseCode::QueryNotFound,
                "can not find message, maybe time range not correct",
            )
            .with_header(&header);
        }
        RemotingCommand::response_to(req, ResponseCode::Success)
            .with_header(&header)
            .with_body(body)
    }

    // ---- runtime info (§2.4.17) -----------------------------------------------------------

    /// GET_BROKER_RUNTIME_INFO (28): the keys of §2.4.17 this node can fill honestly, plus
    /// its raft status. Per node (a follower reports its own counters and log).
    ///
    /// Counters count since this node's boot; the `...YesterdayMorning` / `...TodayMorning`
    /// values are the counters at the last two UTC midnights ("0" before one has passed).
    /// Thread-pool and page-cache keys are omitted: requests run on the async runtime.
    pub(super) fn broker_runtime_info(&self, req: &RemotingCommand) -> RemotingCommand {
        let kv = self.runtime_table();
        RemotingCommand::response_to(req, ResponseCode::Success)
            .with_body(encode_json(&KvTable { table: kv }))
    }

    fn runtime_table(&self) -> BTreeMap<String, String> {
        let mut kv = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            kv.insert(k.to_owned(), v);
        };
        let now = now_ms();
        let status = self.status();
        let stats = &self.stats;
        // The sampler task may not have seen the latest role change yet.
        stats.note_role(&status);
        let counts = stats.counts();
        let (yesterday, today) = stats.mornings();

        put("brokerVersionDesc", BROKER_VERSION_DESC.into());
        put("brokerVersion", version::CURRENT.to_string());
        put("brokerActive", status.is_caught_up_leader().to_string());
        put("msgPutTotalTodayNow", counts.put.to_string());
        put("msgPutTotalTodayMorning", today.put.to_string());
        put("msgPutTotalYesterdayMorning", yesterday.put.to_string());
        put("msgGetTotalTodayNow", counts.get_transferred.to_string());
        put("msgGetTotalTodayMorning", today.get_transferred.to_string());
        put(
            "msgGetTotalYesterdayMorning",
            yesterday.get_transferred.to_string(),
        );
        let windows = [10, 60, 600].map(|s| stats.rates(Duration::from_secs(s)));
        put("putTps", tps_triple(windows.map(|r| r.put)));
        put("getTotalTps", tps_triple(windows.map(|r| r.get_total)));
        put("getFoundTps", tps_triple(windows.map(|r| r.get_found)));
        put("getMissTps", tps_triple(windows.map(|r| r.get_miss)));
        put(
            "getTransferedTps",
            tps_triple(windows.map(|r| r.get_transferred)),
        );

        let log = self.node.log();
        put("commitLogMinOffset", log.start_position().to_string());
        put("commitLogMaxOffset", log.end_position().to_string());
        let end_of = |i: Option<u64>| i.and_then(|i| log.end_of(i));
        let applied_end = end_of(status.applied_index).unwrap_or_else(|| log.start_position());
        let behind = end_of(status.committed_index).map_or(0, |c| c.saturating_sub(applied_end));
        put("dispatchBehindBytes", behind.to_string());

        let dir = self.config.raft_data_dir();
        if let (Ok(total), Ok(free)) = (fs2::total_space(&dir), fs2::free_space(&dir)) {
            put(
                "commitLogDirCapacity",
                format!(
                    "Total : {}, Free : {}.",
                    human_bytes(total),
                    human_bytes(free)
                ),
            );
            if total > 0 {
                let used = total.saturating_sub(free) as f64 / total as f64;
                put("commitLogDiskRatio", used.to_string());
            }
        }

        let earliest = self.node.state_machine().with(|sm| {
            sm.topics()
                .values()
                .flat_map(|t| {
                    let queues = t.read_queue_nums.max(t.write_queue_nums);
                    (0..queues).filter_map(|q| sm.earliest_store_time(&t.topic_name, q))
                })
                .min()
        });
        put(
            "earliestMessageTimeStamp",
            earliest.unwrap_or(-1).to_string(),
        );
        put("bootTimestamp", stats.boot_ms.to_string());
        put(
            "startAcceptSendRequestTimeStamp",
            stats.leader_since_ms().to_string(),
        );
        put("runtime", runtime_text(now - stats.boot_ms));

        let opt = |v: Option<u64>| v.map_or_else(|| "-1".to_owned(), |v| v.to_string());
        put("raftNodeId", status.id.to_string());
        put("raftRole", status.role.as_str().to_owned());
        put("raftTerm", status.term.to_string());
        put("raftLeaderId", opt(status.leader));
        put("raftCommitIndex", opt(status.committed_index));
        put("raftAppliedIndex", opt(status.applied_index));
        put("raftLastLogIndex", opt(status.last_log_index));
        kv
    }

    // ---- RaftMQ's own codes ---------------------------------------------------------------

    /// RAFTMQ_LEADER_TRANSFER (9001); see the module docs.
    pub(super) async fn raft_leader_transfer(&self, req: &RemotingCommand) -> RemotingCommand {
        let h: RaftLeaderTransferRequestHeader = match req.header() {
            Ok(h) => h,
            Err(e) => return bad_header(req, e),
        };
        let status = self.status();
        if status.role != Role::Leader {
            return self.not_leader(req, status.leader);
        }
        let target = match h.target_id.as_deref().map(str::trim) {
            Some(t) => match self.peer_index(t) {
                Some(id) => id,
                None => {
                    return err(
                        req,
                        ResponseCode::InvalidParameter,
                        format!(
                            "targetId {t} is not a member of the group (dLegerPeers {})",
                            self.config.dledger_peers
                        ),
                    )
                }
            },
            None => match self.transfer_candidate() {
                Some(id) => id,
                None => {
                    return err(
                        req,
                        ResponseCode::SystemError,
                        "no follower has replicated anything yet: nobody to transfer to",
                    )
                }
            },
        };
        if target == self.node.id() {
            return RemotingCommand::response_to(req, ResponseCode::Success)
                .with_remark(format!("node {target} is already the leader"));
        }
        match self
            .node
            .transfer_leadership(target, TRANSFER_TIMEOUT)
            .await
        {
            Ok(()) => RemotingCommand::response_to(req, ResponseCode::Success)
                .with_remark(format!("leadership transferred to node {target}")),
            Err(ProposeError::NotLeader { leader_hint }) => {
                self.not_leader(req, leader_hint.map(|(id, _)| id))
            }
            Err(e) => err(
                req,
                ResponseCode::SystemError,
                format!("leadership transfer to node {target} failed: {e}"),
            ),
        }
    }

    /// The raft id of a peer named `n1` (its `dLegerSelfId`) or `1`.
    fn peer_index(&self, name: &str) -> Option<u64> {
        let peers = self.config.dledger_peers.peers();
        peers
            .iter()
            .find(|p| p.id == name)
            .or_else(|| {
                let n: u64 = name.parse().ok()?;
                peers.iter().find(|p| p.index == n)
            })
            .map(|p| p.index)
    }

    /// The follower with the most replicated log (this node must lead).
    fn transfer_candidate(&self) -> Option<u64> {
        let me = self.node.id();
        let metrics = self.node.raft().metrics();
        let m = metrics.borrow();
        m.replication
            .as_ref()?
            .iter()
            .filter(|(id, _)| **id != me)
            .filter_map(|(id, matched)| matched.map(|l| (l.index, *id)))
            .max()
            .map(|(_, id)| id)
    }

    /// RAFTMQ_GROUP_STATUS (9002); see the module docs.
    pub(super) fn raft_group_status(&self, req: &RemotingCommand) -> RemotingCommand {
        let s = self.status();
        let body = RaftGroupStatus {
            applied_index: s.applied_index,
            broker_name: self.config.broker_name.clone(),
            client_addr: self.client_addr().to_string(),
            committed_index: s.committed_index,
            last_log_index: s.last_log_index,
            leader_id: s.leader,
            node_id: s.id,
            peers: self.config.raft_peers(),
            raft_addr: self.config.raft_self_addr().to_owned(),
            role: s.role.as_str().to_owned(),
            term: s.term,
        };
        RemotingCommand::response_to(req, ResponseCode::Success).with_body(encode_json(&body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::CqUnit;

    fn header(topic: &str) -> CreateTopicRequestHeader {
        CreateTopicRequestHeader {
            topic: topic.into(),
            default_topic: "TBW102".into(),
            read_queue_nums: 4,
            write_queue_nums: 4,
            perm: 6,
            topic_filter_type: "SINGLE_TAG".into(),
            order: false,
            ..Default::default()
        }
    }

    #[test]
    fn create_header_validation() {
        let c = topic_config_from_header(&header("T1"), None).expect("valid");
        assert_eq!(c, TopicConfig::new("T1", 4));
        for (h, needle) in [
            (header("TBW102"), "system topic"),
            (header("RMQ_SYS_TRACE_TOPIC"), "system topic"),
            (header("bad name"), "illegal characters"),
            (header(""), "blank"),
            (
                CreateTopicRequestHeader {
                    read_queue_nums: 0,
                    ..header("T")
                },
                "readQueueNums 0",
            ),
            (
                CreateTopicRequestHeader {
                    write_queue_nums: 1025,
                    ..header("T")
                },
                "writeQueueNums 1025",
            ),
            (
                CreateTopicRequestHeader {
                    perm: 16,
                    ..header("T")
                },
                "perm 16",
            ),
            (
                CreateTopicRequestHeader {
                    topic_filter_type: "NOPE".into(),
                    ..header("T")
                },
                "topicFilterType",
            ),
            (
                CreateTopicRequestHeader {
                    attributes: Some("-message.type".into()),
                    ..header("T")
                },
                "only adding",
            ),
            (
                CreateTopicRequestHeader {
                    attributes: Some("message.type".into()),
                    ..header("T")
                },
                "neither",
            ),
        ] {
            let e = topic_config_from_header(&h, None).expect_err(needle);
            assert!(e.contains(needle), "{e:?} should mention {needle:?}");
        }
    }

    #[test]
    fn attributes_are_edited_on_update() {
        let h = CreateTopicRequestHeader {
            attributes: Some("+message.type=NORMAL,+a=1".into()),
            order: true,
            topic_sys_flag: Some(1),
            ..header("T")
        };
        let created = topic_config_from_header(&h, None).expect("valid");
        assert_eq!(created.attributes.len(), 2);
        assert!(created.order);
        assert_eq!(created.topic_sys_flag, 1);
        let h = CreateTopicRequestHeader {
            attributes: Some("-a,+b=2".into()),
            ..header("T")
        };
        let updated = topic_config_from_header(&h, Some(&created)).expect("valid");
        assert_eq!(
            updated.attributes.keys().collect::<Vec<_>>(),
            ["b", "message.type"]
        );
    }

    #[test]
    fn queue_offset_by_physical_offset() {
        let mut q = ConsumeQueue::starting_at(10);
        for p in [100, 250, 400, 900] {
            q.append(
                CqUnit {
                    physical_offset: p,
                    size: 50,
                    tag_code: 0,
                },
                0,
            );
        }
        assert_eq!(queue_offset_of(&q, 100, 50), Some(10));
        assert_eq!(queue_offset_of(&q, 400, 50), Some(12));
        assert_eq!(queue_offset_of(&q, 900, 50), Some(13));
        assert_eq!(queue_offset_of(&q, 400, 51), None, "size must match");
        assert_eq!(queue_offset_of(&q, 401, 50), None);
        assert_eq!(queue_offset_of(&q, 99, 50), None);
        assert_eq!(queue_offset_of(&q, 1000, 50), None);
    }
}
