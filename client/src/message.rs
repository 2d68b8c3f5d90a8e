//! Messages as users build them ([`Message`]) and as consumers receive them
//! ([`ReceivedMessage`]), and the result of a send ([`SendResult`]).

use bytes::Bytes;
use raftmq_protocol::message::keys;
use raftmq_protocol::message::{decompress_body, MessageRecord};
use raftmq_protocol::StrMap;

use crate::route::MessageQueue;
use crate::ClientError;

/// Longest topic name a client accepts (RocketMQ: 127 characters).
pub const TOPIC_CHARS_MAX: usize = 127;
/// Largest body a producer sends (RocketMQ's client-side check: 4 MiB).
pub const BODY_BYTES_MAX: usize = 4 * 1024 * 1024;

/// A message to send: topic, body, optional tag and keys, user properties, delay level.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// Destination topic.
    pub topic: String,
    /// Payload.
    pub body: Bytes,
    /// User flag, stored as is.
    pub flag: i32,
    /// Properties (tags, keys, delay and user properties all live here, as in RocketMQ).
    pub properties: StrMap,
}

impl Message {
    /// A message for `topic` carrying `body`.
    pub fn new(topic: impl Into<String>, body: impl Into<Bytes>) -> Self {
        Message {
            topic: topic.into(),
            body: body.into(),
            ..Default::default()
        }
    }

    /// Sets the tag consumers filter on.
    pub fn with_tags(mut self, tags: impl Into<String>) -> Self {
        let tags: String = tags.into();
        self.properties.insert(keys::TAGS, tags);
        self
    }

    /// Sets the keys (indexed by the broker for QUERY_MESSAGE), joined by spaces.
    pub fn with_keys<I, S>(mut self, keys_list: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let joined: Vec<String> = keys_list
            .into_iter()
            .map(|k| k.as_ref().to_owned())
            .collect();
        self.properties.insert(keys::KEYS, joined.join(" "));
        self
    }

    /// Sets a user property.
    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let (key, value): (String, String) = (key.into(), value.into());
        self.properties.insert(key, value);
        self
    }

    /// Asks for delayed delivery at RocketMQ delay level `level` (1 = 1 s, 2 = 5 s, ...).
    pub fn with_delay_level(mut self, level: i32) -> Self {
        self.properties.insert(keys::DELAY, level.to_string());
        self
    }

    /// The tag, if any.
    pub fn tags(&self) -> Option<&str> {
        self.properties.get(keys::TAGS)
    }

    /// Checks what RocketMQ's client checks before sending: topic name and body size.
    pub fn validate(&self, body_bytes_max: usize) -> Result<(), ClientError> {
        validate_topic(&self.topic)?;
        if self.body.is_empty() {
            return Err(ClientError::InvalidArgument(
                "the message body is empty".into(),
            ));
        }
        if self.body.len() > body_bytes_max {
            return Err(ClientError::InvalidArgument(format!(
                "the message body is {} bytes, more than the limit of {body_bytes_max}",
                self.body.len()
            )));
        }
        Ok(())
    }
}

/// Checks a topic name as RocketMQ does: 1 to 127 characters of `[%|a-zA-Z0-9_-]`.
pub fn validate_topic(topic: &str) -> Result<(), ClientError> {
    if topic.is_empty() {
        return Err(ClientError::InvalidArgument(
            "the topic name is empty".into(),
        ));
    }
    if topic.chars().count() > TOPIC_CHARS_MAX {
        return Err(ClientError::InvalidArgument(format!(
            "the topic name is longer than {TOPIC_CHARS_MAX} characters"
        )));
    }
    if let Some(c) = topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '%' | '|' | '_' | '-')))
    {
        return Err(ClientError::InvalidArgument(format!(
            "the topic name {topic:?} contains {c:?}; allowed are letters, digits, %, |, _ and -"
        )));
    }
    Ok(())
}

/// A message as a consumer receives it: the stored record with its body decompressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The record as stored (topic restored from RETRY_TOPIC for retried messages).
    pub record: MessageRecord,
    /// Broker group the message was pulled from.
    pub broker_name: String,
}

impl ReceivedMessage {
    /// Turns a pulled record into a received message: decompresses the body and, for a
    /// message redelivered through `%RETRY%<group>`, restores the original topic.
    pub fn from_record(mut record: MessageRecord, broker_name: &str) -> Result<Self, ClientError> {
        if record.sys_flag & raftmq_protocol::message::sysflag::COMPRESSED != 0 {
            let body = decompress_body(&record.body, record.sys_flag, BODY_BYTES_MAX * 4).map_err(
                |e| {
                    ClientError::BadAnswer(format!(
                        "message at queue offset {} does not decompress: {e}",
                        record.queue_offset
                    ))
                },
            )?;
            record.body = Bytes::from(body);
            record.sys_flag &= !raftmq_protocol::message::sysflag::COMPRESSED;
        }
        if let Some(t) = record.properties.get(keys::RETRY_TOPIC) {
            if record.topic.starts_with("%RETRY%") {
                record.topic = t.to_owned();
            }
        }
        Ok(ReceivedMessage {
            record,
            broker_name: broker_name.to_owned(),
        })
    }

    /// The producer's message id (UNIQ_KEY), else the broker's offset id.
    pub fn msg_id(&self) -> String {
        self.record
            .properties
            .get(keys::UNIQ_KEY)
            .map_or_else(|| self.record.offset_msg_id(), str::to_owned)
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        &self.record.body
    }

    /// The topic (the original one for a retried message).
    pub fn topic(&self) -> &str {
        &self.record.topic
    }

    /// The tag, if any.
    pub fn tags(&self) -> Option<&str> {
        self.record.properties.get(keys::TAGS)
    }

    /// The keys, if any.
    pub fn keys(&self) -> Vec<&str> {
        self.record
            .properties
            .get(keys::KEYS)
            .map(|k| k.split(' ').filter(|s| !s.is_empty()).collect())
            .unwrap_or_default()
    }

    /// A user property.
    pub fn property(&self, key: &str) -> Option<&str> {
        self.record.properties.get(key)
    }

    /// The queue the message came from.
    pub fn queue(&self) -> MessageQueue {
        MessageQueue {
            topic: self.record.topic.clone(),
            broker_name: self.broker_name.clone(),
            queue_id: self.record.queue_id,
        }
    }

    /// Position in its queue.
    pub fn queue_offset(&self) -> i64 {
        self.record.queue_offset
    }

    /// How many times it was redelivered.
    pub fn reconsume_times(&self) -> i32 {
        self.record.reconsume_times
    }
}

/// How a send ended (RocketMQ's SendStatus; RaftMQ stores before answering, so only
/// `SendOk` and the flush/slave variants a Java-compatible broker might return exist).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStatus {
    /// Stored and replicated.
    SendOk,
    /// Stored, flush timed out (FLUSH_DISK_TIMEOUT).
    FlushDiskTimeout,
    /// Stored, replication timed out (FLUSH_SLAVE_TIMEOUT).
    FlushSlaveTimeout,
    /// Stored, no slave available (SLAVE_NOT_AVAILABLE).
    SlaveNotAvailable,
}

/// What the broker answered to a successful send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendResult {
    /// Outcome.
    pub status: SendStatus,
    /// The producer's message id (UNIQ_KEY); for a batch, the ids joined by `,`.
    pub msg_id: String,
    /// The broker's offset message id(s).
    pub offset_msg_id: String,
    /// The queue the message went to.
    pub queue: MessageQueue,
    /// Its queue offset (the first one for a batch).
    pub queue_offset: i64,
    /// Address of the master that stored it.
    pub broker_addr: String,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn topics_are_checked_like_rocketmq_does() {
        assert!(validate_topic("TopicTest").is_ok());
        assert!(validate_topic("%RETRY%group_a-1").is_ok());
        assert!(validate_topic("").is_err());
        let e = validate_topic("bad topic").unwrap_err();
        assert!(e.to_string().contains("' '"), "{e}");
        assert!(validate_topic(&"t".repeat(128)).is_err());
        assert!(validate_topic(&"t".repeat(127)).is_ok());
    }

    #[test]
    fn bodies_are_checked_and_builders_set_properties() {
        let m = Message::new("T", vec![1u8; 10])
            .with_tags("TagA")
            .with_keys(["k1", "k2"])
            .with_delay_level(3)
            .with_property("p", "v");
        assert_eq!(m.tags(), Some("TagA"));
        assert_eq!(m.properties.get(keys::KEYS), Some("k1 k2"));
        assert_eq!(m.properties.get(keys::DELAY), Some("3"));
        assert!(m.validate(10).is_ok());
        assert!(m.validate(9).unwrap_err().to_string().contains("10 bytes"));
        assert!(Message::new("T", Vec::<u8>::new()).validate(10).is_err());
    }
}
