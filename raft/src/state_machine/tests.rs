#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::mpsc;
use std::time::Duration;

use openraft::{EntryPayload, LeaderId};

use super::testing::MemStateMachine;
use super::*;
use crate::log_store::{LogStoreConfig, SegmentedLogStore};
use crate::meta::Meta;
use crate::storage_dir::MemDir;

#[test]
fn envelope_round_trips_and_rejects_garbage() {
    for env in [
        SnapshotEnvelope {
            next_position: Some(123_456_789),
            state: b"state".to_vec(),
        },
        SnapshotEnvelope {
            next_position: None,
            state: Vec::new(),
        },
    ] {
        assert_eq!(SnapshotEnvelope::decode(&env.encode()).unwrap(), env);
    }
    let good = SnapshotEnvelope {
        next_position: Some(7),
        state: vec![1, 2, 3],
    }
    .encode();
    assert!(SnapshotEnvelope::decode(&good[..10]).is_err());
    assert!(SnapshotEnvelope::decode(b"").is_err());
    for (at, value) in [(0, b'X'), (7, 9), (8, 2)] {
        let mut bad = good.clone();
        bad[at] = value;
        assert!(SnapshotEnvelope::decode(&bad).is_err(), "byte {at}");
    }
}

fn store(dir: &MemDir) -> SegmentedLogStore {
    let config = LogStoreConfig {
        segment_bytes: 4096,
        ..LogStoreConfig::new("mem")
    };
    SegmentedLogStore::open_with(config, Arc::new(dir.clone()), Meta::memory()).unwrap()
}

fn entry(index: u64) -> Entry {
    Entry {
        log_id: LogId::new(LeaderId::new(1, 0), index),
        payload: EntryPayload::Normal(crate::batch::encode_envelope(&[Bytes::from(vec![
            index
                as u8;
            100
        ])])),
    }
}

#[tokio::test]
async fn snapshot_carries_the_next_position_and_install_records_it() {
    // Leader side: a log of entries 1..=10, all applied.
    let leader_dir = MemDir::new();
    let mut leader_log = store(&leader_dir);
    let (tx, rx) = mpsc::channel();
    leader_log
        .append_entries(
            (1..=10).map(entry).collect::<Vec<_>>(),
            Box::new(move |r| tx.send(r.is_ok()).unwrap()),
        )
        .unwrap();
    assert!(rx.recv_timeout(Duration::from_secs(10)).unwrap());
    let handle = leader_log.read_handle();
    let mut leader = SmAdapter::new(MemStateMachine::default(), Arc::new(handle.clone()));
    leader.apply((1..=10).map(entry)).await.unwrap();
    let snap = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let data = snap.snapshot.into_inner();
    let env = SnapshotEnvelope::decode(&data).unwrap();
    let (pos10, len10) = handle.entry_position(10).unwrap();
    assert_eq!(env.next_position, Some(pos10 + u64::from(len10)));

    // Follower side: a fresh store; the install records where entry 11 begins.
    let follower_dir = MemDir::new();
    let follower_log = store(&follower_dir);
    let hint = follower_log.rebase_hint();
    let mut follower = SmAdapter::new(
        MemStateMachine::default(),
        Arc::new(follower_log.read_handle()),
    )
    .with_rebase_hint(hint.clone());
    follower
        .install_snapshot(&snap.meta, Box::new(Cursor::new(data.clone())))
        .await
        .unwrap();
    assert_eq!(
        hint.get(),
        Some(RebasePoint {
            first_index: 11,
            position: pos10 + u64::from(len10),
        })
    );
    assert_eq!(
        follower_log.meta().read_rebase().unwrap(),
        hint.get(),
        "recorded durably"
    );
    let applied = |a: &SmAdapter<MemStateMachine>| a.with(|sm| sm.applied.clone());
    assert_eq!(applied(&follower), applied(&leader));
    // The installed snapshot is served on as it came (the position included).
    let cur = follower.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(cur.snapshot.into_inner(), data);
    // A snapshot built before the follower's log is rebased carries the same position.
    let rebuilt = follower
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let rebuilt = SnapshotEnvelope::decode(&rebuilt.snapshot.into_inner()).unwrap();
    assert_eq!(rebuilt.next_position, env.next_position);

    // Garbage is a clear error, not a panic, and changes nothing.
    for garbage in [
        Vec::new(),
        b"not a snapshot at all".to_vec(),
        data[..12].to_vec(),
    ] {
        let err = follower
            .install_snapshot(&snap.meta, Box::new(Cursor::new(garbage)))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("snapshot"), "{err}");
    }
    assert_eq!(applied(&follower), applied(&leader));

    // A snapshot without a position cannot be installed where positions matter.
    let blind = SnapshotEnvelope {
        next_position: None,
        state: env.state.clone(),
    }
    .encode();
    assert!(follower
        .install_snapshot(&snap.meta, Box::new(Cursor::new(blind)))
        .await
        .is_err());
}
