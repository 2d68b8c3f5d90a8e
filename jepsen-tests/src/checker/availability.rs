//! Client-visible unavailability per fault: the longest stretch without a send
//! acknowledgement from a fault's start until the first acknowledgement after its heal,
//! and the recovery time from the heal to that acknowledgement.

use std::time::Duration;

use crate::history::EventType;

use super::index::{Index, NemesisRef};
use super::{secs, Availability, Example, FaultWindow};

/// A fault window in nanoseconds, before measurement.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Window {
    pub fault: String,
    pub targets: Vec<String>,
    pub start_ns: u64,
    pub end_ns: u64,
    pub ended_by: String,
}

/// Pairs fault starts (invoke) with their heals (any completion) by op id, or by fault
/// name when the op id is 0. A start never completed lasts until the first `heal` phase
/// after it, or the end of the history.
pub(super) fn windows(nemesis: &[NemesisRef], phases: &[(u64, &str)], end_ns: u64) -> Vec<Window> {
    let mut open: Vec<(&NemesisRef, usize)> = Vec::new();
    let mut out: Vec<Window> = Vec::new();
    for n in nemesis {
        if n.kind == EventType::Invoke {
            out.push(Window {
                fault: n.fault.to_string(),
                targets: n.targets.to_vec(),
                start_ns: n.t_ns,
                end_ns,
                ended_by: "end-of-history".into(),
            });
            open.push((n, out.len() - 1));
            continue;
        }
        let found = open.iter().position(|(s, _)| {
            if n.op_id != 0 {
                s.op_id == n.op_id
            } else {
                s.op_id == 0 && s.fault == n.fault
            }
        });
        if let Some(i) = found {
            let (_, w) = open.remove(i);
            out[w].end_ns = n.t_ns.max(out[w].start_ns);
            out[w].ended_by = format!("{:?}", n.kind).to_lowercase();
        }
    }
    for (_, w) in open {
        let start = out[w].start_ns;
        if let Some((t, _)) = phases
            .iter()
            .find(|(t, name)| *name == "heal" && *t >= start)
        {
            out[w].end_ns = *t;
            out[w].ended_by = "heal-phase".into();
        }
    }
    out.sort_by_key(|w| w.start_ns);
    out
}

/// (longest gap, recovery) for one window over sorted acknowledgement times. The gap
/// runs from the window start through every acknowledgement inside it to the first one
/// after the heal; with none after the heal it runs to `horizon` (the last send event)
/// and recovery is `None`.
pub(super) fn measure(acks: &[u64], start: u64, end: u64, horizon: u64) -> (u64, Option<u64>) {
    let first_inside = acks.partition_point(|&t| t <= start);
    let first_after = acks.partition_point(|&t| t <= end);
    let mut points = vec![start];
    points.extend_from_slice(&acks[first_inside..first_after.max(first_inside)]);
    let recovery = match acks.get(first_after) {
        Some(&t) => {
            points.push(t);
            Some(t - end)
        }
        None => {
            let last = points.last().copied().unwrap_or(start);
            points.push(horizon.max(last));
            None
        }
    };
    let gap = points.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    (gap, recovery)
}

/// Availability of every fault window; a gap over `max_gap` is `gap_exceeded`.
pub(super) fn availability(idx: &Index, max_gap: Option<Duration>) -> Availability {
    let mut a = Availability::default();
    for w in windows(&idx.nemesis, &idx.phases, idx.end_ns) {
        let (gap, recovery) = measure(&idx.acks, w.start_ns, w.end_ns, idx.last_send_ns);
        let fw = FaultWindow {
            fault: w.fault,
            targets: w.targets,
            start_s: secs(w.start_ns),
            end_s: secs(w.end_ns),
            ended_by: w.ended_by,
            longest_gap_s: secs(gap),
            recovery_s: recovery.map(secs),
        };
        a.max_gap_s = a.max_gap_s.max(fw.longest_gap_s);
        a.max_recovery_s = a.max_recovery_s.max(fw.recovery_s.unwrap_or(0.0));
        a.unrecovered += u64::from(fw.recovery_s.is_none());
        if let Some(limit) = max_gap {
            if u128::from(gap) > limit.as_nanos() {
                a.gap_exceeded.push(Example {
                    value: None,
                    node: None,
                    pos: None,
                    detail: format!(
                        "{} at {}s: no acknowledgement for {}s (limit {}s)",
                        fw.fault,
                        fw.start_s,
                        fw.longest_gap_s,
                        limit.as_secs_f64()
                    ),
                });
            }
        }
        a.windows.push(fw);
    }
    a
}
