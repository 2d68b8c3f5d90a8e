//! Long polling and the consumer tables on an in-process 3-node group: a parked pull is
//! answered by a later send (on the master, and on a follower by its own apply), a short
//! suspend times out by itself, heartbeats feed GET_CONSUMER_LIST_BY_GROUP and the
//! NOTIFY_CONSUMER_IDS_CHANGED pushes, closing a connection removes its client; a parked
//! pull skips messages its tags reject; heartbeats create `%RETRY%` topics; pulls check
//! the registered subVersion.
//! Conditions are awaited with deadlines, never slept on.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{a_follower, req, stable_leader, wait_until, Group, RawClient};
use raftmq_broker::broker::Broker;
use raftmq_protocol::body::{
    decode_json, encode_json, ConsumerData, ConsumerIdList, HeartbeatData, SubscriptionData,
    TopicRouteData,
};
use raftmq_protocol::codes::{RequestCode, ResponseCode};
use raftmq_protocol::headers::{
    ConsumerGroupRequestHeader, GetMaxOffsetRequestHeader, GetRouteInfoRequestHeader,
    OffsetResponseHeader, PullMessageRequestHeader, PullMessageResponseHeader,
    SendMessageRequestHeaderV2, SendMessageResponseHeader, UnregisterClientRequestHeader,
    PULL_FLAG_LITE_PULL, PULL_FLAG_SUBSCRIPTION, PULL_FLAG_SUSPEND,
};
use raftmq_protocol::message::{encode_properties, MessageRecord};
use raftmq_protocol::{RemotingCommand, StrMap};

const DEADLINE: Duration = Duration::from_secs(30);
const TOPIC: &str = "LongPollTopic";

/// Sends one `body` tagged `tag` to queue 0; returns its queue offset.
async fn send(c: &mut RawClient, tag: &str, body: &str) -> i64 {
    let mut props = StrMap::new();
    props.insert("TAGS", tag);
    let h = SendMessageRequestHeaderV2 {
        a: "ProducerGroupA".into(),
        b: TOPIC.into(),
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
    resp.header::<SendMessageResponseHeader>()
        .unwrap()
        .queue_offset
}

fn pull(group: &str, offset: i64, sys_flag: i32, suspend_ms: i64) -> RemotingCommand {
    let h = PullMessageRequestHeader {
        consumer_group: group.into(),
        topic: TOPIC.into(),
        queue_id: 0,
        queue_offset: offset,
        max_msg_nums: 32,
        sys_flag,
        suspend_timeout_millis: suspend_ms,
        ..Default::default()
    };
    req(RequestCode::PullMessage, &h)
}

async fn max_offset(c: &mut RawClient) -> i64 {
    let h = GetMaxOffsetRequestHeader {
        topic: TOPIC.into(),
        queue_id: 0,
        ..Default::default()
    };
    let resp = c.call(req(RequestCode::GetMaxOffset, &h)).await;
    resp.header::<OffsetResponseHeader>().unwrap().offset
}

/// Waits for the response to `opaque`; returns it with the pushed requests seen before.
async fn response(c: &mut RawClient, opaque: i32) -> (RemotingCommand, Vec<RemotingCommand>) {
    let mut pushes = Vec::new();
    loop {
        let f = c.recv().await.expect("connection closed");
        if f.is_response() {
            assert_eq!(f.opaque, opaque);
            return (f, pushes);
        }
        pushes.push(f);
    }
}

/// Waits until `node` holds `n` parked pulls.
async fn parked(node: &Broker, n: usize) {
    wait_until("parked pulls", DEADLINE, || async {
        node.parked_pulls() == n
    })
    .await;
}

fn assert_one_message(resp: &RemotingCommand, offset: i64, body: &str) {
    assert_eq!(resp.code, ResponseCode::Success.code(), "{:?}", resp.remark);
    let records = MessageRecord::decode_all(&resp.body).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].queue_offset, offset);
    assert_eq!(&records[0].body[..], body.as_bytes());
    let ph: PullMessageResponseHeader = resp.header().unwrap();
    assert_eq!(ph.next_begin_offset, offset + 1);
}

fn heartbeat(client: &str, group: &str, topic: &str, tag: &str) -> RemotingCommand {
    heartbeat_with(client, group, topic, tag, 0, "CLUSTERING")
}

/// A heartbeat of one consumer group with one subscription of version `sub_version`.
fn heartbeat_with(
    client: &str,
    group: &str,
    topic: &str,
    tag: &str,
    sub_version: i64,
    model: &str,
) -> RemotingCommand {
    let hb = HeartbeatData {
        client_id: client.into(),
        consumer_data_set: vec![ConsumerData {
            group_name: group.into(),
            consume_type: "CONSUME_PASSIVELY".into(),
            message_model: model.into(),
            subscription_data_set: vec![SubscriptionData {
                topic: topic.into(),
                sub_string: tag.into(),
                sub_version,
                ..SubscriptionData::default()
            }],
            ..ConsumerData::default()
        }],
        ..HeartbeatData::default()
    };
    RemotingCommand::request(RequestCode::HeartBeat.code(), StrMap::new())
        .with_body(encode_json(&hb))
}

/// A pull of queue 0 with its own subscription expression (PullSysFlag bit 2 is added).
fn pull_sub(
    group: &str,
    offset: i64,
    sys_flag: i32,
    suspend_ms: i64,
    expr: &str,
) -> RemotingCommand {
    let h = PullMessageRequestHeader {
        consumer_group: group.into(),
        topic: TOPIC.into(),
        queue_id: 0,
        queue_offset: offset,
        max_msg_nums: 32,
        sys_flag: sys_flag | PULL_FLAG_SUBSCRIPTION,
        suspend_timeout_millis: suspend_ms,
        subscription: Some(expr.into()),
        ..Default::default()
    };
    req(RequestCode::PullMessage, &h)
}

/// A pull of queue 0 relying on the heartbeat-registered subscription, at `sub_version`.
fn pull_versioned(group: &str, offset: i64, sub_version: i64) -> RemotingCommand {
    let h = PullMessageRequestHeader {
        consumer_group: group.into(),
        topic: TOPIC.into(),
        queue_id: 0,
        queue_offset: offset,
        max_msg_nums: 32,
        sub_version,
        ..Default::default()
    };
    req(RequestCode::PullMessage, &h)
}

/// Sends a heartbeat on `c` and asserts SUCCESS.
async fn heartbeat_ok(c: &mut RawClient, hb: RemotingCommand) {
    let o = c.send(hb).await;
    let (resp, _) = response(c, o).await;
    assert_eq!(resp.code, ResponseCode::Success.code(), "{:?}", resp.remark);
}

async fn consumer_list(c: &mut RawClient, group: &str) -> Result<Vec<String>, String> {
    let h = ConsumerGroupRequestHeader {
        consumer_group: group.into(),
    };
    let opaque = c.send(req(RequestCode::GetConsumerListByGroup, &h)).await;
    let (resp, _) = response(c, opaque).await;
    if resp.code == ResponseCode::Success.code() {
        let ids: ConsumerIdList = decode_json("ids", &resp.body).unwrap();
        Ok(ids.consumer_id_list)
    } else {
        assert_eq!(resp.code, ResponseCode::SystemError.code());
        Err(resp.remark.unwrap_or_default())
    }
}

fn assert_ids_changed(push: &RemotingCommand, group: &str) {
    assert_eq!(push.code, RequestCode::NotifyConsumerIdsChanged.code());
    assert!(!push.is_response() && push.is_oneway());
    let h: ConsumerGroupRequestHeader = push.header().unwrap();
    assert_eq!(h.consumer_group, group);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polls_wake_on_apply_on_leader_and_follower() {
    let group = Group::start("broker-lp").await;
    let leader = stable_leader(&group).await;
    let follower = a_follower(&group, &leader);
    let mut c = RawClient::connect(leader.client_addr()).await;
    assert_eq!(send(&mut c, "TagA", "first").await, 0);

    // Parked on the leader's empty tail, answered by a send from another connection.
    let mut p = RawClient::connect(leader.client_addr()).await;
    let opaque = p.send(pull("CG", 1, PULL_FLAG_SUSPEND, 20_000)).await;
    parked(&leader, 1).await;
    assert_eq!(send(&mut c, "TagA", "second").await, 1);
    let (resp, _) = response(&mut p, opaque).await;
    assert_one_message(&resp, 1, "second");
    parked(&leader, 0).await;

    // A short suspend answers PULL_NOT_FOUND by itself, after holding.
    let start = Instant::now();
    let resp = p.call(pull("CG", 2, PULL_FLAG_SUSPEND, 300)).await;
    assert_eq!(resp.code, ResponseCode::PullNotFound.code());
    let held = start.elapsed();
    assert!(held >= Duration::from_millis(250), "held {held:?}");
    assert!(held < Duration::from_secs(10), "held {held:?}");

    // Parked on a follower, woken by that follower's apply.
    let mut f = RawClient::connect(follower.client_addr()).await;
    wait_until("the follower applies offset 1", DEADLINE, || {
        let addr = follower.client_addr();
        async move { max_offset(&mut RawClient::connect(addr).await).await == 2 }
    })
    .await;
    let opaque = f.send(pull("CG", 2, PULL_FLAG_SUSPEND, 20_000)).await;
    parked(&follower, 1).await;
    assert_eq!(send(&mut c, "TagA", "third").await, 2);
    let (resp, _) = response(&mut f, opaque).await;
    assert_one_message(&resp, 2, "third");

    // Without the subscription flag the heartbeat-registered subscription filters.
    let (resp, _) = {
        let o = c.send(heartbeat("c1", "TagBGroup", TOPIC, "TagB")).await;
        response(&mut c, o).await
    };
    assert_eq!(resp.code, ResponseCode::Success.code());
    let resp = c.call(pull("TagBGroup", 0, 0, 0)).await;
    assert!(MessageRecord::decode_all(&resp.body).unwrap().is_empty());
    assert_ne!(resp.code, ResponseCode::Success.code());
    let (resp, _) = {
        let o = c
            .send(heartbeat("c1", "OtherGroup", "Elsewhere", "*"))
            .await;
        response(&mut c, o).await
    };
    assert_eq!(resp.code, ResponseCode::Success.code());
    let resp = c.call(pull("OtherGroup", 0, 0, 0)).await;
    assert_eq!(resp.code, ResponseCode::SubscriptionNotExist.code());
    // No heartbeat at all: `*`.
    let resp = c.call(pull("NoHeartbeatGroup", 0, 0, 0)).await;
    assert_eq!(resp.code, ResponseCode::Success.code());

    // LITE_PULL_MESSAGE (361), as lite-pull consumers send it, is a pull.
    let mut lite = pull(
        "LiteGroup",
        2,
        PULL_FLAG_SUBSCRIPTION | PULL_FLAG_LITE_PULL,
        0,
    );
    lite.code = RequestCode::LitePullMessage.code();
    assert_one_message(&c.call(lite).await, 2, "third");

    group.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_list_notify_and_expire_with_the_connection() {
    let group = Group::start("broker-cl").await;
    let addr: SocketAddr = group.nodes[0].client_addr();
    let mut a = RawClient::connect(addr).await;
    let mut b = RawClient::connect(addr).await;

    assert_eq!(
        consumer_list(&mut a, "CG").await,
        Err("no consumer for this group, CG".to_owned())
    );
    let o = a.send(heartbeat("c1", "CG", "T", "*")).await;
    let (resp, pushes) = response(&mut a, o).await;
    assert_eq!(resp.code, ResponseCode::Success.code());
    // The joiner is told too (as Java does), before the heartbeat's answer.
    assert_eq!(pushes.len(), 1);
    assert_ids_changed(&pushes[0], "CG");
    assert_eq!(consumer_list(&mut a, "CG").await.unwrap(), vec!["c1"]);

    // A second client joins: the first is told on its own connection.
    let o = b.send(heartbeat("c2", "CG", "T", "*")).await;
    let (resp, _) = response(&mut b, o).await;
    assert_eq!(resp.code, ResponseCode::Success.code());
    assert_ids_changed(&a.recv().await.unwrap(), "CG");
    assert_eq!(consumer_list(&mut a, "CG").await.unwrap(), vec!["c1", "c2"]);

    // A repeated heartbeat changes nothing: no push before its answer.
    let o = b.send(heartbeat("c2", "CG", "T", "*")).await;
    let (_, pushes) = response(&mut b, o).await;
    assert!(pushes.is_empty());

    // Closing b's connection removes c2 and tells c1.
    drop(b);
    assert_ids_changed(&a.recv().await.unwrap(), "CG");
    assert_eq!(consumer_list(&mut a, "CG").await.unwrap(), vec!["c1"]);

    // UNREGISTER_CLIENT empties the group.
    let h = UnregisterClientRequestHeader {
        client_id: "c1".into(),
        producer_group: None,
        consumer_group: Some("CG".into()),
    };
    let o = a.send(req(RequestCode::UnregisterClient, &h)).await;
    let (resp, _) = response(&mut a, o).await;
    assert_eq!(resp.code, ResponseCode::Success.code());
    assert!(consumer_list(&mut a, "CG").await.is_err());

    group.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_pull_skips_rejected_tags_until_a_match_or_its_deadline() {
    let group = Group::start("broker-tags").await;
    let leader = stable_leader(&group).await;
    let mut c = RawClient::connect(leader.client_addr()).await;
    assert_eq!(send(&mut c, "TagA", "a0").await, 0);

    // Parked for TagA; TagB traffic wakes it, it skips the TagB messages and parks again.
    let mut p = RawClient::connect(leader.client_addr()).await;
    let opaque = p
        .send(pull_sub("CG", 1, PULL_FLAG_SUSPEND, 20_000, "TagA"))
        .await;
    parked(&leader, 1).await;
    assert_eq!(send(&mut c, "TagB", "b1").await, 1);
    assert_eq!(send(&mut c, "TagB", "b2").await, 2);
    wait_until("the pull re-parks after TagB", DEADLINE, || async {
        leader.reparked_pulls() >= 1
    })
    .await;
    assert_eq!(leader.parked_pulls(), 1, "still parked, not answered");
    // Its one answer is the TagA message that arrives next.
    assert_eq!(send(&mut c, "TagA", "a3").await, 3);
    let (resp, _) = response(&mut p, opaque).await;
    assert_one_message(&resp, 3, "a3");
    parked(&leader, 0).await;

    // Only TagB traffic: answered at the suspend deadline, past the TagB messages.
    let hold = Duration::from_millis(4_000);
    let start = Instant::now();
    let opaque = p
        .send(pull_sub(
            "CG",
            4,
            PULL_FLAG_SUSPEND,
            hold.as_millis() as i64,
            "TagA",
        ))
        .await;
    parked(&leader, 1).await;
    let reparked = leader.reparked_pulls();
    assert_eq!(send(&mut c, "TagB", "b4").await, 4);
    assert_eq!(send(&mut c, "TagB", "b5").await, 5);
    let sent = start.elapsed();
    assert!(
        sent < hold,
        "sends took {sent:?}: the test needs them within the hold"
    );
    let (resp, _) = response(&mut p, opaque).await;
    let held = start.elapsed();
    assert!(
        held >= hold - Duration::from_millis(50),
        "answered after {held:?}, before the hold of {hold:?}"
    );
    assert!(leader.reparked_pulls() > reparked);
    assert_eq!(
        resp.code,
        ResponseCode::PullRetryImmediately.code(),
        "{:?}",
        resp.remark
    );
    assert!(resp.body.is_empty());
    let ph: PullMessageResponseHeader = resp.header().unwrap();
    assert_eq!(ph.next_begin_offset, 6);
    assert_eq!(ph.max_offset, 6);

    // A pull that is not suspended still answers at once.
    let resp = p.call(pull_sub("CG", 4, 0, 0, "TagA")).await;
    assert_eq!(resp.code, ResponseCode::PullRetryImmediately.code());
    let ph: PullMessageResponseHeader = resp.header().unwrap();
    assert_eq!(ph.next_begin_offset, 6);

    group.shutdown().await;
}

/// True when `topic` has a route with exactly one queue of perm 6 at the NameServer.
async fn routed_as_retry_topic(namesrv: SocketAddr, topic: &str) -> bool {
    let h = GetRouteInfoRequestHeader {
        topic: topic.into(),
        ..Default::default()
    };
    let resp = RawClient::connect(namesrv)
        .await
        .call(req(RequestCode::GetRouteinfoByTopic, &h))
        .await;
    if resp.code != ResponseCode::Success.code() {
        return false;
    }
    let route: TopicRouteData = decode_json("route", &resp.body).unwrap();
    route.queue_datas.len() == 1
        && route.queue_datas[0].read_queue_nums == 1
        && route.queue_datas[0].write_queue_nums == 1
        && route.queue_datas[0].perm == 6
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_create_retry_topics_and_pulls_check_the_sub_version() {
    let group = Group::start("broker-hb").await;
    let leader = stable_leader(&group).await;
    let follower = a_follower(&group, &leader);
    let mut c = RawClient::connect(leader.client_addr()).await;
    let mut f = RawClient::connect(follower.client_addr()).await;

    // A broadcasting group gets no retry topic; a clustering group does, created by the
    // leader (the follower that hears the heartbeat first cannot propose), replicated to
    // every node and routed by the NameServer.
    heartbeat_ok(
        &mut c,
        heartbeat_with("c1", "BG", TOPIC, "*", 1, "BROADCASTING"),
    )
    .await;
    heartbeat_ok(&mut f, heartbeat("c2", "CG", TOPIC, "*")).await;
    heartbeat_ok(&mut c, heartbeat("c2", "CG", TOPIC, "*")).await;
    for n in &group.nodes {
        wait_until("%RETRY%CG on every node", DEADLINE, || async {
            n.node()
                .state_machine()
                .with(|sm| sm.topic("%RETRY%CG").cloned())
                .is_some_and(|t| t.read_queue_nums == 1 && t.write_queue_nums == 1 && t.perm == 6)
        })
        .await;
    }
    wait_until("%RETRY%CG routed", DEADLINE, || {
        routed_as_retry_topic(group.namesrv, "%RETRY%CG")
    })
    .await;
    assert!(leader
        .node()
        .state_machine()
        .with(|sm| sm.topic("%RETRY%BG").is_none()));

    // SUBSCRIPTION_NOT_LATEST: the pull's subVersion is newer than the registered one.
    assert_eq!(send(&mut c, "TagA", "m0").await, 0);
    heartbeat_ok(
        &mut c,
        heartbeat_with("c3", "SV", TOPIC, "*", 100, "CLUSTERING"),
    )
    .await;
    let resp = c.call(pull_versioned("SV", 0, 200)).await;
    assert_eq!(
        resp.code,
        ResponseCode::SubscriptionNotLatest.code(),
        "{:?}",
        resp.remark
    );
    let resp = c.call(pull_versioned("SV", 0, 100)).await;
    assert_eq!(resp.code, ResponseCode::Success.code(), "{:?}", resp.remark);
    let resp = c.call(pull_versioned("SV", 0, 50)).await;
    assert_eq!(
        resp.code,
        ResponseCode::Success.code(),
        "older pulls are served"
    );
    // A pull carrying its own subscription does not depend on the registered one.
    let resp = c.call(pull_sub("SV", 0, 0, 0, "*")).await;
    assert_eq!(resp.code, ResponseCode::Success.code(), "{:?}", resp.remark);
    // The next heartbeat brings the new version.
    heartbeat_ok(
        &mut c,
        heartbeat_with("c3", "SV", TOPIC, "*", 200, "CLUSTERING"),
    )
    .await;
    let resp = c.call(pull_versioned("SV", 0, 200)).await;
    assert_eq!(resp.code, ResponseCode::Success.code(), "{:?}", resp.remark);

    group.shutdown().await;
}
