//! A 3-node broker group and a NameServer in process, driven by a raw remoting client:
//! master election and registration, sends (single and batch), pulls from the master and a
//! follower, offsets, follower refusal, malformed frames. Conditions are awaited with
//! deadlines, never slept on.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::Bytes;
use common::{req, send_retry, stable_master, Group, RawClient, DEADLINE, POLL};
use raftmq_broker::broker::NOT_LEADER_REMARK;
use raftmq_protocol::codes::{RequestCode, ResponseCode};
use raftmq_protocol::headers::{
    GetMaxOffsetRequestHeader, OffsetResponseHeader, PullMessageRequestHeader,
    PullMessageResponseHeader, QueryConsumerOffsetRequestHeader, SendMessageRequestHeaderV2,
    SendMessageResponseHeader, UpdateConsumerOffsetRequestHeader,
};
use raftmq_protocol::message::{encode_batch, encode_properties, BatchItem, MessageRecord};
use raftmq_protocol::msgid::decode_offset_msg_id;
use raftmq_protocol::{RemotingCommand, StrMap};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOPIC: &str = "TopicTest";

fn send_header(queue_id: i32, props: Option<String>) -> SendMessageRequestHeaderV2 {
    SendMessageRequestHeaderV2 {
        a: "ProducerGroupA".into(),
        b: TOPIC.into(),
        c: "TBW102".into(),
        d: 4,
        e: queue_id,
        g: 1_700_000_000_000,
        i: props,
        ..Default::default()
    }
}

fn pull_header(queue_offset: i64) -> PullMessageRequestHeader {
    PullMessageRequestHeader {
        consumer_group: "ConsumerGroupA".into(),
        topic: TOPIC.into(),
        queue_id: 0,
        queue_offset,
        max_msg_nums: 32,
        sys_flag: 0,
        suspend_timeout_millis: 15_000,
        ..Default::default()
    }
}

async fn max_offset(c: &mut RawClient, queue_id: i32) -> i64 {
    let h = GetMaxOffsetRequestHeader {
        topic: TOPIC.into(),
        queue_id,
        ..Default::default()
    };
    let resp = c.call(req(RequestCode::GetMaxOffset, &h)).await;
    assert_eq!(resp.code, ResponseCode::Success.code());
    resp.header::<OffsetResponseHeader>().unwrap().offset
}

/// Waits until a send to `follower` is refused with a SYSTEM_BUSY whose remark names
/// `leader`'s client address (the first answers may still name its raft address while the
/// follower fetches it); returns that remark.
async fn busy_remark_naming(
    follower: std::net::SocketAddr,
    leader: std::net::SocketAddr,
    leader_id: u64,
) -> String {
    let mut f = RawClient::connect(follower).await;
    let want = format!("leader is {leader} (raft node {leader_id})");
    let deadline = Instant::now() + DEADLINE;
    loop {
        let resp = f
            .call(req(RequestCode::SendMessageV2, &send_header(0, None)).with_body(&b"x"[..]))
            .await;
        assert_eq!(
            resp.code,
            ResponseCode::SystemBusy.code(),
            "{:?}",
            resp.remark
        );
        let remark = resp.remark.unwrap_or_default();
        assert!(remark.starts_with(NOT_LEADER_REMARK), "{remark}");
        if remark.contains(&want) {
            return remark;
        }
        assert!(
            Instant::now() < deadline,
            "no remark naming {want} from {follower}; last: {remark}"
        );
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_busy_names_the_leaders_client_address() {
    let group = Group::start("broker-hint").await;
    let master = stable_master(&group).await;
    let leader = group
        .nodes
        .iter()
        .find(|n| n.client_addr() == master)
        .unwrap()
        .clone();
    let leader_id = leader.node().id();
    for f in group.nodes.iter().filter(|n| n.client_addr() != master) {
        let remark = busy_remark_naming(f.client_addr(), master, leader_id).await;
        let raft_addr = leader
            .config()
            .raft_peers()
            .get(&leader_id)
            .cloned()
            .unwrap();
        assert!(!remark.contains(&raft_addr), "{remark}");
    }

    // After a leadership change the hint follows the new leader.
    let target = group
        .nodes
        .iter()
        .find(|n| n.client_addr() != master)
        .unwrap()
        .clone();
    leader
        .node()
        .transfer_leadership(target.node().id(), DEADLINE)
        .await
        .unwrap();
    let new_master = stable_master(&group).await;
    assert_eq!(new_master, target.client_addr());
    for f in group.nodes.iter().filter(|n| n.client_addr() != new_master) {
        busy_remark_naming(f.client_addr(), new_master, target.node().id()).await;
    }
    group.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_pull_offsets_on_a_group() {
    let group = Group::start("broker-a").await;
    let mut master = stable_master(&group).await;
    let mut c = RawClient::connect(master).await;

    // Ten single sends: six to queue 0, four to a broker-picked queue.
    // queue, queue offset, offset msg id, body, single send
    let mut sent: Vec<(i32, i64, String, Bytes, bool)> = Vec::new();
    let mut last_per_queue: BTreeMap<i32, i64> = BTreeMap::new();
    for i in 0..10 {
        let queue = if i < 6 { 0 } else { -1 };
        let mut props = StrMap::new();
        props.insert("TAGS", "TagA");
        props.insert("UNIQ_KEY", format!("AC11000100002A9F0000000000000{i:03}"));
        let body = Bytes::from(format!("hello {i}"));
        let r = req(
            RequestCode::SendMessageV2,
            &send_header(queue, Some(encode_properties(&props))),
        )
        .with_body(body.clone());
        let resp = send_retry(&group, &mut c, &mut master, r).await;
        assert_eq!(resp.code, ResponseCode::Success.code(), "{:?}", resp.remark);
        let h: SendMessageResponseHeader = resp.header().unwrap();
        assert_eq!(h.msg_region, "DefaultRegion");
        assert_eq!(h.trace_on, "true");
        assert!(h.transaction_id.is_some());
        assert!((0..4).contains(&h.queue_id));
        if queue == 0 {
            assert_eq!(h.queue_id, 0);
        }
        let expected = last_per_queue.get(&h.queue_id).map_or(0, |o| o + 1);
        assert_eq!(h.queue_offset, expected, "queue offsets increase per queue");
        last_per_queue.insert(h.queue_id, h.queue_offset);
        let (addr, _) = decode_offset_msg_id(&h.msg_id).unwrap();
        assert_eq!(addr, master);
        sent.push((h.queue_id, h.queue_offset, h.msg_id.clone(), body, true));
    }

    // A batch of three to queue 0.
    let items: Vec<BatchItem> = (0..3)
        .map(|k| BatchItem {
            flag: 7,
            body: Bytes::from(format!("batch {k}")),
            properties: {
                let mut p = StrMap::new();
                p.insert("UNIQ_KEY", format!("AC11000100002A9F0000000000001{k:03}"));
                p
            },
        })
        .collect();
    let mut bh = send_header(0, None);
    bh.m = Some(true);
    let r = req(RequestCode::SendBatchMessage, &bh).with_body(encode_batch(&items).unwrap());
    let resp = send_retry(&group, &mut c, &mut master, r).await;
    assert_eq!(resp.code, ResponseCode::Success.code(), "{:?}", resp.remark);
    let h: SendMessageResponseHeader = resp.header().unwrap();
    let ids: Vec<&str> = h.msg_id.split(',').collect();
    assert_eq!(ids.len(), 3);
    // Broker-picked sends may have landed on queue 0 too.
    let base = sent.iter().filter(|s| s.0 == 0).count() as i64;
    assert_eq!(h.queue_offset, base);
    for (k, id) in ids.iter().enumerate() {
        let (addr, _) = decode_offset_msg_id(id).unwrap();
        assert_eq!(addr, master);
        sent.push((
            0,
            base + k as i64,
            id.to_string(),
            items[k].body.clone(),
            false,
        ));
    }
    let queue0: Vec<_> = sent.iter().filter(|s| s.0 == 0).cloned().collect();
    assert_eq!(max_offset(&mut c, 0).await, queue0.len() as i64);

    // Pull queue 0 back from the master and from a follower once it has applied it all.
    let follower = group
        .nodes
        .iter()
        .map(|n| n.client_addr())
        .find(|a| *a != master)
        .unwrap();
    let mut f = RawClient::connect(follower).await;
    let deadline = Instant::now() + DEADLINE;
    while max_offset(&mut f, 0).await != queue0.len() as i64 {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the follower to apply queue 0"
        );
        tokio::time::sleep(POLL).await;
    }
    for client in [&mut c, &mut f] {
        let resp = client
            .call(req(RequestCode::PullMessage, &pull_header(0)))
            .await;
        assert_eq!(resp.code, ResponseCode::Success.code(), "{:?}", resp.remark);
        let ph: PullMessageResponseHeader = resp.header().unwrap();
        assert_eq!(ph.next_begin_offset, queue0.len() as i64);
        assert_eq!((ph.min_offset, ph.max_offset), (0, queue0.len() as i64));
        let records = MessageRecord::decode_all(&resp.body).unwrap();
        assert_eq!(records.len(), queue0.len());
        for (rec, (_, qo, id, body, single)) in records.iter().zip(&queue0) {
            assert_eq!(&rec.body, body);
            assert_eq!(rec.queue_offset, *qo);
            assert_eq!(&rec.offset_msg_id(), id, "store host and physical offset");
            assert_eq!(rec.topic, TOPIC);
            if *single {
                assert_eq!(rec.properties.get("CLUSTER"), Some("DefaultCluster"));
            } else {
                assert_eq!(rec.flag, 7);
            }
        }
        // Nothing new: PULL_NOT_FOUND at once, with the four required fields.
        let resp = client
            .call(req(
                RequestCode::PullMessage,
                &pull_header(queue0.len() as i64),
            ))
            .await;
        assert_eq!(resp.code, ResponseCode::PullNotFound.code());
        let ph: PullMessageResponseHeader = resp.header().unwrap();
        assert_eq!(ph.next_begin_offset, queue0.len() as i64);
    }

    // A follower refuses sends with SYSTEM_BUSY.
    let resp = f
        .call(req(RequestCode::SendMessageV2, &send_header(0, None)).with_body(&b"x"[..]))
        .await;
    assert_eq!(resp.code, ResponseCode::SystemBusy.code());
    assert!(resp.remark.unwrap().contains("leader"));

    // Consumer offsets: update on the master, query on both.
    let uh = UpdateConsumerOffsetRequestHeader {
        consumer_group: "ConsumerGroupA".into(),
        topic: TOPIC.into(),
        queue_id: 0,
        commit_offset: 5,
        bname: None,
    };
    let resp = c.call(req(RequestCode::UpdateConsumerOffset, &uh)).await;
    assert_eq!(resp.code, ResponseCode::Success.code(), "{:?}", resp.remark);
    let qh = QueryConsumerOffsetRequestHeader {
        consumer_group: "ConsumerGroupA".into(),
        topic: TOPIC.into(),
        queue_id: 0,
        set_zero_if_not_found: Some(false),
        bname: None,
    };
    let resp = c.call(req(RequestCode::QueryConsumerOffset, &qh)).await;
    assert_eq!(resp.code, ResponseCode::Success.code());
    assert_eq!(resp.header::<OffsetResponseHeader>().unwrap().offset, 5);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let resp = f.call(req(RequestCode::QueryConsumerOffset, &qh)).await;
        if resp.code == ResponseCode::Success.code()
            && resp.header::<OffsetResponseHeader>().unwrap().offset == 5
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the follower's offset"
        );
        tokio::time::sleep(POLL).await;
    }
    let mut unknown = qh.clone();
    unknown.consumer_group = "NoSuchGroup".into();
    let resp = c
        .call(req(RequestCode::QueryConsumerOffset, &unknown))
        .await;
    assert_eq!(resp.code, ResponseCode::QueryNotFound.code());

    // Unknown request code.
    let resp = c
        .call(RemotingCommand::request(999_999, StrMap::new()))
        .await;
    assert_eq!(resp.code, ResponseCode::RequestCodeNotSupported.code());

    // A malformed frame closes that connection only.
    let mut bad = tokio::net::TcpStream::connect(master).await.unwrap();
    bad.write_all(&[0x7F, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0])
        .await
        .unwrap();
    let mut sink = [0u8; 16];
    let n = tokio::time::timeout(DEADLINE, bad.read(&mut sink))
        .await
        .unwrap();
    assert!(
        matches!(n, Ok(0) | Err(_)),
        "the server must close the connection"
    );
    assert_eq!(max_offset(&mut c, 0).await, queue0.len() as i64);

    group.shutdown().await;
}

#[test]
fn print_config_of_the_sample_file() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mqbroker"))
        .current_dir(&root)
        .args(["-p", "-c", "conf/dledger/broker-n0.conf"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("brokerName=RaftNode00"), "{stdout}");
    assert!(stdout.contains("listenPort=30911"), "{stdout}");
}

/// Sends the same UNIQ_KEY twice to each of `topics` (queue 0) of a group configured with
/// `extra`; returns both offsets per topic.
async fn same_uniq_key_twice(name: &str, extra: &str, topics: &[&str]) -> Vec<(i64, i64)> {
    let group = Group::start_with(name, extra).await;
    let mut master = stable_master(&group).await;
    let mut c = RawClient::connect(master).await;
    let mut props = StrMap::new();
    props.insert("UNIQ_KEY", "AC110001000018B4AAC2000000000042");
    let mut out = Vec::new();
    for topic in topics {
        let mut header = send_header(0, Some(encode_properties(&props)));
        header.b = (*topic).into();
        let r = req(RequestCode::SendMessageV2, &header)
            .with_body(Bytes::from_static(b"once or twice"));
        let mut offsets = Vec::new();
        for _ in 0..2 {
            let resp = send_retry(&group, &mut c, &mut master, r.clone()).await;
            assert_eq!(resp.code, ResponseCode::Success.code(), "{:?}", resp.remark);
            offsets.push(
                resp.header::<SendMessageResponseHeader>()
                    .unwrap()
                    .queue_offset,
            );
        }
        out.push((offsets[0], offsets[1]));
    }
    group.shutdown().await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_uniq_key_is_stored_once_unless_detection_is_off() {
    // A retry (same UNIQ_KEY) is answered with the first result: one stored message. Not
    // on a %RETRY% topic: a consumer client re-sends a message there on each failed
    // consumption (its CONSUMER_SEND_MSG_BACK fallback), keeping the UNIQ_KEY.
    assert_eq!(
        same_uniq_key_twice("broker-d1", "", &[TOPIC, "%RETRY%ConsumerGroupA"]).await,
        vec![(0, 0), (0, 1)]
    );
    // Off: stored twice, as RocketMQ does for a Message object sent twice.
    assert_eq!(
        same_uniq_key_twice("broker-d2", "duplicateDetectionEnable=false\n", &[TOPIC]).await,
        vec![(0, 1)]
    );
}
