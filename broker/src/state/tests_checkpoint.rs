#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Checkpoint jobs and restore: a state rebuilt from the last durable checkpoint equals the
//! state at that checkpoint, whatever commands, failures and rewrites came before.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use proptest::prelude::*;

use super::tests::{append, record, upsert, SimLog};
use super::tests_prop::arb_command;
use super::*;

/// An in-memory "disk" with the writer's rules: incremental jobs are appended, a rewrite
/// replaces the journal, a failed job leaves the disk as it was and demands a rewrite.
#[derive(Debug, Default)]
struct MemSink {
    disk: Mutex<(Vec<u8>, Vec<u8>, Vec<u8>)>, // (meta, journal, dedup journal)
    fail_next: AtomicBool,
    rewrite: AtomicBool,
}

impl CheckpointSink for MemSink {
    fn submit(&self, job: CheckpointJob) -> Result<(), String> {
        if self.fail_next.swap(false, Ordering::SeqCst) {
            self.rewrite.store(true, Ordering::SeqCst);
            return Err("injected failure".into());
        }
        if self.rewrite.load(Ordering::SeqCst) && !job.rewrite {
            return Err("waiting for a rewrite".into());
        }
        let mut d = self.disk.lock().unwrap();
        if job.rewrite {
            d.1 = job.journal;
            self.rewrite.store(false, Ordering::SeqCst);
        } else {
            d.1.extend_from_slice(&job.journal);
        }
        if job.rewrite || job.dedup_rewrite {
            d.2 = job.dedup;
        } else {
            d.2.extend_from_slice(&job.dedup);
        }
        d.0 = job.meta;
        Ok(())
    }
    fn submit_and_wait(&self, job: CheckpointJob) -> Result<(), String> {
        self.submit(job)
    }
    fn rewrite_requested(&self) -> bool {
        self.rewrite.load(Ordering::SeqCst)
    }
}

fn key_entries(sm: &BrokerStateMachine) -> Vec<(String, u64, i64, i64)> {
    let mut v: Vec<_> = sm
        .keys
        .entries()
        .map(|(t, h, e)| (t.to_owned(), h, e.physical_offset, e.store_time))
        .collect();
    v.sort();
    v
}

fn assert_same(a: &BrokerStateMachine, b: &BrokerStateMachine) {
    assert_eq!(a.queues, b.queues);
    assert_eq!(a.snapshot_bytes().unwrap(), b.snapshot_bytes().unwrap());
    assert_eq!(key_entries(a), key_entries(b));
    assert_eq!(a.applied_index(), b.applied_index());
}

fn restore(sink: &MemSink) -> BrokerStateMachine {
    let d = sink.disk.lock().unwrap();
    BrokerStateMachine::restore(&d.0, &d.1, &d.2).unwrap()
}

#[derive(Debug, Clone)]
enum Step {
    Command(Command),
    /// A dedup append of records with these UNIQ_KEYs (a small set, so repeats happen).
    Unique(Vec<(u8, u8)>),
    /// Purge below this fraction (per mille) of the log written so far.
    Purge(u16),
    Checkpoint,
    FailingCheckpoint,
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => arb_command().prop_map(Step::Command),
        3 => proptest::collection::vec((0u8..3, 0u8..40), 1..4).prop_map(Step::Unique),
        1 => (0u16..1000).prop_map(Step::Purge),
        3 => Just(Step::Checkpoint),
        1 => Just(Step::FailingCheckpoint),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn restore_equals_the_state_at_the_last_checkpoint(steps in proptest::collection::vec(arb_step(), 0..40)) {
        let sink = Arc::new(MemSink::default());
        let mut sm = BrokerStateMachine::new();
        sm.enable_checkpoints(sink.clone());
        let mut log = SimLog::default();
        let mut at_checkpoint: Option<BrokerStateMachine> = None;
        for step in steps {
            match step {
                Step::Command(c) => {
                    log.apply(&mut sm, &c);
                }
                Step::Unique(recs) => {
                    let records = recs
                        .iter()
                        .map(|(q, u)| record("A", i32::from(*q), None, None, Some(&format!("U{u}"))))
                        .collect();
                    log.apply(&mut sm, &append(true, 7, records));
                }
                Step::Purge(f) => {
                    let upto = (log.buf.len() as u64 * u64::from(f) / 1000) as i64;
                    log.apply(&mut sm, &Command::Purge { upto_physical_offset: upto });
                }
                Step::Checkpoint | Step::FailingCheckpoint => {
                    if matches!(step, Step::FailingCheckpoint) {
                        sink.fail_next.store(true, Ordering::SeqCst);
                    }
                    if sm.checkpoint(true).is_ok() {
                        at_checkpoint = Some(sm.clone());
                    }
                }
            }
        }
        if let Some(expected) = at_checkpoint {
            assert_same(&restore(&sink), &expected);
        }
        // A final checkpoint always brings the disk up to date (a rewrite if one is due).
        sm.checkpoint(true).unwrap();
        assert_same(&restore(&sink), &sm);
    }
}

#[test]
fn incremental_checkpoints_write_only_what_changed() {
    let sink = Arc::new(MemSink::default());
    let mut sm = BrokerStateMachine::new();
    sm.enable_checkpoints(sink.clone());
    let mut log = SimLog::default();
    log.apply(&mut sm, &upsert("T", 4, 1));
    let recs = (0..10)
        .map(|i| record("T", i % 4, None, Some("k"), Some(&format!("U{i}"))))
        .collect();
    log.apply(&mut sm, &append(false, 5, recs));
    let first = sm.checkpoint_job(false).unwrap();
    assert!(
        first.rewrite,
        "the first job of a process starts a generation"
    );
    assert!(sm.checkpoint_job(false).is_none(), "nothing changed");
    log.apply(
        &mut sm,
        &append(false, 6, vec![record("T", 1, None, None, Some("V"))]),
    );
    let second = sm.checkpoint_job(false).unwrap();
    assert!(!second.rewrite);
    // One unit (28 bytes + block header + topic etc.) and one key entry, not the whole state.
    assert!(second.journal.len() < 120, "{} bytes", second.journal.len());
    // Deleting a topic forces a rewrite (the journal cannot express removal).
    log.apply(
        &mut sm,
        &Command::DeleteTopic {
            topic: "T".into(),
            timestamp_ms: 9,
        },
    );
    assert!(sm.checkpoint_job(false).unwrap().rewrite);
}

#[test]
fn restore_rejects_inconsistent_journals() {
    let sink = Arc::new(MemSink::default());
    let mut sm = BrokerStateMachine::new();
    sm.enable_checkpoints(sink.clone());
    let mut log = SimLog::default();
    log.apply(&mut sm, &upsert("T", 1, 1));
    log.apply(
        &mut sm,
        &append(false, 5, vec![record("T", 0, None, None, None)]),
    );
    sm.checkpoint(true).unwrap();
    let (meta, journal, _) = sink.disk.lock().unwrap().clone();
    // The journal repeated: overlapping units.
    let doubled = [journal.clone(), journal.clone()].concat();
    let e = BrokerStateMachine::restore(&meta, &doubled, &[]).unwrap_err();
    assert!(e.contains("overlap"), "{e}");
    // Metadata ahead of the journal.
    log.apply(
        &mut sm,
        &append(false, 6, vec![record("T", 0, None, None, None)]),
    );
    let newer = sm.snapshot_bytes().unwrap();
    let e = BrokerStateMachine::restore(&newer, &journal, &[]).unwrap_err();
    assert!(e.contains("metadata says [0, 2)"), "{e}");
    // Garbage metadata.
    assert!(BrokerStateMachine::restore(b"nope", &journal, &[]).is_err());
    // A dedup journal that is not one.
    assert!(BrokerStateMachine::restore(&meta, &journal, &journal).is_err());
}

#[test]
fn the_idempotency_window_is_journaled_and_rebuilt_from_its_newest_entries() {
    let sink = Arc::new(MemSink::default());
    let mut sm = BrokerStateMachine::new();
    sm.enable_checkpoints(sink.clone());
    sm.checkpoint(true).unwrap();
    let cap = sm.dedup.capacity();
    // More inserts than the window holds, over several checkpoints, as apply makes them.
    let total = 5 * cap + cap / 2;
    for i in 0..total {
        let r = AppendResult {
            queue_id: (i % 4) as i32,
            queue_offset: i as i64,
            physical_offset: 10 * i as i64,
            duplicate: false,
        };
        let (t, u) = (if i.is_multiple_of(2) { "A" } else { "B" }, format!("K{i}"));
        assert!(sm.dedup.insert(t, &u, r));
        // One gap between checkpoints longer than the window: keys are evicted before any
        // job saw them.
        if i.is_multiple_of(40_000) && !(120_000..240_000).contains(&i) {
            sm.checkpoint(true).unwrap();
        }
    }
    // Applied log entries: the restored state then goes on journaling, not rewriting.
    SimLog::default().apply(
        &mut sm,
        &append(false, 1, vec![record("T", 0, None, None, None)]),
    );
    sm.checkpoint(true).unwrap();
    let (meta, journal, dedup) = sink.disk.lock().unwrap().clone();
    assert!(
        meta.len() < 10_000,
        "the window is not in the meta: {} bytes",
        meta.len()
    );
    assert!(
        journal.len() < 1_000,
        "nor in the main journal: {} bytes",
        journal.len()
    );
    // The dedup journal was rewritten from the window once it held 4 windows' worth, so it
    // holds under 2 windows now, not 5.5 (the gap left 0.6 of a window unjournaled).
    assert!(dedup.len() < 2 * cap * 40, "{} bytes", dedup.len());
    let restored = BrokerStateMachine::restore(&meta, &journal, &dedup).unwrap();
    assert_eq!(restored.dedup.len(), cap);
    assert_eq!(restored.dedup.entries(), sm.dedup.entries());
    assert!(restored.dedup.get("A", "K0").is_none(), "evicted long ago");
    let last = total - 1;
    assert!(restored
        .dedup
        .get(
            if last.is_multiple_of(2) { "A" } else { "B" },
            &format!("K{last}")
        )
        .is_some());
    // A restored state journals only what it inserts after the restore.
    let sink2 = Arc::new(MemSink::default());
    let dedup_before = dedup.len();
    *sink2.disk.lock().unwrap() = (meta, journal, dedup);
    let mut again = restored;
    again.enable_checkpoints(sink2.clone());
    for i in total..total + 10 {
        let r = AppendResult {
            queue_id: 0,
            queue_offset: i as i64,
            physical_offset: 10 * i as i64,
            duplicate: false,
        };
        assert!(again.dedup.insert("A", &format!("K{i}"), r));
    }
    again.checkpoint(true).unwrap();
    let (meta, journal, dedup) = sink2.disk.lock().unwrap().clone();
    assert!(
        dedup.len() - dedup_before < 10 * 100,
        "only the 10 new keys are journaled: {} bytes",
        dedup.len() - dedup_before
    );
    let twice = BrokerStateMachine::restore(&meta, &journal, &dedup).unwrap();
    assert_eq!(twice.dedup.entries(), again.dedup.entries());
    assert!(twice.dedup.get("A", &format!("K{}", total + 9)).is_some());
}
