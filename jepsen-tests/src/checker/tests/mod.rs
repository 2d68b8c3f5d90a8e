//! Hand-made histories, one per anomaly, each required to be flagged with the right count,
//! and a clean history required to pass; `timing` has the availability tests and the
//! properties over altered clean histories.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::history::{Event, EventType, Op, Position, ReadMsg, HARNESS, NEMESIS};

const BROKER: &str = "g";

/// Builds histories: every event 1 ms after the previous unless moved with `at`.
#[derive(Debug, Default)]
struct H {
    events: Vec<Event>,
    t_ns: u64,
    next_op: u64,
}

fn pos(queue: u32, offset: u64) -> Position {
    Position {
        broker: BROKER.into(),
        queue,
        offset,
    }
}

fn msgs(queue: u32, list: &[(u64, &str)]) -> Vec<ReadMsg> {
    list.iter()
        .map(|(o, v)| ReadMsg {
            queue,
            offset: *o,
            value: v.to_string(),
        })
        .collect()
}

impl H {
    fn new() -> H {
        H::default()
    }

    /// Moves the clock to `ms` milliseconds (events keep coming 1 ms apart after it).
    fn at(&mut self, ms: u64) -> &mut H {
        self.t_ns = ms * 1_000_000;
        self
    }

    fn push(&mut self, process: u32, kind: EventType, op_id: u64, op: Op) {
        self.t_ns += 1_000_000;
        self.events.push(Event {
            t_ns: self.t_ns,
            process,
            kind,
            op_id,
            op,
        });
    }

    fn op(&mut self) -> u64 {
        self.next_op += 1;
        self.next_op
    }

    fn send_op(value: &str, key: Option<(&str, u64)>, pos: Option<Position>, err: bool) -> Op {
        Op::Send {
            value: value.into(),
            key: key.map(|(k, _)| k.to_string()),
            seq: key.map(|(_, s)| s),
            pos,
            error: err.then(|| "boom".to_string()),
        }
    }

    /// A send invoke; returns its op id.
    fn invoke(&mut self, process: u32, value: &str, key: Option<(&str, u64)>) -> u64 {
        let id = self.op();
        self.push(
            process,
            EventType::Invoke,
            id,
            H::send_op(value, key, None, false),
        );
        id
    }

    fn complete(
        &mut self,
        id: u64,
        process: u32,
        kind: EventType,
        value: &str,
        key: Option<(&str, u64)>,
        at: Option<Position>,
    ) {
        let err = kind != EventType::Ok;
        self.push(process, kind, id, H::send_op(value, key, at, err));
    }

    fn ok(&mut self, process: u32, value: &str, queue: u32, offset: u64) -> &mut H {
        let id = self.invoke(process, value, None);
        self.complete(
            id,
            process,
            EventType::Ok,
            value,
            None,
            Some(pos(queue, offset)),
        );
        self
    }

    fn ordered_ok(&mut self, process: u32, key: &str, seq: u64, value: &str, q: u32, o: u64) {
        let k = Some((key, seq));
        let id = self.invoke(process, value, k);
        self.complete(id, process, EventType::Ok, value, k, Some(pos(q, o)));
    }

    fn ended(&mut self, process: u32, value: &str, kind: EventType) -> &mut H {
        let id = self.invoke(process, value, None);
        self.complete(id, process, kind, value, None, None);
        self
    }

    fn consume(&mut self, process: u32, queue: u32, list: &[(u64, &str)]) -> &mut H {
        let op = Op::Consume {
            broker: BROKER.into(),
            msgs: msgs(queue, list),
        };
        self.push(process, EventType::Ok, 0, op);
        self
    }

    fn drain(
        &mut self,
        node: &str,
        queue: u32,
        min: u64,
        max: u64,
        list: &[(u64, &str)],
    ) -> &mut H {
        let op = Op::Drain {
            node: node.into(),
            broker: BROKER.into(),
            queue,
            min_offset: min,
            max_offset: max,
            msgs: msgs(queue, list),
        };
        self.push(HARNESS, EventType::Ok, 0, op);
        self
    }

    /// The same drain from n0, n1 and n2.
    fn drain_all(&mut self, queue: u32, min: u64, max: u64, list: &[(u64, &str)]) -> &mut H {
        for n in ["n0", "n1", "n2"] {
            self.drain(n, queue, min, max, list);
        }
        self
    }

    fn fault(&mut self, fault: &str, kind: EventType, op_id: u64) -> &mut H {
        let op = Op::Nemesis {
            fault: fault.into(),
            targets: vec!["n1".into()],
            detail: String::new(),
        };
        self.push(NEMESIS, kind, op_id, op);
        self
    }

    fn phase(&mut self, name: &str) -> &mut H {
        self.push(HARNESS, EventType::Ok, 0, Op::Phase { name: name.into() });
        self
    }

    fn check(&self) -> Results {
        check(&self.events, &CheckOptions::default())
    }
}

/// `n` values over 2 producers and 4 queues, all acknowledged, consumed and drained
/// identically from three replicas.
fn clean(n: u64) -> H {
    let mut h = H::new();
    h.phase("setup").phase("faults");
    let mut per_queue: Vec<Vec<(u64, String)>> = vec![Vec::new(); 4];
    for i in 0..n {
        let process = (i % 2) as u32 + 1;
        let value = format!("p{process}-{i}");
        let q = (i % 4) as usize;
        let off = per_queue[q].len() as u64;
        h.ok(process, &value, q as u32, off);
        per_queue[q].push((off, value));
    }
    for (q, list) in per_queue.iter().enumerate() {
        let l: Vec<(u64, &str)> = list.iter().map(|(o, v)| (*o, v.as_str())).collect();
        // Two messages per consume event, so shuffling them can reorder one queue's reads.
        for chunk in l.chunks(2) {
            h.consume(100 + q as u32 % 2, q as u32, chunk);
        }
    }
    h.phase("heal").phase("drain");
    for (q, list) in per_queue.iter().enumerate() {
        let l: Vec<(u64, &str)> = list.iter().map(|(o, v)| (*o, v.as_str())).collect();
        h.drain_all(q as u32, 0, l.len() as u64, &l);
    }
    h.phase("done");
    h
}

fn assert_invalid_with(r: &Results, name: &str, n: u64) {
    assert!(!r.valid, "{r:#?}");
    let got = r
        .tally()
        .into_iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v);
    assert_eq!(got, Some(n), "{name} in {:?}", r.tally());
    assert!(
        r.reasons.iter().any(|s| *s == format!("{name}={n}")),
        "{:?}",
        r.reasons
    );
}

#[test]
fn clean_history_is_valid() {
    let r = clean(40).check();
    assert!(r.valid, "{r:#?}");
    assert!(r.reasons.is_empty());
    assert!(r.tally().iter().all(|(_, n)| *n == 0));
    assert_eq!(r.counts.sends_invoked, 40);
    assert_eq!(r.counts.sends_ok, 40);
    assert_eq!(r.counts.values_acked, 40);
    assert_eq!(r.counts.values_consumed, 40);
    assert_eq!(r.counts.values_drained, 40);
    assert_eq!(r.counts.drains, 12);
    assert_eq!(r.counts.drained_nodes, vec!["n0", "n1", "n2"]);
    assert_eq!(
        r.lagging.count + r.unseen.count + r.duplicates.delivery.count,
        0
    );
    let names: Vec<&str> = r.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["setup", "faults", "heal", "drain", "done"]);
}

#[test]
fn no_drain_is_invalid_with_a_reason() {
    let mut h = H::new();
    h.ok(1, "p1-0", 0, 0).consume(100, 0, &[(0, "p1-0")]);
    let r = h.check();
    assert!(!r.valid);
    assert_eq!(r.reasons, ["no final drain recorded"]);
    let empty = check(&[], &CheckOptions::default());
    assert!(!empty.valid);
    assert!(empty
        .reasons
        .contains(&"no final drain recorded".to_string()));
}

#[test]
fn failed_drain_is_invalid() {
    let mut h = clean(4);
    let op = Op::Drain {
        node: "n2".into(),
        broker: BROKER.into(),
        queue: 0,
        min_offset: 0,
        max_offset: 0,
        msgs: vec![],
    };
    h.push(HARNESS, EventType::Info, 0, op);
    let r = h.check();
    assert!(!r.valid);
    assert!(r.reasons[0].contains("drain of n2"), "{:?}", r.reasons);
}

#[test]
fn acked_value_missing_everywhere_is_lost() {
    let mut h = clean(8);
    // Acknowledged at queue 0 offset 2, beyond every drain (max 2) and never consumed.
    h.ok(1, "p1-lost", 0, 2);
    let r = h.check();
    assert_invalid_with(&r, "lost", 1);
    assert_eq!(r.lost.examples[0].value.as_deref(), Some("p1-lost"));
    assert_eq!(r.lost_on_node.count, 0);
    assert_eq!(r.inconsistent_offsets.count, 0);
}

#[test]
fn hole_on_one_replica_is_lost_on_node() {
    let mut h = H::new();
    h.ok(1, "a", 0, 0).ok(1, "b", 0, 1).ok(1, "c", 0, 2);
    h.drain("n0", 0, 0, 3, &[(0, "a"), (1, "b"), (2, "c")]);
    h.drain("n1", 0, 0, 3, &[(0, "a"), (1, "b"), (2, "c")]);
    h.drain("n2", 0, 0, 3, &[(0, "a"), (2, "c")]);
    let r = h.check();
    assert_invalid_with(&r, "lost-on-node", 1);
    assert_eq!(r.lost_on_node.examples[0].node.as_deref(), Some("n2"));
    assert_eq!(r.lost.count, 0);
    assert_eq!(r.inconsistent_offsets.holes.count, 1);
    assert_eq!(r.divergence.count, 0);
}

#[test]
fn value_never_sent_is_unexpected() {
    let mut h = clean(4);
    h.consume(100, 1, &[(1, "ghost")]);
    h.drain_all(1, 0, 2, &[(0, "p2-1"), (1, "ghost")]);
    let r = h.check();
    assert_invalid_with(&r, "unexpected", 1);
    assert_eq!(r.unexpected.examples[0].value.as_deref(), Some("ghost"));
}

#[test]
fn replicas_holding_different_values_diverge() {
    let mut h = H::new();
    h.ok(1, "a", 0, 0)
        .ok(1, "b", 0, 1)
        .ended(2, "x", EventType::Info);
    h.drain("n0", 0, 0, 2, &[(0, "a"), (1, "b")]);
    h.drain("n1", 0, 0, 2, &[(0, "a"), (1, "b")]);
    h.drain("n2", 0, 0, 2, &[(0, "a"), (1, "x")]);
    let r = h.check();
    assert_invalid_with(&r, "divergence", 1);
    assert_eq!(r.divergence.examples[0].pos, Some(pos(0, 1)));
    assert_eq!(r.inconsistent_offsets.conflicting.count, 1);
    assert_eq!(r.lost_on_node.count, 1);
    assert_eq!(r.unexpected.count, 0);
}

#[test]
fn a_shorter_replica_is_lagging_but_valid() {
    let mut h = H::new();
    h.ok(1, "a", 0, 0).ok(1, "b", 0, 1);
    h.drain("n0", 0, 0, 2, &[(0, "a"), (1, "b")]);
    h.drain("n1", 0, 0, 2, &[(0, "a"), (1, "b")]);
    h.drain("n2", 0, 0, 1, &[(0, "a")]);
    let r = h.check();
    assert!(r.valid, "{r:#?}");
    assert_eq!(r.lagging.count, 1);
    assert_eq!(r.lagging.examples[0].node.as_deref(), Some("n2"));
}

#[test]
fn consumer_reading_another_value_at_an_offset_is_inconsistent() {
    let mut h = clean(8);
    // p1-0 is stored at queue 0 offset 0; a consumer claims p1-4 (stored at 0/1) there.
    h.consume(101, 0, &[(0, "p1-4")]);
    let r = h.check();
    assert_invalid_with(&r, "inconsistent-offsets", 2);
    assert_eq!(r.inconsistent_offsets.conflicting.count, 1);
    assert_eq!(r.inconsistent_offsets.moved.count, 1);
}

#[test]
fn value_acked_at_one_offset_and_stored_at_another_is_inconsistent() {
    let mut h = H::new();
    h.ok(1, "a", 0, 0).ok(1, "b", 0, 7);
    h.drain_all(0, 0, 2, &[(0, "a"), (1, "b")]);
    let r = h.check();
    assert_invalid_with(&r, "inconsistent-offsets", 1);
    assert_eq!(r.inconsistent_offsets.moved.count, 1);
    assert_eq!(
        r.inconsistent_offsets.moved.examples[0].value.as_deref(),
        Some("b")
    );
}

#[test]
fn hole_in_a_drain_is_inconsistent() {
    let mut h = H::new();
    // Offset 1 holds an indeterminate send: n2 lacks it, which is a hole (not lost-on-node).
    h.ok(1, "a", 0, 0)
        .ended(1, "x", EventType::Info)
        .ok(1, "c", 0, 2);
    h.drain("n0", 0, 0, 3, &[(0, "a"), (1, "x"), (2, "c")]);
    h.drain("n1", 0, 0, 3, &[(0, "a"), (1, "x"), (2, "c")]);
    h.drain("n2", 0, 0, 3, &[(0, "a"), (2, "c")]);
    let r = h.check();
    assert_invalid_with(&r, "inconsistent-offsets", 1);
    assert_eq!(r.inconsistent_offsets.holes.count, 1);
    assert_eq!(r.lost_on_node.count + r.divergence.count, 0);
}

#[test]
fn out_of_order_drain_is_inconsistent() {
    let mut h = H::new();
    h.ok(1, "a", 0, 0).ok(1, "b", 0, 1).ok(1, "c", 0, 2);
    h.drain("n0", 0, 0, 3, &[(0, "a"), (2, "c"), (1, "b")]);
    let r = h.check();
    assert_invalid_with(&r, "inconsistent-offsets", 1);
    assert_eq!(r.inconsistent_offsets.disorder.count, 1);
}

#[test]
fn ordered_sends_stored_out_of_order_violate_order() {
    let mut h = H::new();
    h.ordered_ok(1, "k1", 0, "k1-p1-0", 3, 0);
    h.ordered_ok(1, "k1", 1, "k1-p1-1", 3, 2);
    h.ordered_ok(1, "k1", 2, "k1-p1-2", 3, 1);
    h.drain_all(3, 0, 3, &[(0, "k1-p1-0"), (1, "k1-p1-2"), (2, "k1-p1-1")]);
    let r = h.check();
    assert_invalid_with(&r, "order", 1);
    assert_eq!(
        r.order.violations.examples[0].value.as_deref(),
        Some("k1-p1-2")
    );
}

#[test]
fn ordered_send_retried_after_a_later_one_is_not_an_order_violation() {
    // seq 1 times out and is retried only after seq 2 was acknowledged: the producer itself
    // reordered them, so seq 1 landing after seq 2 is not the broker's doing.
    let mut h = H::new();
    h.ordered_ok(1, "k1", 0, "k1-p1-0", 3, 0);
    let k1 = Some(("k1", 1));
    let id = h.invoke(1, "k1-p1-1", k1);
    h.complete(id, 1, EventType::Info, "k1-p1-1", k1, None);
    h.ordered_ok(1, "k1", 2, "k1-p1-2", 3, 1);
    let id = h.invoke(1, "k1-p1-1", k1);
    h.complete(id, 1, EventType::Ok, "k1-p1-1", k1, Some(pos(3, 2)));
    h.drain_all(3, 0, 3, &[(0, "k1-p1-0"), (1, "k1-p1-2"), (2, "k1-p1-1")]);
    let r = h.check();
    assert!(r.valid, "{r:#?}");
    assert_eq!(r.order.violations.count, 0);
}

#[test]
fn ordered_key_split_over_queues_violates_order() {
    let mut h = H::new();
    h.ordered_ok(1, "k1", 0, "k1-p1-0", 3, 0);
    h.ordered_ok(1, "k1", 1, "k1-p1-1", 2, 0);
    h.drain_all(3, 0, 1, &[(0, "k1-p1-0")]);
    h.drain_all(2, 0, 1, &[(0, "k1-p1-1")]);
    let r = h.check();
    assert_invalid_with(&r, "order", 1);
    assert!(r.order.violations.examples[0].detail.contains("g/2,g/3"));
}

#[test]
fn consumer_rewinds_and_skips_are_informational() {
    let mut h = H::new();
    h.ok(1, "a", 0, 0)
        .ok(1, "b", 0, 1)
        .ok(1, "c", 0, 2)
        .ok(1, "d", 0, 3);
    h.ok(1, "e", 1, 0).ok(1, "f", 1, 1).ok(1, "g", 1, 2);
    // 200 re-reads 1 after 2: one rewind. 201 jumps 0 -> 3 over offsets 200 read: no skip.
    h.consume(
        200,
        0,
        &[(0, "a"), (1, "b"), (2, "c"), (1, "b"), (2, "c"), (3, "d")],
    );
    h.consume(201, 0, &[(0, "a"), (3, "d")]);
    // 202 jumps 0 -> 2 on queue 1 and nobody read offset 1: one poll skip.
    h.consume(202, 1, &[(0, "e"), (2, "g")]);
    h.drain_all(0, 0, 4, &[(0, "a"), (1, "b"), (2, "c"), (3, "d")]);
    h.drain_all(1, 0, 3, &[(0, "e"), (1, "f"), (2, "g")]);
    let r = h.check();
    assert!(r.valid, "{r:#?}");
    assert_eq!(r.order.rewinds.count, 1, "{:#?}", r.order);
    assert_eq!(r.order.poll_skips.count, 1, "{:#?}", r.order);
    assert_eq!(r.order.violations.count, 0);
    assert_eq!(r.duplicates.delivery.count, 4);
    assert_eq!(r.unseen.count, 1);
}

#[test]
fn rewinds_alone_keep_the_run_valid() {
    let mut h = clean(8);
    h.consume(100, 0, &[(0, "p1-0"), (1, "p1-4")]);
    let r = h.check();
    assert!(r.valid, "{r:#?}");
    assert_eq!(r.order.rewinds.count, 1);
    assert_eq!(r.duplicates.delivery.count, 2);
}

#[test]
fn duplicate_of_a_clean_send_is_broker_made() {
    let mut h = H::new();
    h.ok(1, "a", 0, 0).ok(1, "b", 0, 1);
    h.drain_all(0, 0, 3, &[(0, "a"), (1, "b"), (2, "a")]);
    let r = h.check();
    assert_invalid_with(&r, "broker-duplicates", 1);
    assert_eq!(r.duplicates.client_retry.count, 0);
}

#[test]
fn duplicate_after_a_timed_out_attempt_is_client_retry() {
    let mut h = H::new();
    h.ok(1, "a", 0, 0);
    let id = h.invoke(1, "b", None);
    h.complete(id, 1, EventType::Info, "b", None, None);
    let id = h.invoke(1, "b", None);
    h.complete(id, 1, EventType::Ok, "b", None, Some(pos(0, 2)));
    h.drain_all(0, 0, 3, &[(0, "a"), (1, "b"), (2, "b")]);
    let r = h.check();
    assert!(r.valid, "{r:#?}");
    assert_eq!(r.duplicates.client_retry.count, 1);
    assert_eq!(r.duplicates.broker_made.count, 0);
    assert_eq!(r.counts.sends_invoked, 3);
    assert_eq!(r.counts.values_sent, 2);
}

#[test]
fn timed_out_send_missing_from_the_log_is_not_lost() {
    let mut h = clean(4);
    h.ended(1, "p1-info", EventType::Info);
    h.invoke(2, "p2-pending", None);
    let r = h.check();
    assert!(r.valid, "{r:#?}");
    assert_eq!(r.lost.count, 0);
    assert_eq!(r.indeterminate.values, 2);
    assert_eq!(r.indeterminate.unrecovered, 2);
    assert_eq!(r.counts.sends_info, 1);
    assert_eq!(r.counts.sends_pending, 1);
}

#[test]
fn timed_out_send_found_in_the_log_is_recovered() {
    let mut h = H::new();
    h.ok(1, "a", 0, 0).ended(1, "b", EventType::Info);
    h.drain_all(0, 0, 2, &[(0, "a"), (1, "b")]);
    let r = h.check();
    assert!(r.valid, "{r:#?}");
    assert_eq!((r.indeterminate.values, r.indeterminate.recovered), (1, 1));
}

#[test]
fn failed_send_in_the_log_is_flagged_only_when_fails_are_definite() {
    let mut h = H::new();
    h.ok(1, "a", 0, 0).ended(1, "b", EventType::Fail);
    h.drain_all(0, 0, 2, &[(0, "a"), (1, "b")]);
    let lenient = h.check();
    assert!(lenient.valid, "{lenient:#?}");
    assert_eq!(lenient.indeterminate.values, 1);
    assert_eq!(lenient.indeterminate.failed_recovered, 1);
    let strict_opts = CheckOptions {
        fail_is_indeterminate: false,
        ..CheckOptions::default()
    };
    let strict = check(&h.events, &strict_opts);
    assert_invalid_with(&strict, "failed-but-present", 1);
    assert_eq!(strict.indeterminate.values, 0);
}

mod timing;
