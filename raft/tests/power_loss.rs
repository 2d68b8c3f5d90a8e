//! Power-loss property test: random appends, truncations, purges, flush waits and crashes on
//! a `MemDir`, recovery after every crash, checked against a model.
//!
//! After each crash the recovered log must:
//! - keep every entry whose completion fired (sync policy) or that an explicit `sync()`
//!   covered (async policy), unless truncated since;
//! - serve only entries that equal the latest version written at that index, at the same
//!   byte position, with intact CRCs (nothing truncated reappears);
//! - keep the purge point, and an end position consistent with the entries' positions.
//!
//! Which unsynced writes survive depends on the crash seed and on the flusher thread's timing;
//! the properties hold for every outcome. Proptest reports (and persists) failing cases.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use openraft::{EntryPayload, LeaderId};
use proptest::prelude::*;
use raftmq_raft::log_store::{
    payload_position, FlushPolicy, LogStoreConfig, SegmentedLogStore, HEADER_BYTES,
};
use raftmq_raft::meta::Meta;
use raftmq_raft::storage_dir::MemDir;
use raftmq_raft::types::Entry;
use raftmq_raft::LogId;

const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
enum Op {
    Append { count: u8, len: u16 },
    Truncate { back: u8 },
    Purge { back: u8 },
    PurgeBeyond { extra: u8 },
    NewTerm,
    FlushWait,
    Crash { seed: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1u8..=6, 0u16..=150).prop_map(|(count, len)| Op::Append { count, len }),
        1 => (0u8..=8).prop_map(|back| Op::Truncate { back }),
        1 => (0u8..=8).prop_map(|back| Op::Purge { back }),
        1 => (1u8..=4).prop_map(|extra| Op::PurgeBeyond { extra }),
        1 => Just(Op::NewTerm),
        2 => Just(Op::FlushWait),
        2 => any::<u64>().prop_map(|seed| Op::Crash { seed }),
    ]
}

#[derive(Debug, Clone)]
struct Written {
    log_id: LogId,
    body: Bytes,
    pos: u64,
}

impl Written {
    fn frame_len(&self) -> u64 {
        (HEADER_BYTES + self.body.len()) as u64
    }
}

struct Harness {
    policy: FlushPolicy,
    segment_bytes: u64,
    dir: MemDir,
    meta: Meta,
    store: Option<SegmentedLogStore>,
    tx: Sender<(u64, bool)>,
    rx: Receiver<(u64, bool)>,
    next_id: u64,
    term: u64,
    /// Latest version of every entry written (purged ones too, for their positions).
    written: BTreeMap<u64, Written>,
    /// Position where the next entry goes.
    end: u64,
    purged: Option<LogId>,
    /// Appends whose completion has not arrived: id -> last index still covered.
    pending: BTreeMap<u64, Option<u64>>,
    /// Every index up to this must survive a crash.
    must_have: Option<u64>,
}

impl Harness {
    fn new(policy: FlushPolicy, segment_bytes: u64) -> Self {
        let (tx, rx) = channel();
        let mut h = Harness {
            policy,
            segment_bytes,
            dir: MemDir::new(),
            meta: Meta::memory(),
            store: None,
            tx,
            rx,
            next_id: 0,
            term: 1,
            written: BTreeMap::new(),
            end: 0,
            purged: None,
            pending: BTreeMap::new(),
            must_have: None,
        };
        h.open();
        h
    }

    fn open(&mut self) {
        let config = LogStoreConfig {
            segment_bytes: self.segment_bytes,
            flush: self.policy,
            async_flush_interval: Duration::from_secs(10),
            ..LogStoreConfig::new("mem")
        };
        self.store = Some(
            SegmentedLogStore::open_with(config, Arc::new(self.dir.clone()), self.meta.clone())
                .unwrap(),
        );
    }

    fn store(&mut self) -> &mut SegmentedLogStore {
        self.store.as_mut().unwrap()
    }

    fn last(&self) -> Option<u64> {
        self.written
            .keys()
            .next_back()
            .copied()
            .filter(|&l| self.purged.is_none_or(|p| l > p.index))
    }

    fn next_index(&self) -> u64 {
        self.last()
            .or(self.purged.map(|p| p.index))
            .map_or(1, |l| l + 1)
    }

    fn first(&self) -> Option<u64> {
        self.last()?;
        Some(
            self.purged
                .map_or_else(|| *self.written.keys().next().unwrap(), |p| p.index + 1),
        )
    }

    fn on_completion(&mut self, id: u64, ok: bool) {
        if let Some(covered) = self.pending.remove(&id) {
            // Under the async policy a completion means "written", not "durable".
            if ok && self.policy == FlushPolicy::Sync {
                self.must_have = self.must_have.max(covered);
            }
        }
    }

    fn drain(&mut self) {
        while let Ok((id, ok)) = self.rx.try_recv() {
            self.on_completion(id, ok);
        }
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Append { count, len } => {
                let first = self.next_index();
                let mut entries = Vec::new();
                for index in first..first + u64::from(count) {
                    let body: Bytes = (0..len)
                        .map(|i| (index * 7 + self.term * 13 + u64::from(i)) as u8)
                        .collect();
                    let log_id = LogId::new(LeaderId::new(self.term, 1), index);
                    let w = Written {
                        log_id,
                        body: body.clone(),
                        pos: self.end,
                    };
                    self.end += w.frame_len();
                    self.written.insert(index, w);
                    entries.push(Entry {
                        log_id,
                        payload: EntryPayload::Normal(body),
                    });
                }
                let id = self.next_id;
                self.next_id += 1;
                self.pending.insert(id, Some(first + u64::from(count) - 1));
                let tx = self.tx.clone();
                self.store()
                    .append_entries(
                        entries,
                        Box::new(move |r| tx.send((id, r.is_ok())).unwrap()),
                    )
                    .unwrap();
            }
            Op::Truncate { back } => {
                let (Some(first), Some(last)) = (self.first(), self.last()) else {
                    return;
                };
                let at = last.saturating_sub(u64::from(back)).max(first);
                self.store().truncate_from(at).unwrap();
                self.end = self.written[&at].pos;
                self.written.retain(|&i, _| i < at);
                let cap = self.written.keys().next_back().copied();
                for covered in self.pending.values_mut() {
                    *covered = (*covered).min(cap);
                }
                self.must_have = self.must_have.min(cap);
            }
            Op::Purge { back } => {
                let (Some(first), Some(last)) = (self.first(), self.last()) else {
                    return;
                };
                let upto = last.saturating_sub(u64::from(back));
                if upto >= first {
                    let log_id = self.written[&upto].log_id;
                    self.store().purge_upto(log_id).unwrap();
                    self.purged = Some(log_id);
                }
            }
            Op::PurgeBeyond { extra } => {
                let upto = self.next_index() - 1 + u64::from(extra);
                let log_id = LogId::new(LeaderId::new(self.term, 1), upto);
                self.store().purge_upto(log_id).unwrap();
                self.purged = Some(log_id);
            }
            Op::NewTerm => self.term += 1,
            Op::FlushWait => match self.policy {
                FlushPolicy::Sync => {
                    let deadline = Instant::now() + WAIT;
                    while !self.pending.is_empty() {
                        let left = deadline.saturating_duration_since(Instant::now());
                        let (id, ok) = self
                            .rx
                            .recv_timeout(left)
                            .expect("completions within the deadline");
                        self.on_completion(id, ok);
                    }
                }
                FlushPolicy::Async => {
                    self.store().sync().unwrap();
                    self.must_have = self.must_have.max(self.last());
                }
            },
            Op::Crash { seed } => self.crash_and_verify(seed),
        }
        self.drain();
    }

    fn crash_and_verify(&mut self, seed: u64) {
        let survived = self.dir.crash(seed);
        // Completions that arrived by now were for syncs that finished before the crash.
        self.drain();
        self.pending.clear();
        drop(self.store.take());
        while self.rx.try_recv().is_ok() {}
        self.dir = survived;
        self.open();
        self.verify();
    }

    fn verify(&mut self) {
        let store = self.store.as_ref().unwrap();
        let reader = store.read_handle();
        let (purged, last) = store.log_state();
        assert_eq!(purged, self.purged, "purge point");
        let last_index = last.map(|l| l.index);
        if let Some(m) = self.must_have {
            assert!(
                last_index >= Some(m),
                "acknowledged entry {m} lost; recovered up to {last_index:?}"
            );
        }
        let entries = reader
            .read_entries(..)
            .expect("every served entry has an intact CRC");
        let live_last = reader.last_index();
        for e in &entries {
            let w = self
                .written
                .get(&e.log_id.index)
                .unwrap_or_else(|| panic!("entry {} was never written", e.log_id.index));
            assert_eq!(
                e.log_id, w.log_id,
                "entry {} is not its latest version",
                w.log_id.index
            );
            let EntryPayload::Normal(body) = &e.payload else {
                panic!("unexpected payload")
            };
            assert_eq!(body, &w.body);
            assert_eq!(
                reader.entry_position(w.log_id.index),
                Some((w.pos, w.frame_len() as u32))
            );
            assert_eq!(
                reader
                    .read_at(payload_position(w.pos), w.body.len() as u64)
                    .unwrap(),
                w.body
            );
        }
        if let (Some(first), Some(l)) = (reader.first_index(), live_last) {
            assert_eq!(
                entries.len() as u64,
                l - first + 1,
                "recovered entries are contiguous"
            );
            assert_eq!(first, self.purged.map_or(first, |p| p.index + 1));
        } else {
            assert!(entries.is_empty());
        }
        // The last frame in the files: the last live entry, else the purge point.
        let frames_end = live_last.or(self.purged.map(|p| p.index));
        let expected_end = match frames_end {
            Some(r) => self.written.get(&(r + 1)).map_or(self.end, |w| w.pos),
            None => self.written.values().next().map_or(self.end, |w| w.pos),
        };
        assert_eq!(reader.end_position(), expected_end, "end position");
        if let Some(r) = frames_end {
            self.written.retain(|&i, _| i <= r);
        } else {
            self.written.clear();
        }
        self.end = expected_end;
        self.must_have = self.must_have.min(frames_end);
    }
}

fn run(policy: FlushPolicy, segment_bytes: u64, ops: &[Op]) {
    let mut h = Harness::new(policy, segment_bytes);
    for op in ops {
        h.apply(op);
    }
    h.apply(&Op::Crash { seed: 0 });
}

// Default config: 256 cases each (`PROPTEST_CASES` overrides).
proptest! {
    #[test]
    fn power_loss_sync_flush(segment_bytes in prop_oneof![Just(64u64), Just(400), Just(1 << 20)], ops in prop::collection::vec(op(), 1..80)) {
        run(FlushPolicy::Sync, segment_bytes, &ops);
    }

    #[test]
    fn power_loss_async_flush(segment_bytes in prop_oneof![Just(64u64), Just(400), Just(1 << 20)], ops in prop::collection::vec(op(), 1..80)) {
        run(FlushPolicy::Async, segment_bytes, &ops);
    }
}
