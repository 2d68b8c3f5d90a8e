//! Orderly-consumption lock bodies (remoting.md §2.4.14) and the MessageQueue they carry.

use serde::{Deserialize, Serialize};

/// One queue of a topic on one broker group (A.2).
///
/// `Ord` compares broker name, queue id, then topic (declaration order); Java orders by
/// topic first, which only matters for display.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageQueue {
    /// The broker group holding the queue.
    pub broker_name: String,
    /// Queue index within the topic on that group.
    pub queue_id: i32,
    /// The topic.
    pub topic: String,
}

/// LOCK_BATCH_MQ request: a client asks to own these queues of a consumer group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockBatchRequestBody {
    /// The requesting client's id.
    pub client_id: String,
    /// The consumer group the locks are for.
    pub consumer_group: String,
    /// Queues to lock (a Java set; duplicates are harmless).
    #[serde(default)]
    pub mq_set: Vec<MessageQueue>,
    /// 5.x: lock on this broker only instead of asking a quorum of replicas.
    #[serde(default)]
    pub only_this_broker: bool,
}

/// UNLOCK_BATCH_MQ request: same members as the lock request.
pub type UnlockBatchRequestBody = LockBatchRequestBody;

/// LOCK_BATCH_MQ response: the queues granted to the client.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockBatchResponseBody {
    /// Queues now locked by the requester (JSON `lockOKMQSet`).
    #[serde(rename = "lockOKMQSet", default)]
    pub lock_ok_mq_set: Vec<MessageQueue>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::body::json::{decode_json, encode_json};

    const SPEC_JSON: &str = r#"{"clientId":"192.168.1.10@12345#1700000000000000","consumerGroup":"ConsumerGroupA","mqSet":[{"brokerName":"broker-a","queueId":0,"topic":"TopicTest"}],"onlyThisBroker":false}"#;

    #[test]
    fn lock_request_spec_example() {
        let req: LockBatchRequestBody =
            decode_json("LockBatchRequestBody", SPEC_JSON.as_bytes()).unwrap();
        assert_eq!(req.consumer_group, "ConsumerGroupA");
        assert_eq!(req.mq_set[0].queue_id, 0);
        assert_eq!(String::from_utf8(encode_json(&req)).unwrap(), SPEC_JSON);
        // 4.x clients do not send onlyThisBroker.
        let old: UnlockBatchRequestBody = decode_json(
            "UnlockBatchRequestBody",
            br#"{"clientId":"c","consumerGroup":"g","mqSet":[]}"#,
        )
        .unwrap();
        assert!(!old.only_this_broker);
    }

    #[test]
    fn lock_response_name() {
        let mq = MessageQueue {
            broker_name: "b".into(),
            queue_id: 3,
            topic: "T".into(),
        };
        let resp = LockBatchResponseBody {
            lock_ok_mq_set: vec![mq],
        };
        let json = encode_json(&resp);
        assert_eq!(
            json,
            br#"{"lockOKMQSet":[{"brokerName":"b","queueId":3,"topic":"T"}]}"#
        );
        assert_eq!(
            decode_json::<LockBatchResponseBody>("LockBatchResponseBody", &json).unwrap(),
            resp
        );
    }
}
