//! Consumers: the push consumer ([`push`]: clustering or broadcasting, concurrent or
//! orderly listeners) and the pull consumer ([`pull`]: explicit queues and offsets).
//!
//! This module holds what both use: subscriptions, queue allocation, one PULL_MESSAGE
//! round trip, and the offset requests. The pure parts (allocation, subscription parsing,
//! the in-flight bookkeeping of [`process_queue`]) are tested directly.

pub mod offset_file;
pub mod process_queue;
pub mod pull;
pub mod push;

use std::time::Duration;

use raftmq_protocol::body::SubscriptionData;
use raftmq_protocol::codes::{RequestCode, ResponseCode};
use raftmq_protocol::headers::{
    CommandHeader, GetMaxOffsetRequestHeader, OffsetResponseHeader, PullMessageRequestHeader,
    PullMessageResponseHeader, QueryConsumerOffsetRequestHeader, QueueRequestHeader,
    SearchOffsetRequestHeader, UpdateConsumerOffsetRequestHeader,
};
use raftmq_protocol::message::{java_string_hash, MessageRecord};
use raftmq_protocol::RemotingCommand;

use crate::message::ReceivedMessage;
use crate::remoting::ConnectionPool;
use crate::route::MessageQueue;
use crate::ClientError;

/// Where a group with no committed offset starts on a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConsumeFromWhere {
    /// At the queue's end: only new messages (RocketMQ's default).
    #[default]
    LastOffset,
    /// At the queue's first retained message.
    FirstOffset,
    /// At the first message stored at or after this time (ms since the epoch).
    Timestamp(i64),
}

impl ConsumeFromWhere {
    /// The name RocketMQ puts in heartbeats.
    pub fn as_str(&self) -> &'static str {
        match self {
            ConsumeFromWhere::LastOffset => "CONSUME_FROM_LAST_OFFSET",
            ConsumeFromWhere::FirstOffset => "CONSUME_FROM_FIRST_OFFSET",
            ConsumeFromWhere::Timestamp(_) => "CONSUME_FROM_TIMESTAMP",
        }
    }
}

/// Clustering (a group shares the queues) or broadcasting (every member gets all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MessageModel {
    /// Queues are divided among the group; offsets live on the brokers.
    #[default]
    Clustering,
    /// Every member consumes every queue; offsets live in a local file.
    Broadcasting,
}

impl MessageModel {
    /// The name RocketMQ puts in heartbeats.
    pub fn as_str(&self) -> &'static str {
        match self {
            MessageModel::Clustering => "CLUSTERING",
            MessageModel::Broadcasting => "BROADCASTING",
        }
    }
}

/// A subscription expression turned into what brokers filter on: `*` or `A || B`.
pub fn subscription(topic: &str, expression: &str, version: i64) -> SubscriptionData {
    let expr = expression.trim();
    let mut data = SubscriptionData {
        topic: topic.to_owned(),
        sub_string: if expr.is_empty() {
            "*".into()
        } else {
            expr.to_owned()
        },
        sub_version: version,
        ..Default::default()
    };
    if !(expr.is_empty() || expr == "*") {
        for tag in expr.split("||").map(str::trim).filter(|t| !t.is_empty()) {
            if !data.tags_set.iter().any(|t| t == tag) {
                data.tags_set.push(tag.to_owned());
                data.code_set.push(java_string_hash(tag));
            }
        }
    }
    data
}

/// True when `record` passes the subscription's tags (brokers filter by tag hash, which
/// can collide, so clients check the tag itself, as RocketMQ's do).
pub fn matches_tags(sub: &SubscriptionData, record: &MessageRecord) -> bool {
    if sub.tags_set.is_empty() {
        return true;
    }
    record
        .properties
        .get(raftmq_protocol::message::keys::TAGS)
        .is_some_and(|t| sub.tags_set.iter().any(|s| s == t))
}

/// RocketMQ's AllocateMessageQueueAveragely: `current`'s share of `all` queues among
/// `cids` (both sorted first); empty when `current` is not in `cids`.
pub fn allocate_averagely(
    current: &str,
    all: &[MessageQueue],
    cids: &[String],
) -> Vec<MessageQueue> {
    let mut all = all.to_vec();
    all.sort();
    let mut cids = cids.to_vec();
    cids.sort();
    cids.dedup();
    let Some(index) = cids.iter().position(|c| c == current) else {
        return Vec::new();
    };
    let (n, c) = (all.len(), cids.len());
    if n == 0 {
        return Vec::new();
    }
    let m = n % c;
    let avg = if n <= c {
        1
    } else if m > 0 && index < m {
        n / c + 1
    } else {
        n / c
    };
    let start = if m > 0 && index < m {
        index * avg
    } else {
        index * avg + m
    };
    let range = avg.min(n.saturating_sub(start));
    all.into_iter().skip(start).take(range).collect()
}

/// What one pull returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullStatus {
    /// Messages found.
    Found,
    /// Nothing new (long poll expired).
    NoNewMessage,
    /// Messages existed but none matched the subscription.
    NoMatchedMessage,
    /// The requested offset is outside the queue; use `next_begin_offset`.
    OffsetIllegal,
}

/// The result of one pull.
#[derive(Debug, Clone)]
pub struct PullResult {
    /// Outcome.
    pub status: PullStatus,
    /// Where the next pull starts.
    pub next_begin_offset: i64,
    /// Queue's first retained offset.
    pub min_offset: i64,
    /// Queue's end offset.
    pub max_offset: i64,
    /// Messages, tag-filtered, bodies decompressed.
    pub messages: Vec<ReceivedMessage>,
}

/// Parameters of one PULL_MESSAGE.
#[derive(Debug, Clone)]
pub struct PullRequest<'a> {
    /// Consumer group.
    pub group: &'a str,
    /// Queue to pull.
    pub queue: &'a MessageQueue,
    /// Subscription (sent in the header, as pull consumers do).
    pub sub: &'a SubscriptionData,
    /// First queue offset wanted.
    pub offset: i64,
    /// At most this many messages.
    pub max_nums: i32,
    /// Offset to commit along (clustering push consumers), if any.
    pub commit_offset: Option<i64>,
    /// Long-poll for this long when nothing is there (0: answer at once).
    pub suspend: Duration,
}

/// Time a pull waits beyond its long poll before giving up.
const PULL_TIMEOUT_SLACK: Duration = Duration::from_secs(10);

/// One PULL_MESSAGE to `addr`.
pub async fn pull_once(
    pool: &ConnectionPool,
    addr: &str,
    req: &PullRequest<'_>,
) -> Result<PullResult, ClientError> {
    let mut sys_flag = raftmq_protocol::headers::PULL_FLAG_SUBSCRIPTION;
    if req.commit_offset.is_some() {
        sys_flag |= raftmq_protocol::headers::PULL_FLAG_COMMIT_OFFSET;
    }
    if !req.suspend.is_zero() {
        sys_flag |= raftmq_protocol::headers::PULL_FLAG_SUSPEND;
    }
    let header = PullMessageRequestHeader {
        consumer_group: req.group.to_owned(),
        topic: req.queue.topic.clone(),
        queue_id: req.queue.queue_id,
        queue_offset: req.offset,
        max_msg_nums: req.max_nums,
        sys_flag,
        commit_offset: req.commit_offset.unwrap_or(0),
        suspend_timeout_millis: req.suspend.as_millis() as i64,
        subscription: Some(req.sub.sub_string.clone()),
        sub_version: req.sub.sub_version,
        expression_type: Some("TAG".into()),
        bname: Some(req.queue.broker_name.clone()),
        ..Default::default()
    };
    let cmd = RemotingCommand::request(RequestCode::PullMessage.code(), header.to_ext());
    let resp = pool
        .call(addr, cmd, req.suspend + PULL_TIMEOUT_SLACK)
        .await?;
    let status = match ResponseCode::from_code(resp.code) {
        Some(ResponseCode::Success) => PullStatus::Found,
        Some(ResponseCode::PullNotFound) => PullStatus::NoNewMessage,
        Some(ResponseCode::PullRetryImmediately) => PullStatus::NoMatchedMessage,
        Some(ResponseCode::PullOffsetMoved) => PullStatus::OffsetIllegal,
        _ => return Err(ClientError::broker(addr, resp.code, resp.remark.as_deref())),
    };
    let h: PullMessageResponseHeader = resp
        .header()
        .map_err(|e| ClientError::BadAnswer(format!("pull answer from {addr}: {e}")))?;
    let mut messages = Vec::new();
    if status == PullStatus::Found {
        let records = MessageRecord::decode_all(&resp.body)
            .map_err(|e| ClientError::BadAnswer(format!("pull body from {addr}: {e}")))?;
        for r in records {
            if matches_tags(req.sub, &r) {
                messages.push(ReceivedMessage::from_record(r, &req.queue.broker_name)?);
            }
        }
    }
    Ok(PullResult {
        status,
        next_begin_offset: h.next_begin_offset,
        min_offset: h.min_offset,
        max_offset: h.max_offset,
        messages,
    })
}

/// Request time limit for offset queries.
const OFFSET_TIMEOUT: Duration = Duration::from_secs(3);

fn offset_answer(addr: &str, resp: &RemotingCommand) -> Result<i64, ClientError> {
    if resp.code != ResponseCode::Success.code() {
        return Err(ClientError::broker(addr, resp.code, resp.remark.as_deref()));
    }
    let h: OffsetResponseHeader = resp
        .header()
        .map_err(|e| ClientError::BadAnswer(format!("offset answer from {addr}: {e}")))?;
    Ok(h.offset)
}

/// The group's committed offset of `mq`; `Ok(None)` when it has none (QUERY_NOT_FOUND).
pub async fn query_committed_offset(
    pool: &ConnectionPool,
    addr: &str,
    group: &str,
    mq: &MessageQueue,
) -> Result<Option<i64>, ClientError> {
    let h = QueryConsumerOffsetRequestHeader {
        consumer_group: group.to_owned(),
        topic: mq.topic.clone(),
        queue_id: mq.queue_id,
        set_zero_if_not_found: Some(false),
        bname: Some(mq.broker_name.clone()),
    };
    let cmd = RemotingCommand::request(RequestCode::QueryConsumerOffset.code(), h.to_ext());
    let resp = pool.call(addr, cmd, OFFSET_TIMEOUT).await?;
    if resp.code == ResponseCode::QueryNotFound.code() {
        return Ok(None);
    }
    offset_answer(addr, &resp).map(Some)
}

/// Commits `offset` (the next one to consume) for the group on `mq`; `oneway` as push
/// consumers do every 5 s, or waiting for the answer (shutdown, pull consumers).
pub async fn commit_offset(
    pool: &ConnectionPool,
    addr: &str,
    group: &str,
    mq: &MessageQueue,
    offset: i64,
    oneway: bool,
) -> Result<(), ClientError> {
    let h = UpdateConsumerOffsetRequestHeader {
        consumer_group: group.to_owned(),
        topic: mq.topic.clone(),
        queue_id: mq.queue_id,
        commit_offset: offset,
        bname: Some(mq.broker_name.clone()),
    };
    let cmd = RemotingCommand::request(RequestCode::UpdateConsumerOffset.code(), h.to_ext());
    if oneway {
        return pool.oneway(addr, cmd).await;
    }
    let resp = pool.call(addr, cmd, OFFSET_TIMEOUT).await?;
    if resp.code != ResponseCode::Success.code() {
        return Err(ClientError::broker(addr, resp.code, resp.remark.as_deref()));
    }
    Ok(())
}

/// The queue's end offset (GET_MAX_OFFSET).
pub async fn max_offset(
    pool: &ConnectionPool,
    addr: &str,
    mq: &MessageQueue,
) -> Result<i64, ClientError> {
    let h = GetMaxOffsetRequestHeader {
        topic: mq.topic.clone(),
        queue_id: mq.queue_id,
        committed: Some(true),
        bname: Some(mq.broker_name.clone()),
    };
    let cmd = RemotingCommand::request(RequestCode::GetMaxOffset.code(), h.to_ext());
    let resp = pool.call(addr, cmd, OFFSET_TIMEOUT).await?;
    offset_answer(addr, &resp)
}

/// The queue's first retained offset (GET_MIN_OFFSET).
pub async fn min_offset(
    pool: &ConnectionPool,
    addr: &str,
    mq: &MessageQueue,
) -> Result<i64, ClientError> {
    let h = QueueRequestHeader {
        topic: mq.topic.clone(),
        queue_id: mq.queue_id,
        bname: Some(mq.broker_name.clone()),
    };
    let cmd = RemotingCommand::request(RequestCode::GetMinOffset.code(), h.to_ext());
    let resp = pool.call(addr, cmd, OFFSET_TIMEOUT).await?;
    offset_answer(addr, &resp)
}

/// The first offset stored at or after `timestamp_ms` (SEARCH_OFFSET_BY_TIMESTAMP).
pub async fn search_offset(
    pool: &ConnectionPool,
    addr: &str,
    mq: &MessageQueue,
    timestamp_ms: i64,
) -> Result<i64, ClientError> {
    let h = SearchOffsetRequestHeader {
        topic: mq.topic.clone(),
        queue_id: mq.queue_id,
        timestamp: timestamp_ms,
        boundary_type: None,
        bname: Some(mq.broker_name.clone()),
    };
    let cmd = RemotingCommand::request(RequestCode::SearchOffsetByTimestamp.code(), h.to_ext());
    let resp = pool.call(addr, cmd, OFFSET_TIMEOUT).await?;
    offset_answer(addr, &resp)
}

/// Readable queues of `topic` from its route: `0..readQueueNums` of every readable group.
pub fn readable_queues(
    topic: &str,
    route: &raftmq_protocol::body::TopicRouteData,
) -> Vec<MessageQueue> {
    let mut out = Vec::new();
    for q in &route.queue_datas {
        if q.perm & raftmq_protocol::body::perm::READ == 0 {
            continue;
        }
        out.extend((0..q.read_queue_nums.max(0)).map(|queue_id| MessageQueue {
            topic: topic.to_owned(),
            broker_name: q.broker_name.clone(),
            queue_id,
        }));
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn queues(n: i32) -> Vec<MessageQueue> {
        (0..n)
            .map(|i| MessageQueue {
                topic: "T".into(),
                broker_name: "b".into(),
                queue_id: i,
            })
            .collect()
    }

    fn ids(v: &[MessageQueue]) -> Vec<i32> {
        v.iter().map(|q| q.queue_id).collect()
    }

    #[test]
    fn averaging_matches_the_spec_examples() {
        let cids: Vec<String> = ["c0", "c1", "c2"].iter().map(|s| s.to_string()).collect();
        assert_eq!(
            ids(&allocate_averagely("c0", &queues(8), &cids)),
            vec![0, 1, 2]
        );
        assert_eq!(
            ids(&allocate_averagely("c1", &queues(8), &cids)),
            vec![3, 4, 5]
        );
        assert_eq!(
            ids(&allocate_averagely("c2", &queues(8), &cids)),
            vec![6, 7]
        );
        assert_eq!(ids(&allocate_averagely("c0", &queues(2), &cids)), vec![0]);
        assert_eq!(ids(&allocate_averagely("c1", &queues(2), &cids)), vec![1]);
        assert!(allocate_averagely("c2", &queues(2), &cids).is_empty());
        assert!(allocate_averagely("stranger", &queues(8), &cids).is_empty());
        assert!(allocate_averagely("c0", &[], &cids).is_empty());
    }

    proptest::proptest! {
        #[test]
        fn every_queue_has_exactly_one_owner(n in 0i32..40, c in 1usize..12) {
            let cids: Vec<String> = (0..c).map(|i| format!("cid-{i:02}")).collect();
            let mut seen = Vec::new();
            for cid in &cids {
                seen.extend(ids(&allocate_averagely(cid, &queues(n), &cids)));
            }
            seen.sort();
            proptest::prop_assert_eq!(seen, (0..n).collect::<Vec<_>>());
        }
    }

    #[test]
    fn subscriptions_parse_tags_and_filter() {
        let all = subscription("T", "*", 1);
        assert!(all.tags_set.is_empty() && all.sub_string == "*");
        let s = subscription("T", " TagA || TagB ||TagA", 5);
        assert_eq!(s.tags_set, vec!["TagA", "TagB"]);
        assert_eq!(s.code_set.len(), 2);
        assert_eq!(s.sub_version, 5);
    }
}
