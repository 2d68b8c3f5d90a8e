//! The history reorganised for checking: one record per sent value, the final drains
//! merged per replica and queue, consumer reads in order, acknowledgement times, fault
//! and phase events. Built once; every check reads it.

use std::collections::{BTreeMap, BTreeSet};

use crate::history::{Event, EventType, Op, Position, ReadMsg};

use super::{secs, Counts, PhaseTime};

/// One acknowledged attempt of a send.
#[derive(Debug, Clone)]
pub(super) struct Ack {
    /// When the ok arrived.
    pub t_ns: u64,
    /// When that attempt was invoked (if its invoke was recorded).
    pub invoke_ns: Option<u64>,
    /// Where the broker said it stored the value.
    pub pos: Option<Position>,
}

/// Everything recorded about one value's sends (all attempts).
#[derive(Debug, Clone, Default)]
pub(super) struct SendRecord {
    /// The producer that sent it (of its first event).
    pub process: u32,
    /// Ordering key, for ordered sends.
    pub key: Option<String>,
    /// Sequence within the key, for ordered sends.
    pub seq: Option<u64>,
    /// Invoke events.
    pub invokes: u64,
    /// Ok completions.
    pub acks: Vec<Ack>,
    /// Fail completions.
    pub fails: u64,
    /// Info completions.
    pub infos: u64,
    /// Invokes that never completed.
    pub pending: u64,
}

impl SendRecord {
    /// Acknowledged at least once.
    pub fn acked(&self) -> bool {
        !self.acks.is_empty()
    }

    /// Some attempt had an unclean outcome or the value was sent more than once, so the
    /// client itself may have stored it twice.
    pub fn retried_or_unclean(&self) -> bool {
        self.invokes > 1 || self.fails > 0 || self.infos > 0 || self.pending > 0
    }

    /// The position the broker acknowledged first, if any ack carried one.
    pub fn ack_pos(&self) -> Option<&Position> {
        self.acks.iter().find_map(|a| a.pos.as_ref())
    }
}

/// One replica's drain of one queue (all its drain events for that queue merged).
#[derive(Debug, Clone, Default)]
pub(super) struct Replica {
    /// Lowest min offset reported.
    pub min_offset: u64,
    /// Highest max offset reported.
    pub max_offset: u64,
    /// Values at each offset (more than one is a conflict within the replica).
    pub at: BTreeMap<u64, BTreeSet<String>>,
    /// Every value held.
    pub values: BTreeSet<String>,
}

impl Replica {
    /// The drain covers `offset` (it is neither purged nor beyond the end).
    pub fn covers(&self, offset: u64) -> bool {
        self.min_offset <= offset && offset < self.max_offset
    }
}

/// One drain event as recorded, for per-event contiguity checks.
#[derive(Debug, Clone)]
pub(super) struct DrainRef<'a> {
    pub node: &'a str,
    pub broker: &'a str,
    pub queue: u32,
    pub min_offset: u64,
    pub max_offset: u64,
    pub msgs: &'a [ReadMsg],
}

/// One consume event.
#[derive(Debug, Clone)]
pub(super) struct ConsumeRef<'a> {
    pub process: u32,
    pub broker: &'a str,
    pub msgs: &'a [ReadMsg],
}

/// A nemesis event.
#[derive(Debug, Clone)]
pub(super) struct NemesisRef<'a> {
    pub t_ns: u64,
    pub kind: EventType,
    pub op_id: u64,
    pub fault: &'a str,
    pub targets: &'a [String],
}

/// (broker, queue).
pub(super) type QueueKey = (String, u32);

/// The indexed history.
#[derive(Debug, Default)]
pub(super) struct Index<'a> {
    /// Per value, every send attempt.
    pub sends: BTreeMap<String, SendRecord>,
    /// Per (broker, queue), per replica, the merged drain.
    pub replicas: BTreeMap<QueueKey, BTreeMap<String, Replica>>,
    /// Drain events (ok) as recorded.
    pub drains: Vec<DrainRef<'a>>,
    /// Drain events that did not succeed, described.
    pub failed_drains: Vec<String>,
    /// Per value, every position it holds in any replica's drain.
    pub log_positions: BTreeMap<String, BTreeSet<Position>>,
    /// Consume events in history order.
    pub consumes: Vec<ConsumeRef<'a>>,
    /// Per value, how many times a consumer received it.
    pub consumed: BTreeMap<String, u64>,
    /// Send ok completion times, sorted.
    pub acks: Vec<u64>,
    /// Nemesis events in history order.
    pub nemesis: Vec<NemesisRef<'a>>,
    /// Phase boundaries (time, name) in history order.
    pub phases: Vec<(u64, &'a str)>,
    /// The last event's time.
    pub end_ns: u64,
    /// The last send event's time (invoke or completion).
    pub last_send_ns: u64,
    /// Successful commits.
    pub commits: u64,
    /// Send events by type: invoke, ok, fail, info.
    pub send_events: [u64; 4],
}

impl<'a> Index<'a> {
    /// Indexes `events` (in recorded order).
    pub fn build(events: &'a [Event]) -> Index<'a> {
        let mut idx = Index::default();
        // op_id -> (value, invoke time) of invokes not yet completed.
        let mut open: BTreeMap<u64, (String, u64)> = BTreeMap::new();
        for e in events {
            idx.end_ns = idx.end_ns.max(e.t_ns);
            match &e.op {
                Op::Send {
                    value,
                    key,
                    seq,
                    pos,
                    ..
                } => {
                    idx.last_send_ns = idx.last_send_ns.max(e.t_ns);
                    let rec = idx
                        .sends
                        .entry(value.clone())
                        .or_insert_with(|| SendRecord {
                            process: e.process,
                            key: key.clone(),
                            seq: *seq,
                            ..SendRecord::default()
                        });
                    let invoke_ns = if e.kind == EventType::Invoke {
                        None
                    } else {
                        open.remove(&e.op_id).map(|(_, t)| t)
                    };
                    match e.kind {
                        EventType::Invoke => {
                            rec.invokes += 1;
                            if e.op_id != 0 {
                                open.insert(e.op_id, (value.clone(), e.t_ns));
                            }
                            idx.send_events[0] += 1;
                        }
                        EventType::Ok => {
                            rec.acks.push(Ack {
                                t_ns: e.t_ns,
                                invoke_ns,
                                pos: pos.clone(),
                            });
                            idx.acks.push(e.t_ns);
                            idx.send_events[1] += 1;
                        }
                        EventType::Fail => {
                            rec.fails += 1;
                            idx.send_events[2] += 1;
                        }
                        EventType::Info => {
                            rec.infos += 1;
                            idx.send_events[3] += 1;
                        }
                    }
                }
                Op::Consume { broker, msgs } if e.kind == EventType::Ok => {
                    for m in msgs {
                        *idx.consumed.entry(m.value.clone()).or_default() += 1;
                    }
                    idx.consumes.push(ConsumeRef {
                        process: e.process,
                        broker,
                        msgs,
                    });
                }
                Op::Consume { .. } => {}
                Op::Commit { .. } => {
                    if e.kind == EventType::Ok {
                        idx.commits += 1;
                    }
                }
                Op::Drain {
                    node,
                    broker,
                    queue,
                    min_offset,
                    max_offset,
                    msgs,
                } => {
                    if e.kind != EventType::Ok {
                        idx.failed_drains.push(format!(
                            "drain of {node} {broker} queue {queue} ended {:?}",
                            e.kind
                        ));
                        continue;
                    }
                    idx.add_drain(DrainRef {
                        node,
                        broker,
                        queue: *queue,
                        min_offset: *min_offset,
                        max_offset: *max_offset,
                        msgs,
                    });
                }
                Op::Nemesis { fault, targets, .. } => idx.nemesis.push(NemesisRef {
                    t_ns: e.t_ns,
                    kind: e.kind,
                    op_id: e.op_id,
                    fault,
                    targets,
                }),
                Op::Phase { name } => idx.phases.push((e.t_ns, name)),
            }
        }
        for (_, (value, _)) in open {
            if let Some(rec) = idx.sends.get_mut(&value) {
                rec.pending += 1;
            }
        }
        idx.acks.sort_unstable();
        idx
    }

    /// Merges one drain event into the replica view and the value positions.
    fn add_drain(&mut self, d: DrainRef<'a>) {
        let rep = self
            .replicas
            .entry((d.broker.to_string(), d.queue))
            .or_default()
            .entry(d.node.to_string())
            .or_insert_with(|| Replica {
                min_offset: d.min_offset,
                max_offset: d.max_offset,
                ..Replica::default()
            });
        rep.min_offset = rep.min_offset.min(d.min_offset);
        rep.max_offset = rep.max_offset.max(d.max_offset);
        for m in d.msgs {
            // Keyed by the drained queue; a message of another queue is reported as
            // disorder by the per-event check.
            rep.at.entry(m.offset).or_default().insert(m.value.clone());
            rep.values.insert(m.value.clone());
            self.log_positions
                .entry(m.value.clone())
                .or_default()
                .insert(Position {
                    broker: d.broker.to_string(),
                    queue: d.queue,
                    offset: m.offset,
                });
        }
        self.drains.push(d);
    }

    /// Whether the value is in any drain or was consumed.
    pub fn seen(&self, value: &str) -> bool {
        self.log_positions.contains_key(value) || self.consumed.contains_key(value)
    }

    /// Every replica that was drained.
    pub fn drained_nodes(&self) -> BTreeSet<&str> {
        self.drains.iter().map(|d| d.node).collect()
    }

    /// Reasons the history cannot support a verdict.
    pub fn incomplete_reasons(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.drains.is_empty() {
            out.push("no final drain recorded".to_string());
        }
        out.extend(self.failed_drains.iter().cloned());
        if !self.sends.values().any(SendRecord::acked) {
            out.push("no send was acknowledged (nothing to check)".to_string());
        }
        out
    }

    /// Operation and value counts.
    pub fn counts(&self) -> Counts {
        let [invoked, ok, fail, info] = self.send_events;
        let values_sent = self.sends.values().filter(|r| r.invokes > 0).count();
        let values_acked = self.sends.values().filter(|r| r.acked()).count();
        let faults = self
            .nemesis
            .iter()
            .filter(|n| n.kind == EventType::Invoke)
            .count();
        Counts {
            sends_invoked: invoked,
            sends_ok: ok,
            sends_fail: fail,
            sends_info: info,
            sends_pending: self.sends.values().map(|r| r.pending).sum(),
            values_sent: values_sent as u64,
            values_acked: values_acked as u64,
            values_consumed: self.consumed.len() as u64,
            values_drained: self.log_positions.len() as u64,
            consume_events: self.consumes.len() as u64,
            commits: self.commits,
            drains: self.drains.len() as u64,
            drained_nodes: self.drained_nodes().into_iter().map(String::from).collect(),
            faults: faults as u64,
        }
    }

    /// Phase start times and durations.
    pub fn phase_times(&self) -> Vec<PhaseTime> {
        let mut phases = self.phases.clone();
        phases.sort_by_key(|(t, _)| *t);
        let ends = phases
            .iter()
            .skip(1)
            .map(|(t, _)| *t)
            .chain(std::iter::once(self.end_ns));
        phases
            .iter()
            .zip(ends)
            .map(|((t, name), end)| PhaseTime {
                name: name.to_string(),
                at_s: secs(*t),
                duration_s: secs(end.saturating_sub(*t)),
            })
            .collect()
    }
}
