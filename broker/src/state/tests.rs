#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use bytes::Bytes;
use raftmq_protocol::body::topic::{perm, TopicConfig};
use raftmq_protocol::message::MessageRecord;
use raftmq_protocol::strmap::StrMap;
use raftmq_raft::state_machine::{Committed, CommittedPayload, StateMachine};
use raftmq_raft::types::{LogId, StoredMembership};

use super::command::{tags, APPEND_HEADER_BYTES};
use super::*;

// ---- helpers (shared with tests_prop) ------------------------------------------------------

/// A stored record with zero queue/physical offsets, as the leader proposes it.
pub(super) fn record(
    topic: &str,
    queue_id: i32,
    tags: Option<&str>,
    keys: Option<&str>,
    uniq: Option<&str>,
) -> Bytes {
    let mut properties = StrMap::new();
    if let Some(t) = tags {
        properties.insert("TAGS", t);
    }
    if let Some(k) = keys {
        properties.insert("KEYS", k);
    }
    if let Some(u) = uniq {
        properties.insert("UNIQ_KEY", u);
    }
    let host: SocketAddr = "10.0.0.1:10911".parse().unwrap();
    MessageRecord {
        queue_id,
        flag: 0,
        queue_offset: 0,
        physical_offset: 0,
        sys_flag: 0,
        born_timestamp: 1,
        born_host: "10.0.0.9:5555".parse().unwrap(),
        store_timestamp: 2,
        store_host: host,
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        body: Bytes::from(format!("body of {topic}/{queue_id}")),
        topic: topic.to_owned(),
        properties,
    }
    .to_bytes()
    .map(Bytes::from)
    .unwrap()
}

pub(super) fn plain(topic: &str, queue_id: i32) -> Bytes {
    record(topic, queue_id, None, None, None)
}

pub(super) fn append(dedup: bool, ts: i64, records: Vec<Bytes>) -> Command {
    Command::Append(Append {
        dedup,
        store_timestamp_ms: ts,
        records,
    })
}

/// A simulated replicated log: each command lands after a few bytes of framing, at
/// increasing positions, and is applied at once.
#[derive(Debug, Default)]
pub(super) struct SimLog {
    pub buf: Vec<u8>,
    pub index: u64,
}

impl SimLog {
    pub fn apply(&mut self, sm: &mut BrokerStateMachine, cmd: &Command) -> Reply {
        let bytes = cmd.encode();
        self.buf.extend_from_slice(&[0xEE; 9]); // entry framing
        let position = self.buf.len() as u64;
        self.buf.extend_from_slice(&bytes);
        self.index += 1;
        let entry = Committed {
            log_id: LogId {
                index: self.index,
                ..Default::default()
            },
            payload: CommittedPayload::Normal(bytes),
            payload_position: Some(position),
        };
        let replies = sm.apply(&[entry]).unwrap();
        assert_eq!(replies.len(), 1);
        Reply::decode(&replies[0]).unwrap()
    }

    pub fn appended(&mut self, sm: &mut BrokerStateMachine, cmd: &Command) -> Vec<AppendResult> {
        match self.apply(sm, cmd) {
            Reply::Appended(r) => r,
            other => panic!("expected Appended, got {other:?}"),
        }
    }
}

pub(super) fn upsert(name: &str, queues: i32, ts: i64) -> Command {
    Command::UpsertTopic {
        config: TopicConfig::new(name, queues),
        timestamp_ms: ts,
    }
}

// ---- codec ---------------------------------------------------------------------------------

#[test]
fn command_codec_round_trips() {
    let mut cfg = TopicConfig::new("T", 4);
    cfg.attributes
        .insert("message.type".into(), "NORMAL".into());
    let commands = [
        append(true, 1_700_000_000_000, vec![plain("T", 0), plain("U", 3)]),
        append(false, -1, vec![]),
        Command::CommitOffsets(vec![OffsetCommit {
            group: "g".into(),
            topic: "T".into(),
            queue_id: 2,
            offset: 42,
        }]),
        Command::CommitOffsets(vec![]),
        Command::UpsertTopic {
            config: cfg,
            timestamp_ms: 5,
        },
        Command::DeleteTopic {
            topic: "T".into(),
            timestamp_ms: 6,
        },
        Command::Purge {
            upto_physical_offset: 1 << 40,
        },
        Command::LockQueues(QueueLockRequest {
            group: "g".into(),
            client_id: "10.0.0.9@1#1".into(),
            queues: vec![raftmq_protocol::body::MessageQueue {
                broker_name: "b".into(),
                queue_id: 7,
                topic: "T".into(),
            }],
            now_ms: 1_700_000_000_000,
        }),
        Command::UnlockQueues(QueueLockRequest {
            group: "g".into(),
            client_id: "c".into(),
            queues: vec![],
            now_ms: -1,
        }),
    ];
    for c in commands {
        let bytes = c.encode();
        assert_eq!(bytes[0], c.tag());
        assert_eq!(Command::decode(&bytes).unwrap(), c);
    }
}

#[test]
fn append_layout_is_explicit() {
    let (a, b) = (plain("T", 0), plain("T", 1));
    let cmd = append(true, 0x0102_0304_0506_0708, vec![a.clone(), b.clone()]);
    let bytes = cmd.encode();
    assert_eq!(bytes[0], tags::APPEND);
    assert_eq!(bytes[1], 1);
    assert_eq!(&bytes[2..10], &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(&bytes[10..14], &2u32.to_be_bytes());
    assert_eq!(&bytes[14..14 + a.len()], &a[..]);
    assert_eq!(&bytes[14 + a.len()..], &b[..]);
    let Command::Append(ap) = cmd else {
        unreachable!()
    };
    assert_eq!(ap.record_offset(0), Some(APPEND_HEADER_BYTES));
    assert_eq!(ap.record_offset(1), Some(APPEND_HEADER_BYTES + a.len()));
    assert_eq!(ap.record_offset(2), None);
    assert_eq!(ap.encoded_len(), bytes.len());
}

#[test]
fn command_garbage_is_an_error() {
    let good = append(false, 1, vec![plain("T", 0)]).encode();
    let mut cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![], "empty"),
        (vec![0], "tag 0"),
        (vec![99, 1, 2], "unknown"),
        (vec![tags::DELIVER_DELAYED], "reserved"),
        (vec![tags::LOCK_QUEUES], "empty lock"),
        (vec![tags::UNLOCK_QUEUES, 0, 0], "short unlock"),
        (good[..10].to_vec(), "short header"),
        (good[..good.len() - 1].to_vec(), "truncated record"),
        ([&good[..], &[0]].concat(), "trailing byte"),
        (
            vec![tags::COMMIT_OFFSETS, 0, 0, 0, 0, 0, 0, 0, 9],
            "vec length past end",
        ),
        (
            vec![
                tags::COMMIT_OFFSETS,
                0xFF,
                0xFF,
                0xFF,
                0xFF,
                0xFF,
                0xFF,
                0xFF,
                0xFF,
            ],
            "huge",
        ),
        (vec![tags::PURGE, 1, 2, 3], "short purge"),
        (
            vec![tags::PURGE, 0, 0, 0, 0, 0, 0, 0, 1, 7],
            "purge trailing",
        ),
        (vec![tags::DELETE_TOPIC], "empty delete"),
        (vec![tags::UPSERT_TOPIC, 0, 0], "short upsert"),
    ];
    let mut bad_flags = good.to_vec();
    bad_flags[1] = 0x80;
    cases.push((bad_flags, "flags"));
    let mut bad_count = good.to_vec();
    bad_count[13] = 2;
    cases.push((bad_count, "count"));
    let mut bad_size = good.to_vec();
    bad_size[14..18].copy_from_slice(&(-5i32).to_be_bytes());
    cases.push((bad_size, "size"));
    for (bytes, what) in cases {
        assert!(Command::decode(&Bytes::from(bytes)).is_err(), "{what}");
    }
    assert!(matches!(
        Command::decode(&Bytes::from_static(&[tags::END_TRANSACTION])),
        Err(CommandError::UnknownTag(tags::END_TRANSACTION))
    ));
    assert!(tags::is_reserved(tags::DELIVER_DELAYED) && !tags::is_reserved(tags::PURGE));
    assert!(!tags::is_reserved(tags::LOCK_QUEUES) && !tags::is_reserved(tags::UNLOCK_QUEUES));
}

#[test]
fn reply_codec() {
    let replies = [
        Reply::Done,
        Reply::Rejected("nope ✗".into()),
        Reply::Appended(vec![]),
        Reply::Appended(vec![
            AppendResult {
                queue_id: 3,
                queue_offset: 7,
                physical_offset: 1 << 33,
                duplicate: false,
            },
            AppendResult {
                queue_id: -1,
                queue_offset: i64::MAX,
                physical_offset: 0,
                duplicate: true,
            },
        ]),
        Reply::Locked(vec![]),
        Reply::Locked(vec![0, 2, u32::MAX]),
    ];
    for r in replies {
        assert_eq!(Reply::decode(&r.encode()), Some(r));
    }
    let one = Reply::Appended(vec![AppendResult {
        queue_id: 1,
        queue_offset: 1,
        physical_offset: 1,
        duplicate: false,
    }])
    .encode();
    for bad in [
        &[][..],
        &[0, 1],
        &[9],
        &[1, 0, 0],
        &one[..one.len() - 1],
        &[2, 0xFF],
        &[3, 0, 0, 0, 1, 0, 0, 0],
        &[3, 0, 0, 0, 0, 9],
    ] {
        assert_eq!(Reply::decode(bad), None, "{bad:?}");
    }
    let mut bad_dup = one.to_vec();
    *bad_dup.last_mut().unwrap() = 2;
    assert_eq!(Reply::decode(&bad_dup), None);
}

#[test]
fn cq_unit_bytes() {
    let u = CqUnit {
        physical_offset: -2,
        size: 300,
        tag_code: i64::from(i32::MIN),
    };
    assert_eq!(CqUnit::from_bytes(&u.to_bytes()), u);
    assert_eq!(u.to_bytes().len(), 20);
}

// ---- apply ---------------------------------------------------------------------------------

#[test]
fn initial_state_has_system_topics() {
    let sm = BrokerStateMachine::new();
    let tbw = sm.topic("TBW102").unwrap();
    assert_eq!(
        (tbw.perm, tbw.write_queue_nums, tbw.read_queue_nums),
        (7, 8, 8)
    );
    assert!(perm::is_inherited(tbw.perm));
    assert_eq!(sm.topic("SCHEDULE_TOPIC_XXXX").unwrap().read_queue_nums, 18);
    for t in [
        "SELF_TEST_TOPIC",
        "OFFSET_MOVED_EVENT",
        "RMQ_SYS_TRANS_HALF_TOPIC",
    ] {
        assert!(sm.topic(t).is_some(), "{t}");
    }
    assert_eq!(sm.data_version().counter, 0);
    assert_eq!(sm.applied_state().0, None);
}

#[test]
fn offsets_are_contiguous_per_queue_across_commands() {
    let mut sm = BrokerStateMachine::new();
    let mut log = SimLog::default();
    log.apply(&mut sm, &upsert("A", 2, 1));
    log.apply(&mut sm, &upsert("B", 2, 1));
    let r1 = log.appended(
        &mut sm,
        &append(
            false,
            10,
            vec![plain("A", 0), plain("B", 0), plain("A", 1), plain("A", 0)],
        ),
    );
    let r2 = log.appended(
        &mut sm,
        &append(false, 11, vec![plain("B", 0), plain("A", 0)]),
    );
    let offs = |r: &[AppendResult]| {
        r.iter()
            .map(|x| (x.queue_id, x.queue_offset))
            .collect::<Vec<_>>()
    };
    assert_eq!(offs(&r1), vec![(0, 0), (0, 0), (1, 0), (0, 1)]);
    assert_eq!(offs(&r2), vec![(0, 1), (0, 2)]);
    assert_eq!(sm.max_offset("A", 0), 3);
    assert_eq!(sm.max_offset("A", 1), 1);
    assert_eq!(sm.max_offset("B", 0), 2);
    assert_eq!(sm.max_offset("B", 1), 0);
    assert_eq!(sm.max_offset("nope", 0), 0);
    assert_eq!(sm.min_offset("A", 0), 0);
    assert_eq!(sm.units("A", 0, 0, 10).len(), 3);
    assert_eq!(sm.units("A", 0, 1, 1).len(), 1);
    assert!(sm.units("A", 0, 3, 10).is_empty());
}

#[test]
fn physical_offsets_are_position_plus_offset_in_command() {
    let mut sm = BrokerStateMachine::new();
    let mut log = SimLog::default();
    log.apply(&mut sm, &upsert("A", 4, 1));
    let recs = vec![plain("A", 0), plain("A", 3), plain("A", 0)];
    let cmd = append(false, 10, recs.clone());
    let Command::Append(ref ap) = cmd else {
        unreachable!()
    };
    let position = log.buf.len() as i64 + 9;
    let results = log.appended(&mut sm, &cmd);
    for (k, r) in results.iter().enumerate() {
        assert_eq!(
            r.physical_offset,
            position + ap.record_offset(k).unwrap() as i64
        );
        let at = r.physical_offset as usize;
        let (decoded, len) = MessageRecord::decode(&log.buf[at..]).unwrap();
        assert_eq!(
            (decoded.topic.as_str(), decoded.queue_id),
            ("A", r.queue_id)
        );
        assert_eq!(len, recs[k].len());
        let unit = sm
            .queue("A", r.queue_id)
            .unwrap()
            .unit(r.queue_offset)
            .unwrap();
        assert_eq!(unit.physical_offset, r.physical_offset);
        assert_eq!(unit.size as usize, recs[k].len());
    }
}

#[test]
fn unknown_topic_or_queue_creates_the_queue_only() {
    let mut sm = BrokerStateMachine::new();
    let mut log = SimLog::default();
    log.apply(&mut sm, &upsert("A", 2, 1));
    let r = log.appended(
        &mut sm,
        &append(false, 1, vec![plain("A", 7), plain("Ghost", 0)]),
    );
    assert_eq!((r[0].queue_id, r[0].queue_offset), (7, 0));
    assert_eq!((r[1].queue_id, r[1].queue_offset), (0, 0));
    assert_eq!(sm.max_offset("A", 7), 1);
    assert_eq!(sm.max_offset("Ghost", 0), 1);
    assert!(
        sm.topic("Ghost").is_none(),
        "topics are never auto-created at apply"
    );
    assert_eq!(sm.topic("A").unwrap().write_queue_nums, 2);
}

#[test]
fn invalid_appends_are_rejected_whole() {
    let mut sm = BrokerStateMachine::new();
    let mut log = SimLog::default();
    // A negative queue id rejects the whole command: the first record is not applied either.
    let reply = log.apply(
        &mut sm,
        &append(true, 1, vec![plain("A", 0), plain("A", -1)]),
    );
    assert!(
        matches!(reply, Reply::Rejected(ref e) if e.contains("negative")),
        "{reply:?}"
    );
    assert_eq!(sm.max_offset("A", 0), 0);
    // A record that frames but does not decode (bad magic).
    let mut bad = plain("A", 0).to_vec();
    bad[4..8].copy_from_slice(&7i32.to_be_bytes());
    let reply = log.apply(
        &mut sm,
        &append(false, 1, vec![plain("A", 0), Bytes::from(bad)]),
    );
    assert!(matches!(reply, Reply::Rejected(_)), "{reply:?}");
    assert_eq!(sm.max_offset("A", 0), 0);
    assert_eq!(sm.dedup_len(), 0);
    // Malformed bodies of known commands are rejected deterministically, not fatal.
    let mut one = BrokerStateMachine::new();
    let reply = one
        .apply_command(&Bytes::from_static(&[tags::PURGE, 1]), Some(0))
        .unwrap();
    assert!(matches!(reply, Reply::Rejected(_)));
}

#[test]
fn fatal_conditions() {
    let mut sm = BrokerStateMachine::new();
    assert!(sm
        .apply_command(&Bytes::from_static(&[tags::DELIVER_DELAYED, 0]), Some(0))
        .is_err());
    assert!(sm
        .apply_command(&Bytes::from_static(&[200]), Some(0))
        .is_err());
    let cmd = append(false, 1, vec![plain("A", 0)]).encode();
    assert!(
        sm.apply_command(&cmd, None).is_err(),
        "append needs a position"
    );
    // Non-append commands need none.
    let offsets = Command::CommitOffsets(vec![]).encode();
    assert_eq!(sm.apply_command(&offsets, None).unwrap(), Reply::Done);
}

#[test]
fn blank_and_membership_entries() {
    let mut sm = BrokerStateMachine::new();
    let membership = StoredMembership::default();
    let entries = [
        Committed {
            log_id: LogId {
                index: 1,
                ..Default::default()
            },
            payload: CommittedPayload::Blank,
            payload_position: None,
        },
        Committed {
            log_id: LogId {
                index: 2,
                ..Default::default()
            },
            payload: CommittedPayload::Membership(membership.clone()),
            payload_position: None,
        },
    ];
    let replies = sm.apply(&entries).unwrap();
    assert_eq!(replies, vec![Bytes::new(), Bytes::new()]);
    let (last, m) = sm.applied_state();
    assert_eq!(last.map(|l| l.index), Some(2));
    assert_eq!(m, membership);
}

#[test]
fn topic_commands_bump_the_data_version() {
    let mut sm = BrokerStateMachine::new();
    let mut log = SimLog::default();
    assert_eq!(log.apply(&mut sm, &upsert("A", 4, 100)), Reply::Done);
    assert_eq!(
        (sm.data_version().counter, sm.data_version().timestamp),
        (1, 100)
    );
    log.apply(&mut sm, &upsert("A", 8, 200));
    assert_eq!(sm.topic("A").unwrap().write_queue_nums, 8);
    assert_eq!(sm.data_version().counter, 2);
    log.appended(
        &mut sm,
        &append(true, 1, vec![record("A", 0, None, Some("k"), Some("U1"))]),
    );
    log.apply(
        &mut sm,
        &Command::CommitOffsets(vec![OffsetCommit {
            group: "g".into(),
            topic: "A".into(),
            queue_id: 0,
            offset: 1,
        }]),
    );
    let del = Command::DeleteTopic {
        topic: "A".into(),
        timestamp_ms: 300,
    };
    assert_eq!(log.apply(&mut sm, &del), Reply::Done);
    assert_eq!(
        (sm.data_version().counter, sm.data_version().timestamp),
        (3, 300)
    );
    assert!(sm.topic("A").is_none());
    assert_eq!(sm.max_offset("A", 0), 0);
    assert_eq!(sm.consumer_offset("g", "A", 0), None);
    assert!(sm.lookup_keys("A", "k", 0, i64::MAX, 10).is_empty());
    assert_eq!(sm.dedup_len(), 0);
    // Deleting a missing topic changes nothing.
    log.apply(&mut sm, &del);
    assert_eq!(sm.data_version().counter, 3);
    // Invalid configs are rejected.
    let reply = log.apply(&mut sm, &upsert("", 1, 1));
    assert!(matches!(reply, Reply::Rejected(_)));
    assert!(matches!(
        log.apply(&mut sm, &upsert("N", -1, 1)),
        Reply::Rejected(_)
    ));
    assert_eq!(sm.data_version().counter, 3);
}

#[test]
fn consumer_offsets_last_write_wins() {
    let mut sm = BrokerStateMachine::new();
    let mut log = SimLog::default();
    let commit = |g: &str, q, o| OffsetCommit {
        group: g.into(),
        topic: "T".into(),
        queue_id: q,
        offset: o,
    };
    log.apply(
        &mut sm,
        &Command::CommitOffsets(vec![
            commit("g", 0, 5),
            commit("g", 1, 7),
            commit("h", 0, 1),
        ]),
    );
    log.apply(&mut sm, &Command::CommitOffsets(vec![commit("g", 0, 3)]));
    assert_eq!(sm.consumer_offset("g", "T", 0), Some(3));
    assert_eq!(sm.consumer_offset("g", "T", 1), Some(7));
    assert_eq!(sm.consumer_offset("h", "T", 0), Some(1));
    assert_eq!(sm.consumer_offset("h", "T", 1), None);
    assert_eq!(
        sm.consumer_offsets().of_group("g"),
        vec![("T", 0, 3), ("T", 1, 7)]
    );
    assert_eq!(sm.consumer_offsets().groups_of_topic("T"), vec!["g", "h"]);
}
