//! Checks of what was stored: acknowledged values against the drains and reads (lost,
//! lost-on-node, unexpected, unseen), replicas against each other (divergence, lagging),
//! offsets against values (inconsistent offsets), duplicates, and indeterminate sends.

use std::collections::{BTreeMap, BTreeSet};

use crate::history::Position;

use super::index::{DrainRef, Index};
use super::{secs, Anomaly, Duplicates, Example, InconsistentOffsets, Indeterminate};

fn example(
    value: Option<&str>,
    node: Option<&str>,
    pos: Option<&Position>,
    detail: String,
) -> Example {
    Example {
        value: value.map(String::from),
        node: node.map(String::from),
        pos: pos.cloned(),
        detail,
    }
}

fn show(pos: &Position) -> String {
    format!("{}/{}@{}", pos.broker, pos.queue, pos.offset)
}

/// Acknowledged values that no drain holds and no consumer read.
pub(super) fn lost(idx: &Index) -> Anomaly {
    let mut a = Anomaly::default();
    for (value, rec) in &idx.sends {
        if rec.acked() && !idx.seen(value) {
            let t = rec.acks.first().map_or(0, |k| k.t_ns);
            let at = rec.ack_pos().map(show).unwrap_or_else(|| "?".into());
            a.push(example(
                Some(value),
                None,
                rec.ack_pos(),
                format!(
                    "acknowledged at {}s at {at}, in no drain and no consume",
                    secs(t)
                ),
            ));
        }
    }
    a
}

/// Acknowledged values absent from a replica whose drain covers their position. Values
/// seen nowhere are `lost` instead and not counted again here.
pub(super) fn lost_on_node(idx: &Index) -> Anomaly {
    let mut a = Anomaly::default();
    for (value, rec) in &idx.sends {
        if !rec.acked() || !idx.seen(value) {
            continue;
        }
        let Some(pos) = rec
            .ack_pos()
            .or_else(|| idx.log_positions.get(value).and_then(|p| p.first()))
        else {
            continue;
        };
        let Some(reps) = idx.replicas.get(&(pos.broker.clone(), pos.queue)) else {
            continue;
        };
        for (node, rep) in reps {
            if rep.covers(pos.offset) && !rep.values.contains(value) {
                a.push(example(
                    Some(value),
                    Some(node),
                    Some(pos),
                    format!(
                        "{node} holds offsets {}..{} of {}/{} but not this acknowledged value",
                        rep.min_offset, rep.max_offset, pos.broker, pos.queue
                    ),
                ));
            }
        }
    }
    a
}

/// Values read (drained or consumed) that no send ever invoked.
pub(super) fn unexpected(idx: &Index) -> Anomaly {
    let mut a = Anomaly::default();
    let read: BTreeSet<&String> = idx
        .log_positions
        .keys()
        .chain(idx.consumed.keys())
        .collect();
    for value in read {
        if idx.sends.get(value).is_none_or(|r| r.invokes == 0) {
            let pos = idx.log_positions.get(value).and_then(|p| p.first());
            a.push(example(
                Some(value),
                None,
                pos,
                "read but never sent".into(),
            ));
        }
    }
    a
}

/// Acknowledged values in the log that no consumer read (Jepsen's "unseen").
pub(super) fn unseen(idx: &Index) -> Anomaly {
    let mut a = Anomaly::default();
    for (value, rec) in &idx.sends {
        if rec.acked() && idx.log_positions.contains_key(value) && !idx.consumed.contains_key(value)
        {
            a.push(example(
                Some(value),
                None,
                rec.ack_pos(),
                "never consumed".into(),
            ));
        }
    }
    a
}

/// Positions where two replicas hold different values.
pub(super) fn divergence(idx: &Index) -> Anomaly {
    let mut a = Anomaly::default();
    for ((broker, queue), reps) in &idx.replicas {
        let offsets: BTreeSet<u64> = reps.values().flat_map(|r| r.at.keys().copied()).collect();
        for offset in offsets {
            let held: Vec<(&String, &BTreeSet<String>)> = reps
                .iter()
                .filter_map(|(n, r)| r.at.get(&offset).map(|v| (n, v)))
                .collect();
            if held.windows(2).any(|w| w[0].1 != w[1].1) {
                let detail = held
                    .iter()
                    .map(|(n, v)| format!("{n}={}", join(v)))
                    .collect::<Vec<_>>()
                    .join(" ");
                let pos = Position {
                    broker: broker.clone(),
                    queue: *queue,
                    offset,
                };
                a.push(example(
                    None,
                    None,
                    Some(&pos),
                    format!("replicas disagree: {detail}"),
                ));
            }
        }
    }
    a
}

fn join(values: &BTreeSet<String>) -> String {
    values.iter().cloned().collect::<Vec<_>>().join(",")
}

/// Replicas whose drain of a queue ends before another replica's, or that were not
/// drained for a queue another replica was drained for. Informational.
pub(super) fn lagging(idx: &Index) -> Anomaly {
    let mut a = Anomaly::default();
    let nodes = idx.drained_nodes();
    for ((broker, queue), reps) in &idx.replicas {
        let top = reps.values().map(|r| r.max_offset).max().unwrap_or(0);
        for node in &nodes {
            let detail = match reps.get(*node) {
                None => format!("no drain of {broker}/{queue}"),
                Some(r) if r.max_offset < top => {
                    format!("{broker}/{queue} ends at {} < {top}", r.max_offset)
                }
                Some(_) => continue,
            };
            a.push(example(None, Some(node), None, detail));
        }
    }
    a
}

/// Offsets that map to more than one value, values stored once but claimed elsewhere,
/// and drains that are not contiguous and in order.
pub(super) fn inconsistent_offsets(idx: &Index) -> InconsistentOffsets {
    let mut r = InconsistentOffsets {
        conflicting: conflicting(idx),
        moved: moved(idx),
        ..InconsistentOffsets::default()
    };
    for d in &idx.drains {
        drain_shape(d, &mut r.holes, &mut r.disorder);
    }
    r.count = r.conflicting.count + r.moved.count + r.holes.count + r.disorder.count;
    r
}

/// Every (position, value) claim: drained, consumed, or acknowledged.
fn claims<'a>(idx: &'a Index) -> BTreeMap<Position, BTreeSet<&'a str>> {
    let mut m: BTreeMap<Position, BTreeSet<&str>> = BTreeMap::new();
    for (value, positions) in &idx.log_positions {
        for p in positions {
            m.entry(p.clone()).or_default().insert(value);
        }
    }
    for c in &idx.consumes {
        for msg in c.msgs {
            let p = Position {
                broker: c.broker.to_string(),
                queue: msg.queue,
                offset: msg.offset,
            };
            m.entry(p).or_default().insert(&msg.value);
        }
    }
    for (value, rec) in &idx.sends {
        for p in rec.acks.iter().filter_map(|k| k.pos.as_ref()) {
            m.entry(p.clone()).or_default().insert(value);
        }
    }
    m
}

fn conflicting(idx: &Index) -> Anomaly {
    let mut a = Anomaly::default();
    for (pos, values) in claims(idx) {
        if values.len() > 1 {
            let list = values.into_iter().collect::<Vec<_>>().join(",");
            a.push(example(
                None,
                None,
                Some(&pos),
                format!("one offset, several values: {list}"),
            ));
        }
    }
    a
}

/// Values stored at exactly one log position but acknowledged or consumed at another.
fn moved(idx: &Index) -> Anomaly {
    let mut claimed: BTreeMap<&str, BTreeSet<Position>> = BTreeMap::new();
    for (value, rec) in &idx.sends {
        for p in rec.acks.iter().filter_map(|k| k.pos.as_ref()) {
            claimed.entry(value).or_default().insert(p.clone());
        }
    }
    for c in &idx.consumes {
        for msg in c.msgs {
            claimed.entry(&msg.value).or_default().insert(Position {
                broker: c.broker.to_string(),
                queue: msg.queue,
                offset: msg.offset,
            });
        }
    }
    let mut a = Anomaly::default();
    for (value, positions) in &idx.log_positions {
        let (Some(stored), 1) = (positions.first(), positions.len()) else {
            continue;
        };
        let Some(elsewhere) = claimed.get(value.as_str()) else {
            continue;
        };
        let other: Vec<String> = elsewhere
            .iter()
            .filter(|p| *p != stored)
            .map(show)
            .collect();
        if !other.is_empty() {
            a.push(example(
                Some(value),
                None,
                Some(stored),
                format!(
                    "stored at {} but acknowledged/consumed at {}",
                    show(stored),
                    other.join(",")
                ),
            ));
        }
    }
    a
}

/// A drain must list offsets min..max, each once, in order, all of its own queue.
fn drain_shape(d: &DrainRef, holes: &mut Anomaly, disorder: &mut Anomaly) {
    let at = |offset| Position {
        broker: d.broker.to_string(),
        queue: d.queue,
        offset,
    };
    let mut prev: Option<u64> = None;
    let mut present = BTreeSet::new();
    for m in d.msgs {
        let problem = if m.queue != d.queue {
            Some(format!("holds a message of queue {}", m.queue))
        } else if prev.is_some_and(|p| m.offset <= p) {
            Some(format!("offset {} after {}", m.offset, prev.unwrap_or(0)))
        } else if m.offset < d.min_offset || m.offset >= d.max_offset {
            Some(format!("offset outside {}..{}", d.min_offset, d.max_offset))
        } else {
            None
        };
        if let Some(p) = problem {
            disorder.push(example(
                Some(&m.value),
                Some(d.node),
                Some(&at(m.offset)),
                p,
            ));
        }
        prev = Some(prev.map_or(m.offset, |p| p.max(m.offset)));
        present.insert(m.offset);
    }
    for (from, to) in missing_ranges(d.min_offset, d.max_offset, &present) {
        holes.push(example(
            None,
            Some(d.node),
            Some(&at(from)),
            format!(
                "offsets {from}..{to} missing from a drain of {}..{}",
                d.min_offset, d.max_offset
            ),
        ));
    }
}

/// Maximal runs `[from, to)` inside `[min, max)` with no offset in `present`.
pub(super) fn missing_ranges(min: u64, max: u64, present: &BTreeSet<u64>) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut next = min;
    for &o in present.range(min..max) {
        if o > next {
            out.push((next, o));
        }
        next = o + 1;
    }
    if next < max {
        out.push((next, max));
    }
    out
}

/// Values stored at two or more log positions, split by whether the client retried, and
/// values consumed more than once.
pub(super) fn duplicates(idx: &Index) -> Duplicates {
    let mut d = Duplicates::default();
    for (value, positions) in &idx.log_positions {
        if positions.len() < 2 {
            continue;
        }
        // A value never sent is `unexpected`; it is not judged again here.
        let Some(rec) = idx.sends.get(value) else {
            continue;
        };
        let list = positions.iter().map(show).collect::<Vec<_>>().join(",");
        let detail = format!(
            "stored {} times ({list}); {} invokes, {} ok, {} fail, {} info, {} pending",
            positions.len(),
            rec.invokes,
            rec.acks.len(),
            rec.fails,
            rec.infos,
            rec.pending
        );
        let target = if rec.retried_or_unclean() {
            &mut d.client_retry
        } else {
            &mut d.broker_made
        };
        target.push(example(Some(value), None, positions.first(), detail));
    }
    for (value, n) in &idx.consumed {
        if *n > 1 {
            d.delivery.push(example(
                Some(value),
                None,
                None,
                format!("consumed {n} times"),
            ));
        }
    }
    d
}

/// Unacknowledged sends: indeterminate ones and whether they took effect; definitely
/// failed ones found in the log (`failed-but-present`) unless fails are indeterminate.
pub(super) fn indeterminate(idx: &Index, fail_is_indeterminate: bool) -> Indeterminate {
    let mut r = Indeterminate {
        fail_is_indeterminate,
        ..Indeterminate::default()
    };
    for (value, rec) in &idx.sends {
        if rec.acked() || rec.invokes == 0 {
            continue;
        }
        let present = idx.seen(value);
        let only_failed = rec.fails > 0 && rec.infos == 0 && rec.pending == 0;
        if only_failed {
            r.failed_values += 1;
            r.failed_recovered += u64::from(present);
        }
        if only_failed && !fail_is_indeterminate {
            if present {
                let pos = idx.log_positions.get(value).and_then(|p| p.first());
                r.failed_but_present.push(example(
                    Some(value),
                    None,
                    pos,
                    format!("every attempt failed ({}), yet it was read", rec.fails),
                ));
            }
            continue;
        }
        r.values += 1;
        if present {
            r.recovered += 1;
        } else {
            r.unrecovered += 1;
        }
    }
    r
}
