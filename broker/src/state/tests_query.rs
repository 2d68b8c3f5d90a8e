#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Queries (pull, time search, key index), idempotency, purge and snapshots.

use raftmq_raft::state_machine::StateMachine;
use raftmq_raft::types::StoredMembership;

use super::key_index::DedupWindow;
use super::pull::ScanSummary;
use super::tests::{append, plain, record, upsert, SimLog};
use super::*;
// ---- pull ----------------------------------------------------------------------------------

#[test]
fn tag_filter_parsing_and_matching() {
    use raftmq_protocol::message::tag_code;
    assert_eq!(TagFilter::parse("*"), TagFilter::All);
    assert_eq!(TagFilter::parse(""), TagFilter::All);
    assert_eq!(TagFilter::parse(" * "), TagFilter::All);
    let f = TagFilter::parse("TagA || TagB||  ");
    assert!(f.matches_code(2_598_919));
    assert!(f.matches_code(tag_code(Some("TagB"))));
    assert!(!f.matches_code(tag_code(Some("TagC"))));
    assert!(
        !f.matches_code(0),
        "untagged messages do not match a tag list"
    );
    assert!(f.matches_tag(Some("TagA")) && !f.matches_tag(Some("TagC")) && !f.matches_tag(None));
    // Only the low 32 bits of a unit's code count (Java's intValue()).
    let big = TagFilter::parse("polygenelubricants");
    assert!(big.matches_code(tag_code(Some("polygenelubricants"))));
    assert!(big.matches_code(i64::from(i32::MIN) & 0xFFFF_FFFF));
    let none = TagFilter::parse("||");
    assert!(!none.matches_code(0) && !none.matches_tag(Some("")));
    assert!(TagFilter::All.matches_code(12345) && TagFilter::All.matches_tag(None));
}

#[test]
fn classification_table_rows() {
    use PullStatus::*;
    let scan = |matched, next_offset| {
        Some(ScanSummary {
            matched,
            next_offset,
        })
    };
    let c = |min, max, off, s| {
        let r = classify_pull(min, max, off, s);
        (r.status, r.next_begin_offset)
    };
    // Queue has no messages at all.
    assert_eq!(c(0, 0, 0, None), (NoNewMessage, 0));
    assert_eq!(c(0, 0, 5, None), (OffsetMoved, 0));
    assert_eq!(c(0, 0, -1, None), (OffsetMoved, 0));
    // Below min.
    assert_eq!(c(10, 20, 3, None), (OffsetMoved, 10));
    // At max.
    assert_eq!(c(10, 20, 20, None), (NoNewMessage, 20));
    assert_eq!(c(20, 20, 20, None), (NoNewMessage, 20));
    // Beyond max.
    assert_eq!(c(10, 20, 25, None), (OffsetMoved, 20));
    // Found: next = after the last examined.
    assert_eq!(c(10, 20, 12, scan(2, 18)), (Found, 18));
    // Examined but none matched.
    assert_eq!(c(10, 20, 12, scan(0, 20)), (RetryImmediately, 20));
    // Unreadable.
    assert_eq!(c(10, 20, 12, None), (RetryImmediately, 12));
}

#[test]
fn pull_filters_by_tag_and_respects_limits() {
    let mut sm = BrokerStateMachine::new();
    let mut log = SimLog::default();
    let recs = (0..10)
        .map(|i| record("T", 0, Some(if i % 3 == 0 { "A" } else { "B" }), None, None))
        .collect();
    log.appended(&mut sm, &append(false, 1, recs));
    let all = PullLimits::default();
    let r = sm.pull("T", 0, 0, all, &TagFilter::All);
    assert_eq!(r.classification.status, PullStatus::Found);
    assert_eq!(r.classification.next_begin_offset, 10);
    assert_eq!((r.min_offset, r.max_offset, r.units.len()), (0, 10, 10));
    // Tag A: offsets 0, 3, 6, 9.
    let a = TagFilter::parse("A");
    let r = sm.pull("T", 0, 1, all, &a);
    assert_eq!(
        r.units.iter().map(|u| u.0).collect::<Vec<_>>(),
        vec![3, 6, 9]
    );
    assert_eq!(r.classification.next_begin_offset, 10);
    // Max messages: stop before the third match; next = after the last examined (6).
    let two = PullLimits {
        max_messages: 2,
        ..all
    };
    let r = sm.pull("T", 0, 0, two, &a);
    assert_eq!(r.units.iter().map(|u| u.0).collect::<Vec<_>>(), vec![0, 3]);
    assert_eq!(
        r.classification.next_begin_offset, 4,
        "full before examining offset 4"
    );
    // Byte budget: always one message, then stop.
    let tiny = PullLimits {
        max_messages: 32,
        max_bytes: 1,
    };
    let r = sm.pull("T", 0, 4, tiny, &TagFilter::All);
    assert_eq!((r.units.len(), r.classification.next_begin_offset), (1, 5));
    // No match: retry immediately past the examined entries.
    let r = sm.pull("T", 0, 7, all, &TagFilter::parse("Z"));
    assert_eq!(r.classification.status, PullStatus::RetryImmediately);
    assert_eq!(r.classification.next_begin_offset, 10);
    assert!(r.units.is_empty());
    // At / past max; unknown queue.
    assert_eq!(
        sm.pull("T", 0, 10, all, &a).classification.status,
        PullStatus::NoNewMessage
    );
    let r = sm.pull("T", 0, 11, all, &a);
    assert_eq!(
        (r.classification.status, r.classification.next_begin_offset),
        (PullStatus::OffsetMoved, 10)
    );
    let r = sm.pull("T", 5, 0, all, &a);
    assert_eq!(
        (r.classification.status, r.max_offset),
        (PullStatus::NoNewMessage, 0)
    );
}

// ---- time search, key index, dedup, purge --------------------------------------------------

#[test]
fn search_offset_by_timestamp() {
    let mut sm = BrokerStateMachine::new();
    let mut log = SimLog::default();
    assert_eq!(sm.search_offset_by_timestamp("T", 0, 5, Boundary::Lower), 0);
    for (ts, n) in [(100, 2), (200, 1), (300, 2)] {
        log.appended(
            &mut sm,
            &append(false, ts, (0..n).map(|_| plain("T", 0)).collect()),
        );
    }
    // Offsets: 0,1 @100; 2 @200; 3,4 @300.
    let s = |ts, b| sm.search_offset_by_timestamp("T", 0, ts, b);
    use Boundary::{Lower, Upper};
    assert_eq!(s(50, Lower), 0);
    assert_eq!(s(100, Lower), 0);
    assert_eq!(s(150, Lower), 2);
    assert_eq!(s(300, Lower), 3);
    assert_eq!(s(301, Lower), 5, "none found: max offset");
    assert_eq!(s(50, Upper), 0, "none found: min offset");
    assert_eq!(s(100, Upper), 1);
    assert_eq!(s(250, Upper), 2);
    assert_eq!(s(9999, Upper), 4);
    assert_eq!(sm.earliest_store_time("T", 0), Some(100));
    assert_eq!(sm.store_time("T", 0, 3), Some(300));
    // A leader with a slower clock cannot make store times go backwards.
    log.appended(&mut sm, &append(false, 10, vec![plain("T", 0)]));
    assert_eq!(sm.store_time("T", 0, 5), Some(300));
    assert_eq!(Boundary::parse(Some("UPPER")), Upper);
    assert_eq!(Boundary::parse(Some("lower")), Lower);
    assert_eq!(Boundary::parse(None), Lower);
}

#[test]
fn key_index_with_keys_and_uniq_key() {
    let mut sm = BrokerStateMachine::new();
    let mut log = SimLog::default();
    let r1 = log.appended(
        &mut sm,
        &append(
            false,
            100,
            vec![record("T", 0, None, Some("order-1 user-9"), Some("U1"))],
        ),
    );
    let r2 = log.appended(
        &mut sm,
        &append(
            false,
            200,
            vec![record("T", 1, None, Some("order-1"), Some("U2"))],
        ),
    );
    let (p1, p2) = (r1[0].physical_offset, r2[0].physical_offset);
    let all = |k| sm.lookup_keys("T", k, 0, i64::MAX, 10);
    assert_eq!(all("order-1"), vec![p2, p1], "newest first");
    assert_eq!(all("user-9"), vec![p1]);
    assert_eq!(all("U1"), vec![p1]);
    assert_eq!(all("U2"), vec![p2]);
    assert!(all("order-1 user-9").is_empty());
    assert!(
        sm.lookup_keys("U", "order-1", 0, i64::MAX, 10).is_empty(),
        "per topic"
    );
    assert_eq!(sm.lookup_keys("T", "order-1", 150, 250, 10), vec![p2]);
    assert_eq!(sm.lookup_keys("T", "order-1", 0, 150, 10), vec![p1]);
    assert_eq!(sm.lookup_keys("T", "order-1", 0, i64::MAX, 1), vec![p2]);
    // Bounded per lookup; the same record under one key twice is one candidate.
    let n = super::key_index::KEY_LOOKUP_MAX + 5;
    let recs = (0..n)
        .map(|_| record("T", 0, None, Some("hot"), None))
        .collect();
    let r = log.appended(&mut sm, &append(false, 300, recs));
    let hot = sm.lookup_keys("T", "hot", 0, i64::MAX, usize::MAX);
    assert_eq!(hot.len(), super::key_index::KEY_LOOKUP_MAX);
    assert_eq!(hot[0], r.last().unwrap().physical_offset);
    let twice = log.appended(
        &mut sm,
        &append(
            false,
            400,
            vec![record("T", 0, None, Some("dup dup"), Some("dup"))],
        ),
    );
    assert_eq!(
        sm.lookup_keys("T", "dup", 0, i64::MAX, 10),
        vec![twice[0].physical_offset]
    );
}

#[test]
fn duplicate_uniq_key_returns_the_first_result() {
    let mut sm = BrokerStateMachine::new();
    let mut log = SimLog::default();
    let m = record("T", 0, None, None, Some("U1"));
    let first = log.appended(&mut sm, &append(true, 1, vec![m.clone()]));
    assert!(!first[0].duplicate);
    // The producer retries on another queue with the same UNIQ_KEY.
    let retry = record("T", 3, None, None, Some("U1"));
    let again = log.appended(
        &mut sm,
        &append(true, 2, vec![retry, record("T", 0, None, None, Some("U2"))]),
    );
    assert_eq!(
        again[0],
        AppendResult {
            duplicate: true,
            ..first[0]
        }
    );
    assert!(!again[1].duplicate);
    assert_eq!(again[1].queue_offset, 1);
    assert_eq!(sm.max_offset("T", 0), 2, "no unit for the duplicate");
    assert_eq!(sm.max_offset("T", 3), 0);
    assert_eq!(sm.lookup_keys("T", "U1", 0, i64::MAX, 10).len(), 1);
    // Same key in another topic is not a duplicate.
    let other = log.appended(
        &mut sm,
        &append(true, 3, vec![record("X", 0, None, None, Some("U1"))]),
    );
    assert!(!other[0].duplicate);
    // Appends without the dedup flag (internal re-puts) are always stored.
    let reput = log.appended(&mut sm, &append(false, 4, vec![m.clone()]));
    assert!(!reput[0].duplicate);
    assert_eq!(sm.max_offset("T", 0), 3);
    // Within one command too.
    let dup_in_batch = log.appended(
        &mut sm,
        &append(
            true,
            5,
            vec![
                record("T", 0, None, None, Some("U3")),
                record("T", 0, None, None, Some("U3")),
            ],
        ),
    );
    assert_eq!(
        dup_in_batch[1],
        AppendResult {
            duplicate: true,
            ..dup_in_batch[0]
        }
    );
    // Records without UNIQ_KEY are never deduplicated.
    let no_key = log.appended(
        &mut sm,
        &append(true, 6, vec![plain("T", 0), plain("T", 0)]),
    );
    assert!(no_key.iter().all(|r| !r.duplicate));
}

#[test]
fn dedup_window_evicts_fifo() {
    let r = |o| AppendResult {
        queue_id: 0,
        queue_offset: o,
        physical_offset: o,
        duplicate: false,
    };
    let mut w = DedupWindow::with_capacity(2);
    w.insert("T", "a", r(1));
    w.insert("T", "b", r(2));
    w.insert("T", "a", r(9)); // not a new key: no reordering, value replaced
    w.insert("T", "c", r(3));
    assert_eq!(w.get("T", "a"), None);
    assert_eq!(w.get("T", "b"), Some(r(2)));
    assert_eq!(w.get("T", "c"), Some(r(3)));
    assert_eq!(w.len(), 2);
    let rebuilt = DedupWindow::from_entries(2, w.entries());
    assert_eq!(rebuilt.entries(), w.entries());
    w.remove_topic("T");
    assert!(w.is_empty());
}

/// The window against a plain model (map + FIFO), with real hashes and with every pair
/// colliding: same answers, same length, same entries in the same order.
mod dedup_model {
    use std::collections::{HashMap, VecDeque};

    use proptest::prelude::*;

    use super::super::command::AppendResult;
    use super::DedupWindow;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(usize, usize, i64),
        Get(usize, usize),
        /// Apply's path: `check`, then `fill` if missing.
        CheckFill(usize, usize, i64),
        RemoveTopic(usize),
    }

    const TOPICS: [&str; 3] = ["T", "TA", "A"];
    /// The last one is too long to be held inline.
    const KEYS: [&str; 5] = [
        "",
        "A",
        "k1",
        "Tk1",
        "0A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F60718293A4B5C6D7E8F9",
    ];

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..3usize, 0..5usize, 0..100i64).prop_map(|(t, k, o)| Op::Insert(t, k, o)),
            3 => (0..3usize, 0..5usize).prop_map(|(t, k)| Op::Get(t, k)),
            3 => (0..3usize, 0..5usize, 0..100i64).prop_map(|(t, k, o)| Op::CheckFill(t, k, o)),
            1 => (0..3usize).prop_map(Op::RemoveTopic),
        ]
    }

    fn r(o: i64) -> AppendResult {
        AppendResult {
            queue_id: 1,
            queue_offset: o,
            physical_offset: o,
            duplicate: false,
        }
    }

    fn collide(_: &str, _: &str) -> u64 {
        7
    }

    proptest! {
        #[test]
        fn matches_a_plain_model(cap in 0..5usize, colliding: bool, ops in proptest::collection::vec(op(), 0..60)) {
            let mut w = if colliding {
                DedupWindow::with_hasher(cap, collide)
            } else {
                DedupWindow::with_capacity(cap)
            };
            let mut map: HashMap<(String, String), AppendResult> = HashMap::new();
            let mut order: VecDeque<(String, String)> = VecDeque::new();
            for op in ops {
                match op {
                    Op::Insert(t, k, o) => {
                        let key = (TOPICS[t].to_owned(), KEYS[k].to_owned());
                        let fresh = if cap == 0 {
                            false
                        } else if let Some(v) = map.get_mut(&key) {
                            *v = r(o);
                            false
                        } else {
                            map.insert(key.clone(), r(o));
                            order.push_back(key);
                            while order.len() > cap {
                                let old = order.pop_front().unwrap();
                                map.remove(&old);
                            }
                            true
                        };
                        prop_assert_eq!(w.insert(TOPICS[t], KEYS[k], r(o)), fresh);
                    }
                    Op::Get(t, k) => {
                        let key = (TOPICS[t].to_owned(), KEYS[k].to_owned());
                        prop_assert_eq!(w.get(TOPICS[t], KEYS[k]), map.get(&key).copied());
                    }
                    Op::CheckFill(t, k, o) => {
                        let key = (TOPICS[t].to_owned(), KEYS[k].to_owned());
                        match w.check(TOPICS[t], KEYS[k]) {
                            Ok(first) => prop_assert_eq!(Some(first), map.get(&key).copied()),
                            Err(vacancy) => {
                                prop_assert!(!map.contains_key(&key));
                                let fresh = cap != 0;
                                if fresh {
                                    map.insert(key.clone(), r(o));
                                    order.push_back(key);
                                    while order.len() > cap {
                                        let old = order.pop_front().unwrap();
                                        map.remove(&old);
                                    }
                                }
                                prop_assert_eq!(w.fill(vacancy, TOPICS[t], KEYS[k], r(o)), fresh);
                            }
                        }
                    }
                    Op::RemoveTopic(t) => {
                        order.retain(|(x, _)| x != TOPICS[t]);
                        map.retain(|(x, _), _| x != TOPICS[t]);
                        w.remove_topic(TOPICS[t]);
                    }
                }
                prop_assert_eq!(w.len(), order.len());
            }
            let got: Vec<(String, String, AppendResult)> =
                w.entries().into_iter().map(|e| (e.topic, e.uniq_key, e.result)).collect();
            let want: Vec<(String, String, AppendResult)> =
                order.iter().map(|k| (k.0.clone(), k.1.clone(), map[k])).collect();
            prop_assert_eq!(got, want);
        }
    }
}

#[test]
fn purge_raises_min_offsets() {
    let mut sm = BrokerStateMachine::new();
    let mut log = SimLog::default();
    let a = log.appended(
        &mut sm,
        &append(
            false,
            1,
            vec![record("T", 0, None, Some("k"), None), plain("T", 1)],
        ),
    );
    let b = log.appended(
        &mut sm,
        &append(
            false,
            2,
            vec![record("T", 0, None, Some("k"), None), plain("T", 0)],
        ),
    );
    let cut = b[0].physical_offset;
    log.apply(
        &mut sm,
        &Command::Purge {
            upto_physical_offset: cut,
        },
    );
    assert_eq!(sm.purged_upto(), cut);
    assert_eq!((sm.min_offset("T", 0), sm.max_offset("T", 0)), (1, 3));
    assert_eq!((sm.min_offset("T", 1), sm.max_offset("T", 1)), (1, 1));
    assert_eq!(sm.lookup_keys("T", "k", 0, i64::MAX, 10), vec![cut]);
    assert_eq!(sm.earliest_store_time("T", 0), Some(2));
    let r = sm.pull("T", 0, 0, PullLimits::default(), &TagFilter::All);
    assert_eq!(
        (r.classification.status, r.classification.next_begin_offset),
        (PullStatus::OffsetMoved, 1)
    );
    let r = sm.pull("T", 1, 0, PullLimits::default(), &TagFilter::All);
    assert_eq!(
        (r.classification.status, r.classification.next_begin_offset),
        (PullStatus::OffsetMoved, 1)
    );
    assert_eq!(
        sm.pull("T", 1, 1, PullLimits::default(), &TagFilter::All)
            .classification
            .status,
        PullStatus::NoNewMessage
    );
    // A lower purge point is a no-op; offsets keep growing after purges.
    log.apply(
        &mut sm,
        &Command::Purge {
            upto_physical_offset: a[0].physical_offset,
        },
    );
    assert_eq!(sm.min_offset("T", 0), 1);
    let c = log.appended(&mut sm, &append(false, 3, vec![plain("T", 1)]));
    assert_eq!(c[0].queue_offset, 1);
    // A point past the end of the log is refused; the end itself drops everything.
    assert!(matches!(
        log.apply(
            &mut sm,
            &Command::Purge {
                upto_physical_offset: i64::MAX,
            },
        ),
        Reply::Rejected(_)
    ));
    assert_eq!(sm.min_offset("T", 1), 1);
    let end = log.buf.len() as i64;
    log.apply(
        &mut sm,
        &Command::Purge {
            upto_physical_offset: end,
        },
    );
    assert_eq!((sm.min_offset("T", 1), sm.max_offset("T", 1)), (2, 2));
    assert_eq!(sm.search_offset_by_timestamp("T", 1, 0, Boundary::Lower), 2);
    assert_eq!(sm.search_offset_by_timestamp("T", 1, 0, Boundary::Upper), 2);
}

// ---- snapshots -----------------------------------------------------------------------------

fn busy_history() -> Vec<Command> {
    vec![
        upsert("A", 4, 10),
        append(
            true,
            11,
            vec![
                record("A", 0, Some("x"), Some("k1"), Some("U1")),
                plain("A", 2),
            ],
        ),
        Command::CommitOffsets(vec![OffsetCommit {
            group: "g".into(),
            topic: "A".into(),
            queue_id: 0,
            offset: 1,
        }]),
        append(
            true,
            12,
            vec![
                record("A", 0, None, None, Some("U1")),
                record("B", 1, None, None, Some("U2")),
            ],
        ),
        upsert("B", 2, 13),
        append(false, 14, vec![plain("A", 0), plain("A", 0)]),
    ]
}

#[test]
fn replicas_reach_identical_snapshots() {
    let (mut a, mut b) = (BrokerStateMachine::new(), BrokerStateMachine::new());
    let (mut la, mut lb) = (SimLog::default(), SimLog::default());
    for c in busy_history() {
        assert_eq!(la.apply(&mut a, &c), lb.apply(&mut b, &c));
    }
    assert_eq!(la.buf, lb.buf);
    let (sa, sb) = (a.snapshot().unwrap(), b.snapshot().unwrap());
    assert_eq!(sa, sb);
    assert_eq!(a.snapshot().unwrap(), sa, "snapshots are stable");
}

#[test]
fn snapshot_install_round_trip() {
    let mut sm = BrokerStateMachine::new();
    let mut log = SimLog::default();
    for c in busy_history() {
        log.apply(&mut sm, &c);
    }
    let data = sm.snapshot().unwrap();
    let (last, membership) = sm.applied_state();
    let mut fresh = BrokerStateMachine::new();
    fresh
        .install_snapshot(last, membership.clone(), &data)
        .unwrap();
    assert_eq!(fresh.applied_state(), (last, membership));
    assert_eq!(fresh.topics(), sm.topics());
    assert_eq!(fresh.data_version(), sm.data_version());
    assert_eq!(fresh.consumer_offset("g", "A", 0), Some(1));
    assert_eq!(fresh.dedup_len(), sm.dedup_len());
    // Queues start at their bases: min = max = next offset, no units.
    for (t, q) in [("A", 0), ("A", 2), ("B", 1)] {
        assert_eq!(fresh.max_offset(t, q), sm.max_offset(t, q), "{t}/{q}");
        assert_eq!(fresh.min_offset(t, q), sm.max_offset(t, q), "{t}/{q}");
        assert!(fresh.units(t, q, fresh.min_offset(t, q), 10).is_empty());
    }
    assert_eq!(fresh.max_offset("A", 0), 3, "U1 twice: one unit");
    // The installed state re-snapshots to the same bytes except the queue min offsets.
    let resnap = super::snapshot::Snapshot::decode(&fresh.snapshot().unwrap()).unwrap();
    let orig = super::snapshot::Snapshot::decode(&data).unwrap();
    assert_eq!(resnap.topics, orig.topics);
    assert_eq!(resnap.dedup, orig.dedup);
    // Offsets keep growing from the bases; the window still answers duplicates.
    let mut log2 = SimLog {
        buf: vec![0; log.buf.len()],
        index: log.index,
    };
    let r = log2.appended(
        &mut fresh,
        &append(
            true,
            20,
            vec![plain("A", 0), record("A", 1, None, None, Some("U1"))],
        ),
    );
    assert_eq!((r[0].queue_offset, r[0].duplicate), (3, false));
    assert!(r[1].duplicate);
    let p = fresh.pull("A", 0, 3, PullLimits::default(), &TagFilter::All);
    assert_eq!(p.classification.status, PullStatus::Found);
    let p = fresh.pull("A", 0, 0, PullLimits::default(), &TagFilter::All);
    assert_eq!(
        (p.classification.status, p.classification.next_begin_offset),
        (PullStatus::OffsetMoved, 3)
    );
}

#[test]
fn snapshot_garbage_is_an_error() {
    let mut sm = BrokerStateMachine::new();
    let good = sm.snapshot().unwrap();
    let mut bad_version = good.clone();
    bad_version[6] = 9;
    for bad in [
        vec![],
        b"RMQBSM".to_vec(),
        b"nonsense".to_vec(),
        bad_version,
        good[..good.len() - 1].to_vec(),
        [&good[..], &[0]].concat(),
    ] {
        assert!(sm
            .install_snapshot(None, StoredMembership::default(), &bad)
            .is_err());
    }
    // A failed install changes nothing.
    assert_eq!(sm.snapshot().unwrap(), good);
}

/// The key index (with tiny runs, so sealing, purges across runs and restores are all
/// exercised) against a plain list of every entry.
mod key_index_model {
    use proptest::prelude::*;

    use super::super::key_index::{key_hash, IndexEntry, KeyIndex, KEY_LOOKUP_MAX};

    #[derive(Debug, Clone)]
    enum Op {
        /// Topic, key, store time; the physical offset grows by one per add (apply order).
        Add(usize, usize, i64),
        /// One record under two keys (say its KEYS and its UNIQ_KEY), maybe the same one.
        AddTwo(usize, usize, usize, i64),
        Lookup(usize, usize, i64, i64, usize),
        Purge(i64),
        RemoveTopic(usize),
        /// Rewrite a checkpoint and restore from it.
        Restore,
    }

    const TOPICS: [&str; 2] = ["T", "U"];
    const KEYS: [&str; 4] = ["a", "b", "hot", "c"];

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (0..2usize, 0..4usize, 0..50i64).prop_map(|(t, k, s)| Op::Add(t, k, s)),
            2 => (0..2usize, 0..4usize, 0..4usize, 0..50i64)
                .prop_map(|(t, k, l, s)| Op::AddTwo(t, k, l, s)),
            4 => (0..2usize, 0..4usize, 0..50i64, 0..50i64, 0..80usize)
                .prop_map(|(t, k, b, e, m)| Op::Lookup(t, k, b, e, m)),
            1 => (0..200i64).prop_map(Op::Purge),
            1 => (0..2usize).prop_map(Op::RemoveTopic),
            1 => Just(Op::Restore),
        ]
    }

    proptest! {
        #[test]
        fn answers_like_a_plain_list(run_len in 1..6usize, ops in proptest::collection::vec(op(), 0..150)) {
            let mut index = KeyIndex::with_run_len(run_len);
            let mut model: Vec<(usize, usize, i64, i64)> = Vec::new();
            let mut next_offset = 0i64;
            for op in ops {
                match op {
                    Op::Add(t, k, s) => {
                        index.add(TOPICS[t], KEYS[k], next_offset, s);
                        model.push((t, k, next_offset, s));
                        next_offset += 1;
                    }
                    Op::AddTwo(t, k, l, s) => {
                        index.add(TOPICS[t], KEYS[k], next_offset, s);
                        index.add(TOPICS[t], KEYS[l], next_offset, s);
                        model.push((t, k, next_offset, s));
                        model.push((t, l, next_offset, s));
                        next_offset += 1;
                    }
                    Op::Lookup(t, k, b, e, m) => {
                        let mut want: Vec<i64> = model
                            .iter()
                            .filter(|x| x.0 == t && x.1 == k && (b..=e).contains(&x.3))
                            .map(|x| x.2)
                            .collect();
                        want.reverse();
                        want.dedup();
                        want.truncate(m.min(KEY_LOOKUP_MAX));
                        prop_assert_eq!(index.lookup(TOPICS[t], KEYS[k], b, e, m), want);
                    }
                    Op::Purge(p) => {
                        index.purge_below(p);
                        model.retain(|x| x.2 >= p);
                    }
                    Op::RemoveTopic(t) => {
                        index.remove_topic(TOPICS[t]);
                        model.retain(|x| x.0 != t);
                    }
                    Op::Restore => {
                        let mut restored = KeyIndex::with_run_len(run_len);
                        let entries: Vec<(String, u64, IndexEntry)> = index
                            .entries()
                            .map(|(t, h, e)| (t.to_owned(), h, *e))
                            .collect();
                        for (t, h, e) in entries {
                            restored.extend_hashes(&t, std::iter::once((h, e)));
                        }
                        index = restored;
                    }
                }
                prop_assert_eq!(index.len(), model.len());
                prop_assert_eq!(index.is_empty(), model.is_empty());
            }
            // Every entry is still there under its own hash.
            for (t, k, o, s) in &model {
                let found = index.entries().any(|(topic, h, e)| {
                    topic == TOPICS[*t] && h == key_hash(KEYS[*k]) && e.physical_offset == *o && e.store_time == *s
                });
                prop_assert!(found);
            }
        }
    }
}
