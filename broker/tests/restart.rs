//! Restarts of a 3-node group in process: every acknowledged message stays readable at the
//! queue offset it was acknowledged with, consumer offsets survive, and offsets are never
//! reused afterwards. Nodes restart from their checkpoints (a graceful stop writes a final
//! one; a crash-style stop leaves the last periodic one and the log tail to re-apply).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use common::{req, send_retry, stable_master, Group, RawClient, DEADLINE, POLL};
use raftmq_protocol::codes::{RequestCode, ResponseCode};
use raftmq_protocol::headers::{
    SendMessageRequestHeaderV2, SendMessageResponseHeader, UpdateConsumerOffsetRequestHeader,
};
use raftmq_protocol::message::{encode_properties, MessageRecord};
use raftmq_protocol::StrMap;

const TOPIC: &str = "RestartTopic";
const GROUP: &str = "RestartGroup";

/// (queue id, queue offset) → body of an acknowledged message.
type Acked = BTreeMap<(i32, i64), Bytes>;

async fn send_n(
    group: &Group,
    c: &mut RawClient,
    master: &mut SocketAddr,
    from: usize,
    n: usize,
    acked: &mut Acked,
) {
    for i in from..from + n {
        let mut props = StrMap::new();
        props.insert("KEYS", format!("key-{i}"));
        props.insert("UNIQ_KEY", format!("7F0000010000{i:020X}"));
        let h = SendMessageRequestHeaderV2 {
            a: "RestartProducer".into(),
            b: TOPIC.into(),
            c: "TBW102".into(),
            d: 4,
            e: (i % 4) as i32,
            g: 1_700_000_000_000,
            i: Some(encode_properties(&props)),
            ..Default::default()
        };
        let body = Bytes::from(format!("message {i}"));
        let r = req(RequestCode::SendMessageV2, &h).with_body(body.clone());
        let resp = send_retry(group, c, master, r).await;
        assert_eq!(resp.code, ResponseCode::Success.code(), "{:?}", resp.remark);
        let sh: SendMessageResponseHeader = resp.header().unwrap();
        assert!(
            acked.insert((sh.queue_id, sh.queue_offset), body).is_none(),
            "queue offset {}:{} acknowledged twice",
            sh.queue_id,
            sh.queue_offset
        );
    }
}

/// Every message of queue `q` from `addr`, by pulling from offset 0.
async fn pull_all(addr: SocketAddr, q: i32) -> Vec<MessageRecord> {
    common::pull_from(addr, GROUP, TOPIC, q, 0).await.0
}

/// Waits until every node applied `acked` (each queue's max offset matches).
async fn wait_applied(group: &Group, acked: &Acked) {
    let mut want: BTreeMap<i32, i64> = BTreeMap::new();
    for (q, o) in acked.keys() {
        let m = want.entry(*q).or_default();
        *m = (*m).max(o + 1);
    }
    let deadline = Instant::now() + DEADLINE;
    loop {
        let done = group.nodes.iter().all(|n| {
            n.node()
                .state_machine()
                .with(|sm| want.iter().all(|(q, m)| sm.max_offset(TOPIC, *q) == *m))
        });
        if done {
            return;
        }
        assert!(Instant::now() < deadline, "nodes did not apply every send");
        tokio::time::sleep(POLL).await;
    }
}

async fn check_all_readable(group: &Group, acked: &Acked) {
    for node in &group.nodes {
        for q in 0..4 {
            let records = pull_all(node.client_addr(), q).await;
            let expected: Vec<(i64, &Bytes)> = acked
                .range((q, 0)..(q, i64::MAX))
                .map(|((_, o), b)| (*o, b))
                .collect();
            let got: Vec<(i64, &Bytes)> =
                records.iter().map(|r| (r.queue_offset, &r.body)).collect();
            assert_eq!(got, expected, "queue {q} on {}", node.client_addr());
        }
    }
}

async fn consumer_offset(addr: SocketAddr, q: i32) -> i64 {
    common::consumer_offset(addr, GROUP, TOPIC, q).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_three_restarted_keep_messages_offsets_and_consumer_offsets() {
    let mut group = Group::start("broker-r").await;
    let mut master = stable_master(&group).await;
    let mut c = RawClient::connect(master).await;
    let mut acked = Acked::new();
    send_n(&group, &mut c, &mut master, 0, 120, &mut acked).await;
    let commit = UpdateConsumerOffsetRequestHeader {
        consumer_group: GROUP.into(),
        topic: TOPIC.into(),
        queue_id: 1,
        commit_offset: 17,
        ..Default::default()
    };
    let resp = c
        .call(req(RequestCode::UpdateConsumerOffset, &commit))
        .await;
    assert_eq!(resp.code, ResponseCode::Success.code(), "{:?}", resp.remark);
    wait_applied(&group, &acked).await;

    // Checkpoint everything now, then add a tail that only the log holds on the nodes that
    // will stop as a crash does.
    let checkpointed: Vec<Option<u64>> = group
        .nodes
        .iter()
        .map(|n| {
            n.node().state_machine().with(|sm| {
                sm.checkpoint(true).unwrap();
                sm.applied_index()
            })
        })
        .collect();
    send_n(&group, &mut c, &mut master, 120, 40, &mut acked).await;
    wait_applied(&group, &acked).await;
    let applied_at_stop: Vec<Option<u64>> = group
        .nodes
        .iter()
        .map(|n| n.node().state_machine().with(|sm| sm.applied_index()))
        .collect();

    group.stop_node(0, true).await;
    group.stop_node(1, false).await;
    group.stop_node(2, false).await;
    for i in 0..3 {
        group.restart_node(i).await;
    }
    // Node 0 resumes exactly where it stopped; 1 and 2 from their last checkpoint (then
    // re-apply the tail from their logs).
    assert_eq!(group.nodes[0].restored_index(), applied_at_stop[0]);
    for i in 1..3 {
        let r = group.nodes[i].restored_index();
        assert!(
            r >= checkpointed[i] && r < applied_at_stop[i],
            "node {i}: restored {r:?}"
        );
    }

    master = stable_master(&group).await;
    c = RawClient::connect(master).await;
    wait_applied(&group, &acked).await;
    check_all_readable(&group, &acked).await;
    for node in &group.nodes {
        assert_eq!(consumer_offset(node.client_addr(), 1).await, 17);
    }
    // Offsets continue after the restart; none is reused.
    send_n(&group, &mut c, &mut master, 160, 8, &mut acked).await;
    assert_eq!(acked.len(), 168);
    wait_applied(&group, &acked).await;
    check_all_readable(&group, &acked).await;
    group.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_checkpoint_stops_the_node_with_a_clear_error() {
    let mut group = Group::start("broker-c").await;
    let mut master = stable_master(&group).await;
    let mut c = RawClient::connect(master).await;
    let mut acked = Acked::new();
    send_n(&group, &mut c, &mut master, 0, 10, &mut acked).await;
    wait_applied(&group, &acked).await;
    group.stop_node(2, true).await;
    let meta = group.data_dir(2).join("checkpoint").join("checkpoint.meta");
    let mut bytes = std::fs::read(&meta).unwrap();
    let k = bytes.len() / 2;
    bytes[k] ^= 0xFF;
    std::fs::write(&meta, &bytes).unwrap();
    let err = group.try_restart_node(2).await.unwrap_err();
    assert!(
        err.contains("checkpoint.meta") && err.contains("checksum"),
        "{err}"
    );
    group.shutdown().await;
}
