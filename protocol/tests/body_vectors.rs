//! Golden vector V2 (remoting.md §6): the TopicRouteData body is reproduced byte for byte.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use raftmq_protocol::body::{decode_json, encode_json, BrokerData, QueueData, TopicRouteData};

/// Vector V2's header JSON (95 bytes).
const V2_HEADER: &str = r#"{"code":0,"flag":1,"language":"JAVA","opaque":1,"serializeTypeCurrentRPC":"JSON","version":479}"#;

/// Vector V2's body (315 bytes).
const V2_BODY: &str = r#"{"brokerDatas":[{"brokerAddrs":{"0":"192.168.1.20:10911","1":"192.168.1.21:10911","2":"192.168.1.22:10911"},"brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false}],"filterServerTable":{},"queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}"#;

/// The whole V2 frame: length 414, header mark 0x5f, header, body.
fn v2_frame() -> Vec<u8> {
    let mut frame = vec![0x00, 0x00, 0x01, 0x9e, 0x00, 0x00, 0x00, 0x5f];
    frame.extend_from_slice(V2_HEADER.as_bytes());
    frame.extend_from_slice(V2_BODY.as_bytes());
    frame
}

fn v2_route() -> TopicRouteData {
    let broker_addrs: BTreeMap<i64, String> = [
        (0, "192.168.1.20:10911"),
        (1, "192.168.1.21:10911"),
        (2, "192.168.1.22:10911"),
    ]
    .into_iter()
    .map(|(id, addr)| (id, addr.to_owned()))
    .collect();
    TopicRouteData {
        broker_datas: vec![BrokerData {
            broker_addrs,
            broker_name: "broker-a".into(),
            cluster: "DefaultCluster".into(),
            enable_acting_master: false,
            zone_name: None,
        }],
        filter_server_table: BTreeMap::new(),
        order_topic_conf: None,
        queue_datas: vec![QueueData {
            broker_name: "broker-a".into(),
            perm: 6,
            read_queue_nums: 4,
            topic_sys_flag: 0,
            write_queue_nums: 4,
        }],
    }
}

#[test]
fn v2_body_is_byte_exact() {
    let frame = v2_frame();
    assert_eq!(frame.len(), 418);
    let body = &frame[8 + 95..];
    assert_eq!(body.len(), 315);
    assert_eq!(encode_json(&v2_route()), body);
    let decoded: TopicRouteData = decode_json("TopicRouteData", body).unwrap();
    assert_eq!(decoded, v2_route());
    assert_eq!(
        decoded.broker_datas[0].master_addr(),
        Some("192.168.1.20:10911")
    );
}

#[test]
fn v2_body_with_fastjson_unquoted_keys_decodes() {
    let legacy = V2_BODY
        .replace(r#""0":"#, "0:")
        .replace(r#""1":"#, "1:")
        .replace(r#""2":"#, "2:");
    assert!(legacy.contains(r#"{0:"192.168.1.20:10911",1:"#));
    let decoded: TopicRouteData = decode_json("TopicRouteData", legacy.as_bytes()).unwrap();
    assert_eq!(decoded, v2_route());
}
