//! The NameServer over real TCP on 127.0.0.1:0, driven by a raw protocol client.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{register_cmd, wait_until, RawClient};
use raftmq_namesrv::{serve, NamesrvConfig};
use raftmq_protocol::body::{
    decode_json, ClusterInfo, RegisterBrokerBody, TopicList, TopicRouteData,
};
use raftmq_protocol::codes::{RequestCode, ResponseCode};
use raftmq_protocol::headers::*;
use raftmq_protocol::{RemotingCommand, SerializeType, StrMap};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start(config: NamesrvConfig) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, config, async {
        let _ = rx.await;
    }));
    Server {
        addr,
        stop: Some(tx),
        task,
    }
}

impl Server {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

fn route_req(topic: &str) -> RemotingCommand {
    let h = GetRouteInfoRequestHeader {
        topic: topic.into(),
        ..Default::default()
    };
    RemotingCommand::request_with(RequestCode::GetRouteinfoByTopic.code(), &h)
}

fn bare(code: RequestCode) -> RemotingCommand {
    RemotingCommand::request(code.code(), StrMap::new())
}

async fn cluster_info(c: &mut RawClient) -> ClusterInfo {
    let resp = c.call(bare(RequestCode::GetBrokerClusterInfo)).await;
    assert_eq!(resp.code, 0);
    decode_json("cluster info", &resp.body).unwrap()
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

#[tokio::test]
async fn three_node_group_and_second_group_route_and_cluster_info() {
    let server = start(NamesrvConfig::default()).await;
    // Each node has its own connection, as real brokers do. n1 leads term 2.
    let mut nodes = Vec::new();
    for (addr, id) in [
        ("127.0.0.1:30911", 1),
        ("127.0.0.1:30921", 0),
        ("127.0.0.1:30931", 3),
    ] {
        let mut c = RawClient::connect(server.addr).await;
        let resp = c
            .call(register_cmd("broker-a", addr, id, 2, &[("TopicTest", 4)]))
            .await;
        assert_eq!(resp.code, 0, "{:?}", resp.remark);
        nodes.push(c);
    }
    // A follower registering after the master learns the master's address.
    let resp = nodes[0]
        .call(register_cmd("broker-a", "127.0.0.1:30911", 1, 2, &[]))
        .await;
    let h: RegisterBrokerResponseHeader = resp.header().unwrap();
    assert_eq!(h.master_addr.as_deref(), Some("127.0.0.1:30921"));

    // Second group, registering with the compressed body form over a ROCKETMQ header.
    let mut b = RawClient::connect(server.addr).await;
    let mut cmd = register_cmd(
        "broker-b",
        "127.0.0.1:40911",
        0,
        7,
        &[("TopicTest", 2), ("OnlyB", 1)],
    );
    let body = RegisterBrokerBody::decode(&cmd.body, false, 479).unwrap();
    cmd.body = body.encode_compressed(479).unwrap().into();
    cmd.ext_fields.insert("compressed", "true");
    cmd.serialize_type = SerializeType::RocketMq;
    let resp = b.call(cmd).await;
    assert_eq!(resp.code, 0, "{:?}", resp.remark);
    assert_eq!(
        resp.serialize_type,
        SerializeType::RocketMq,
        "answer in the request's serialization"
    );

    let mut client = RawClient::connect(server.addr).await;
    let resp = client.call(route_req("TopicTest")).await;
    assert_eq!(resp.code, ResponseCode::Success.code());
    // Exact members strict clients require, and quoted id keys.
    let v: Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(
        keys(&v),
        vec!["brokerDatas", "filterServerTable", "queueDatas"]
    );
    assert_eq!(v["filterServerTable"], serde_json::json!({}));
    for bd in v["brokerDatas"].as_array().unwrap() {
        assert_eq!(
            keys(bd),
            vec!["brokerAddrs", "brokerName", "cluster", "enableActingMaster"]
        );
    }
    for qd in v["queueDatas"].as_array().unwrap() {
        assert_eq!(
            keys(qd),
            vec![
                "brokerName",
                "perm",
                "readQueueNums",
                "topicSysFlag",
                "writeQueueNums"
            ]
        );
    }
    let text = std::str::from_utf8(&resp.body).unwrap();
    assert!(
        text.contains(
            r#""brokerAddrs":{"0":"127.0.0.1:30921","1":"127.0.0.1:30911","3":"127.0.0.1:30931"}"#
        ),
        "{text}"
    );
    let route: TopicRouteData = decode_json("route", &resp.body).unwrap();
    assert_eq!(route.broker_datas.len(), 2);
    assert_eq!(
        route
            .queue_datas
            .iter()
            .map(|q| q.write_queue_nums)
            .collect::<Vec<_>>(),
        vec![4, 2]
    );

    let ci = cluster_info(&mut client).await;
    assert_eq!(
        ci.cluster_addr_table["DefaultCluster"]
            .iter()
            .collect::<Vec<_>>(),
        vec!["broker-a", "broker-b"]
    );
    assert_eq!(ci.broker_addr_table["broker-a"].broker_addrs.len(), 3);
    assert_eq!(
        ci.broker_addr_table["broker-b"].master_addr(),
        Some("127.0.0.1:40911")
    );

    let resp = client
        .call(bare(RequestCode::GetAllTopicListFromNameserver))
        .await;
    let list: TopicList = decode_json("topics", &resp.body).unwrap();
    assert_eq!(
        list.topic_list,
        vec!["OnlyB".to_string(), "TopicTest".to_string()]
    );

    let resp = client.call(route_req("Missing")).await;
    assert_eq!(resp.code, ResponseCode::TopicNotExist.code());
    assert!(resp.remark.unwrap().contains("Missing"));

    // broker-b's connection closes: dropped at once.
    drop(b);
    wait_until("broker-b dropped", Duration::from_secs(10), || {
        let addr = server.addr;
        async move {
            let mut c = RawClient::connect(addr).await;
            !cluster_info(&mut c)
                .await
                .broker_addr_table
                .contains_key("broker-b")
        }
    })
    .await;
    let route: TopicRouteData =
        decode_json("route", &client.call(route_req("TopicTest")).await.body).unwrap();
    assert_eq!(route.broker_datas.len(), 1);
    assert_eq!(
        client.call(route_req("OnlyB")).await.code,
        ResponseCode::TopicNotExist.code()
    );
    drop(nodes);
    server.stop().await;
}

#[tokio::test]
async fn failover_term_fencing_over_tcp() {
    let server = start(NamesrvConfig::default()).await;
    let mut old = RawClient::connect(server.addr).await;
    let mut new = RawClient::connect(server.addr).await;
    assert_eq!(
        old.call(register_cmd("g", "127.0.0.1:1", 0, 5, &[("T", 4)]))
            .await
            .code,
        0
    );
    assert_eq!(
        new.call(register_cmd("g", "127.0.0.1:2", 2, 5, &[]))
            .await
            .code,
        0
    );
    // Election: node 2 wins term 6 and registers at once.
    assert_eq!(
        new.call(register_cmd("g", "127.0.0.1:2", 0, 6, &[("T", 4)]))
            .await
            .code,
        0
    );
    // The deposed leader's periodic registration still says term 5: fenced.
    old.call(register_cmd("g", "127.0.0.1:1", 0, 5, &[("T", 4)]))
        .await;
    let mut c = RawClient::connect(server.addr).await;
    let ci = cluster_info(&mut c).await;
    let addrs: Vec<_> = ci.broker_addr_table["g"]
        .broker_addrs
        .iter()
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    assert_eq!(addrs, vec![(0, "127.0.0.1:2".to_string())]);
    // It learns and steps down to follower id 1.
    old.call(register_cmd("g", "127.0.0.1:1", 1, 6, &[])).await;
    let ci = cluster_info(&mut c).await;
    assert_eq!(ci.broker_addr_table["g"].broker_addrs.len(), 2);
    assert_eq!(ci.broker_addr_table["g"].master_addr(), Some("127.0.0.1:2"));
    server.stop().await;
}

#[tokio::test]
async fn garbage_closes_only_its_own_connection() {
    let server = start(NamesrvConfig::default()).await;
    let mut good = RawClient::connect(server.addr).await;
    assert_eq!(
        good.call(register_cmd("g", "127.0.0.1:1", 0, 1, &[("T", 1)]))
            .await
            .code,
        0
    );
    for garbage in [
        vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3], // negative length
        vec![0x7f, 0xff, 0xff, 0xff],          // 2 GiB frame
        vec![0, 0, 0, 10, 9, 0, 0, 2, b'{', b'}', 0, 0, 0, 0], // unknown serialize type
        vec![0, 0, 0, 8, 0, 0, 0, 4, b'n', b'o', b'p', b'e'], // invalid JSON
        vec![0, 0, 0, 8, 0, 0, 0, 200, 1, 2, 3, 4], // header longer than frame
    ] {
        let mut bad = RawClient::connect(server.addr).await;
        bad.stream.write_all(&garbage).await.unwrap();
        assert!(
            bad.recv().await.is_none(),
            "server must close a connection sending {garbage:?}"
        );
        // Everyone else is still served, and the registered node is still there.
        let resp = good.call(route_req("T")).await;
        assert_eq!(resp.code, 0);
    }
    server.stop().await;
}

#[tokio::test]
async fn unknown_codes_bad_headers_oneway_and_kv() {
    let server = start(NamesrvConfig::default()).await;
    let mut c = RawClient::connect(server.addr).await;
    let resp = c.call(RemotingCommand::request(999, StrMap::new())).await;
    assert_eq!(resp.code, ResponseCode::RequestCodeNotSupported.code());
    assert!(resp.remark.unwrap().contains("999"));
    let resp = c.call(bare(RequestCode::SendMessage)).await;
    assert_eq!(resp.code, ResponseCode::RequestCodeNotSupported.code());
    // Missing required header field: a clear error naming it, connection kept.
    let resp = c.call(bare(RequestCode::GetRouteinfoByTopic)).await;
    assert_eq!(resp.code, ResponseCode::SystemError.code());
    assert!(resp.remark.unwrap().contains("topic"));

    // A oneway request gets no answer: the next answer is for the next request.
    let oneway = RemotingCommand::request(999, StrMap::new()).oneway();
    c.send(oneway).await;
    let resp = c.call(bare(RequestCode::GetBrokerClusterInfo)).await;
    assert_eq!(resp.code, 0);

    let get = |ns: &str, key: &str| {
        let h = GetKvConfigRequestHeader {
            namespace: ns.into(),
            key: key.into(),
        };
        RemotingCommand::request_with(RequestCode::GetKvConfig.code(), &h)
    };
    let resp = c.call(get("ORDER_TOPIC_CONFIG", "T")).await;
    assert_eq!(resp.code, ResponseCode::QueryNotFound.code());
    let put = PutKvConfigRequestHeader {
        namespace: "ORDER_TOPIC_CONFIG".into(),
        key: "T".into(),
        value: "g:4".into(),
    };
    assert_eq!(
        c.call(RemotingCommand::request_with(
            RequestCode::PutKvConfig.code(),
            &put
        ))
        .await
        .code,
        0
    );
    let resp = c.call(get("ORDER_TOPIC_CONFIG", "T")).await;
    assert_eq!(
        resp.header::<GetKvConfigResponseHeader>()
            .unwrap()
            .value
            .as_deref(),
        Some("g:4")
    );

    // Topic deletion.
    assert_eq!(
        c.call(register_cmd("g", "127.0.0.1:1", 0, 1, &[("T", 1)]))
            .await
            .code,
        0
    );
    let del = DeleteTopicFromNamesrvRequestHeader {
        topic: "T".into(),
        cluster_name: None,
    };
    assert_eq!(
        c.call(RemotingCommand::request_with(
            RequestCode::DeleteTopicInNamesrv.code(),
            &del
        ))
        .await
        .code,
        0
    );
    assert_eq!(
        c.call(route_req("T")).await.code,
        ResponseCode::TopicNotExist.code()
    );
    // Unregister.
    let un = UnregisterBrokerRequestHeader {
        broker_name: "g".into(),
        broker_addr: "127.0.0.1:1".into(),
        cluster_name: "DefaultCluster".into(),
        broker_id: 0,
    };
    assert_eq!(
        c.call(RemotingCommand::request_with(
            RequestCode::UnregisterBroker.code(),
            &un
        ))
        .await
        .code,
        0
    );
    assert!(cluster_info(&mut c).await.broker_addr_table.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn expiry_scan_drops_silent_brokers() {
    let config = NamesrvConfig {
        scan_not_active_broker_interval_ms: 50,
        ..Default::default()
    };
    let server = start(config).await;
    let mut c = RawClient::connect(server.addr).await;
    let mut cmd = register_cmd("g", "127.0.0.1:1", 0, 1, &[("T", 1)]);
    cmd.ext_fields.insert("heartbeatTimeoutMillis", "200");
    assert_eq!(c.call(cmd).await.code, 0);
    // The connection stays open; only the timeout can drop it.
    wait_until("silent broker expired", Duration::from_secs(10), || {
        let addr = server.addr;
        async move {
            let mut q = RawClient::connect(addr).await;
            q.call(route_req("T")).await.code == ResponseCode::TopicNotExist.code()
        }
    })
    .await;
    server.stop().await;
}
