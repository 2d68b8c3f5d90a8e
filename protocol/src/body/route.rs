//! Topic routes (remoting.md A.1): the GET_ROUTEINFO_BY_TOPIC response body.
//!
//! Members are declared in alphabetical order of their JSON names because Java writes
//! them sorted and the golden vector V2 is byte-exact.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Broker id of a group's master (the Raft leader in RaftMQ).
pub const MASTER_ID: i64 = 0;

/// Where a topic lives: broker groups, their addresses and per-group queue counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicRouteData {
    /// One entry per broker group that has a [`QueueData`] for the topic; always emitted.
    #[serde(default)]
    pub broker_datas: Vec<BrokerData>,
    /// Obsolete filter servers; always emitted (`{}`) because strict clients require it.
    #[serde(default)]
    pub filter_server_table: BTreeMap<String, Vec<String>>,
    /// `brokerName:queueCount;…` ordered-topic override from the KV config, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_topic_conf: Option<String>,
    /// One entry per broker group serving the topic; always emitted.
    #[serde(default)]
    pub queue_datas: Vec<QueueData>,
}

/// One broker group: its name, cluster and `brokerId → ip:port` addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokerData {
    /// Broker id → client-facing address; id 0 is the master. Keys are written quoted
    /// (`"0"`); [`crate::body::decode_json`] also accepts fastjson's unquoted keys.
    #[serde(default)]
    pub broker_addrs: BTreeMap<i64, String>,
    /// The broker group name clients see, e.g. `broker-a`.
    pub broker_name: String,
    /// The cluster the group belongs to.
    #[serde(default)]
    pub cluster: String,
    /// 5.x "slave acting master" mode; always emitted (the Rust client requires it).
    #[serde(default)]
    pub enable_acting_master: bool,
    /// Zone from the registration's `__ZONE_NAME`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_name: Option<String>,
}

impl BrokerData {
    /// A group with no addresses yet.
    pub fn new(cluster: impl Into<String>, broker_name: impl Into<String>) -> Self {
        BrokerData {
            broker_name: broker_name.into(),
            cluster: cluster.into(),
            ..BrokerData::default()
        }
    }

    /// The master's address (`brokerAddrs[0]`): where clients send and commit offsets.
    pub fn master_addr(&self) -> Option<&str> {
        self.broker_addrs.get(&MASTER_ID).map(String::as_str)
    }
}

/// One broker group's queues and permission for a topic.
///
/// On input the flag may also be spelled `topicSynFlag` (clients ≤ 4.8); when both are
/// present `topicSysFlag` wins. Output writes only `topicSysFlag`, as vector V2 does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", from = "QueueDataWire")]
pub struct QueueData {
    /// The broker group serving these queues.
    pub broker_name: String,
    /// PermName bits of the topic on that group (see [`crate::body::perm`]).
    pub perm: i32,
    /// Queues consumers read (0..n-1).
    pub read_queue_nums: i32,
    /// TopicSysFlag bits; 0 is the norm.
    pub topic_sys_flag: i32,
    /// Queues producers write (0..n-1).
    pub write_queue_nums: i32,
}

/// Input shape of [`QueueData`], accepting either spelling of the sys flag.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueueDataWire {
    broker_name: String,
    #[serde(default)]
    perm: i32,
    #[serde(default)]
    read_queue_nums: i32,
    #[serde(default)]
    topic_sys_flag: Option<i32>,
    #[serde(default)]
    topic_syn_flag: Option<i32>,
    #[serde(default)]
    write_queue_nums: i32,
}

impl From<QueueDataWire> for QueueData {
    fn from(w: QueueDataWire) -> Self {
        QueueData {
            broker_name: w.broker_name,
            perm: w.perm,
            read_queue_nums: w.read_queue_nums,
            topic_sys_flag: w.topic_sys_flag.or(w.topic_syn_flag).unwrap_or(0),
            write_queue_nums: w.write_queue_nums,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::body::json::{decode_json, encode_json};

    /// The TopicRouteData body of vector V2 (remoting.md §6), 315 bytes.
    pub(crate) const V2_BODY: &str = r#"{"brokerDatas":[{"brokerAddrs":{"0":"192.168.1.20:10911","1":"192.168.1.21:10911","2":"192.168.1.22:10911"},"brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false}],"filterServerTable":{},"queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}"#;

    fn v2_route() -> TopicRouteData {
        let mut b = BrokerData::new("DefaultCluster", "broker-a");
        b.broker_addrs.insert(0, "192.168.1.20:10911".into());
        b.broker_addrs.insert(1, "192.168.1.21:10911".into());
        b.broker_addrs.insert(2, "192.168.1.22:10911".into());
        TopicRouteData {
            broker_datas: vec![b],
            queue_datas: vec![QueueData {
                broker_name: "broker-a".into(),
                perm: 6,
                read_queue_nums: 4,
                topic_sys_flag: 0,
                write_queue_nums: 4,
            }],
            ..TopicRouteData::default()
        }
    }

    #[test]
    fn v2_vector_byte_exact() {
        assert_eq!(V2_BODY.len(), 315);
        let route = v2_route();
        assert_eq!(String::from_utf8(encode_json(&route)).unwrap(), V2_BODY);
        let back: TopicRouteData = decode_json("TopicRouteData", V2_BODY.as_bytes()).unwrap();
        assert_eq!(back, route);
        assert_eq!(
            back.broker_datas[0].master_addr(),
            Some("192.168.1.20:10911")
        );
    }

    #[test]
    fn unquoted_keys_and_4x_members() {
        let body = br#"{"brokerDatas":[{"brokerAddrs":{0:"10.0.0.1:10911",1:"x"},"brokerName":"broker-a","cluster":"C"}],"filterServerTable":{},"queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSynFlag":2,"writeQueueNums":4}],"orderTopicConf":"broker-a:4","topicQueueMappingByBroker":{}}"#;
        let r: TopicRouteData = decode_json("TopicRouteData", body).unwrap();
        let b = &r.broker_datas[0];
        assert_eq!(b.master_addr(), Some("10.0.0.1:10911"));
        assert_eq!(b.broker_addrs.get(&1).map(String::as_str), Some("x"));
        assert!(!b.enable_acting_master);
        assert_eq!(r.queue_datas[0].topic_sys_flag, 2);
        assert_eq!(r.order_topic_conf.as_deref(), Some("broker-a:4"));
    }

    #[test]
    fn both_flag_spellings() {
        let q: QueueData = decode_json(
            "QueueData",
            br#"{"brokerName":"b","perm":6,"readQueueNums":1,"topicSynFlag":1,"topicSysFlag":3,"writeQueueNums":1}"#,
        )
        .unwrap();
        assert_eq!(q.topic_sys_flag, 3);
    }

    #[test]
    fn empty_route_emits_required_members() {
        assert_eq!(
            encode_json(&TopicRouteData::default()),
            br#"{"brokerDatas":[],"filterServerTable":{},"queueDatas":[]}"#
        );
        let no_master = BrokerData::new("c", "b");
        assert_eq!(no_master.master_addr(), None);
        assert_eq!(
            encode_json(&BrokerData { zone_name: Some("z".into()), ..no_master }),
            br#"{"brokerAddrs":{},"brokerName":"b","cluster":"c","enableActingMaster":false,"zoneName":"z"}"#
        );
    }

    pub(crate) fn arb_broker_data() -> impl Strategy<Value = BrokerData> {
        (
            proptest::collection::btree_map(-2i64..20, "[0-9.:]{1,21}", 0..4),
            "[a-z\\-]{1,10}",
            "\\PC{0,10}",
            any::<bool>(),
            proptest::option::of("[a-zA-Z]{0,6}"),
        )
            .prop_map(
                |(broker_addrs, broker_name, cluster, enable_acting_master, zone_name)| {
                    BrokerData {
                        broker_addrs,
                        broker_name,
                        cluster,
                        enable_acting_master,
                        zone_name,
                    }
                },
            )
    }

    fn arb_queue_data() -> impl Strategy<Value = QueueData> {
        ("\\PC{0,10}", 0..16i32, 0..1024i32, 0..4i32, 0..1024i32).prop_map(
            |(broker_name, perm, read_queue_nums, topic_sys_flag, write_queue_nums)| QueueData {
                broker_name,
                perm,
                read_queue_nums,
                topic_sys_flag,
                write_queue_nums,
            },
        )
    }

    proptest! {
        #[test]
        fn route_round_trip(
            broker_datas in proptest::collection::vec(arb_broker_data(), 0..3),
            filter_server_table in proptest::collection::btree_map(
                "\\PC{0,8}", proptest::collection::vec("\\PC{0,8}", 0..3), 0..3),
            order_topic_conf in proptest::option::of("\\PC{0,12}"),
            queue_datas in proptest::collection::vec(arb_queue_data(), 0..3),
        ) {
            let route = TopicRouteData { broker_datas, filter_server_table, order_topic_conf, queue_datas };
            let back: TopicRouteData = decode_json("TopicRouteData", &encode_json(&route)).unwrap();
            prop_assert_eq!(back, route);
        }
    }
}
