//! Unit tests of the store on [`MemDir`] and on the real file system.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openraft::{EntryPayload, LeaderId};

use super::segment::segment_file_name;
use super::*;
use crate::storage_dir::MemDir;
use crate::storage_dir::StorageDir;
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

/// Without zeros written ahead: these tests check exact file contents (the prefill has
/// its own tests, and the power-loss suites run with it on).
fn cfg(segment_bytes: u64) -> LogStoreConfig {
    LogStoreConfig {
        segment_bytes,
        prefill_bytes: 0,
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

fn open_tail_indexed(dir: &MemDir, meta: &Meta) -> SegmentedLogStore {
    let config = LogStoreConfig {
        tail_index_every_bytes: 100,
        ..cfg(1 << 20)
    };
    SegmentedLogStore::open_with(config, Arc::new(dir.clone()), meta.clone()).unwrap()
}

#[test]
fn a_tail_sidecar_spares_the_scan_of_its_prefix() {
    let dir = MemDir::new();
    let meta = Meta::memory();
    let mut store = open_tail_indexed(&dir, &meta);
    append_range(&mut store, 1, 1..=5, 40);
    let syncer = store.syncer();
    assert!(
        syncer.sync_and_index_tail().unwrap(),
        "grew past the threshold"
    );
    assert!(
        !syncer.sync_and_index_tail().unwrap(),
        "nothing new: no rewrite"
    );
    assert!(dir
        .names()
        .contains(&"00000000000000000000.idx".to_string()));
    append_range(&mut store, 1, 6..=8, 40);
    let (p3, _) = store.read_handle().entry_position(3).unwrap();
    let (p7, _) = store.read_handle().entry_position(7).unwrap();
    drop(store);

    // A bad byte inside the prefix is not looked for at open (as for sealed segments), but
    // a checked read finds it; every entry is indexed.
    dir.corrupt("00000000000000000000.log", p3 + 40, &[0xFF])
        .unwrap();
    let store = open_tail_indexed(&dir, &meta);
    let h = store.read_handle();
    assert_eq!((h.first_index(), h.last_index()), (Some(1), Some(8)));
    assert_eq!(store.log_state().1.unwrap().index, 8);
    assert!(h.read_payload(3).is_err());
    assert!(h.read_payload(7).is_ok());
    drop(store);

    // Past the prefix everything is CRC-scanned: damage there is found at open.
    dir.corrupt("00000000000000000000.log", p7 + 40, &[0xFF])
        .unwrap();
    match SegmentedLogStore::open_with(
        LogStoreConfig {
            tail_index_every_bytes: 100,
            ..cfg(1 << 20)
        },
        Arc::new(dir.clone()),
        meta.clone(),
    ) {
        Err(LogStoreError::Corrupt { offset, .. }) => assert_eq!(offset, p7),
        other => panic!("expected corruption at {p7}, got {other:?}"),
    }
}

#[test]
fn truncation_drops_the_tail_sidecar_and_a_stale_one_is_ignored() {
    let dir = MemDir::new();
    let meta = Meta::memory();
    let mut store = open_tail_indexed(&dir, &meta);
    append_range(&mut store, 1, 1..=6, 40);
    assert!(store.syncer().sync_and_index_tail().unwrap());
    store.truncate_from(3).unwrap();
    assert!(!dir
        .names()
        .contains(&"00000000000000000000.idx".to_string()));
    append_range(&mut store, 2, 3..=4, 70);
    drop(store);
    let store = open_tail_indexed(&dir, &meta);
    assert_eq!(store.log_state().1, Some(log_id(2, 4)));
    let payload = store.read_handle().read_payload(4).unwrap().unwrap();
    assert_eq!(payload.len(), 70);
    drop(store);

    // A sidecar that does not fit the segment (claims more than the file holds) is ignored
    // and removed; the segment is scanned.
    let mut store = open_tail_indexed(&dir, &meta);
    append_range(&mut store, 2, 5..=9, 40);
    assert!(store.syncer().sync_and_index_tail().unwrap());
    let end = store.read_handle().end_position();
    drop(store);
    let file = dir.open("00000000000000000000.log").unwrap();
    file.set_len(end - 10).unwrap();
    file.sync_data().unwrap();
    let store = open_tail_indexed(&dir, &meta);
    assert_eq!(
        store.log_state().1,
        Some(log_id(2, 8)),
        "torn last frame cut"
    );
    assert!(!dir
        .names()
        .contains(&"00000000000000000000.idx".to_string()));
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
fn segment_summaries_and_index_by_position() {
    let dir = MemDir::new();
    let meta = Meta::memory();
    let mut store = open_mem(&dir, &meta, 200).unwrap();
    append_range(&mut store, 1, 1..=5, 50); // 83-byte frames, 2 per segment
    let h = store.read_handle();
    let segs = h.segments();
    assert_eq!(segs.len(), 3);
    assert_eq!(
        (
            segs[0].base,
            segs[0].end,
            segs[0].first_index,
            segs[0].last_index
        ),
        (0, 166, 1, Some(2))
    );
    assert_eq!((segs[1].base, segs[1].first_index), (166, 3));
    assert_eq!(segs[1].name, "00000000000000000166.log");
    assert_eq!(
        (segs[2].last_index, segs[2].end),
        (Some(5), h.end_position())
    );
    // The last entry that ends at or before a position.
    assert_eq!(h.last_index_ending_by(0), None);
    assert_eq!(h.last_index_ending_by(82), None);
    assert_eq!(h.last_index_ending_by(83), Some(1));
    assert_eq!(h.last_index_ending_by(165), Some(1));
    assert_eq!(h.last_index_ending_by(166), Some(2));
    assert_eq!(h.last_index_ending_by(200), Some(2));
    assert_eq!(h.last_index_ending_by(u64::MAX), Some(5));
    store.purge_upto(log_id(1, 2)).unwrap();
    assert_eq!(h.segments().len(), 2);
    assert_eq!(
        h.last_index_ending_by(166),
        None,
        "purged entries are not reported"
    );
    assert_eq!(h.last_index_ending_by(250), Some(3));
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

/// Appends one entry under the async policy; true if its completion ran on this thread
/// before `append_entries` returned (the flusher was idle). Waits for it either way.
fn append_async(store: &mut SegmentedLogStore, index: u64) -> (bool, bool) {
    let me = std::thread::current().id();
    let (tx, rx) = mpsc::channel();
    store
        .append_entries(
            vec![normal(1, index, 40)],
            Box::new(move |r| {
                tx.send((std::thread::current().id() == me, r.is_ok()))
                    .unwrap()
            }),
        )
        .unwrap();
    let inline = rx.try_recv().ok();
    inline.unwrap_or_else(|| rx.recv_timeout(WAIT).expect("completion within deadline"))
}

/// An async-policy store (10 s interval) on `dir`, appended to until an append completes
/// on the calling thread (the flusher thread went idle); returns it and the next index.
fn async_store_once_idle(dir: &MemDir, config: LogStoreConfig) -> (SegmentedLogStore, u64) {
    let config = LogStoreConfig {
        flush: FlushPolicy::Async,
        async_flush_interval: Duration::from_secs(10),
        ..config
    };
    let mut store =
        SegmentedLogStore::open_with(config, Arc::new(dir.clone()), Meta::memory()).unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    let mut index = 1;
    loop {
        let (inline, ok) = append_async(&mut store, index);
        assert!(ok);
        index += 1;
        if inline {
            return (store, index);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no append completed inline"
        );
    }
}

#[test]
fn async_policy_appends_write_on_the_calling_thread_when_the_flusher_is_idle() {
    let dir = MemDir::new();
    let (mut store, mut index) = async_store_once_idle(&dir, cfg(1 << 20));
    for _ in 0..5 {
        let (inline, ok) = append_async(&mut store, index);
        assert!(inline && ok, "the flusher stays idle between appends");
        index += 1;
    }
    // Completed means in the file, in order, with nothing synced yet.
    assert_eq!(
        dir.contents("00000000000000000000.log").unwrap().len() as u64,
        store.read_handle().end_position()
    );
    // The appends marked the file dirty, so a sync covers what they wrote themselves.
    store.sync().unwrap();
    let crashed = dir.crash(4);
    drop(store);
    let store = open_mem(&crashed, &Meta::memory(), 1 << 20).unwrap();
    assert_eq!(store.log_state().1, Some(log_id(1, index - 1)));
}

#[test]
fn async_policy_syncs_every_prefill_chunk_written_inline_not_only_at_the_interval() {
    let dir = MemDir::new();
    let config = LogStoreConfig {
        prefill_bytes: 0,
        ..cfg(64 << 20)
    };
    let (mut store, mut index) = async_store_once_idle(&dir, config);
    let name = "00000000000000000000.log";
    let syncs = dir.syncs(name).unwrap();
    // A chunk's worth written inline: the flusher syncs without waiting for the interval.
    let end = store.read_handle().end_position() + flusher::PREFILL_CHUNK;
    while store.read_handle().end_position() < end {
        let (_, ok) = append_async(&mut store, index);
        assert!(ok);
        index += 1;
    }
    // Well before the 10 s interval (measured from the store's start).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while dir.syncs(name) == Some(syncs) {
        assert!(
            std::time::Instant::now() < deadline,
            "no sync after a chunk"
        );
        std::thread::yield_now();
    }
}

#[test]
fn async_policy_inline_write_failure_fails_the_store() {
    let dir = MemDir::new();
    let (mut store, index) = async_store_once_idle(&dir, cfg(1 << 20));
    dir.set_op_budget(Some(0));
    let (inline, ok) = append_async(&mut store, index);
    assert!(inline, "the flusher was idle: the append wrote itself");
    assert!(!ok, "a failed write is reported to its append");
    dir.set_op_budget(None);
    let sticky = store.append_entries(vec![normal(1, index + 1, 40)], Box::new(|_| {}));
    assert!(
        matches!(sticky, Err(LogStoreError::Failed(ref r)) if r.contains("write")),
        "the failure is sticky and names the write: {sticky:?}"
    );
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

// ---- Rebase after a snapshot install -------------------------------------------------------

fn point(first_index: u64, position: u64) -> RebasePoint {
    RebasePoint {
        first_index,
        position,
    }
}

fn log_files(dir: &MemDir) -> Vec<String> {
    dir.names()
        .into_iter()
        .filter(|n| n.ends_with(".log") || n.ends_with(".idx"))
        .collect()
}

/// Entries 1..=5 of 83-byte frames in 200-byte segments: `0` [1,2], `166` [3,4], `332` [5].
fn five_entries(dir: &MemDir, meta: &Meta) -> SegmentedLogStore {
    let mut store = open_mem(dir, meta, 200).unwrap();
    append_range(&mut store, 1, 1..=5, 50);
    assert_eq!(
        segment_names(dir),
        [
            "00000000000000000000.log",
            "00000000000000000166.log",
            "00000000000000000332.log"
        ]
    );
    store
}

#[test]
fn purge_past_the_end_with_a_hint_continues_at_the_hinted_position() {
    let dir = MemDir::new();
    let meta = Meta::memory();
    let mut store = five_entries(&dir, &meta);
    store.rebase_hint().record(point(21, 10_000)).unwrap();
    store.purge_upto(log_id(1, 20)).unwrap();
    let r = store.read_handle();
    assert_eq!(
        store.log_state(),
        (Some(log_id(1, 20)), Some(log_id(1, 20)))
    );
    assert_eq!((r.start_position(), r.end_position()), (10_000, 10_000));
    assert_eq!(r.end_of(20), Some(10_000));
    assert_eq!(r.first_index(), None);
    assert_eq!(log_files(&dir), ["00000000000000010000.log"]);
    append_range(&mut store, 2, 21..=24, 50);
    let expected: Vec<(u64, u32)> = (0..4).map(|k| (10_000 + k * 83, 83)).collect();
    assert_eq!(positions(&store, 21..=24), expected);
    assert_eq!(r.end_of(20), Some(10_000));
    assert_eq!(r.end_of(21), Some(10_083));
    assert_eq!(meta.read_rebase().unwrap(), Some(point(21, 10_000)));
    drop(store);
    let store = open_mem(&dir, &meta, 200).unwrap();
    assert_eq!(positions(&store, 21..=24), expected);
    assert_eq!(
        store.log_state(),
        (Some(log_id(1, 20)), Some(log_id(2, 24)))
    );
}

#[test]
fn hint_recorded_after_the_purge_is_applied_by_the_next_append_or_at_open() {
    // openraft 0.9 runs the purge of a snapshot install before the state machine has
    // installed it (and recorded the hint); the append of the next entry comes after.
    for reopen in [false, true] {
        let dir = MemDir::new();
        let meta = Meta::memory();
        let mut store = five_entries(&dir, &meta);
        store.purge_upto(log_id(1, 20)).unwrap();
        assert_eq!(store.read_handle().end_position(), 415);
        assert_eq!(log_files(&dir), ["00000000000000000332.log"]);
        store.rebase_hint().record(point(21, 1_000)).unwrap();
        if reopen {
            drop(store);
            store = open_mem(&dir, &meta, 200).unwrap();
            assert_eq!(store.read_handle().end_position(), 1_000);
            assert_eq!(log_files(&dir), ["00000000000000001000.log"]);
        }
        append_range(&mut store, 2, 21..=22, 50);
        assert_eq!(positions(&store, 21..=22), [(1_000, 83), (1_083, 83)]);
        assert_eq!(log_files(&dir), ["00000000000000001000.log"]);
    }
}

#[test]
fn hint_is_ignored_unless_it_follows_the_purge_point_of_an_empty_log() {
    let dir = MemDir::new();
    let meta = Meta::memory();
    let mut store = five_entries(&dir, &meta);
    let before = positions(&store, 1..=5);
    // Entries remain above the purge point: positions are already the replicated ones.
    store.rebase_hint().record(point(4, 9_999)).unwrap();
    store.purge_upto(log_id(1, 3)).unwrap();
    assert_eq!(positions(&store, 4..=5), before[3..]);
    // A point for another index does not apply to this purge point.
    store.rebase_hint().record(point(30, 5_000)).unwrap();
    store.purge_upto(log_id(1, 20)).unwrap();
    assert_eq!(store.read_handle().end_position(), 415);
    append_range(&mut store, 2, 21..=21, 50);
    assert_eq!(store.read_handle().entry_position(21).unwrap().0, 415);
    // An older point never replaces a newer one.
    store.rebase_hint().record(point(25, 1)).unwrap();
    assert_eq!(store.rebase_hint().get(), Some(point(30, 5_000)));
    assert_eq!(meta.read_rebase().unwrap(), Some(point(30, 5_000)));
}

#[test]
fn rebase_below_the_old_end_and_onto_an_old_segment_name() {
    // A node whose own (divergent, uncommitted) tail ran further than the replicated log.
    for position in [100, 332] {
        let dir = MemDir::new();
        let meta = Meta::memory();
        let mut store = five_entries(&dir, &meta);
        store.rebase_hint().record(point(21, position)).unwrap();
        store.purge_upto(log_id(1, 20)).unwrap();
        assert_eq!(log_files(&dir), [segment_file_name(position)]);
        assert_eq!(dir.contents(&segment_file_name(position)).unwrap().len(), 0);
        append_range(&mut store, 2, 21..=23, 50);
        let expected: Vec<(u64, u32)> = (0..3).map(|k| (position + k * 83, 83)).collect();
        assert_eq!(positions(&store, 21..=23), expected);
        drop(store);
        let store = open_mem(&dir, &meta, 200).unwrap();
        assert_eq!(positions(&store, 21..=23), expected);
        let e = store.read_handle().read_entries(21..=23).unwrap();
        assert_eq!(
            e.iter().map(|e| e.log_id).collect::<Vec<_>>(),
            [log_id(2, 21), log_id(2, 22), log_id(2, 23)]
        );
    }
}

/// Checks a store recovered after a crash during a rebase to `position` after purging up to
/// 20: every entry up to 20 is gone, the log ends at `position` (or entry 21 is there, if its
/// append completed), and appends go there.
fn check_rebased(dir: &MemDir, meta: &Meta, position: u64, appended_21: bool, what: &str) {
    let mut store = open_mem(dir, meta, 200).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(store.log_state().0, Some(log_id(1, 20)), "{what}");
    assert_eq!(log_files(dir), [segment_file_name(position)], "{what}");
    let r = store.read_handle();
    if r.last_index() == Some(21) {
        assert_eq!(r.entry_position(21), Some((position, 83)), "{what}");
    } else {
        assert!(!appended_21, "{what}: a completed append was lost");
        assert_eq!(r.last_index(), None, "{what}");
        assert_eq!(r.end_position(), position, "{what}");
        append_range(&mut store, 2, 21..=21, 50);
    }
    append_range(&mut store, 2, 22..=23, 50);
    let expected: Vec<(u64, u32)> = (0..3).map(|k| (position + k * 83, 83)).collect();
    assert_eq!(positions(&store, 21..=23), expected, "{what}");
    drop(store);
    let store = open_mem(dir, meta, 200).unwrap();
    assert_eq!(positions(&store, 21..=23), expected, "{what}");
}

#[test]
fn crash_at_every_step_of_a_rebase_recovers_to_the_rebased_log() {
    // Beyond the old end, inside it, onto a sealed segment's name, onto the tail's name.
    for position in [10_000u64, 100, 166, 332] {
        for hint_first in [true, false] {
            let mut completed = false;
            for budget in 0..40u64 {
                let what = format!("position {position}, hint first {hint_first}, budget {budget}");
                let dir = MemDir::new();
                let meta = Meta::memory();
                let mut store = five_entries(&dir, &meta);
                let mut appended_21 = false;
                if hint_first {
                    // Rebase inside purge_upto (the hint was there first).
                    store.rebase_hint().record(point(21, position)).unwrap();
                    dir.set_op_budget(Some(budget));
                    completed = store.purge_upto(log_id(1, 20)).is_ok();
                } else {
                    // Rebase inside the first append (openraft's order).
                    store.purge_upto(log_id(1, 20)).unwrap();
                    store.rebase_hint().record(point(21, position)).unwrap();
                    dir.set_op_budget(Some(budget));
                    let (tx, rx) = mpsc::channel();
                    let accepted = store
                        .append_entries(
                            vec![normal(2, 21, 50)],
                            Box::new(move |r| tx.send(r.is_ok()).unwrap()),
                        )
                        .is_ok();
                    appended_21 = rx.recv_timeout(WAIT).expect("completion") && accepted;
                    completed = appended_21;
                }
                let crashed = dir.crash(budget);
                drop(store);
                check_rebased(&crashed, &meta, position, appended_21, &what);
                if completed {
                    break;
                }
            }
            assert!(completed, "position {position}: never completed");
        }
    }
}

#[test]
fn hand_built_rebase_crash_states_recover() {
    // The directory states a rebase to `position` passes through, built by hand: old
    // segments (all purged) with and without the new empty one, and with some deleted.
    for position in [10_000u64, 100, 166] {
        for (new_segment, removed) in [
            (false, &[][..]),
            (true, &[][..]),
            (
                true,
                &["00000000000000000000.log", "00000000000000000000.idx"][..],
            ),
            (
                true,
                &["00000000000000000166.log", "00000000000000000332.log"][..],
            ),
        ] {
            let what = format!("position {position}, new {new_segment}, removed {removed:?}");
            let dir = MemDir::new();
            let meta = Meta::memory();
            drop(five_entries(&dir, &meta));
            meta.save_purged(&log_id(1, 20)).unwrap();
            meta.save_rebase(&point(21, position)).unwrap();
            for name in removed {
                dir.remove(name).unwrap();
            }
            if new_segment {
                dir.create(&segment_file_name(position)).unwrap();
            }
            dir.sync_dir().unwrap();
            check_rebased(&dir, &meta, position, false, &what);
        }
    }
}

#[test]
fn lone_empty_segment_beyond_purged_data_is_the_end() {
    // Without a rebase point, an empty last segment beyond wholly purged data still holds
    // the end (the older segments are dropped before the chain is checked).
    let dir = MemDir::new();
    let meta = Meta::memory();
    drop(five_entries(&dir, &meta));
    meta.save_purged(&log_id(1, 7)).unwrap();
    dir.create(&segment_file_name(5_000)).unwrap();
    dir.sync_dir().unwrap();
    let mut store = open_mem(&dir, &meta, 200).unwrap();
    assert_eq!(store.read_handle().end_position(), 5_000);
    assert_eq!(log_files(&dir), ["00000000000000005000.log"]);
    append_range(&mut store, 1, 8..=8, 50);
    assert_eq!(store.read_handle().entry_position(8).unwrap().0, 5_000);
}

#[test]
fn holes_in_live_data_are_still_refused() {
    // 12 entries, 2 per segment: 0 [1,2], 166 [3,4], 332 [5,6], 498 [7,8], ...
    let build = || {
        let dir = MemDir::new();
        let meta = Meta::memory();
        let mut store = open_mem(&dir, &meta, 200).unwrap();
        append_range(&mut store, 1, 1..=12, 50);
        drop(store);
        (dir, meta)
    };
    // A missing segment between live ones.
    let (dir, meta) = build();
    dir.remove("00000000000000000332.log").unwrap();
    dir.remove("00000000000000000332.idx").unwrap();
    match open_mem(&dir, &meta, 200) {
        Err(LogStoreError::Corrupt { file, offset, .. }) => {
            assert_eq!((file.as_str(), offset), ("00000000000000000166.log", 166))
        }
        other => panic!("expected a hole error, got {other:?}"),
    }
    // A missing segment just above the purge point: entries 3..=4 are gone.
    let (dir, meta) = build();
    meta.save_purged(&log_id(1, 2)).unwrap();
    dir.remove("00000000000000000166.log").unwrap();
    match open_mem(&dir, &meta, 200) {
        Err(LogStoreError::Corrupt { file, reason, .. }) => {
            assert_eq!(file, "00000000000000000332.log");
            assert!(reason.contains("missing"), "{reason}");
        }
        other => panic!("expected a hole error, got {other:?}"),
    }
    // A rebase point does not excuse a hole in live data either.
    let (dir, meta) = build();
    meta.save_purged(&log_id(1, 2)).unwrap();
    meta.save_rebase(&point(3, 5_000)).unwrap();
    dir.remove("00000000000000000166.log").unwrap();
    assert!(matches!(
        open_mem(&dir, &meta, 200),
        Err(LogStoreError::Corrupt { .. })
    ));
}

/// Waits (with a deadline) until `cond` holds.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::yield_now();
    }
}

#[test]
fn zeros_written_ahead_are_overwritten_by_appends_cut_on_seal_and_on_reopen() {
    let dir = MemDir::new();
    let meta = Meta::memory();
    let config = LogStoreConfig {
        segment_bytes: 8192,
        prefill_bytes: 2048,
        ..LogStoreConfig::new("mem")
    };
    let open = || {
        SegmentedLogStore::open_with(config.clone(), Arc::new(dir.clone()), meta.clone()).unwrap()
    };
    let mut store = open();
    let first = segment_file_name(0);
    append_range(&mut store, 1, 1..=5, 100);
    let end = store.read_handle().end_position();
    // The idle flusher writes zeros past the last frame.
    wait_until("zeros ahead of the log", || {
        dir.contents(&first).unwrap().len() as u64 >= end + 1024
    });
    let bytes = dir.contents(&first).unwrap();
    assert!(bytes[end as usize..].iter().all(|&b| b == 0));
    // Appends land over the zeros and read back.
    append_range(&mut store, 1, 6..=10, 100);
    let pos = positions(&store, 1..=10);
    // Enough to roll several segments: every sealed one is cut to its last frame.
    append_range(&mut store, 1, 11..=200, 100);
    let summaries = store.read_handle().segments();
    assert!(summaries.len() >= 3, "{summaries:?}");
    for s in &summaries[..summaries.len() - 1] {
        assert_eq!(
            dir.contents(&s.name).unwrap().len() as u64,
            s.end - s.base,
            "sealed segment {} keeps zeros",
            s.name
        );
    }
    let last = summaries.last().unwrap().clone();
    wait_until("zeros ahead of the last segment", || {
        dir.contents(&last.name).unwrap().len() as u64 > last.end - last.base
    });
    drop(store);
    // Reopen: the zeros are cut quietly, everything is there, appends continue.
    let mut store = open();
    assert_eq!(positions(&store, 1..=10), pos);
    assert_eq!(store.log_state().1, Some(log_id(1, 200)));
    assert_eq!(
        dir.contents(&last.name).unwrap().len() as u64,
        last.end - last.base
    );
    let got = store.read_handle().read_entries(1..=200).unwrap();
    let want: Vec<Entry> = (1..=200).map(|i| normal(1, i, 100)).collect();
    assert!(got == want, "entries differ after reopen");
    append_range(&mut store, 1, 201..=201, 100);
}

#[test]
fn a_crash_with_zeros_ahead_recovers_every_durable_entry() {
    for seed in 0..20 {
        let dir = MemDir::new();
        let meta = Meta::memory();
        let config = LogStoreConfig {
            segment_bytes: 4096,
            prefill_bytes: 1024,
            ..LogStoreConfig::new("mem")
        };
        let mut store =
            SegmentedLogStore::open_with(config.clone(), Arc::new(dir.clone()), meta.clone())
                .unwrap();
        for k in 0..10u64 {
            append_range(&mut store, 1, k * 10 + 1..=k * 10 + 10, 90);
            // Let the flusher write zeros between rounds on some seeds.
            if (seed + k) % 3 == 0 {
                let seg = store.active.name.clone();
                let end = store.read_handle().end_position() - store.active.base;
                wait_until("zeros", || {
                    let len = dir.contents(&seg).unwrap().len() as u64;
                    len > end || end + 90 > 4096
                });
            }
        }
        let crashed = dir.crash(seed);
        drop(store);
        let store =
            SegmentedLogStore::open_with(config, Arc::new(crashed), Meta::memory()).unwrap();
        assert_eq!(store.log_state().1, Some(log_id(1, 100)), "seed {seed}");
        let got = store.read_handle().read_entries(1..=100).unwrap();
        let want: Vec<Entry> = (1..=100).map(|i| normal(1, i, 90)).collect();
        assert!(got == want, "seed {seed}: entries differ");
    }
}

#[test]
fn a_crash_during_a_rebase_with_zeros_ahead_of_the_old_tail_recovers() {
    // The old last segment carries zeros ahead of its frames; if a crash leaves it behind
    // as a sealed segment, it must hold frames only (else recovery calls it corrupt).
    for budget in 0..40u64 {
        let what = format!("budget {budget}");
        let dir = MemDir::new();
        let meta = Meta::memory();
        let config = LogStoreConfig {
            segment_bytes: 200,
            prefill_bytes: 200,
            ..LogStoreConfig::new("mem")
        };
        let mut store =
            SegmentedLogStore::open_with(config, Arc::new(dir.clone()), meta.clone()).unwrap();
        append_range(&mut store, 1, 1..=5, 50);
        let (tail, end) = (store.active.name.clone(), store.active.len);
        wait_until("zeros ahead of the tail", || {
            dir.contents(&tail).unwrap().len() as u64 > end
        });
        store.rebase_hint().record(point(21, 10_000)).unwrap();
        dir.set_op_budget(Some(budget));
        let completed = store.purge_upto(log_id(1, 20)).is_ok();
        let crashed = dir.crash(budget);
        drop(store);
        check_rebased(&crashed, &meta, 10_000, false, &what);
        if completed {
            return;
        }
    }
    panic!("the rebase never completed within the op budgets");
}
