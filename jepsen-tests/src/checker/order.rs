//! Order: acknowledged ordered sends of one producer and key must sit on one queue at
//! increasing offsets (invalid otherwise); consumer offsets per queue should only move
//! forward (rewinds and skips are informational, since rebalances legitimately cause them).

use std::collections::{BTreeMap, BTreeSet};

use crate::history::Position;

use super::index::{Index, SendRecord};
use super::{Anomaly, Example};

/// One acknowledged ordered send, placed in the log.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Placed {
    pub seq: u64,
    pub value: String,
    /// When the acknowledged attempt was invoked.
    pub invoke_ns: u64,
    /// When it was first acknowledged.
    pub ack_ns: u64,
    pub pos: Position,
}

/// Where an acknowledged value sits: at its acknowledged position if the log holds it
/// there, else its lowest log position; `None` if the log does not hold it (`lost`).
fn placement<'a>(rec: &'a SendRecord, stored: &'a BTreeSet<Position>) -> Option<&'a Position> {
    rec.acks
        .iter()
        .filter_map(|a| a.pos.as_ref())
        .find(|p| stored.contains(*p))
        .or_else(|| stored.first())
}

/// Acknowledged ordered sends grouped by (producer, key), sorted by sequence.
pub(super) fn ordered_groups(idx: &Index) -> BTreeMap<(u32, String), Vec<Placed>> {
    let mut groups: BTreeMap<(u32, String), Vec<Placed>> = BTreeMap::new();
    for (value, rec) in &idx.sends {
        let (Some(key), Some(seq), Some(ack)) = (&rec.key, rec.seq, rec.acks.first()) else {
            continue;
        };
        let Some(pos) = idx.log_positions.get(value).and_then(|s| placement(rec, s)) else {
            continue;
        };
        groups
            .entry((rec.process, key.clone()))
            .or_default()
            .push(Placed {
                seq,
                value: value.clone(),
                // Without a recorded invoke, assume it started when it was acknowledged
                // (checks more pairs, never fewer).
                invoke_ns: ack.invoke_ns.unwrap_or(ack.t_ns),
                ack_ns: ack.t_ns,
                pos: pos.clone(),
            });
    }
    for g in groups.values_mut() {
        g.sort_by(|a, b| (a.seq, &a.value).cmp(&(b.seq, &b.value)));
    }
    groups
}

/// Violations within one (producer, key) group: messages on more than one queue (one
/// instance for the group), or a later sequence at an offset not above an earlier one
/// that was acknowledged before the later was invoked (one instance per pair).
pub(super) fn group_violations(process: u32, key: &str, placed: &[Placed]) -> Vec<Example> {
    let queues: BTreeSet<(&str, u32)> = placed
        .iter()
        .map(|p| (p.pos.broker.as_str(), p.pos.queue))
        .collect();
    if queues.len() > 1 {
        let list = queues
            .iter()
            .map(|(b, q)| format!("{b}/{q}"))
            .collect::<Vec<_>>()
            .join(",");
        return vec![Example {
            value: None,
            node: None,
            pos: placed.first().map(|p| p.pos.clone()),
            detail: format!(
                "producer {process} key {key}: acknowledged sends landed on queues {list}"
            ),
        }];
    }
    placed
        .windows(2)
        .filter(|w| w[0].ack_ns <= w[1].invoke_ns && w[1].pos.offset <= w[0].pos.offset)
        .map(|w| Example {
            value: Some(w[1].value.clone()),
            node: None,
            pos: Some(w[1].pos.clone()),
            detail: format!(
                "producer {process} key {key}: seq {} at offset {} not after seq {} ({}) at offset {}",
                w[1].seq, w[1].pos.offset, w[0].seq, w[0].value, w[0].pos.offset
            ),
        })
        .collect()
}

/// Producer-order violations over all ordered sends.
pub(super) fn producer_order(idx: &Index) -> Anomaly {
    let mut a = Anomaly::default();
    for ((process, key), placed) in ordered_groups(idx) {
        for e in group_violations(process, &key, &placed) {
            a.push(e);
        }
    }
    a
}

/// (consumer process, broker, queue) -> offsets in the order it read them.
fn consumer_sequences<'a>(idx: &Index<'a>) -> BTreeMap<(u32, &'a str, u32), Vec<u64>> {
    let mut m: BTreeMap<(u32, &str, u32), Vec<u64>> = BTreeMap::new();
    for c in &idx.consumes {
        for msg in c.msgs {
            m.entry((c.process, c.broker, msg.queue))
                .or_default()
                .push(msg.offset);
        }
    }
    m
}

fn at(broker: &str, queue: u32, offset: u64) -> Position {
    Position {
        broker: broker.to_string(),
        queue,
        offset,
    }
}

/// A consumer reading an offset at or below the one before it on that queue.
pub(super) fn rewinds(idx: &Index) -> Anomaly {
    let mut a = Anomaly::default();
    for ((process, broker, queue), offsets) in consumer_sequences(idx) {
        for w in offsets.windows(2) {
            if w[1] <= w[0] {
                a.push(Example {
                    value: None,
                    node: None,
                    pos: Some(at(broker, queue, w[1])),
                    detail: format!("consumer {process} read offset {} after {}", w[1], w[0]),
                });
            }
        }
    }
    a
}

/// A consumer jumping forward over offsets that no consumer ever read.
pub(super) fn poll_skips(idx: &Index) -> Anomaly {
    let seqs = consumer_sequences(idx);
    let mut read: BTreeMap<(&str, u32), BTreeSet<u64>> = BTreeMap::new();
    for ((_, broker, queue), offsets) in &seqs {
        read.entry((broker, *queue))
            .or_default()
            .extend(offsets.iter().copied());
    }
    let mut a = Anomaly::default();
    for ((process, broker, queue), offsets) in &seqs {
        let Some(seen) = read.get(&(*broker, *queue)) else {
            continue;
        };
        for w in offsets.windows(2) {
            if w[1] <= w[0] + 1 {
                continue;
            }
            let gap = w[1] - w[0] - 1;
            let never = gap - seen.range(w[0] + 1..w[1]).count() as u64;
            if never > 0 {
                a.push(Example {
                    value: None,
                    node: None,
                    pos: Some(at(broker, *queue, w[0] + 1)),
                    detail: format!(
                        "consumer {process} jumped from offset {} to {}; {never} offsets between were never read",
                        w[0], w[1]
                    ),
                });
            }
        }
    }
    a
}
