#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use bytes::Bytes;
use proptest::prelude::*;
use raftmq_protocol::body::topic::TopicConfig;
use raftmq_protocol::message::MessageRecord;

use super::tests::{append, record, SimLog};
use super::*;

const TOPICS: [&str; 3] = ["A", "B", "%RETRY%g"];

fn arb_record() -> impl Strategy<Value = (usize, i32, Option<String>, Option<String>)> {
    (
        0..TOPICS.len(),
        0..4i32,
        proptest::option::of("[a-c]{1,2}"),
        proptest::option::of("[a-z]{1,6}( [a-z]{1,6}){0,2}"),
    )
}

pub(super) fn arb_command() -> impl Strategy<Value = Command> {
    prop_oneof![
        (
            any::<bool>(),
            any::<i64>(),
            proptest::collection::vec(arb_record(), 0..4)
        )
            .prop_map(|(dedup, ts, recs)| {
                let records = recs
                    .into_iter()
                    .map(|(t, q, tag, keys)| {
                        record(TOPICS[t], q, tag.as_deref(), keys.as_deref(), None)
                    })
                    .collect();
                append(dedup, ts, records)
            }),
        proptest::collection::vec(
            ("[a-z%]{0,8}", "[A-Za-z]{0,8}", any::<i32>(), any::<i64>()),
            0..5
        )
        .prop_map(|v| Command::CommitOffsets(
            v.into_iter()
                .map(|(group, topic, queue_id, offset)| OffsetCommit {
                    group,
                    topic,
                    queue_id,
                    offset
                })
                .collect()
        )),
        (
            "[A-Za-z0-9_]{0,12}",
            any::<i32>(),
            any::<i32>(),
            any::<i32>(),
            any::<bool>(),
            any::<i64>()
        )
            .prop_map(|(name, r, w, perm, order, ts)| {
                let mut config = TopicConfig::new(name, r);
                config.write_queue_nums = w;
                config.perm = perm;
                config.order = order;
                Command::UpsertTopic {
                    config,
                    timestamp_ms: ts,
                }
            }),
        ("[A-Za-z]{0,12}", any::<i64>()).prop_map(|(topic, timestamp_ms)| Command::DeleteTopic {
            topic,
            timestamp_ms
        }),
        any::<i64>().prop_map(|upto_physical_offset| Command::Purge {
            upto_physical_offset
        }),
        arb_lock_command(),
    ]
}

/// Lock and unlock commands over a few groups, clients and queues, at times spanning a few
/// lock lifetimes (so grants, refusals, steals and forgetting all happen).
fn arb_lock_command() -> impl Strategy<Value = Command> {
    (
        any::<bool>(),
        0..2usize,
        0..3usize,
        proptest::collection::vec((0..TOPICS.len(), 0..3i32), 0..4),
        0i64..400_000,
    )
        .prop_map(|(lock, g, c, qs, now_ms)| {
            let request = QueueLockRequest {
                group: ["g", "h"][g].into(),
                client_id: ["c1", "c2", "c3"][c].into(),
                queues: qs
                    .into_iter()
                    .map(|(t, queue_id)| raftmq_protocol::body::MessageQueue {
                        broker_name: "b".into(),
                        queue_id,
                        topic: TOPICS[t].into(),
                    })
                    .collect(),
                now_ms,
            };
            if lock {
                Command::LockQueues(request)
            } else {
                Command::UnlockQueues(request)
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn command_round_trips(c in arb_command()) {
        prop_assert_eq!(Command::decode(&c.encode()).unwrap(), c);
    }

    #[test]
    fn garbage_commands_never_panic(tag in 0u8..24, body in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut bytes = vec![tag];
        bytes.extend_from_slice(&body);
        let bytes = Bytes::from(bytes);
        let _ = Command::decode(&bytes);
        let mut sm = BrokerStateMachine::new();
        // Apply never panics either: a reply or a fatal error.
        let _ = sm.apply_command(&bytes, Some(1000));
    }

    #[test]
    fn mutated_commands_never_panic(c in arb_command(), at in any::<prop::sample::Index>(), v in any::<u8>()) {
        let mut bytes = c.encode().to_vec();
        let i = at.index(bytes.len());
        bytes[i] = v;
        let bytes = Bytes::from(bytes);
        let _ = Command::decode(&bytes);
        let _ = BrokerStateMachine::new().apply_command(&bytes, Some(7));
    }

    #[test]
    fn reply_round_trips(rs in proptest::collection::vec((any::<i32>(), any::<i64>(), any::<i64>(), any::<bool>()), 0..8)) {
        let r = Reply::Appended(rs.into_iter().map(|(queue_id, queue_offset, physical_offset, duplicate)| AppendResult {
            queue_id, queue_offset, physical_offset, duplicate,
        }).collect());
        prop_assert_eq!(Reply::decode(&r.encode()), Some(r));
    }

    /// Random appends to random queues (interleaved with commits and purges): per-queue
    /// offsets are contiguous from 0, and every unit points at a record of its topic/queue
    /// in the simulated log; two replicas end with identical snapshots.
    #[test]
    fn appends_keep_queues_contiguous_and_units_point_at_records(
        batches in proptest::collection::vec(
            (proptest::collection::vec(arb_record(), 1..6), any::<bool>(), 0u8..10),
            1..20,
        ),
    ) {
        let mut sm = BrokerStateMachine::new();
        let mut replica = BrokerStateMachine::new();
        let mut log = SimLog::default();
        let mut replica_log = SimLog::default();
        let mut expected: BTreeMap<(String, i32), i64> = BTreeMap::new();
        let mut ts = 0;
        for (recs, dedup, extra) in batches {
            ts += 1;
            let records: Vec<Bytes> = recs
                .iter()
                .enumerate()
                .map(|(i, (t, q, tag, keys))| {
                    // Unique UNIQ_KEYs: dedup never triggers here.
                    let uniq = format!("U{ts}-{i}");
                    record(TOPICS[*t], *q, tag.as_deref(), keys.as_deref(), Some(&uniq))
                })
                .collect();
            let cmd = append(dedup, ts, records);
            let results = log.appended(&mut sm, &cmd);
            prop_assert_eq!(replica_log.appended(&mut replica, &cmd), results.clone());
            for ((t, q, _, _), r) in recs.iter().zip(&results) {
                let next = expected.entry((TOPICS[*t].to_owned(), *q)).or_insert(0);
                prop_assert_eq!(r.queue_offset, *next);
                prop_assert_eq!(r.queue_id, *q);
                *next += 1;
            }
            if extra == 0 {
                // Purge the first half of the log.
                let purge = Command::Purge { upto_physical_offset: (log.buf.len() / 2) as i64 };
                log.apply(&mut sm, &purge);
                replica_log.apply(&mut replica, &purge);
            }
        }
        for ((topic, q), next) in &expected {
            let queue = sm.queue(topic, *q).unwrap();
            prop_assert_eq!(queue.max_offset(), *next);
            prop_assert!(queue.min_offset() <= *next);
            let units = queue.units(queue.min_offset(), usize::MAX);
            prop_assert_eq!(units.len() as i64, next - queue.min_offset());
            let mut last = -1;
            for u in units {
                prop_assert!(u.physical_offset > last);
                prop_assert!(u.physical_offset >= sm.purged_upto());
                last = u.physical_offset;
                let at = usize::try_from(u.physical_offset).unwrap();
                let (rec, len) = MessageRecord::decode(&log.buf[at..]).unwrap();
                prop_assert_eq!(&rec.topic, topic);
                prop_assert_eq!(rec.queue_id, *q);
                prop_assert_eq!(len, u.size as usize);
                prop_assert_eq!(u.tag_code, raftmq_protocol::message::tag_code(rec.properties.get("TAGS")));
            }
        }
        prop_assert_eq!(sm.snapshot_bytes().unwrap(), replica.snapshot_bytes().unwrap());
    }
}
