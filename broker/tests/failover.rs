//! Leader failure on a 3-node group in process: the NameServer shows the new master, sends
//! succeed on it, every acknowledged message and committed consumer offset survives, and the
//! old leader rejoins as a follower. Plus oversized bodies and frames, which get errors while
//! other clients go on.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use common::{master_addr, req, send_retry, stable_master, Group, RawClient, DEADLINE, POLL};
use raftmq_protocol::codes::{RequestCode, ResponseCode};
use raftmq_protocol::headers::{
    SendMessageRequestHeaderV2, SendMessageResponseHeader, UpdateConsumerOffsetRequestHeader,
};
use raftmq_protocol::RemotingCommand;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOPIC: &str = "FailoverTopic";
const GROUP: &str = "FailoverGroup";

fn send_req(i: usize, body_len: usize) -> RemotingCommand {
    let h = SendMessageRequestHeaderV2 {
        a: "FailoverProducer".into(),
        b: TOPIC.into(),
        c: "TBW102".into(),
        d: 2,
        e: (i % 2) as i32,
        g: 1_700_000_000_000,
        ..Default::default()
    };
    let mut body = format!("message {i} ").into_bytes();
    body.resize(body_len.max(body.len()), b'.');
    req(RequestCode::SendMessageV2, &h).with_body(Bytes::from(body))
}

/// All (queue offset, body) of queue `q` on `addr`.
async fn read_queue(addr: SocketAddr, q: i32) -> Vec<(i64, Bytes)> {
    let (records, _) = common::pull_from(addr, GROUP, TOPIC, q, 0).await;
    records
        .into_iter()
        .map(|r| (r.queue_offset, r.body))
        .collect()
}

async fn consumer_offset(addr: SocketAddr, q: i32) -> i64 {
    common::consumer_offset(addr, GROUP, TOPIC, q).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_new_master_takes_sends_and_nothing_acknowledged_is_lost() {
    let mut group = Group::start("broker-f").await;
    let mut master = stable_master(&group).await;
    let mut c = RawClient::connect(master).await;
    let mut acked: BTreeMap<(i32, i64), Bytes> = BTreeMap::new();
    let mut ack = |resp: &RemotingCommand, r: &RemotingCommand| {
        assert_eq!(resp.code, ResponseCode::Success.code(), "{:?}", resp.remark);
        let h: SendMessageResponseHeader = resp.header().unwrap();
        assert!(acked
            .insert((h.queue_id, h.queue_offset), r.body.clone())
            .is_none());
    };
    for i in 0..40 {
        let r = send_req(i, 64);
        let resp = send_retry(&group, &mut c, &mut master, r.clone()).await;
        ack(&resp, &r);
    }
    for q in 0..2 {
        let commit = UpdateConsumerOffsetRequestHeader {
            consumer_group: GROUP.into(),
            topic: TOPIC.into(),
            queue_id: q,
            commit_offset: 5 + i64::from(q),
            ..Default::default()
        };
        let resp = c
            .call(req(RequestCode::UpdateConsumerOffset, &commit))
            .await;
        assert_eq!(resp.code, ResponseCode::Success.code(), "{:?}", resp.remark);
    }

    // Kill the leader as a crash does (no final checkpoint, no unregister).
    let old = group
        .nodes
        .iter()
        .position(|n| n.client_addr() == master)
        .unwrap();
    let killed = Instant::now();
    group.stop_node(old, false).await;
    let deadline = Instant::now() + DEADLINE;
    let new_master = loop {
        let m = master_addr(group.namesrv).await;
        if m != master {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "NameServer still shows the old master"
        );
        tokio::time::sleep(POLL).await;
    };
    let to_namesrv = killed.elapsed();
    // The first acknowledged write on the new master.
    let mut c = RawClient::connect(new_master).await;
    let mut first_write = None;
    for i in 40..60 {
        let r = send_req(i, 64);
        let resp = loop {
            let resp = c.call(r.clone()).await;
            if resp.code == ResponseCode::Success.code() {
                break resp;
            }
            assert!(
                [
                    ResponseCode::SystemBusy.code(),
                    ResponseCode::SystemError.code()
                ]
                .contains(&resp.code),
                "{resp:?}"
            );
            assert!(Instant::now() < deadline, "new master never took a send");
            tokio::time::sleep(POLL).await;
        };
        first_write.get_or_insert(killed.elapsed());
        ack(&resp, &r);
    }
    eprintln!(
        "leader killed -> NameServer new master {to_namesrv:?}, first acknowledged write {:?}",
        first_write.unwrap()
    );

    // Everything acknowledged, at its offsets, on the new master; offsets kept.
    for q in 0..2 {
        let got = read_queue(new_master, q).await;
        let want: Vec<(i64, Bytes)> = acked
            .range((q, 0)..(q, i64::MAX))
            .map(|((_, o), b)| (*o, b.clone()))
            .collect();
        assert_eq!(got, want, "queue {q}");
        assert_eq!(consumer_offset(new_master, q).await, 5 + i64::from(q));
    }

    // The old leader comes back as a follower and catches up.
    group.restart_node(old).await;
    let master = stable_master(&group).await;
    assert_ne!(group.nodes[old].client_addr(), master, "no flapping back");
    let deadline = Instant::now() + DEADLINE;
    for q in 0..2 {
        let want = acked.range((q, 0)..(q, i64::MAX)).count() as i64;
        while group.nodes[old]
            .node()
            .state_machine()
            .with(|sm| sm.max_offset(TOPIC, q))
            != want
        {
            assert!(Instant::now() < deadline, "old leader did not catch up");
            tokio::time::sleep(POLL).await;
        }
        assert_eq!(
            consumer_offset(group.nodes[old].client_addr(), q).await,
            5 + i64::from(q)
        );
    }
    group.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_and_frames_get_errors_and_other_clients_go_on() {
    let group = Group::start_with("broker-o", "maxMessageSize=4096\n").await;
    let mut master = stable_master(&group).await;
    let mut c = RawClient::connect(master).await;
    let mut other = RawClient::connect(master).await;

    let resp = send_retry(&group, &mut c, &mut master, send_req(0, 4096)).await;
    assert_eq!(
        resp.code,
        ResponseCode::Success.code(),
        "at the limit: {:?}",
        resp.remark
    );
    let resp = c.call(send_req(1, 4097)).await;
    assert_eq!(resp.code, ResponseCode::MessageIllegal.code());
    assert!(
        resp.remark
            .as_deref()
            .unwrap()
            .contains("exceeds the limit 4096"),
        "{resp:?}"
    );
    // The same connection still works.
    let resp = c.call(send_req(2, 10)).await;
    assert_eq!(resp.code, ResponseCode::Success.code());

    // A frame announcing more than 16 MiB closes only that connection.
    let mut bad = tokio::net::TcpStream::connect(master).await.unwrap();
    bad.write_all(&(17u32 << 20).to_be_bytes()).await.unwrap();
    bad.write_all(&[0; 64]).await.unwrap();
    let mut sink = [0u8; 16];
    let n = tokio::time::timeout(DEADLINE, bad.read(&mut sink))
        .await
        .unwrap();
    assert!(
        matches!(n, Ok(0) | Err(_)),
        "the server must close that connection"
    );
    let resp = other.call(send_req(3, 10)).await;
    assert_eq!(resp.code, ResponseCode::Success.code());
    let resp = c.call(send_req(4, 10)).await;
    assert_eq!(resp.code, ResponseCode::Success.code());
    group.shutdown().await;
}
