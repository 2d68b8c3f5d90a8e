//! Retention and disk space on a 3-node group in process: a purge point proposed by the
//! leader under disk pressure drops consume-queue units on every node and deletes whole log
//! segments on every node; what is retained stays readable, through a restart too; a full
//! disk refuses sends with SERVICE_NOT_AVAILABLE and they resume by themselves.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use common::{req, send_retry, stable_master, FakeDisk, Group, RawClient, DEADLINE, POLL};
use raftmq_broker::broker::Broker;
use raftmq_protocol::codes::{RequestCode, ResponseCode};
use raftmq_protocol::headers::{SendMessageRequestHeaderV2, SendMessageResponseHeader};
use raftmq_protocol::RemotingCommand;

const TOPIC: &str = "RetentionTopic";

fn send_req(i: usize) -> RemotingCommand {
    let h = SendMessageRequestHeaderV2 {
        a: "RetentionProducer".into(),
        b: TOPIC.into(),
        c: "TBW102".into(),
        d: 1,
        e: 0,
        g: 1_700_000_000_000,
        ..Default::default()
    };
    let mut body = vec![b'r'; 1024];
    body[..8].copy_from_slice(&(i as u64).to_be_bytes());
    req(RequestCode::SendMessageV2, &h).with_body(Bytes::from(body))
}

fn leader(group: &Group, master: SocketAddr) -> Arc<Broker> {
    group
        .nodes
        .iter()
        .find(|n| n.client_addr() == master)
        .unwrap()
        .clone()
}

fn segment_files(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("raft").join("log"))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            let name = name.to_string_lossy();
            name.strip_suffix(".log")
                .is_some_and(|n| n.len() == 20 && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .count()
}

/// Pulls queue 0 from `from` to the end: (min offset, where it stopped, sequence numbers).
async fn pull_from(addr: SocketAddr, from: i64) -> (i64, i64, Vec<u64>) {
    let (records, ph) = common::pull_from(addr, "RetentionGroup", TOPIC, 0, from).await;
    let seqs = records
        .iter()
        .map(|r| {
            let mut n = [0u8; 8];
            n.copy_from_slice(&r.body[..8]);
            u64::from_be_bytes(n)
        })
        .collect();
    (ph.min_offset, ph.next_begin_offset, seqs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_pressure_purges_segments_on_every_node_and_keeps_the_rest() {
    // 64 KiB segments: 300 messages of 1 KiB fill several.
    let mut group = Group::start_with("broker-ret", "mappedFileSizeCommitLog=65536\n").await;
    let mut master = stable_master(&group).await;
    let mut c = RawClient::connect(master).await;
    let mut acked = Vec::new();
    for i in 0..300 {
        let resp = send_retry(&group, &mut c, &mut master, send_req(i)).await;
        assert_eq!(resp.code, ResponseCode::Success.code(), "{:?}", resp.remark);
        let h: SendMessageResponseHeader = resp.header().unwrap();
        assert_eq!(h.queue_offset, i as i64);
        acked.push(i as u64);
    }
    let before: Vec<usize> = (0..3).map(|i| segment_files(&group.data_dir(i))).collect();
    assert!(before.iter().all(|&n| n >= 4), "segments: {before:?}");

    // Not under pressure (and no segment is 72 h old): nothing to purge.
    let l = leader(&group, master);
    l.disk().set_probe(FakeDisk::at(50));
    assert_eq!(l.retention_round().await, None);
    // Over diskMaxUsedSpaceRatio (75 %): one segment per round.
    l.disk().set_probe(FakeDisk::at(80));
    let p1 = l.retention_round().await.expect("a purge point");
    let p2 = l.retention_round().await.expect("a second purge point");
    assert!(p2 > p1);

    // Every node drops the units and, with its maintenance task, the segment files.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let purged = group.nodes.iter().all(|n| {
            n.node().state_machine().with(|sm| sm.purged_upto()) == p2
                && n.node().state_machine().with(|sm| sm.min_offset(TOPIC, 0)) > 0
        });
        let files: Vec<usize> = (0..3).map(|i| segment_files(&group.data_dir(i))).collect();
        if purged && files.iter().zip(&before).all(|(a, b)| a + 2 <= *b) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "purge not done: {files:?} vs {before:?}"
        );
        tokio::time::sleep(POLL).await;
    }
    let min = group.nodes[0]
        .node()
        .state_machine()
        .with(|sm| sm.min_offset(TOPIC, 0));
    for n in &group.nodes {
        // A pull below the retained range is moved to it; everything retained is there.
        let (m, next, seqs) = pull_from(n.client_addr(), 0).await;
        assert_eq!(m, min);
        assert!(seqs.is_empty() && next == min, "{next} vs {min}");
        let (_, next, seqs) = pull_from(n.client_addr(), min).await;
        assert_eq!(next, 300);
        assert_eq!(seqs, acked[min as usize..].to_vec());
    }

    // Restart all three (crash-style): the purged log and the checkpoints agree.
    for i in 0..3 {
        group.stop_node(i, false).await;
    }
    for i in 0..3 {
        group.restart_node(i).await;
    }
    master = stable_master(&group).await;
    for n in &group.nodes {
        let deadline = Instant::now() + DEADLINE;
        while n.node().state_machine().with(|sm| sm.max_offset(TOPIC, 0)) != 300 {
            assert!(Instant::now() < deadline, "node did not recover");
            tokio::time::sleep(POLL).await;
        }
        let (m, next, seqs) = pull_from(n.client_addr(), min).await;
        assert_eq!((m, next), (min, 300));
        assert_eq!(seqs, acked[min as usize..].to_vec());
    }
    let mut c = RawClient::connect(master).await;
    let resp = send_retry(&group, &mut c, &mut master, send_req(300)).await;
    assert_eq!(resp.code, ResponseCode::Success.code(), "{:?}", resp.remark);
    assert_eq!(
        resp.header::<SendMessageResponseHeader>()
            .unwrap()
            .queue_offset,
        300
    );
    group.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_sends_and_they_resume_by_themselves() {
    let group = Group::start("broker-full").await;
    let mut master = stable_master(&group).await;
    let mut c = RawClient::connect(master).await;
    let resp = send_retry(&group, &mut c, &mut master, send_req(0)).await;
    assert_eq!(resp.code, ResponseCode::Success.code(), "{:?}", resp.remark);

    let disk = FakeDisk::at(95);
    let l = leader(&group, master);
    l.disk().set_probe(disk.clone());
    let resp = c.call(send_req(1)).await;
    assert_eq!(resp.code, ResponseCode::ServiceNotAvailable.code());
    assert!(
        resp.remark.as_deref().unwrap().contains("disk is full"),
        "{:?}",
        resp.remark
    );
    // Nothing was appended for the refused send.
    assert_eq!(
        l.node().state_machine().with(|sm| sm.max_offset(TOPIC, 0)),
        1
    );
    // Reads go on.
    let (_, next, seqs) = pull_from(master, 0).await;
    assert_eq!((next, seqs), (1, vec![0]));

    disk.set(40);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let resp = c.call(send_req(1)).await;
        if resp.code == ResponseCode::Success.code() {
            assert_eq!(
                resp.header::<SendMessageResponseHeader>()
                    .unwrap()
                    .queue_offset,
                1
            );
            break;
        }
        assert_eq!(resp.code, ResponseCode::ServiceNotAvailable.code());
        assert!(Instant::now() < deadline, "sends did not resume");
        tokio::time::sleep(POLL).await;
    }
    group.shutdown().await;
}
