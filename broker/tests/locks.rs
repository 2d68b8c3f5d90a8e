//! LOCK_BATCH_MQ / UNLOCK_BATCH_MQ over the wire on an in-process 3-node group: overlapping
//! locks of two clients, followers pointing at the leader, the lock table surviving a leader
//! crash (the new leader refuses the held queues), unlock then lock by the other client,
//! UNREGISTER_CLIENT releasing a client's locks; and LITE_PULL_MESSAGE served as a pull.
//! Conditions are awaited with deadlines, never slept on.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Instant;

use common::{
    a_follower, req, send_retry, stable_leader, stable_master, wait_until, Group, RawClient,
    DEADLINE, POLL,
};
use raftmq_protocol::body::{
    decode_json, encode_json, LockBatchRequestBody, LockBatchResponseBody, MessageQueue,
};
use raftmq_protocol::codes::{RequestCode, ResponseCode};
use raftmq_protocol::headers::{
    PullMessageRequestHeader, PullMessageResponseHeader, SendMessageRequestHeaderV2,
    SendMessageResponseHeader, UnregisterClientRequestHeader,
};
use raftmq_protocol::message::MessageRecord;
use raftmq_protocol::{RemotingCommand, StrMap};

const BROKER: &str = "broker-l";
const GROUP: &str = "OrderlyGroup";
const TOPIC: &str = "OrderedTopic";
const CLIENT_A: &str = "10.0.0.1@100#1";
const CLIENT_B: &str = "10.0.0.2@200#2";

fn mq(queue_id: i32) -> MessageQueue {
    MessageQueue {
        broker_name: BROKER.into(),
        queue_id,
        topic: TOPIC.into(),
    }
}

fn lock_body(client: &str, queues: &[i32]) -> Vec<u8> {
    encode_json(&LockBatchRequestBody {
        client_id: client.into(),
        consumer_group: GROUP.into(),
        mq_set: queues.iter().map(|&q| mq(q)).collect(),
        only_this_broker: true,
    })
}

fn lock_req(code: RequestCode, client: &str, queues: &[i32]) -> RemotingCommand {
    RemotingCommand::request(code.code(), StrMap::new()).with_body(lock_body(client, queues))
}

/// The queue ids granted by a LOCK_BATCH_MQ answer (which must be SUCCESS).
fn granted(resp: &RemotingCommand) -> BTreeSet<i32> {
    assert_eq!(resp.code, ResponseCode::Success.code(), "{:?}", resp.remark);
    let body: LockBatchResponseBody = decode_json("LockBatchResponseBody", &resp.body).unwrap();
    body.lock_ok_mq_set
        .iter()
        .map(|m| {
            assert_eq!((m.broker_name.as_str(), m.topic.as_str()), (BROKER, TOPIC));
            m.queue_id
        })
        .collect()
}

async fn lock(addr: SocketAddr, client: &str, queues: &[i32]) -> BTreeSet<i32> {
    let mut c = RawClient::connect(addr).await;
    granted(
        &c.call(lock_req(RequestCode::LockBatchMq, client, queues))
            .await,
    )
}

async fn unlock(addr: SocketAddr, client: &str, queues: &[i32]) {
    let mut c = RawClient::connect(addr).await;
    let resp = c
        .call(lock_req(RequestCode::UnlockBatchMq, client, queues))
        .await;
    assert_eq!(resp.code, ResponseCode::Success.code(), "{:?}", resp.remark);
    assert!(resp.body.is_empty());
}

fn set(ids: &[i32]) -> BTreeSet<i32> {
    ids.iter().copied().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_are_exclusive_and_survive_a_leader_crash() {
    let group = Group::start(BROKER).await;
    let leader = stable_leader(&group).await;
    let master = leader.client_addr();

    // A takes 0 and 1; B asks for 1 and 2 and gets only the free one.
    let a_locked = Instant::now();
    assert_eq!(lock(master, CLIENT_A, &[0, 1]).await, set(&[0, 1]));
    assert_eq!(lock(master, CLIENT_B, &[1, 2]).await, set(&[2]));
    // Renewal by the holder, duplicates in the request collapse.
    assert_eq!(lock(master, CLIENT_A, &[1, 1, 0]).await, set(&[0, 1]));

    // A follower does not lock: SYSTEM_BUSY naming the leader, like every write.
    let follower = a_follower(&group, &leader);
    let mut fc = RawClient::connect(follower.client_addr()).await;
    for code in [RequestCode::LockBatchMq, RequestCode::UnlockBatchMq] {
        let resp = fc.call(lock_req(code, CLIENT_B, &[0])).await;
        assert_eq!(
            resp.code,
            ResponseCode::SystemBusy.code(),
            "{:?}",
            resp.remark
        );
        let remark = resp.remark.unwrap_or_default();
        assert!(remark.contains("not the leader"), "{remark}");
    }
    // A malformed body is refused by name, leader or not.
    let bad = RemotingCommand::request(RequestCode::LockBatchMq.code(), StrMap::new())
        .with_body(&b"{not json"[..]);
    let resp = RawClient::connect(master).await.call(bad).await;
    assert_eq!(resp.code, ResponseCode::InvalidParameter.code());
    assert!(resp.remark.unwrap().contains("LockBatchRequestBody"));

    // Crash the leader (no final checkpoint): the new leader has the table from the log.
    let old = group
        .nodes
        .iter()
        .position(|n| n.client_addr() == master)
        .unwrap();
    group.stop_node(old, false).await;
    let survivors: Vec<SocketAddr> = group
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != old)
        .map(|(_, n)| n.client_addr())
        .collect();
    // B asks every survivor for 0, 1 and 3 until one (the new leader) answers: A's queues
    // are refused, the free one granted.
    let deadline = Instant::now() + DEADLINE;
    let (new_leader, got) = 'found: loop {
        for &addr in &survivors {
            let mut c = RawClient::connect(addr).await;
            let resp = c
                .call(lock_req(RequestCode::LockBatchMq, CLIENT_B, &[0, 1, 3]))
                .await;
            if resp.code == ResponseCode::Success.code() {
                break 'found (addr, granted(&resp));
            }
            assert!(
                [
                    ResponseCode::SystemBusy.code(),
                    ResponseCode::SystemError.code()
                ]
                .contains(&resp.code),
                "{} {:?}",
                resp.code,
                resp.remark
            );
        }
        assert!(Instant::now() < deadline, "no new leader took a lock");
        tokio::time::sleep(POLL).await;
    };
    assert!(
        a_locked.elapsed().as_secs() < 55,
        "the failover outlived A's locks; the check below would prove nothing"
    );
    assert_eq!(got, set(&[3]), "the new leader hands out A's queues");
    // A still holds its queues there: renewal is granted, B's 2 stays B's.
    assert_eq!(lock(new_leader, CLIENT_A, &[0, 1, 2]).await, set(&[0, 1]));
    // B cannot unlock A's queue; A's unlock frees it for B.
    unlock(new_leader, CLIENT_B, &[0]).await;
    assert_eq!(lock(new_leader, CLIENT_B, &[0]).await, set(&[]));
    unlock(new_leader, CLIENT_A, &[0]).await;
    assert_eq!(lock(new_leader, CLIENT_B, &[0]).await, set(&[0]));
    assert_eq!(lock(new_leader, CLIENT_A, &[0]).await, set(&[]));
    group.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregistering_releases_the_clients_locks() {
    let group = Group::start(BROKER).await;
    let master = stable_leader(&group).await.client_addr();
    assert_eq!(lock(master, CLIENT_A, &[4, 5]).await, set(&[4, 5]));
    assert_eq!(lock(master, CLIENT_B, &[4, 5]).await, set(&[]));
    let h = UnregisterClientRequestHeader {
        client_id: CLIENT_A.into(),
        consumer_group: Some(GROUP.into()),
        producer_group: None,
    };
    let resp = RawClient::connect(master)
        .await
        .call(req(RequestCode::UnregisterClient, &h))
        .await;
    assert_eq!(resp.code, ResponseCode::Success.code(), "{:?}", resp.remark);
    // The release is proposed in the background: B gets the queues once it is applied.
    wait_until("A's locks released", DEADLINE, || async {
        lock(master, CLIENT_B, &[4, 5]).await == set(&[4, 5])
    })
    .await;
    group.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lite_pull_is_served_as_a_pull() {
    let group = Group::start(BROKER).await;
    let mut master = stable_master(&group).await;
    let mut c = RawClient::connect(master).await;
    let h = SendMessageRequestHeaderV2 {
        a: "LiteProducer".into(),
        b: TOPIC.into(),
        c: "TBW102".into(),
        d: 1,
        e: 0,
        g: 1_700_000_000_000,
        ..Default::default()
    };
    let send = req(RequestCode::SendMessageV2, &h).with_body(&b"lite"[..]);
    let resp = send_retry(&group, &mut c, &mut master, send).await;
    assert_eq!(resp.code, ResponseCode::Success.code(), "{:?}", resp.remark);
    let offset = resp
        .header::<SendMessageResponseHeader>()
        .unwrap()
        .queue_offset;
    let pull = PullMessageRequestHeader {
        consumer_group: "LiteGroup".into(),
        topic: TOPIC.into(),
        queue_id: 0,
        queue_offset: offset,
        max_msg_nums: 32,
        sys_flag: 0,
        suspend_timeout_millis: 1_000,
        ..Default::default()
    };
    let resp = c.call(req(RequestCode::LitePullMessage, &pull)).await;
    assert_eq!(resp.code, ResponseCode::Success.code(), "{:?}", resp.remark);
    let records = MessageRecord::decode_all(&resp.body).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(&records[0].body[..], b"lite");
    let ph: PullMessageResponseHeader = resp.header().unwrap();
    assert_eq!(ph.next_begin_offset, offset + 1);
    group.shutdown().await;
}
