//! Cluster-level bodies (remoting.md A.2, §2.3.4–2.3.5, §2.4.10, §2.4.17): ClusterInfo,
//! TopicList, KVTable and the consumer id list.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::route::BrokerData;

/// GET_BROKER_CLUSTER_INFO body: every broker group and which cluster holds which groups.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterInfo {
    /// Broker group name → its [`BrokerData`].
    #[serde(default)]
    pub broker_addr_table: BTreeMap<String, BrokerData>,
    /// Cluster name → broker group names (a Java set; written sorted).
    #[serde(default)]
    pub cluster_addr_table: BTreeMap<String, BTreeSet<String>>,
}

/// A list of topic names (GET_ALL_TOPIC_LIST_FROM_NAMESERVER and friends).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicList {
    /// The broker the list came from, when a broker answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_addr: Option<String>,
    /// Topic names; Java's is a set, so [`TopicList::new`] sorts and dedupes.
    #[serde(default)]
    pub topic_list: Vec<String>,
}

impl TopicList {
    /// A list without `brokerAddr`, sorted and deduplicated like the set Java sends.
    pub fn new<I, S>(topics: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let set: BTreeSet<String> = topics.into_iter().map(Into::into).collect();
        TopicList {
            broker_addr: None,
            topic_list: set.into_iter().collect(),
        }
    }
}

/// KVTable `{"table":{...}}`: ORDER_TOPIC_CONFIG in register replies and the broker
/// runtime info of GET_BROKER_RUNTIME_INFO (all values strings).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KvTable {
    /// Key → value.
    #[serde(default)]
    pub table: BTreeMap<String, String>,
}

/// GET_CONSUMER_LIST_BY_GROUP body: the live client ids of a consumer group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerIdList {
    /// Client ids (`clientIP@instanceName`), the rebalance input.
    #[serde(default)]
    pub consumer_id_list: Vec<String>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::body::json::{decode_json, encode_json};
    use crate::body::route::tests::arb_broker_data;

    #[test]
    fn cluster_info_example_and_java_unquoted_form() {
        let java = br#"{"brokerAddrTable":{"broker-a":{"brokerAddrs":{0:"10.0.0.1:10911",1:"10.0.0.2:10911"},"brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false}},"clusterAddrTable":{"DefaultCluster":["broker-a"]}}"#;
        let info: ClusterInfo = decode_json("ClusterInfo", java).unwrap();
        assert_eq!(
            info.broker_addr_table["broker-a"].master_addr(),
            Some("10.0.0.1:10911")
        );
        assert_eq!(
            String::from_utf8(encode_json(&info)).unwrap(),
            r#"{"brokerAddrTable":{"broker-a":{"brokerAddrs":{"0":"10.0.0.1:10911","1":"10.0.0.2:10911"},"brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false}},"clusterAddrTable":{"DefaultCluster":["broker-a"]}}"#
        );
    }

    #[test]
    fn small_bodies() {
        let t = TopicList::new(["B", "A", "B"]);
        assert_eq!(encode_json(&t), br#"{"topicList":["A","B"]}"#);
        let t = TopicList {
            broker_addr: Some("h:1".into()),
            ..t
        };
        assert_eq!(
            encode_json(&t),
            br#"{"brokerAddr":"h:1","topicList":["A","B"]}"#
        );
        let kv: KvTable = decode_json("KVTable", br#"{"table":{"k":"v"}}"#).unwrap();
        assert_eq!(kv.table["k"], "v");
        assert_eq!(encode_json(&kv), br#"{"table":{"k":"v"}}"#);
        let ids = ConsumerIdList {
            consumer_id_list: vec!["c1".into(), "c2".into()],
        };
        assert_eq!(encode_json(&ids), br#"{"consumerIdList":["c1","c2"]}"#);
        assert_eq!(
            decode_json::<ConsumerIdList>("ids", &encode_json(&ids)).unwrap(),
            ids
        );
    }

    proptest! {
        #[test]
        fn cluster_info_round_trip(
            broker_addr_table in proptest::collection::btree_map("\\PC{0,8}", arb_broker_data(), 0..3),
            cluster_addr_table in proptest::collection::btree_map(
                "\\PC{0,8}", proptest::collection::btree_set("\\PC{0,8}", 0..3), 0..3),
        ) {
            let info = ClusterInfo { broker_addr_table, cluster_addr_table };
            let back: ClusterInfo = decode_json("ClusterInfo", &encode_json(&info)).unwrap();
            prop_assert_eq!(back, info);
        }
    }
}
