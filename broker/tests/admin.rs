//! Admin and query requests on an in-process 3-node group with a NameServer, driven by a raw
//! remoting client: topic create/update/delete (leader only, validated, replicated, routed),
//! GET_ALL_TOPIC_CONFIG on a follower, QUERY_MESSAGE by key and UNIQ_KEY, VIEW_MESSAGE_BY_ID
//! by offset message id, offsets by time, runtime info, and RaftMQ's leader transfer and
//! group status. Conditions are awaited with deadlines, never slept on.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{req, stable_leader, wait_until, Group, RawClient};
use raftmq_broker::broker::Broker;
use raftmq_protocol::body::{
    decode_json, KvTable, RaftGroupStatus, TopicConfigSerializeWrapper, TopicRouteData,
};
use raftmq_protocol::codes::{RequestCode, ResponseCode};
use raftmq_protocol::headers::{
    CreateTopicRequestHeader, DeleteTopicRequestHeader, EarliestMsgStoretimeResponseHeader,
    GetAllTopicConfigResponseHeader, GetRouteInfoRequestHeader, OffsetResponseHeader,
    PullMessageRequestHeader, QueryMessageRequestHeader, QueryMessageResponseHeader,
    QueueRequestHeader, RaftLeaderTransferRequestHeader, SearchOffsetRequestHeader,
    SendMessageRequestHeaderV2, SendMessageResponseHeader, ViewMessageRequestHeader,
};
use raftmq_protocol::message::{encode_properties, MessageRecord};
use raftmq_protocol::msgid::decode_offset_msg_id;
use raftmq_protocol::{RemotingCommand, StrMap};

const DEADLINE: Duration = Duration::from_secs(30);

fn bare(code: RequestCode) -> RemotingCommand {
    RemotingCommand::request(code.code(), StrMap::new())
}

fn followers(group: &Group, leader: &Arc<Broker>) -> Vec<Arc<Broker>> {
    group
        .nodes
        .iter()
        .filter(|n| !Arc::ptr_eq(n, leader))
        .cloned()
        .collect()
}

/// The NameServer's route for `topic`, if it has one.
async fn route(namesrv: SocketAddr, topic: &str) -> Option<TopicRouteData> {
    let mut ns = RawClient::connect(namesrv).await;
    let h = GetRouteInfoRequestHeader {
        topic: topic.into(),
        ..Default::default()
    };
    let resp = ns.call(req(RequestCode::GetRouteinfoByTopic, &h)).await;
    (resp.code == ResponseCode::Success.code()).then(|| decode_json("route", &resp.body).unwrap())
}

fn master_of(route: &TopicRouteData) -> Option<String> {
    route
        .broker_datas
        .iter()
        .find_map(|b| b.broker_addrs.get(&0).cloned())
}

fn create_header(topic: &str, queues: i32) -> CreateTopicRequestHeader {
    CreateTopicRequestHeader {
        topic: topic.into(),
        default_topic: "TBW102".into(),
        read_queue_nums: queues,
        write_queue_nums: queues,
        perm: 6,
        topic_filter_type: "SINGLE_TAG".into(),
        order: false,
        attributes: Some("+message.type=NORMAL".into()),
        ..Default::default()
    }
}

async fn all_topics(c: &mut RawClient) -> TopicConfigSerializeWrapper {
    let resp = c.call(bare(RequestCode::GetAllTopicConfig)).await;
    assert_eq!(resp.code, ResponseCode::Success.code(), "{:?}", resp.remark);
    let wrapper: TopicConfigSerializeWrapper = decode_json("topics", &resp.body).unwrap();
    let total = resp
        .header::<GetAllTopicConfigResponseHeader>()
        .unwrap()
        .total_topic_num;
    assert_eq!(total, Some(wrapper.topic_config_table.len() as i32));
    wrapper
}

/// Sends one message to `topic` queue 0; returns the response header.
async fn send(
    c: &mut RawClient,
    topic: &str,
    keys: &str,
    uniq: &str,
    body: &str,
) -> SendMessageResponseHeader {
    let mut props = StrMap::new();
    props.insert("KEYS", keys);
    props.insert("UNIQ_KEY", uniq);
    let h = SendMessageRequestHeaderV2 {
        a: "ProducerGroupA".into(),
        b: topic.into(),
        c: "TBW102".into(),
        d: 4,
        e: 0,
        g: 1_700_000_000_000,
        i: Some(encode_properties(&props)),
        ..Default::default()
    };
    let resp = c
        .call(req(RequestCode::SendMessageV2, &h).with_body(body.as_bytes().to_vec()))
        .await;
    assert_eq!(resp.code, ResponseCode::Success.code(), "{:?}", resp.remark);
    resp.header().unwrap()
}

fn query(topic: &str, key: &str, uniq: bool) -> RemotingCommand {
    let h = QueryMessageRequestHeader {
        topic: topic.into(),
        key: key.into(),
        max_num: 32,
        begin_timestamp: 0,
        end_timestamp: i64::MAX,
        unique_key_query: uniq.then_some(true),
    };
    req(RequestCode::QueryMessage, &h)
}

fn view(offset: i64, topic: Option<&str>) -> RemotingCommand {
    let h = ViewMessageRequestHeader {
        offset,
        topic: topic.map(str::to_owned),
    };
    req(RequestCode::ViewMessageById, &h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_admin_is_replicated_routed_and_leader_only() {
    let group = Group::start("broker-admin").await;
    let leader = stable_leader(&group).await;
    let mut c = RawClient::connect(leader.client_addr()).await;
    let follower = followers(&group, &leader)[0].clone();
    let mut f = RawClient::connect(follower.client_addr()).await;
    const TOPIC: &str = "AdminTopic";

    // Create on the leader.
    let resp = c
        .call(req(
            RequestCode::UpdateAndCreateTopic,
            &create_header(TOPIC, 3),
        ))
        .await;
    assert_eq!(resp.code, ResponseCode::Success.code(), "{:?}", resp.remark);

    // A follower lists it once applied.
    let deadline = Instant::now() + DEADLINE;
    let config = loop {
        if let Some(t) = all_topics(&mut f).await.topic_config_table.get(TOPIC) {
            break t.clone();
        }
        assert!(Instant::now() < deadline, "follower never listed {TOPIC}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!((config.read_queue_nums, config.write_queue_nums), (3, 3));
    assert_eq!(config.perm, 6);
    assert_eq!(
        config.attributes.get("message.type").map(String::as_str),
        Some("NORMAL")
    );
    assert!(all_topics(&mut f)
        .await
        .topic_config_table
        .contains_key("TBW102"));

    // The NameServer routes it to the leader.
    let ns = group.namesrv;
    let leader_addr = leader.client_addr().to_string();
    wait_until("the topic's route", DEADLINE, || async {
        route(ns, TOPIC).await.is_some_and(|r| {
            r.queue_datas.iter().any(|q| q.write_queue_nums == 3)
                && master_of(&r).as_deref() == Some(leader_addr.as_str())
        })
    })
    .await;

    // Update: more queues.
    let resp = c
        .call(req(
            RequestCode::UpdateAndCreateTopic,
            &create_header(TOPIC, 5),
        ))
        .await;
    assert_eq!(resp.code, ResponseCode::Success.code(), "{:?}", resp.remark);
    let wrapper = all_topics(&mut c).await;
    assert_eq!(wrapper.topic_config_table[TOPIC].write_queue_nums, 5);

    // A follower refuses writes, naming the leader.
    let resp = f
        .call(req(
            RequestCode::UpdateAndCreateTopic,
            &create_header("OtherTopic", 2),
        ))
        .await;
    assert_eq!(resp.code, ResponseCode::SystemBusy.code());
    let remark = resp.remark.unwrap();
    let leader_id = leader.node().id();
    assert!(
        remark.contains(&format!("raft leader is node {leader_id}")),
        "{remark}"
    );
    let resp = f
        .call(req(
            RequestCode::DeleteTopicInBroker,
            &DeleteTopicRequestHeader {
                topic: TOPIC.into(),
            },
        ))
        .await;
    assert_eq!(resp.code, ResponseCode::SystemBusy.code());

    // Invalid requests.
    for (h, needle) in [
        (create_header("bad topic!", 2), "illegal characters"),
        (create_header("TBW102", 2), "system topic"),
        (create_header("ZeroQueues", 0), "readQueueNums 0"),
    ] {
        let resp = c.call(req(RequestCode::UpdateAndCreateTopic, &h)).await;
        assert_eq!(resp.code, ResponseCode::InvalidParameter.code());
        let remark = resp.remark.unwrap();
        assert!(remark.contains(needle), "{remark} should mention {needle}");
    }
    let resp = c
        .call(req(
            RequestCode::DeleteTopicInBroker,
            &DeleteTopicRequestHeader {
                topic: "SELF_TEST_TOPIC".into(),
            },
        ))
        .await;
    assert_eq!(resp.code, ResponseCode::InvalidParameter.code());
    assert!(all_topics(&mut c)
        .await
        .topic_config_table
        .contains_key("SELF_TEST_TOPIC"));

    // Delete on the leader: gone there at once, and on the follower once applied.
    let resp = c
        .call(req(
            RequestCode::DeleteTopicInBroker,
            &DeleteTopicRequestHeader {
                topic: TOPIC.into(),
            },
        ))
        .await;
    assert_eq!(resp.code, ResponseCode::Success.code(), "{:?}", resp.remark);
    assert!(!all_topics(&mut c)
        .await
        .topic_config_table
        .contains_key(TOPIC));
    let deadline = Instant::now() + DEADLINE;
    while all_topics(&mut f)
        .await
        .topic_config_table
        .contains_key(TOPIC)
    {
        assert!(Instant::now() < deadline, "follower still lists {TOPIC}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    group.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_view_and_offsets_by_time() {
    let group = Group::start("broker-query").await;
    let leader = stable_leader(&group).await;
    let mut c = RawClient::connect(leader.client_addr()).await;
    const TOPIC: &str = "QueryTopic";
    let resp = c
        .call(req(
            RequestCode::UpdateAndCreateTopic,
            &create_header(TOPIC, 1),
        ))
        .await;
    assert_eq!(resp.code, ResponseCode::Success.code(), "{:?}", resp.remark);

    // Five messages: keys "order-<i> common", the even ones also "even".
    let mut sent = Vec::new();
    for i in 0..5 {
        let keys = if i % 2 == 0 {
            format!("order-{i} common even")
        } else {
            format!("order-{i} common")
        };
        let uniq = format!("7F00000100002A9F00000000000000{i:02}");
        let h = send(&mut c, TOPIC, &keys, &uniq, &format!("body {i}")).await;
        assert_eq!(h.queue_offset, i as i64);
        sent.push((uniq, h));
    }
    // Another topic with the same key must not show up.
    let resp = c
        .call(req(
            RequestCode::UpdateAndCreateTopic,
            &create_header("QueryOtherTopic", 1),
        ))
        .await;
    assert_eq!(resp.code, ResponseCode::Success.code());
    send(
        &mut c,
        "QueryOtherTopic",
        "common",
        "7F00000100002A9F0000000000000099",
        "other",
    )
    .await;

    // VIEW_MESSAGE_BY_ID with the offset from each send's msgId, on the leader and on a
    // follower once it applied everything.
    let follower = followers(&group, &leader)[0].clone();
    let mut f = RawClient::connect(follower.client_addr()).await;
    let last_offset = decode_offset_msg_id(&sent[4].1.msg_id).unwrap().1;
    let deadline = Instant::now() + DEADLINE;
    while f.call(view(last_offset, None)).await.code != ResponseCode::Success.code() {
        assert!(
            Instant::now() < deadline,
            "follower never served the last record"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut store_times = Vec::new();
    for client in [&mut c, &mut f] {
        for (i, (uniq, h)) in sent.iter().enumerate() {
            let (addr, offset) = decode_offset_msg_id(&h.msg_id).unwrap();
            assert_eq!(addr, leader.client_addr());
            let resp = client.call(view(offset, Some(TOPIC))).await;
            assert_eq!(resp.code, ResponseCode::Success.code(), "{:?}", resp.remark);
            let records = MessageRecord::decode_all(&resp.body).unwrap();
            assert_eq!(records.len(), 1);
            let r = &records[0];
            assert_eq!(r.physical_offset, offset);
            assert_eq!(r.queue_offset, i as i64);
            assert_eq!(r.topic, TOPIC);
            assert_eq!(r.body.as_ref(), format!("body {i}").as_bytes());
            assert_eq!(r.properties.get("UNIQ_KEY"), Some(uniq.as_str()));
            assert_eq!(r.offset_msg_id(), h.msg_id);
            store_times.push(r.store_timestamp);
        }
    }
    // A wrong topic, a bogus offset, an offset inside a record: SYSTEM_ERROR.
    let first = decode_offset_msg_id(&sent[0].1.msg_id).unwrap().1;
    for (offset, topic) in [
        (first, Some("QueryOtherTopic")),
        (first + 1, None),
        (123_456_789_012, None),
        (-5, None),
    ] {
        let resp = c.call(view(offset, topic)).await;
        assert_eq!(resp.code, ResponseCode::SystemError.code(), "{offset}");
        assert_eq!(
            resp.remark.as_deref(),
            Some(format!("can not find message by the offset, {offset}").as_str())
        );
    }

    // QUERY_MESSAGE by key: exactly the matching records of this topic, newest first.
    let uniq_of = |records: &[MessageRecord]| -> Vec<String> {
        records
            .iter()
            .map(|r| r.properties.get("UNIQ_KEY").unwrap().to_owned())
            .collect()
    };
    for client in [&mut c, &mut f] {
        let resp = client.call(query(TOPIC, "even", false)).await;
        assert_eq!(resp.code, ResponseCode::Success.code(), "{:?}", resp.remark);
        let h: QueryMessageResponseHeader = resp.header().unwrap();
        assert!(h.index_last_update_timestamp >= store_times[4]);
        assert!(h.index_last_update_phyoffset > last_offset);
        let records = MessageRecord::decode_all(&resp.body).unwrap();
        assert_eq!(
            uniq_of(&records),
            [4, 2, 0].map(|i| sent[i].0.clone()).to_vec()
        );
        assert!(records.iter().all(|r| r.topic == TOPIC));
        assert_eq!(records[0].queue_offset, 4);

        let resp = client.call(query(TOPIC, "common", false)).await;
        let records = MessageRecord::decode_all(&resp.body).unwrap();
        assert_eq!(records.len(), 5, "the other topic's record is not included");

        let resp = client.call(query(TOPIC, "order-3", false)).await;
        let records = MessageRecord::decode_all(&resp.body).unwrap();
        assert_eq!(uniq_of(&records), vec![sent[3].0.clone()]);

        // By UNIQ_KEY.
        let resp = client.call(query(TOPIC, &sent[1].0, true)).await;
        assert_eq!(resp.code, ResponseCode::Success.code(), "{:?}", resp.remark);
        let records = MessageRecord::decode_all(&resp.body).unwrap();
        assert_eq!(uniq_of(&records), vec![sent[1].0.clone()]);
        assert_eq!(records[0].offset_msg_id(), sent[1].1.msg_id);

        // Nothing: QUERY_NOT_FOUND, header still filled.
        let resp = client.call(query(TOPIC, "no-such-key", false)).await;
        assert_eq!(resp.code, ResponseCode::QueryNotFound.code());
        assert!(resp.header::<QueryMessageResponseHeader>().is_ok());
        // Outside the time range.
        let mut r = query(TOPIC, "even", false);
        r.ext_fields.insert("endTimestamp", "1000");
        assert_eq!(
            client.call(r).await.code,
            ResponseCode::QueryNotFound.code()
        );
    }

    // SEARCH_OFFSET_BY_TIMESTAMP and GET_EARLIEST_MSG_STORETIME.
    let search = |timestamp: i64, boundary: Option<&str>| {
        req(
            RequestCode::SearchOffsetByTimestamp,
            &SearchOffsetRequestHeader {
                topic: TOPIC.into(),
                queue_id: 0,
                timestamp,
                boundary_type: boundary.map(str::to_owned),
                bname: None,
            },
        )
    };
    let far_future = store_times[4] + 3_600_000;
    for client in [&mut c, &mut f] {
        for (timestamp, boundary, expected) in [
            (0, None, 0),
            (store_times[0], Some("LOWER"), 0),
            (far_future, None, 5),
            (far_future, Some("UPPER"), 4),
            (0, Some("upper"), 0),
        ] {
            let resp = client.call(search(timestamp, boundary)).await;
            assert_eq!(resp.code, ResponseCode::Success.code());
            let offset = resp.header::<OffsetResponseHeader>().unwrap().offset;
            assert_eq!(offset, expected, "{timestamp} {boundary:?}");
        }
        // The first message stored at or after message 2's time is at most message 2.
        let resp = client.call(search(store_times[2], None)).await;
        let offset = resp.header::<OffsetResponseHeader>().unwrap().offset;
        assert!(offset <= 2 && store_times[offset as usize] == store_times[2]);

        let resp = client
            .call(req(
                RequestCode::GetEarliestMsgStoretime,
                &QueueRequestHeader {
                    topic: TOPIC.into(),
                    queue_id: 0,
                    bname: None,
                },
            ))
            .await;
        assert_eq!(resp.code, ResponseCode::Success.code());
        let h: EarliestMsgStoretimeResponseHeader = resp.header().unwrap();
        assert_eq!(h.timestamp, store_times[0]);
    }
    group.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_info_and_group_status() {
    let group = Group::start("broker-info").await;
    let leader = stable_leader(&group).await;
    let mut c = RawClient::connect(leader.client_addr()).await;
    let h = send(
        &mut c,
        "InfoTopic",
        "k",
        "7F00000100002A9F0000000000000001",
        "x",
    )
    .await;
    let pull = PullMessageRequestHeader {
        consumer_group: "InfoGroup".into(),
        topic: "InfoTopic".into(),
        queue_id: h.queue_id,
        queue_offset: 0,
        max_msg_nums: 32,
        ..Default::default()
    };
    let resp = c.call(req(RequestCode::PullMessage, &pull)).await;
    assert_eq!(resp.code, ResponseCode::Success.code(), "{:?}", resp.remark);

    let resp = c.call(bare(RequestCode::GetBrokerRuntimeInfo)).await;
    assert_eq!(resp.code, ResponseCode::Success.code());
    let kv: KvTable = decode_json("runtime", &resp.body).unwrap();
    let t = &kv.table;
    for key in [
        "brokerVersionDesc",
        "brokerActive",
        "msgPutTotalTodayNow",
        "msgPutTotalTodayMorning",
        "msgPutTotalYesterdayMorning",
        "msgGetTotalTodayNow",
        "commitLogMinOffset",
        "commitLogMaxOffset",
        "commitLogDirCapacity",
        "commitLogDiskRatio",
        "dispatchBehindBytes",
        "earliestMessageTimeStamp",
        "bootTimestamp",
        "startAcceptSendRequestTimeStamp",
        "putTps",
        "getTotalTps",
        "getTransferedTps",
        "runtime",
        "raftRole",
        "raftTerm",
        "raftLeaderId",
        "raftCommitIndex",
        "raftAppliedIndex",
        "raftLastLogIndex",
    ] {
        assert!(t.contains_key(key), "missing {key}: {t:?}");
    }
    let num = |k: &str| -> i64 { t[k].parse().unwrap_or_else(|_| panic!("{k}={}", t[k])) };
    assert_eq!(t["brokerVersionDesc"], "V5_3_3");
    assert_eq!(t["brokerActive"], "true");
    assert_eq!(t["raftRole"], "leader");
    assert_eq!(num("raftLeaderId"), leader.node().id() as i64);
    assert_eq!(num("msgPutTotalTodayNow"), 1);
    assert_eq!(num("msgGetTotalTodayNow"), 1);
    assert!(num("commitLogMaxOffset") > num("commitLogMinOffset"));
    assert!(num("raftAppliedIndex") >= 1);
    assert!(num("raftLastLogIndex") >= num("raftAppliedIndex"));
    assert!(num("startAcceptSendRequestTimeStamp") >= num("bootTimestamp"));
    let earliest = num("earliestMessageTimeStamp");
    assert!(earliest >= num("bootTimestamp"), "{earliest}");
    assert!(t["commitLogDirCapacity"].starts_with("Total : "));
    let ratio: f64 = t["commitLogDiskRatio"].parse().unwrap();
    assert!((0.0..=1.0).contains(&ratio));
    assert_eq!(t["putTps"].split(' ').count(), 3);
    assert!(t["runtime"].starts_with("[ 0 days, 0 hours, "));

    // A follower answers too, as a follower.
    let follower = followers(&group, &leader)[0].clone();
    let mut f = RawClient::connect(follower.client_addr()).await;
    let resp = f.call(bare(RequestCode::GetBrokerRuntimeInfo)).await;
    let kv: KvTable = decode_json("runtime", &resp.body).unwrap();
    assert_eq!(kv.table["raftRole"], "follower");
    assert_eq!(kv.table["brokerActive"], "false");
    assert_eq!(kv.table["startAcceptSendRequestTimeStamp"], "0");

    // RAFTMQ_GROUP_STATUS on every node.
    for node in &group.nodes {
        let mut n = RawClient::connect(node.client_addr()).await;
        let resp = n.call(bare(RequestCode::RaftGroupStatus)).await;
        assert_eq!(resp.code, ResponseCode::Success.code());
        let s: RaftGroupStatus = decode_json("status", &resp.body).unwrap();
        assert_eq!(s.node_id, node.node().id());
        assert_eq!(s.client_addr, node.client_addr().to_string());
        assert_eq!(s.broker_name, "broker-info");
        assert_eq!(s.peers.len(), 3);
        assert_eq!(s.leader_id, Some(leader.node().id()));
        let expected_role = if Arc::ptr_eq(node, &leader) {
            "leader"
        } else {
            "follower"
        };
        assert_eq!(s.role, expected_role);
        assert!(s.term >= 1);
        assert!(s.applied_index.is_some() && s.last_log_index.is_some());
    }
    group.shutdown().await;
}

/// Transfers leadership with RAFTMQ_LEADER_TRANSFER; waits until `target` leads and the
/// NameServer names it master.
async fn transfer(group: &Group, from: &Arc<Broker>, target: Option<&str>) -> Arc<Broker> {
    let mut c = RawClient::connect(from.client_addr()).await;
    let h = RaftLeaderTransferRequestHeader {
        target_id: target.map(str::to_owned),
    };
    let resp = c.call(req(RequestCode::RaftLeaderTransfer, &h)).await;
    assert_eq!(resp.code, ResponseCode::Success.code(), "{:?}", resp.remark);
    let new_leader = stable_leader(group).await;
    assert!(!Arc::ptr_eq(&new_leader, from), "leadership did not move");
    if let Some(t) = target {
        assert_eq!(format!("n{}", new_leader.node().id()), t);
    }
    let ns = group.namesrv;
    let addr = new_leader.client_addr().to_string();
    wait_until("the new master in the route", DEADLINE, || async {
        route(ns, "TBW102")
            .await
            .is_some_and(|r| master_of(&r).as_deref() == Some(addr.as_str()))
    })
    .await;
    new_leader
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_transfer_moves_the_master() {
    let group = Group::start("broker-transfer").await;
    let leader = stable_leader(&group).await;
    let ns = group.namesrv;
    let addr = leader.client_addr().to_string();
    wait_until("the first master in the route", DEADLINE, || async {
        route(ns, "TBW102")
            .await
            .is_some_and(|r| master_of(&r).as_deref() == Some(addr.as_str()))
    })
    .await;

    // Refusals: on a follower (names the leader), and an unknown target.
    let follower = followers(&group, &leader)[0].clone();
    let mut f = RawClient::connect(follower.client_addr()).await;
    let resp = f
        .call(req(
            RequestCode::RaftLeaderTransfer,
            &RaftLeaderTransferRequestHeader { target_id: None },
        ))
        .await;
    assert_eq!(resp.code, ResponseCode::SystemBusy.code());
    assert!(resp.remark.unwrap().contains("raft leader is node"));
    let mut c = RawClient::connect(leader.client_addr()).await;
    let resp = c
        .call(req(
            RequestCode::RaftLeaderTransfer,
            &RaftLeaderTransferRequestHeader {
                target_id: Some("n7".into()),
            },
        ))
        .await;
    assert_eq!(resp.code, ResponseCode::InvalidParameter.code());
    assert!(resp.remark.unwrap().contains("n7"));

    // To a named follower, then to whichever follower the leader picks.
    let target = format!("n{}", follower.node().id());
    let second = transfer(&group, &leader, Some(&target)).await;
    assert!(Arc::ptr_eq(&second, &follower));
    let third = transfer(&group, &second, None).await;
    assert!(!Arc::ptr_eq(&third, &second));

    // The new master takes writes.
    let mut c = RawClient::connect(third.client_addr()).await;
    send(
        &mut c,
        "AfterTransfer",
        "k",
        "7F00000100002A9F0000000000000042",
        "x",
    )
    .await;
    group.shutdown().await;
}

/// Waits until node `id` is the settled leader and the NameServer names it master.
async fn wait_for_master(group: &Group, id: u64) -> Arc<Broker> {
    let deadline = Instant::now() + DEADLINE;
    let leader = loop {
        let leader = stable_leader(group).await;
        if leader.node().id() == id {
            break leader;
        }
        assert!(Instant::now() < deadline, "node {id} never led");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let ns = group.namesrv;
    let addr = leader.client_addr().to_string();
    wait_until("the preferred master in the route", DEADLINE, || async {
        route(ns, "TBW102")
            .await
            .is_some_and(|r| master_of(&r).as_deref() == Some(addr.as_str()))
    })
    .await;
    leader
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferred_leader_takes_over_and_comes_back() {
    let group = Group::start_with("broker-preferred", "preferredLeaderId=n2\n").await;
    // n0 forms the group and usually leads first; leadership then moves to n2.
    let preferred = wait_for_master(&group, 2).await;
    let term = preferred.node().status().borrow().term;

    // Moved away by hand, it comes back once n2 is a caught-up follower again.
    let target = followers(&group, &preferred)[0].node().id();
    let moved = transfer(&group, &preferred, Some(&format!("n{target}"))).await;
    assert_eq!(moved.node().id(), target);
    let back = wait_for_master(&group, 2).await;
    assert!(back.node().status().borrow().term >= term + 2);
    group.shutdown().await;
}
