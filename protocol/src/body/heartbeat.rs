//! HEART_BEAT body (remoting.md §2.4.8): a client's producer and consumer groups and
//! its subscriptions. Enum-like members stay strings so unknown values pass through.

use serde::{Deserialize, Serialize};

/// Everything a client tells a broker every 30 s.
///
/// Only `clientID` is required on input; 4.x clients omit `heartbeatFingerprint` and
/// `withoutSub`, and unknown members are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatData {
    /// `clientIP@instanceName[@unitName]`; identifies the client for rebalancing.
    #[serde(rename = "clientID")]
    pub client_id: String,
    /// The client's consumer groups.
    #[serde(default)]
    pub consumer_data_set: Vec<ConsumerData>,
    /// 5.x: subscription fingerprint (0 = classic heartbeat).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_fingerprint: Option<i32>,
    /// The client's producer groups (always includes `CLIENT_INNER_PRODUCER`).
    #[serde(default)]
    pub producer_data_set: Vec<ProducerData>,
    /// 5.x: true when consumer data omit subscriptions because the fingerprint is unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub without_sub: Option<bool>,
}

/// One consumer group of a client and how it consumes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerData {
    /// Where a new group starts, e.g. `CONSUME_FROM_LAST_OFFSET`.
    pub consume_from_where: String,
    /// `CONSUME_PASSIVELY` (push), `CONSUME_ACTIVELY` (pull) or `CONSUME_POP`.
    pub consume_type: String,
    /// The consumer group name.
    pub group_name: String,
    /// `CLUSTERING` or `BROADCASTING`.
    pub message_model: String,
    /// The group's topic subscriptions (may be empty when `withoutSub`).
    pub subscription_data_set: Vec<SubscriptionData>,
    /// Unit mode flag; clients only propagate it.
    pub unit_mode: bool,
}

/// One topic subscription of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionData {
    /// Obsolete class-filter mode.
    pub class_filter_mode: bool,
    /// Java string hashes of `tags_set` (the consume-queue tag codes).
    pub code_set: Vec<i32>,
    /// `TAG` (default) or `SQL92`.
    pub expression_type: String,
    /// The expression: `*` or `a||b`.
    pub sub_string: String,
    /// Ms timestamp of the subscription; newer replaces older.
    pub sub_version: i64,
    /// The tags of `sub_string` (empty for `*`).
    pub tags_set: Vec<String>,
    /// The subscribed topic.
    pub topic: String,
}

impl Default for SubscriptionData {
    fn default() -> Self {
        SubscriptionData {
            class_filter_mode: false,
            code_set: Vec::new(),
            expression_type: "TAG".to_owned(),
            sub_string: String::new(),
            sub_version: 0,
            tags_set: Vec::new(),
            topic: String::new(),
        }
    }
}

/// One producer group of a client.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProducerData {
    /// The producer group name; needed to pick a channel for transaction checks.
    pub group_name: String,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::body::json::{decode_json, encode_json};

    const SPEC_JSON: &str = r#"{"clientID":"192.168.1.10@12345#1700000000000000","consumerDataSet":[{"consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","consumeType":"CONSUME_PASSIVELY","groupName":"ConsumerGroupA","messageModel":"CLUSTERING","subscriptionDataSet":[{"classFilterMode":false,"codeSet":[2598919],"expressionType":"TAG","subString":"TagA","subVersion":1700000000000,"tagsSet":["TagA"],"topic":"TopicTest"},{"classFilterMode":false,"codeSet":[],"expressionType":"TAG","subString":"*","subVersion":1700000000000,"tagsSet":[],"topic":"%RETRY%ConsumerGroupA"}],"unitMode":false}],"heartbeatFingerprint":0,"producerDataSet":[{"groupName":"ProducerGroupA"},{"groupName":"CLIENT_INNER_PRODUCER"}],"withoutSub":false}"#;

    #[test]
    fn spec_example_round_trips_byte_exact() {
        let hb: HeartbeatData = decode_json("HeartbeatData", SPEC_JSON.as_bytes()).unwrap();
        assert_eq!(hb.client_id, "192.168.1.10@12345#1700000000000000");
        assert_eq!(hb.heartbeat_fingerprint, Some(0));
        assert_eq!(hb.without_sub, Some(false));
        let c = &hb.consumer_data_set[0];
        assert_eq!(c.group_name, "ConsumerGroupA");
        assert_eq!(c.subscription_data_set[0].code_set, vec![2598919]);
        assert_eq!(c.subscription_data_set[1].topic, "%RETRY%ConsumerGroupA");
        assert_eq!(hb.producer_data_set[1].group_name, "CLIENT_INNER_PRODUCER");
        assert_eq!(String::from_utf8(encode_json(&hb)).unwrap(), SPEC_JSON);
    }

    #[test]
    fn form_4x_without_5x_members() {
        let json = br#"{"clientID":"c@1","consumerDataSet":[{"consumeFromWhere":"CONSUME_FROM_FIRST_OFFSET","consumeType":"CONSUME_ACTIVELY","groupName":"G","messageModel":"BROADCASTING","subscriptionDataSet":[{"classFilterMode":false,"codeSet":[],"subString":"*","subVersion":1,"tagsSet":[],"topic":"T","filterClassSource":null}],"unitMode":false}],"producerDataSet":[]}"#;
        let hb: HeartbeatData = decode_json("HeartbeatData", json).unwrap();
        assert_eq!(hb.heartbeat_fingerprint, None);
        assert_eq!(hb.without_sub, None);
        assert_eq!(
            hb.consumer_data_set[0].subscription_data_set[0].expression_type,
            "TAG"
        );
        let out = String::from_utf8(encode_json(&hb)).unwrap();
        assert!(!out.contains("heartbeatFingerprint") && !out.contains("withoutSub"));
    }

    #[test]
    fn minimal_and_missing_client_id() {
        let hb: HeartbeatData = decode_json("HeartbeatData", br#"{"clientID":"x"}"#).unwrap();
        assert!(hb.consumer_data_set.is_empty() && hb.producer_data_set.is_empty());
        assert!(decode_json::<HeartbeatData>("HeartbeatData", b"{}").is_err());
    }

    fn arb_subscription() -> impl Strategy<Value = SubscriptionData> {
        (
            any::<bool>(),
            proptest::collection::vec(any::<i32>(), 0..3),
            "TAG|SQL92",
            "\\PC{0,10}",
            any::<i64>(),
            proptest::collection::vec("\\PC{0,6}", 0..3),
            "\\PC{0,10}",
        )
            .prop_map(
                |(
                    class_filter_mode,
                    code_set,
                    expression_type,
                    sub_string,
                    sub_version,
                    tags_set,
                    topic,
                )| {
                    SubscriptionData {
                        class_filter_mode,
                        code_set,
                        expression_type,
                        sub_string,
                        sub_version,
                        tags_set,
                        topic,
                    }
                },
            )
    }

    fn arb_consumer() -> impl Strategy<Value = ConsumerData> {
        (
            "\\PC{0,10}",
            "\\PC{0,10}",
            "\\PC{0,10}",
            "\\PC{0,10}",
            proptest::collection::vec(arb_subscription(), 0..3),
            any::<bool>(),
        )
            .prop_map(
                |(consume_from_where, consume_type, group_name, message_model, subs, unit_mode)| {
                    ConsumerData {
                        consume_from_where,
                        consume_type,
                        group_name,
                        message_model,
                        subscription_data_set: subs,
                        unit_mode,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn heartbeat_round_trip(
            client_id in "\\PC{0,20}",
            consumer_data_set in proptest::collection::vec(arb_consumer(), 0..3),
            heartbeat_fingerprint in proptest::option::of(any::<i32>()),
            producers in proptest::collection::vec("\\PC{0,10}", 0..3),
            without_sub in proptest::option::of(any::<bool>()),
        ) {
            let hb = HeartbeatData {
                client_id,
                consumer_data_set,
                heartbeat_fingerprint,
                producer_data_set: producers.into_iter().map(|group_name| ProducerData { group_name }).collect(),
                without_sub,
            };
            let back: HeartbeatData = decode_json("HeartbeatData", &encode_json(&hb)).unwrap();
            prop_assert_eq!(back, hb);
        }
    }
}
