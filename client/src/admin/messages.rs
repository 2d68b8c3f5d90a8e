//! Messages: by offset message id (VIEW_MESSAGE_BY_ID), by key or UNIQ_KEY
//! (QUERY_MESSAGE on every group), by queue offset and in ranges (PULL_MESSAGE without
//! committing anything), and single sends (SEND_MESSAGE_V2 with a fresh UNIQ_KEY).

use std::time::Duration;

use bytes::Bytes;
use raftmq_protocol::body::TopicRouteData;
use raftmq_protocol::codes::{RequestCode, ResponseCode};
use raftmq_protocol::headers::{
    PullMessageRequestHeader, PullMessageResponseHeader, QueryMessageRequestHeader,
    SendMessageRequestHeaderV2, SendMessageResponseHeader, ViewMessageRequestHeader,
    PULL_FLAG_SUBSCRIPTION,
};
use raftmq_protocol::message::{encode_properties, keys, MessageRecord};
use raftmq_protocol::msgid::decode_offset_msg_id;
use raftmq_protocol::{RemotingCommand, StrMap};

use super::offsets::route_queues;
use super::{
    decode_header, now_ms, read_addr, success, AdminClient, AUTO_CREATE_TOPIC,
    TOOLS_CONSUMER_GROUP, TOOLS_PRODUCER_GROUP,
};
use crate::route::{FaultTracker, MessageQueue, TopicPublishInfo};
use crate::ClientError;

/// Attempts of a send whose queue is not fixed (RocketMQ: 1 + 2 retries).
pub const SEND_ATTEMPTS: usize = 3;
/// Pause before a retried send: long enough for a route to follow an election.
const SEND_RETRY_PAUSE: Duration = Duration::from_millis(500);
/// Queue count asked for when the broker auto-creates the topic.
const DEFAULT_TOPIC_QUEUE_NUMS: i32 = 4;

/// What a pull found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullStatus {
    /// Messages were returned.
    Found,
    /// Nothing at or after the offset yet (PULL_NOT_FOUND).
    NoNewMessage,
    /// Messages exist but none matched, or retry at once (PULL_RETRY_IMMEDIATELY).
    NoMatchedMessage,
    /// The offset is outside the queue (PULL_OFFSET_MOVED).
    OffsetIllegal,
}

impl PullStatus {
    fn response_code(self) -> ResponseCode {
        match self {
            PullStatus::Found => ResponseCode::Success,
            PullStatus::NoNewMessage => ResponseCode::PullNotFound,
            PullStatus::NoMatchedMessage => ResponseCode::PullRetryImmediately,
            PullStatus::OffsetIllegal => ResponseCode::PullOffsetMoved,
        }
    }
}

/// The answer to one pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullOutcome {
    /// What was found.
    pub status: PullStatus,
    /// Where the next pull should start.
    pub next_begin_offset: i64,
    /// The queue's first retained offset.
    pub min_offset: i64,
    /// The queue's next offset to be written.
    pub max_offset: i64,
    /// The messages (bodies as stored: compressed when sysFlag bit 0 is set).
    pub messages: Vec<MessageRecord>,
}

/// One message to send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendRequest {
    /// Destination topic.
    pub topic: String,
    /// Body.
    pub body: Bytes,
    /// Tag (`TAGS`).
    pub tags: Option<String>,
    /// Keys (`KEYS`, space-separated).
    pub keys: Option<String>,
    /// Only to this broker group.
    pub broker_name: Option<String>,
    /// Only to this queue (needs `broker_name`).
    pub queue_id: Option<i32>,
}

/// Where a send was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendOutcome {
    /// Broker group.
    pub broker_name: String,
    /// Queue id.
    pub queue_id: i32,
    /// Queue offset of the message.
    pub queue_offset: i64,
    /// The message's UNIQ_KEY (RocketMQ's client `msgId`).
    pub msg_id: String,
    /// The broker's offset message id (store host + physical offset).
    pub offset_msg_id: String,
    /// The master that stored it.
    pub addr: String,
}

impl AdminClient {
    /// The address to read `queue` from: its group's master, else any node of the group.
    pub async fn queue_addr(&self, queue: &MessageQueue) -> Result<String, ClientError> {
        let route = self.topic_route(&queue.topic).await?;
        let group = route
            .broker_datas
            .iter()
            .find(|b| b.broker_name == queue.broker_name)
            .ok_or_else(|| {
                ClientError::InvalidArgument(format!(
                    "topic {} has no queues on broker group {}",
                    queue.topic, queue.broker_name
                ))
            })?;
        read_addr(group).map(str::to_owned).ok_or_else(|| {
            ClientError::InvalidArgument(format!("broker group {} has no node", queue.broker_name))
        })
    }

    /// PULL_MESSAGE of at most `max` messages of `queue` from `offset` (subscription `*`,
    /// no long polling, no offset commit).
    pub async fn pull(
        &self,
        addr: &str,
        queue: &MessageQueue,
        offset: i64,
        max: i32,
    ) -> Result<PullOutcome, ClientError> {
        let header = PullMessageRequestHeader {
            consumer_group: TOOLS_CONSUMER_GROUP.to_owned(),
            topic: queue.topic.clone(),
            queue_id: queue.queue_id,
            queue_offset: offset,
            max_msg_nums: max,
            sys_flag: PULL_FLAG_SUBSCRIPTION,
            commit_offset: 0,
            suspend_timeout_millis: 0,
            subscription: Some("*".to_owned()),
            sub_version: 0,
            expression_type: Some("TAG".to_owned()),
            bname: Some(queue.broker_name.clone()),
            ..Default::default()
        };
        let req = RemotingCommand::request_with(RequestCode::PullMessage.code(), &header);
        let resp = self.call_with(addr, req, self.timeout).await?;
        let status = match ResponseCode::from_code(resp.code) {
            Some(ResponseCode::Success) => PullStatus::Found,
            Some(ResponseCode::PullNotFound) => PullStatus::NoNewMessage,
            Some(ResponseCode::PullRetryImmediately) => PullStatus::NoMatchedMessage,
            Some(ResponseCode::PullOffsetMoved) => PullStatus::OffsetIllegal,
            _ => return Err(ClientError::broker(addr, resp.code, resp.remark.as_deref())),
        };
        let h: PullMessageResponseHeader = decode_header(addr, &resp)?;
        let messages = if status == PullStatus::Found {
            MessageRecord::decode_all(&resp.body)
                .map_err(|e| ClientError::BadAnswer(format!("{addr}: pulled messages: {e}")))?
        } else {
            Vec::new()
        };
        Ok(PullOutcome {
            status,
            next_begin_offset: h.next_begin_offset,
            min_offset: h.min_offset,
            max_offset: h.max_offset,
            messages,
        })
    }

    /// The message at `offset` of `queue`; a broker error carrying the pull's code when the
    /// queue has none there.
    pub async fn message_at(
        &self,
        queue: &MessageQueue,
        offset: i64,
    ) -> Result<MessageRecord, ClientError> {
        let addr = self.queue_addr(queue).await?;
        let pulled = self.pull(&addr, queue, offset, 1).await?;
        if let Some(m) = pulled
            .messages
            .into_iter()
            .find(|m| m.queue_offset == offset)
        {
            return Ok(m);
        }
        Err(ClientError::broker(
            addr,
            pulled.status.response_code().code(),
            Some(&format!(
                "no message at offset {offset} of {}/{}/{} (the queue holds {}..{})",
                queue.topic,
                queue.broker_name,
                queue.queue_id,
                pulled.min_offset,
                pulled.max_offset
            )),
        ))
    }

    /// VIEW_MESSAGE_BY_ID: the message of an offset message id, from the node that stored
    /// it or, failing that, from another node of its group (replicas hold every record at
    /// the same physical offset). Returns the answering address and the message.
    pub async fn view_message(
        &self,
        offset_msg_id: &str,
    ) -> Result<(String, MessageRecord), ClientError> {
        let (store_host, offset) = decode_offset_msg_id(offset_msg_id).map_err(|e| {
            ClientError::InvalidArgument(format!(
                "{offset_msg_id} is not an offset message id: {e}"
            ))
        })?;
        let store_host = store_host.to_string();
        // Only nodes the NameServers know are asked: a UNIQ_KEY also decodes as an offset
        // id, into an address that is no broker.
        let info = self.cluster_info().await?;
        let group = info
            .broker_addr_table
            .values()
            .find(|b| b.broker_addrs.values().any(|a| *a == store_host))
            .ok_or_else(|| {
                ClientError::InvalidArgument(format!(
                    "{offset_msg_id} is not an offset message id of this cluster \
                     (no broker at {store_host})"
                ))
            })?;
        let mut addrs = vec![store_host.clone()];
        addrs.extend(
            group
                .broker_addrs
                .values()
                .filter(|a| **a != store_host)
                .cloned(),
        );
        let header = ViewMessageRequestHeader {
            offset,
            topic: None,
        };
        let mut first_error = None;
        for addr in addrs {
            let req = RemotingCommand::request_with(RequestCode::ViewMessageById.code(), &header);
            let found = match self.call_ok(&addr, req).await {
                Ok(resp) => MessageRecord::decode(&resp.body)
                    .map(|(m, _)| m)
                    .map_err(|e| ClientError::BadAnswer(format!("{addr}: viewed message: {e}"))),
                Err(e) => Err(e),
            };
            match found {
                Ok(m) => return Ok((addr, m)),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or(ClientError::NoRoute(offset_msg_id.to_owned())))
    }

    /// QUERY_MESSAGE on every broker group of `topic`: messages whose KEYS hold `key` (or
    /// whose UNIQ_KEY is `key`, with `unique_key`), stored within `[begin_ms, end_ms]`,
    /// newest first, at most `max`. Empty when no group has one; an error only when no
    /// group answered and some failed.
    pub async fn query_messages(
        &self,
        topic: &str,
        key: &str,
        max: i32,
        begin_ms: i64,
        end_ms: i64,
        unique_key: bool,
    ) -> Result<Vec<MessageRecord>, ClientError> {
        let route = self.topic_route(topic).await?;
        let header = QueryMessageRequestHeader {
            topic: topic.to_owned(),
            key: key.to_owned(),
            max_num: max,
            begin_timestamp: begin_ms,
            end_timestamp: end_ms,
            unique_key_query: unique_key.then_some(true),
        };
        let mut found = Vec::new();
        let mut failure = None;
        let mut answered = false;
        for (addr, _) in route_queues(topic, &route, false) {
            let req = RemotingCommand::request_with(RequestCode::QueryMessage.code(), &header);
            let resp = match self.call_with(&addr, req, self.timeout).await {
                Ok(r) => r,
                Err(e) => {
                    failure = Some(e);
                    continue;
                }
            };
            if resp.code == ResponseCode::QueryNotFound.code() {
                answered = true;
                continue;
            }
            match success(&addr, resp) {
                Ok(resp) => {
                    answered = true;
                    let records = MessageRecord::decode_all(&resp.body).map_err(|e| {
                        ClientError::BadAnswer(format!("{addr}: queried messages: {e}"))
                    })?;
                    found.extend(records);
                }
                Err(e) => failure = Some(e),
            }
        }
        match failure {
            Some(e) if !answered => return Err(e),
            _ => {}
        }
        found.sort_by_key(|m| std::cmp::Reverse(m.store_timestamp));
        found.truncate(usize::try_from(max).unwrap_or(0));
        Ok(found)
    }

    /// The route sends of `topic` follow: its own, else (the NameServers do not know it
    /// yet) the auto-creation template's, on which brokers create the topic.
    async fn send_route(&self, topic: &str) -> Result<TopicRouteData, ClientError> {
        match self.topic_route(topic).await {
            Err(e @ ClientError::Broker { code, .. })
                if code == ResponseCode::TopicNotExist.code() =>
            {
                self.topic_route(AUTO_CREATE_TOPIC).await.map_err(|_| e)
            }
            other => other,
        }
    }

    /// Sends one message (SEND_MESSAGE_V2) to the given queue, or to one chosen round robin
    /// among the writable queues of groups with a master; a retryable failure is retried
    /// (same UNIQ_KEY, so brokers store it once) on another group after a route refresh.
    pub async fn send_message(&self, msg: &SendRequest) -> Result<SendOutcome, ClientError> {
        crate::message::validate_topic(&msg.topic)?;
        if msg.queue_id.is_some() && msg.broker_name.is_none() {
            return Err(ClientError::InvalidArgument(
                "a queue id needs a broker name".to_owned(),
            ));
        }
        let msg_id = self.uniq.generate(now_ms());
        let mut props = StrMap::new();
        if let Some(t) = msg.tags.as_deref().filter(|t| !t.is_empty()) {
            props.insert(keys::TAGS, t);
        }
        if let Some(k) = msg.keys.as_deref().filter(|k| !k.is_empty()) {
            props.insert(keys::KEYS, k);
        }
        props.insert(keys::UNIQ_KEY, msg_id.clone());
        props.insert(keys::WAIT, "true");
        let properties = encode_properties(&props);

        let fixed = msg.queue_id.is_some();
        let attempts = if fixed { 1 } else { SEND_ATTEMPTS };
        let mut faults = FaultTracker::default();
        let mut avoid: Option<String> = None;
        let mut last = ClientError::NoRoute(msg.topic.clone());
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(SEND_RETRY_PAUSE).await;
            }
            let route = self.send_route(&msg.topic).await?;
            let (queue, addr) = match self.pick_queue(msg, &route, avoid.as_deref(), &faults) {
                Ok(p) => p,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            let header = SendMessageRequestHeaderV2 {
                a: TOOLS_PRODUCER_GROUP.to_owned(),
                b: msg.topic.clone(),
                c: AUTO_CREATE_TOPIC.to_owned(),
                d: DEFAULT_TOPIC_QUEUE_NUMS,
                e: queue.queue_id,
                f: 0,
                g: now_ms(),
                h: 0,
                i: Some(properties.clone()),
                j: Some(0),
                k: Some(false),
                l: None,
                m: Some(false),
                n: Some(queue.broker_name.clone()),
            };
            let req = RemotingCommand::request_with(RequestCode::SendMessageV2.code(), &header)
                .with_body(msg.body.clone());
            let result = match self.call_ok(&addr, req).await {
                Ok(resp) => decode_header::<SendMessageResponseHeader>(&addr, &resp),
                Err(e) => Err(e),
            };
            match result {
                Ok(h) => {
                    return Ok(SendOutcome {
                        broker_name: queue.broker_name,
                        queue_id: h.queue_id,
                        queue_offset: h.queue_offset,
                        msg_id,
                        offset_msg_id: h.msg_id,
                        addr,
                    })
                }
                Err(e) if e.is_retryable() => {
                    tracing::info!(%addr, error = %e, attempt, "send failed; retrying elsewhere");
                    faults.record(&addr, 0, true, now_ms());
                    avoid = Some(queue.broker_name);
                    last = e;
                }
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// The queue and master address for one send attempt.
    fn pick_queue(
        &self,
        msg: &SendRequest,
        route: &TopicRouteData,
        avoid: Option<&str>,
        faults: &FaultTracker,
    ) -> Result<(MessageQueue, String), ClientError> {
        let info = TopicPublishInfo::from_route(&msg.topic, route);
        let queue = match (&msg.broker_name, msg.queue_id) {
            (Some(b), Some(q)) => MessageQueue {
                topic: msg.topic.clone(),
                broker_name: b.clone(),
                queue_id: q,
            },
            (Some(b), None) => {
                let mine: Vec<&MessageQueue> =
                    info.queues.iter().filter(|q| q.broker_name == *b).collect();
                if mine.is_empty() {
                    return Err(ClientError::NoRoute(format!(
                        "{} on broker group {b}",
                        msg.topic
                    )));
                }
                let k = self
                    .send_start
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                mine[k % mine.len()].clone()
            }
            _ => {
                if !info.is_ok() {
                    return Err(ClientError::NoRoute(msg.topic.clone()));
                }
                // Start the round robin at this client's own random point.
                let skip = self
                    .send_start
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    % info.queues.len();
                for _ in 0..skip {
                    info.select(None, faults, now_ms());
                }
                info.select(avoid, faults, now_ms())
                    .cloned()
                    .ok_or_else(|| ClientError::NoRoute(msg.topic.clone()))?
            }
        };
        let addr = info
            .masters
            .get(&queue.broker_name)
            .cloned()
            .ok_or_else(|| {
                ClientError::NoRoute(format!(
                    "{} (broker group {} has no master right now)",
                    msg.topic, queue.broker_name
                ))
            })?;
        Ok((queue, addr))
    }

    /// Up to `count` messages of `queue` from `offset` (clamped to the queue's range) up to
    /// `end_offset` (exclusive; the max offset when `None`), pulled in batches.
    pub async fn read_queue(
        &self,
        queue: &MessageQueue,
        offset: i64,
        end_offset: Option<i64>,
        count: usize,
    ) -> Result<Vec<MessageRecord>, ClientError> {
        let addr = self.queue_addr(queue).await?;
        let min = self.min_offset(&addr, queue).await?;
        let max = self.max_offset(&addr, queue).await?;
        let end = end_offset.map_or(max, |e| e.min(max));
        let mut next = offset.max(min);
        let mut out = Vec::new();
        while next < end && out.len() < count {
            let want = (end - next).min(32).min((count - out.len()) as i64) as i32;
            let pulled = self.pull(&addr, queue, next, want).await?;
            match pulled.status {
                PullStatus::Found => {
                    for m in pulled.messages {
                        if m.queue_offset < end && out.len() < count {
                            out.push(m);
                        }
                    }
                }
                PullStatus::NoMatchedMessage if pulled.next_begin_offset > next => {}
                _ => break,
            }
            if pulled.next_begin_offset <= next {
                break;
            }
            next = pulled.next_begin_offset;
        }
        Ok(out)
    }

    /// Every readable queue of `topic`, in (broker, queue id) order.
    pub async fn topic_queues(&self, topic: &str) -> Result<Vec<MessageQueue>, ClientError> {
        let route = self.topic_route(topic).await?;
        Ok(route_queues(topic, &route, true)
            .into_iter()
            .flat_map(|(_, q)| q)
            .collect())
    }
}
