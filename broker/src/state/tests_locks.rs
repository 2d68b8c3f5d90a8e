#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Queue locks through the state machine's apply path: grants by the leader-stamped time,
//! renewal, stealing after 60 s, unlock of own queues only, and the table surviving
//! snapshot install, checkpoint restore and the version 1 snapshot format.

use raftmq_protocol::body::MessageQueue;
use raftmq_raft::state_machine::StateMachine;
use raftmq_raft::types::{LogId, StoredMembership};

use super::locks::{LOCK_EXPIRY_MS, LOCK_FORGET_MS};
use super::snapshot::{Snapshot, SnapshotV1};
use super::tests::{upsert, SimLog};
use super::*;

/// Far from the real clock on purpose: apply must only use the stamped time.
const T0: i64 = 5_000;

fn mq(topic: &str, queue_id: i32) -> MessageQueue {
    MessageQueue {
        broker_name: "broker-a".into(),
        queue_id,
        topic: topic.into(),
    }
}

fn request(client: &str, queues: &[MessageQueue], now_ms: i64) -> QueueLockRequest {
    QueueLockRequest {
        group: "G".into(),
        client_id: client.into(),
        queues: queues.to_vec(),
        now_ms,
    }
}

/// Applies a lock; the queues granted, as the handler maps the reply's positions.
fn lock(
    log: &mut SimLog,
    sm: &mut BrokerStateMachine,
    client: &str,
    queues: &[MessageQueue],
    now_ms: i64,
) -> Vec<MessageQueue> {
    match log.apply(sm, &Command::LockQueues(request(client, queues, now_ms))) {
        Reply::Locked(positions) => positions
            .iter()
            .map(|&p| queues[p as usize].clone())
            .collect(),
        other => panic!("expected Locked, got {other:?}"),
    }
}

fn unlock(
    log: &mut SimLog,
    sm: &mut BrokerStateMachine,
    client: &str,
    queues: &[MessageQueue],
    now_ms: i64,
) {
    let reply = log.apply(sm, &Command::UnlockQueues(request(client, queues, now_ms)));
    assert_eq!(reply, Reply::Done);
}

/// Queues of topic `T`.
fn t(ids: &[i32]) -> Vec<MessageQueue> {
    ids.iter().map(|&q| mq("T", q)).collect()
}

/// The live holder of queue `T:q` in group `G`.
fn holder(sm: &BrokerStateMachine, q: i32, now_ms: i64) -> Option<String> {
    sm.locks()
        .holder("G", &mq("T", q), now_ms)
        .map(str::to_owned)
}

#[test]
fn grant_refuse_renew_steal_and_unlock() {
    let mut sm = BrokerStateMachine::new();
    let mut log = SimLog::default();
    let log = &mut log;
    // A takes 0 and 1; B asks for 1 and 2 and gets only the free one.
    assert_eq!(lock(log, &mut sm, "A", &t(&[0, 1]), T0), t(&[0, 1]));
    assert_eq!(lock(log, &mut sm, "B", &t(&[1, 2]), T0 + 10), t(&[2]));
    // Re-locking one's own queues is granted (a renewal).
    assert_eq!(
        lock(log, &mut sm, "A", &t(&[0, 1, 2]), T0 + 20_000),
        t(&[0, 1])
    );
    // 60 s after A's first lock but 40 s after its renewal: still A's.
    assert!(lock(log, &mut sm, "B", &t(&[0]), T0 + LOCK_EXPIRY_MS + 1).is_empty());
    // 60 s after the renewal (strictly more): B steals.
    let late = T0 + 20_000 + LOCK_EXPIRY_MS + 1;
    assert_eq!(lock(log, &mut sm, "B", &t(&[0]), late), t(&[0]));
    assert_eq!(holder(&sm, 0, late).as_deref(), Some("B"));
    // A cannot unlock what B holds; unlocking its own 1 works.
    unlock(log, &mut sm, "A", &t(&[0, 1]), late + 1);
    assert_eq!(holder(&sm, 0, late + 1).as_deref(), Some("B"));
    assert_eq!(holder(&sm, 1, late + 1), None);
    // The released queue goes to whoever asks next.
    assert_eq!(lock(log, &mut sm, "C", &t(&[1]), late + 2), t(&[1]));
    // Another group's table is separate.
    let other = log.apply(
        &mut sm,
        &Command::LockQueues(QueueLockRequest {
            group: "H".into(),
            ..request("Z", &t(&[0]), late + 3)
        }),
    );
    assert_eq!(other, Reply::Locked(vec![0]));
    assert_eq!(holder(&sm, 0, late + 3).as_deref(), Some("B"));
}

#[test]
fn old_locks_are_dropped_and_topic_deletion_clears_them() {
    let mut sm = BrokerStateMachine::new();
    let mut log = SimLog::default();
    log.apply(&mut sm, &upsert("U", 4, 1));
    lock(&mut log, &mut sm, "A", &[mq("T", 0), mq("U", 0)], T0);
    assert_eq!(sm.locks().len(), 2);
    // Any later lock command forgets locks older than LOCK_FORGET_MS.
    lock(
        &mut log,
        &mut sm,
        "B",
        &[mq("U", 1)],
        T0 + LOCK_FORGET_MS + 1,
    );
    assert_eq!(sm.locks().len(), 1);
    log.apply(
        &mut sm,
        &Command::DeleteTopic {
            topic: "U".into(),
            timestamp_ms: 2,
        },
    );
    assert!(sm.locks().is_empty());
}

#[test]
fn replicas_grant_the_same_by_the_stamped_time() {
    let mut a = BrokerStateMachine::new();
    let mut b = BrokerStateMachine::new();
    let (mut la, mut lb) = (SimLog::default(), SimLog::default());
    // (client, queue, stamped time, granted?): each queue is taken, refused while live,
    // then stolen once its holder's lock is over 60 s old.
    let steps = [
        ("A", 0, T0, true),
        ("B", 1, T0 + 1, true),
        ("B", 0, T0 + 30_000, false),
        ("A", 1, T0 + 60_001, false),
        ("B", 0, T0 + 60_001, true),
        ("A", 1, T0 + 60_002, true),
    ];
    for (client, q, now, granted) in steps {
        let ra = lock(&mut la, &mut a, client, &t(&[q]), now);
        let rb = lock(&mut lb, &mut b, client, &t(&[q]), now);
        assert_eq!(ra, rb);
        assert_eq!(!ra.is_empty(), granted, "{client} q{q} at {now}");
    }
    assert_eq!(a.snapshot_bytes().unwrap(), b.snapshot_bytes().unwrap());
    assert_eq!(holder(&a, 0, T0 + 60_002).as_deref(), Some("B"));
    assert_eq!(holder(&a, 1, T0 + 60_002).as_deref(), Some("A"));
}

#[test]
fn locks_survive_snapshot_install() {
    let mut sm = BrokerStateMachine::new();
    let mut log = SimLog::default();
    lock(&mut log, &mut sm, "A", &t(&[0]), T0);
    let data = sm.snapshot().unwrap();
    let mut fresh = BrokerStateMachine::new();
    let last = Some(LogId {
        index: log.index,
        ..Default::default()
    });
    fresh
        .install_snapshot(last, StoredMembership::default(), &data)
        .unwrap();
    assert_eq!(fresh.locks(), sm.locks());
    // The installed node (a new leader) still refuses A's queue to B, within 60 s.
    let mut log2 = SimLog {
        buf: vec![0; log.buf.len()],
        index: log.index,
    };
    let got = lock(&mut log2, &mut fresh, "B", &t(&[0, 1]), T0 + 30_000);
    assert_eq!(got, t(&[1]));
    assert_eq!(holder(&fresh, 0, T0 + 30_000).as_deref(), Some("A"));
}

#[test]
fn locks_survive_checkpoint_restore() {
    let mut sm = BrokerStateMachine::new();
    let mut log = SimLog::default();
    log.apply(&mut sm, &upsert("T", 2, 1));
    lock(&mut log, &mut sm, "A", &[mq("T", 0)], T0);
    lock(&mut log, &mut sm, "B", &[mq("T", 1)], T0 + 1);
    let job = sm.checkpoint_job(true).unwrap();
    let restored = BrokerStateMachine::restore(&job.meta, &job.journal, &job.dedup).unwrap();
    assert_eq!(restored.locks(), sm.locks());
    assert_eq!(restored.locks().len(), 2);
    assert_eq!(holder(&restored, 1, T0 + 1).as_deref(), Some("B"));
    assert_eq!(
        restored.snapshot_bytes().unwrap(),
        sm.snapshot_bytes().unwrap()
    );
}

#[test]
fn version_1_snapshots_still_load_without_locks() {
    let mut sm = BrokerStateMachine::new();
    let mut log = SimLog::default();
    log.apply(&mut sm, &upsert("T", 2, 1));
    lock(&mut log, &mut sm, "A", &[mq("T", 0)], T0);
    let now = Snapshot::decode(&sm.snapshot_bytes().unwrap()).unwrap();
    assert_eq!(now.locks.len(), 1);
    let v1 = SnapshotV1 {
        last_applied: now.last_applied,
        membership: now.membership.clone(),
        data_version: now.data_version,
        topics: now.topics.clone(),
        offsets: now.offsets.clone(),
        queues: now.queues.clone(),
        dedup: now.dedup.clone(),
        last_store_time: now.last_store_time,
        purged_upto: now.purged_upto,
    }
    .encode()
    .unwrap();
    assert_eq!(v1[6], 1, "version byte");
    let old = Snapshot::decode(&v1).unwrap();
    assert!(old.locks.is_empty());
    assert_eq!(old.topics, now.topics);
    // A checkpoint written by a version 1 node restores too.
    let restored = BrokerStateMachine::restore(&v1, &[], &[]).unwrap();
    assert!(restored.locks().is_empty());
    assert_eq!(restored.topics(), sm.topics());
    // Unknown versions are refused by name.
    let mut future = v1.clone();
    future[6] = 9;
    let e = Snapshot::decode(&future).unwrap_err();
    assert!(e.contains("version 9"), "{e}");
}
