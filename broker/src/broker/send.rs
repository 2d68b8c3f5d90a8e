//! SEND_MESSAGE (10), SEND_MESSAGE_V2 (310) and SEND_BATCH_MESSAGE (320) (spec §2.4.1,
//! §2.4.3, Appendix B).
//!
//! Not in this slice: transactional half messages (`TRAN_MSG`), delay levels (`DELAY`),
//! `%RETRY%` → `%DLQ%` routing and MULTI_TAG filter types; such messages are stored in
//! their own topic as sent.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use raftmq_protocol::body::topic::{perm, TopicConfig};
use raftmq_protocol::codes::{RequestCode, ResponseCode};
use raftmq_protocol::headers::{
    SendMessageRequestHeader, SendMessageRequestHeaderV2, SendMessageResponseHeader,
};
use raftmq_protocol::message::{
    decode_batch, decode_properties, keys, MessageRecord, PROPERTIES_BYTES_MAX,
};
use raftmq_protocol::msgid::push_offset_msg_id;
use raftmq_protocol::{RemotingCommand, StrMap};
use raftmq_raft::status::Role;

use super::{bad_header, now_ms, Broker};
use crate::state::topics::system;
use crate::state::{append_header, Command, Reply, APPEND_HEADER_BYTES};

/// Longest ordinary topic name; `%RETRY%` / `%DLQ%` names may have [`RETRY_TOPIC_CHARS_MAX`].
pub const TOPIC_CHARS_MAX: usize = 127;
/// Longest `%RETRY%…` / `%DLQ%…` topic name.
pub const RETRY_TOPIC_CHARS_MAX: usize = 255;
/// Region sent in every send response (and stored as a property).
pub const DEFAULT_REGION: &str = "DefaultRegion";

/// Prefix of a consumer group's retry topic, `%RETRY%<group>`.
pub(super) const RETRY_PREFIX: &str = "%RETRY%";
const DLQ_PREFIX: &str = "%DLQ%";

/// Topics producers may not send to (→ NO_PERMISSION).
const RESERVED_TOPICS: &[&str] = &[
    system::SCHEDULE_TOPIC,
    system::TRANS_HALF_TOPIC,
    system::TRANS_OP_HALF_TOPIC,
    system::TRANS_CHECK_MAX_TIME_TOPIC,
    system::SELF_TEST_TOPIC,
    system::OFFSET_MOVED_EVENT,
];

type Resp = Result<RemotingCommand, RemotingCommand>;

fn err(req: &RemotingCommand, code: ResponseCode, remark: impl Into<String>) -> RemotingCommand {
    RemotingCommand::error_to(req, code, remark)
}

/// Whether a send to `topic` asks apply for the idempotency window. Never for `%RETRY%` /
/// `%DLQ%` topics: a client whose CONSUMER_SEND_MSG_BACK fails re-sends the consumed message
/// there itself, keeping its UNIQ_KEY, once per failed attempt; each attempt must be stored
/// (deduplicated, the second "consume later" of a message would vanish behind SEND_OK).
fn dedup_for(enabled: bool, topic: &str) -> bool {
    enabled && !topic.starts_with(RETRY_PREFIX) && !topic.starts_with(DLQ_PREFIX)
}

/// Step 2 of §2.4.1: the topic name's characters and length, and the reserved names.
pub fn check_topic_name(topic: &str) -> Result<(), (ResponseCode, String)> {
    let max = if topic.starts_with(RETRY_PREFIX) || topic.starts_with(DLQ_PREFIX) {
        RETRY_TOPIC_CHARS_MAX
    } else {
        TOPIC_CHARS_MAX
    };
    let valid_chars = topic
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'%' | b'|' | b'_' | b'-'));
    if topic.is_empty() || !valid_chars || topic.len() > max {
        return Err((
            ResponseCode::InvalidParameter,
            format!("the specified topic [{topic}] is blank, contains illegal characters or is longer than {max}"),
        ));
    }
    if RESERVED_TOPICS.contains(&topic) {
        return Err((
            ResponseCode::NoPermission,
            format!("sending message to topic[{topic}] is forbidden"),
        ));
    }
    Ok(())
}

impl Broker {
    /// Handles the three send codes; every failure is an error response.
    pub(super) async fn send(
        self: &Arc<Self>,
        req: &RemotingCommand,
        peer: SocketAddr,
    ) -> RemotingCommand {
        match self.try_send(req, peer).await {
            Ok(r) | Err(r) => r,
        }
    }

    async fn try_send(self: &Arc<Self>, req: &RemotingCommand, peer: SocketAddr) -> Resp {
        let batch_code = req.code == RequestCode::SendBatchMessage.code();
        let h: SendMessageRequestHeader = if req.code == RequestCode::SendMessage.code() {
            req.header().map_err(|e| bad_header(req, e))?
        } else {
            req.header::<SendMessageRequestHeaderV2>()
                .map_err(|e| bad_header(req, e))?
                .into()
        };
        let batch = batch_code || h.batch == Some(true);
        let status = self.status();
        if status.role != Role::Leader {
            return Err(self.not_leader(req, status.leader));
        }
        if self.disk.is_full() {
            return Err(err(
                req,
                ResponseCode::ServiceNotAvailable,
                "service not available now: the broker's disk is full; \
                 sends resume by themselves when space returns",
            ));
        }
        check_topic_name(&h.topic).map_err(|(c, r)| err(req, c, r))?;
        if batch && (h.topic.len() > TOPIC_CHARS_MAX || h.topic.starts_with(RETRY_PREFIX)) {
            return Err(err(
                req,
                ResponseCode::MessageIllegal,
                "batch to a retry or over-long topic",
            ));
        }
        let max_body = self.config.max_message_size_bytes as usize;
        if req.body.len() > max_body {
            return Err(err(
                req,
                ResponseCode::MessageIllegal,
                format!(
                    "message body size {} exceeds the limit {max_body}",
                    req.body.len()
                ),
            ));
        }
        let props_len = h.properties.as_deref().map_or(0, str::len);
        if props_len > PROPERTIES_BYTES_MAX {
            return Err(err(
                req,
                ResponseCode::MessageIllegal,
                format!("message properties length {props_len} exceeds {PROPERTIES_BYTES_MAX}"),
            ));
        }
        let topic = self.topic_for_send(req, &h).await?;
        if topic.perm & perm::WRITE == 0 {
            return Err(err(
                req,
                ResponseCode::NoPermission,
                format!("the topic[{}] sending message is forbidden", h.topic),
            ));
        }
        let queues = topic.read_queue_nums.max(topic.write_queue_nums);
        let queue_id = if h.queue_id < 0 {
            self.pick_queue(topic.write_queue_nums)
        } else if h.queue_id >= queues {
            return Err(err(
                req,
                ResponseCode::InvalidParameter,
                format!(
                    "request queueId[{}] is illegal, topic {} has {queues} queues",
                    h.queue_id, h.topic
                ),
            ));
        } else {
            h.queue_id
        };

        let now = now_ms();
        let header_props = decode_properties(h.properties.as_deref().unwrap_or(""));
        let dedup = dedup_for(self.config.duplicate_detection_enable, &h.topic);
        let template = self.record_template(h, queue_id, peer, now);
        let (records, uniq) = if batch {
            self.batch_records(req, template, &header_props)?
        } else {
            let rec = self.single_record(template, header_props, req.body.clone());
            let uniq = rec.properties.get(keys::UNIQ_KEY).map(str::to_owned);
            (vec![rec], uniq)
        };
        let len = APPEND_HEADER_BYTES
            + records
                .iter()
                .map(MessageRecord::encoded_len)
                .sum::<usize>();
        let mut command = Vec::with_capacity(len);
        append_header(&mut command, dedup, now, records.len() as u32);
        for r in &records {
            r.encode(&mut command)
                .map_err(|e| err(req, ResponseCode::MessageIllegal, e.to_string()))?;
        }
        let reply = self
            .node
            .propose(Bytes::from(command))
            .await
            .map_err(|e| self.propose_failed(req, e))?;
        let results = match Reply::decode(&reply) {
            Some(Reply::Appended(r)) if r.len() == records.len() && !r.is_empty() => r,
            Some(Reply::Rejected(reason)) => {
                return Err(err(req, ResponseCode::MessageIllegal, reason))
            }
            _ => {
                return Err(err(
                    req,
                    ResponseCode::SystemError,
                    "unexpected apply reply to an append",
                ))
            }
        };
        let stored = results.iter().filter(|r| !r.duplicate).count();
        self.stats.add_put(stored as u64);
        let store_host = self.client_addr();
        let mut msg_id = String::with_capacity(results.len() * 33);
        for (i, r) in results.iter().enumerate() {
            if i > 0 {
                msg_id.push(',');
            }
            push_offset_msg_id(&mut msg_id, store_host, r.physical_offset);
        }
        let header = SendMessageResponseHeader {
            msg_id,
            queue_id: results[0].queue_id,
            queue_offset: results[0].queue_offset,
            transaction_id: uniq,
            batch_uniq_id: None,
            msg_region: DEFAULT_REGION.to_owned(),
            trace_on: "true".to_owned(),
        };
        Ok(RemotingCommand::response_to(req, ResponseCode::Success).with_header(&header))
    }

    /// The topic's config, auto-creating it from the template when allowed (step 3).
    async fn topic_for_send(&self, req: &RemotingCommand, h: &SendMessageRequestHeader) -> Resp2 {
        let (existing, template) = self
            .node
            .state_machine()
            .with(|sm| match sm.topic(&h.topic) {
                Some(t) => (Some(SendTopic::of(t)), None),
                None => (None, sm.topic(&h.default_topic).cloned()),
            });
        if let Some(t) = existing {
            return Ok(t);
        }
        let not_exist = || {
            err(
                req,
                ResponseCode::TopicNotExist,
                format!("topic[{}] not exist, apply first please!", h.topic),
            )
        };
        if !self.config.auto_create_topic_enable {
            return Err(not_exist());
        }
        let config = if h.topic.starts_with(RETRY_PREFIX) {
            TopicConfig::new(h.topic.clone(), 1)
        } else {
            let template = template
                .filter(|t| t.perm & perm::INHERIT != 0)
                .ok_or_else(not_exist)?;
            let wanted = if h.default_topic_queue_nums > 0 {
                h.default_topic_queue_nums
            } else {
                i32::from(self.config.default_topic_queue_nums)
            };
            let mut c = TopicConfig::new(
                h.topic.clone(),
                wanted.min(template.write_queue_nums).max(1),
            );
            c.perm = template.perm & !perm::INHERIT;
            c
        };
        let command = Command::UpsertTopic {
            config: config.clone(),
            timestamp_ms: now_ms(),
        };
        match self.propose_command(req, &command).await? {
            Reply::Done => {
                tracing::info!(topic = %h.topic, queues = config.write_queue_nums, "auto-created topic");
                self.poke_registrar();
                Ok(SendTopic::of(&config))
            }
            other => Err(err(
                req,
                ResponseCode::SystemError,
                format!("topic creation: {other:?}"),
            )),
        }
    }

    fn record_template(
        &self,
        h: SendMessageRequestHeader,
        queue_id: i32,
        peer: SocketAddr,
        now: i64,
    ) -> MessageRecord {
        MessageRecord {
            queue_id,
            flag: h.flag,
            queue_offset: 0,
            physical_offset: 0,
            sys_flag: h.sys_flag,
            born_timestamp: h.born_timestamp,
            born_host: peer,
            store_timestamp: now,
            store_host: self.client_addr(),
            reconsume_times: h.reconsume_times.unwrap_or(0),
            prepared_transaction_offset: 0,
            body: Bytes::new(),
            topic: h.topic,
            properties: StrMap::new(),
        }
    }

    /// Step 5: UNIQ_KEY if missing, CLUSTER, MSG_REGION, TRACE_ON; POP_CK removed.
    fn single_record(
        &self,
        mut rec: MessageRecord,
        mut props: StrMap,
        body: Bytes,
    ) -> MessageRecord {
        if !props.contains_key(keys::UNIQ_KEY) {
            props.insert(keys::UNIQ_KEY, self.uniq.generate(now_ms()));
        }
        props.insert(keys::CLUSTER, self.config.broker_cluster_name.as_str());
        if !props.contains_key(keys::MSG_REGION) {
            props.insert(keys::MSG_REGION, DEFAULT_REGION);
        }
        if !props.contains_key(keys::TRACE_ON) {
            props.insert(keys::TRACE_ON, "true");
        }
        props.remove(keys::POP_CK);
        rec.properties = props;
        rec.body = body;
        rec
    }

    /// §2.4.3: one record per item with the item's flag, body and properties (a UNIQ_KEY
    /// added when missing); transactionId = the batch-level UNIQ_KEY or the first item's.
    fn batch_records(
        &self,
        req: &RemotingCommand,
        template: MessageRecord,
        header_props: &StrMap,
    ) -> Result<(Vec<MessageRecord>, Option<String>), RemotingCommand> {
        let items = decode_batch(&req.body).map_err(|e| {
            err(
                req,
                ResponseCode::MessageIllegal,
                format!("bad batch body: {e}"),
            )
        })?;
        if items.is_empty() {
            return Err(err(req, ResponseCode::MessageIllegal, "empty batch"));
        }
        let mut records = Vec::with_capacity(items.len());
        for item in items {
            let mut props = item.properties;
            if !props.contains_key(keys::UNIQ_KEY) {
                props.insert(keys::UNIQ_KEY, self.uniq.generate(now_ms()));
            }
            let mut rec = template.clone();
            rec.flag = item.flag;
            rec.body = item.body;
            rec.properties = props;
            records.push(rec);
        }
        let uniq = header_props
            .get(keys::UNIQ_KEY)
            .or_else(|| records[0].properties.get(keys::UNIQ_KEY))
            .map(str::to_owned);
        Ok((records, uniq))
    }
}

type Resp2 = Result<SendTopic, RemotingCommand>;

/// What a send needs of its topic's config (copied out instead of cloning the config).
#[derive(Debug, Clone, Copy)]
struct SendTopic {
    perm: i32,
    read_queue_nums: i32,
    write_queue_nums: i32,
}

impl SendTopic {
    fn of(t: &TopicConfig) -> Self {
        SendTopic {
            perm: t.perm,
            read_queue_nums: t.read_queue_nums,
            write_queue_nums: t.write_queue_nums,
        }
    }
}
