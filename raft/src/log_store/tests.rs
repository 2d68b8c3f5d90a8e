//! Unit tests of the store on [`MemDir`] and on the real file system.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openraft::{EntryPayload, LeaderId};

use super::*;
use crate::storage_dir::MemDir;
use crate::types::Entry;

const WAIT: Duration = Duration::from_secs(10);

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(LeaderId::new(term, 1), index)
}

fn normal(term: u64, index: u64, len: usize) -> Entry {
    let body: Vec<u8> = (0..len).map(|i| (index as usize * 31 + i) as u8).collect();
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(Bytes::from(body)),
    }
}

fn cfg(segment_bytes: u64) -> LogStoreConfig {
    LogStoreConfig {
        segment_bytes,
        ..LogStoreConfig::new("unused-for-memdir")
    }
}

fn open_mem(
    dir: &MemDir,
    meta: &Meta,
    segment_bytes: u64,
) -> Result<SegmentedLogStore, LogStoreError> {
    SegmentedLogStore::open_with(cfg(segment_bytes), Arc::new(dir.clone()), meta.clone())
}

/// Appends and waits (with a deadline) until the flusher reports the entries durable.
fn append_durable(store: &mut SegmentedLogStore, entries: Vec<Entry>) {
    let (tx, rx) = mpsc::channel();
    store
        .append_entries(
            entries,
            Box::new(move |r| tx.send(r.map_err(|e| e.to_string())).unwrap()),
        )
        .unwrap();
    rx.recv_timeout(WAIT)
        .expect("flush callback within deadline")
        .unwrap();
}

fn append_range(
    store: &mut SegmentedLogStore,
    term: u64,
    indexes: std::ops::RangeInclusive<u64>,
    len: usize,
) {
    append_durable(store, indexes.map(|i| normal(term, i, len)).collect());
}

fn positions(store: &SegmentedLogStore, indexes: std::ops::RangeInclusive<u64>) -> Vec<(u64, u32)> {
    let r = store.read_handle();
    indexes.map(|i| r.entry_position(i).unwrap()).collect()
}

fn segment_names(dir: &MemDir) -> Vec<String> {
    dir.names()
        .into_iter()
        .filter(|n| n.ends_with(".log"))
        .collect()
}

#[test]
fn roll_at_the_boundary_and_positions_do_not_depend_on_segment_size() {
    let frame = (HEADER_BYTES + 20) as u64;
    let mut all = Vec::new();
    for seg in [frame * 3, frame * 3 + 10, 1 << 20] {
        let dir = MemDir::new();
        let mut store = open_mem(&dir, &Meta::memory(), seg).unwrap();
        append_range(&mut store, 1, 1..=5, 20);
        append_range(&mut store, 1, 6..=10, 20);
        let pos = positions(&store, 1..=10);
        for (k, (p, len)) in pos.iter().enumerate() {
            assert_eq!((*p, *len as u64), (k as u64 * frame, frame));
        }
        if seg < 1 << 20 {
            // Three frames per segment: sealed at the boundary, never split.
            assert_eq!(
                segment_names(&dir),
                [
                    "00000000000000000000.log",
                    "00000000000000000159.log",
                    "00000000000000000318.log",
                    "00000000000000000477.log"
                ]
            );
            assert!(dir
                .names()
                .contains(&"00000000000000000000.idx".to_string()));
        }
        let entries = store.read_handle().read_entries(1..=10).unwrap();
        assert_eq!(entries.len(), 10);
        all.push(pos);
    }
    assert_eq!(all[0], all[1]);
    assert_eq!(all[0], all[2]);
}

#[test]
fn oversized_entry_gets_its_own_segment() {
    let dir = MemDir::new();
    let mut store = open_mem(&dir, &Meta::memory(), 100).unwrap();
    append_range(&mut store, 1, 1..=1, 10);
    append_durable(&mut store, vec![normal(1, 2, 500), normal(1, 3, 10)]);
    let pos = positions(&store, 1..=3);
    assert_eq!(pos[1].0, 43);
    assert_eq!(pos[2].0, 43 + 533);
    assert_eq!(segment_names(&dir).len(), 3);
    drop(store);
    let store = open_mem(&dir, &Meta::memory(), 100).unwrap();
    assert_eq!(positions(&store, 1..=3), pos);
}

#[test]
fn read_at_by_position_and_payload_position() {
    let dir = MemDir::new();
    let mut store = open_mem(&dir, &Meta::memory(), 200).unwrap();
    append_range(&mut store, 2, 1..=12, 50);
    let r = store.read_handle();
    for i in 1..=12 {
        let (pos, len) = r.entry_position(i).unwrap();
        let EntryPayload::Normal(body) = normal(2, i, 50).payload else {
            unreachable!()
        };
        assert_eq!(
            r.read_at(payload_position(pos), len as u64 - HEADER_BYTES as u64)
                .unwrap(),
            body
        );
        assert_eq!(r.read_payload(i).unwrap().unwrap(), body);
    }
    // A range across a segment boundary reads through.
    let (p4, l4) = r.entry_position(4).unwrap();
    assert!(p4 + 2 * l4 as u64 > r.entry_position(5).unwrap().0 && p4 < 332);
    let whole = r.read_at(0, r.end_position()).unwrap();
    assert_eq!(
        r.read_at(p4, 2 * l4 as u64).unwrap(),
        whole.slice(p4 as usize..(p4 + 2 * l4 as u64) as usize)
    );
    assert!(matches!(
        r.read_at(r.end_position() - 1, 2),
        Err(LogStoreError::OutOfRange { .. })
    ));
    store.purge_upto(log_id(2, 4)).unwrap();
    assert!(matches!(
        r.read_at(0, 1),
        Err(LogStoreError::OutOfRange { .. })
    ));
    assert_eq!(r.start_position(), r.entry_position(5).unwrap().0);
    assert_eq!(r.first_index(), Some(5));
    assert_eq!(r.last_index(), Some(12));
}

#[test]
fn torn_tail_is_cut() {
    for garbage in [vec![0u8; 100], vec![0xAB; 7], {
        let mut partial = Vec::new();
        frame::encode_entry(&mut partial, &normal(1, 6, 40)).unwrap();
        partial.truncate(partial.len() - 3);
        partial
    }] {
        let dir = MemDir::new();
        let mut store = open_mem(&dir, &Meta::memory(), 1 << 20).unwrap();
        append_range(&mut store, 1, 1..=5, 40);
        let end = store.read_handle().end_position();
        drop(store);
        dir.corrupt("00000000000000000000.log", end, &garbage)
            .unwrap();
        let mut store = open_mem(&dir, &Meta::memory(), 1 << 20).unwrap();
        assert_eq!(store.log_state().1, Some(log_id(1, 5)));
        assert_eq!(
            dir.contents("00000000000000000000.log").unwrap().len() as u64,
            end
        );
        append_range(&mut store, 1, 6..=6, 40);
        assert_eq!(store.read_handle().entry_position(6).unwrap().0, end);
    }
}

#[test]
fn bad_crc_at_the_very_end_is_a_torn_tail() {
    let dir = MemDir::new();
    let mut store = open_mem(&dir, &Meta::memory(), 1 << 20).unwrap();
    append_range(&mut store, 1, 1..=3, 40);
    let (p3, _) = store.read_handle().entry_position(3).unwrap();
    drop(store);
    dir.corrupt("00000000000000000000.log", p3 + 40, &[0xFF])
        .unwrap();
    let store = open_mem(&dir, &Meta::memory(), 1 << 20).unwrap();
    assert_eq!(store.log_state().1, Some(log_id(1, 2)));
}

#[test]
fn corruption_before_the_tail_names_file_and_offset() {
    let dir = MemDir::new();
    let mut store = open_mem(&dir, &Meta::memory(), 1 << 20).unwrap();
    append_range(&mut store, 1, 1..=5, 40);
    let (p3, _) = store.read_handle().entry_position(3).unwrap();
    drop(store);
    dir.corrupt("00000000000000000000.log", p3 + 40, &[0xFF])
        .unwrap();
    match open_mem(&dir, &Meta::memory(), 1 << 20) {
        Err(LogStoreError::Corrupt {
            file,
            offset,
            reason,
        }) => {
            assert_eq!(file, "00000000000000000000.log");
            assert_eq!(offset, p3);
            assert!(reason.contains("crc"), "{reason}");
        }
        other => panic!("expected corruption error, got {other:?}"),
    }
}

#[test]
fn corruption_in_a_sealed_segment_is_caught_on_read_or_scan() {
    let dir = MemDir::new();
    let mut store = open_mem(&dir, &Meta::memory(), 200).unwrap();
    append_range(&mut store, 1, 1..=12, 50);
    let (p2, _) = store.read_handle().entry_position(2).unwrap();
    drop(store);
    dir.corrupt("00000000000000000000.log", p2 + 50, &[0x55])
        .unwrap();
    // With its sidecar the sealed segment is not read at open; a read checks the CRC.
    let store = open_mem(&dir, &Meta::memory(), 200).unwrap();
    match store.read_handle().read_entries(1..=3) {
        Err(LogStoreError::Corrupt { file, offset, .. }) => {
            assert_eq!((file.as_str(), offset), ("00000000000000000000.log", p2));
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    assert!(store.read_handle().read_payload(2).is_err());
    drop(store);
    // Without the sidecar, open scans the sealed segment and refuses to start.
    dir.corrupt("00000000000000000000.idx", 0, b"X").unwrap();
    match open_mem(&dir, &Meta::memory(), 200) {
        Err(LogStoreError::Corrupt { file, offset, .. }) => {
            assert_eq!((file.as_str(), offset), ("00000000000000000000.log", p2))
        }
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn missing_sidecar_is_rebuilt_by_a_scan() {
    let dir = MemDir::new();
    let mut store = open_mem(&dir, &Meta::memory(), 200).unwrap();
    append_range(&mut store, 1, 1..=12, 50);
    let pos = positions(&store, 1..=12);
    drop(store);
    dir.corrupt("00000000000000000000.idx", 9, b"garbage")
        .unwrap();
    let store = open_mem(&dir, &Meta::memory(), 200).unwrap();
    assert_eq!(positions(&store, 1..=12), pos);
    drop(store);
    let store = open_mem(&dir, &Meta::memory(), 200).unwrap();
    assert_eq!(positions(&store, 1..=12), pos);
}

#[test]
fn truncate_then_append_reuses_positions() {
    let dir = MemDir::new();
    let mut store = open_mem(&dir, &Meta::memory(), 200).unwrap();
    append_range(&mut store, 1, 1..=12, 50);
    let before = positions(&store, 1..=12);
    store.truncate_from(4).unwrap();
    assert_eq!(store.log_state().1, Some(log_id(1, 3)));
    assert_eq!(store.read_handle().entry_position(4), None);
    assert_eq!(
        segment_names(&dir),
        ["00000000000000000000.log", "00000000000000000166.log"]
    );
    append_range(&mut store, 2, 4..=12, 50);
    assert_eq!(positions(&store, 1..=12), before);
    let e = store.read_handle().read_entries(4..5).unwrap();
    assert_eq!(e[0].log_id, log_id(2, 4));
    drop(store);
    let store = open_mem(&dir, &Meta::memory(), 200).unwrap();
    assert_eq!(positions(&store, 1..=12), before);
    assert_eq!(store.log_state().1, Some(log_id(2, 12)));
}

#[test]
fn truncate_everything_and_beyond_the_end() {
    let dir = MemDir::new();
    let mut store = open_mem(&dir, &Meta::memory(), 200).unwrap();
    append_range(&mut store, 1, 0..=5, 50);
    store.truncate_from(9).unwrap();
    assert_eq!(store.log_state().1, Some(log_id(1, 5)));
    store.truncate_from(0).unwrap();
    assert_eq!(store.log_state(), (None, None));
    assert_eq!(store.read_handle().end_position(), 0);
    append_range(&mut store, 3, 0..=1, 50);
    assert_eq!(store.read_handle().entry_position(0), Some((0, 83)));
}

#[test]
fn purge_deletes_whole_segments_only() {
    let dir = MemDir::new();
    let meta = Meta::memory();
    let mut store = open_mem(&dir, &meta, 200).unwrap();
    append_range(&mut store, 1, 1..=12, 50); // 2 frames (166 bytes) per segment
    assert_eq!(segment_names(&dir).len(), 6);
    store.purge_upto(log_id(1, 3)).unwrap(); // segment [1,2] goes, [3,4] stays
    assert_eq!(segment_names(&dir).len(), 5);
    assert_eq!(segment_names(&dir)[0], "00000000000000000166.log");
    assert_eq!(store.log_state(), (Some(log_id(1, 3)), Some(log_id(1, 12))));
    assert_eq!(
        store.read_handle().read_entries(..).unwrap()[0]
            .log_id
            .index,
        4
    );
    drop(store);
    let mut store = open_mem(&dir, &meta, 200).unwrap();
    assert_eq!(store.read_handle().first_index(), Some(4));
    assert_eq!(store.log_state(), (Some(log_id(1, 3)), Some(log_id(1, 12))));
    // Purge past the end keeps the last segment (it holds the end position); the next
    // append starts a fresh segment there.
    let end = store.read_handle().end_position();
    store.purge_upto(log_id(1, 20)).unwrap();
    assert_eq!(
        store.log_state(),
        (Some(log_id(1, 20)), Some(log_id(1, 20)))
    );
    assert_eq!(segment_names(&dir).len(), 1);
    assert!(matches!(
        store.append_entries(vec![normal(1, 30, 5)], Box::new(|_| {})),
        Err(LogStoreError::NotContiguous {
            expected: 21,
            got: 30
        })
    ));
    append_range(&mut store, 2, 21..=22, 50);
    assert_eq!(store.read_handle().entry_position(21).unwrap().0, end);
    drop(store);
    let mut store = open_mem(&dir, &meta, 200).unwrap();
    assert_eq!(
        store.log_state(),
        (Some(log_id(1, 20)), Some(log_id(2, 22)))
    );
    assert_eq!(store.read_handle().entry_position(21).unwrap().0, end);
    store.purge_upto(log_id(2, 21)).unwrap();
    assert_eq!(segment_names(&dir).len(), 1);
}

#[test]
fn second_open_is_refused_by_the_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let store = SegmentedLogStore::open(LogStoreConfig::new(tmp.path())).unwrap();
    match SegmentedLogStore::open(LogStoreConfig::new(tmp.path())) {
        Err(LogStoreError::Locked { detail, .. }) => {
            assert!(
                detail.contains(&format!("pid {}", std::process::id())),
                "{detail}"
            )
        }
        other => panic!("expected a lock error, got {other:?}"),
    }
    drop(store);
    SegmentedLogStore::open(LogStoreConfig::new(tmp.path())).unwrap();
    let dir = MemDir::new();
    let _held = open_mem(&dir, &Meta::memory(), 200).unwrap();
    assert!(matches!(
        open_mem(&dir, &Meta::memory(), 200),
        Err(LogStoreError::Locked { .. })
    ));
}

#[test]
fn real_files_round_trip_with_mid_log_corruption_error() {
    let tmp = tempfile::tempdir().unwrap();
    let config = LogStoreConfig {
        segment_bytes: 4096,
        ..LogStoreConfig::new(tmp.path())
    };
    let mut store = SegmentedLogStore::open(config.clone()).unwrap();
    append_range(&mut store, 1, 1..=100, 100);
    store.save_committed(Some(log_id(1, 90))).unwrap();
    let pos = positions(&store, 1..=100);
    let base = store.active.base;
    let tail = format!("{base:020}.log");
    let rel = pos.iter().find(|p| p.0 >= base + 200).unwrap().0 - base;
    drop(store);
    let store = SegmentedLogStore::open(config.clone()).unwrap();
    assert_eq!(positions(&store, 1..=100), pos);
    assert_eq!(store.read_handle().committed_index(), Some(90));
    drop(store);
    let path = tmp.path().join("log").join(&tail);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[rel as usize + 40] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    let err = SegmentedLogStore::open(config).unwrap_err().to_string();
    assert!(
        err.contains(&tail) && err.contains(&format!("offset {rel}")),
        "{err}"
    );
}

fn append_outcome(store: &mut SegmentedLogStore, entries: Vec<Entry>) -> bool {
    let (tx, rx) = mpsc::channel();
    store
        .append_entries(entries, Box::new(move |r| tx.send(r.is_ok()).unwrap()))
        .unwrap();
    rx.recv_timeout(WAIT).expect("completion within deadline")
}

#[test]
fn disk_full_fails_the_store_without_a_partial_frame() {
    let dir = MemDir::new();
    let mut store = open_mem(&dir, &Meta::memory(), 1 << 20).unwrap();
    append_range(&mut store, 1, 1..=3, 40);
    let durable_end = store.read_handle().end_position();
    dir.set_write_budget(Some(100));
    assert!(!append_outcome(
        &mut store,
        (4..=6).map(|i| normal(1, i, 40)).collect()
    ));
    assert!(matches!(
        store.append_entries(vec![normal(1, 7, 40)], Box::new(|_| {})),
        Err(LogStoreError::Failed(_))
    ));
    assert!(store.sync().is_err());
    // The partial write was cut: the file ends at the last whole frame.
    assert_eq!(
        dir.contents("00000000000000000000.log").unwrap().len() as u64,
        durable_end
    );
    drop(store);
    dir.set_write_budget(None);
    let store = open_mem(&dir, &Meta::memory(), 1 << 20).unwrap();
    assert_eq!(store.log_state().1, Some(log_id(1, 3)));
}

#[test]
fn failed_sync_is_sticky() {
    let dir = MemDir::new();
    let mut store = open_mem(&dir, &Meta::memory(), 1 << 20).unwrap();
    append_range(&mut store, 1, 1..=3, 40);
    dir.set_sync_failure(true);
    assert!(!append_outcome(&mut store, vec![normal(1, 4, 40)]));
    dir.set_sync_failure(false);
    // Nothing is reported durable after a failed fsync, even if a retry would succeed.
    assert!(matches!(
        store.append_entries(vec![normal(1, 5, 40)], Box::new(|_| {})),
        Err(LogStoreError::Failed(_))
    ));
    assert!(store.sync().is_err());
    assert!(store.truncate_from(2).is_err());
}

#[test]
fn reads_see_buffered_frames_before_they_reach_the_file() {
    let dir = MemDir::new();
    let mut store = open_mem(&dir, &Meta::memory(), 1 << 20).unwrap();
    dir.set_sync_failure(true); // the flusher's round fails, but only after its write
    let (tx, rx) = mpsc::channel();
    store
        .append_entries(
            (1..=3).map(|i| normal(1, i, 40)).collect::<Vec<_>>(),
            Box::new(move |r| tx.send(r.is_ok()).unwrap()),
        )
        .unwrap();
    // Readable as soon as append returns, whether or not the flusher has written it yet.
    let r = store.read_handle();
    assert_eq!(r.read_entries(1..=3).unwrap().len(), 3);
    assert_eq!(r.read_payload(2).unwrap().unwrap().len(), 40);
    assert!(!rx.recv_timeout(WAIT).unwrap());
    assert_eq!(r.read_entries(1..=3).unwrap().len(), 3);
}

#[test]
fn async_policy_completes_after_write_without_waiting_for_sync() {
    let dir = MemDir::new();
    let config = LogStoreConfig {
        flush: FlushPolicy::Async,
        async_flush_interval: Duration::from_secs(10),
        ..cfg(1 << 20)
    };
    let mut store =
        SegmentedLogStore::open_with(config, Arc::new(dir.clone()), Meta::memory()).unwrap();
    dir.set_sync_failure(true); // completions must not depend on a sync
    for i in 1..=4 {
        assert!(append_outcome(&mut store, vec![normal(1, i, 40)]));
    }
    // Completed means written to the "kernel": the bytes are in the file already.
    assert_eq!(
        dir.contents("00000000000000000000.log").unwrap().len() as u64,
        store.read_handle().end_position()
    );
    dir.set_sync_failure(false);
    store.sync().unwrap();
    let crashed = dir.crash(1);
    drop(store);
    let store = open_mem(&crashed, &Meta::memory(), 1 << 20).unwrap();
    assert_eq!(store.log_state().1, Some(log_id(1, 4)));
}

#[test]
fn config_is_validated() {
    let dir = MemDir::new();
    for bad in [
        LogStoreConfig {
            segment_bytes: 10,
            ..cfg(0)
        },
        LogStoreConfig {
            segment_bytes: 1 << 33,
            ..cfg(0)
        },
        LogStoreConfig {
            async_flush_interval: Duration::ZERO,
            ..cfg(1 << 20)
        },
    ] {
        assert!(matches!(
            SegmentedLogStore::open_with(bad, Arc::new(dir.clone()), Meta::memory()),
            Err(LogStoreError::Config(_))
        ));
    }
    assert!(matches!(
        SegmentedLogStore::open(LogStoreConfig::default()),
        Err(LogStoreError::Config(_))
    ));
}
