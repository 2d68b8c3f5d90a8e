//! The checker: a pure function from a recorded history to [`Results`] (which become
//! `results.json`). It uses nothing but the history, so `jepsen-tests check <dir>` can
//! re-run it offline.
//!
//! Layout: `index` turns the events into per-value send records, per-replica drains and
//! consumer reads; `log` checks what the replicas hold (lost, lost-on-node, unexpected,
//! divergence, lagging, inconsistent offsets, duplicates, indeterminate sends); `order`
//! checks producer order per key and consumer offsets; `availability` measures the
//! longest gap between acknowledgements per fault window and the recovery after heal.
//! This file holds the result types and decides `valid`.
//!
//! Vocabulary follows Jepsen: `lost` (acknowledged, never read), `unexpected` (read,
//! never sent), `inconsistent-offsets`, `poll-skip`, `nonmonotonic-poll` (here `rewinds`),
//! `unseen` (in the log but never consumed). A timed-out send (`info`) is indeterminate,
//! never a failure: it is neither required nor forbidden in the log.

mod availability;
mod index;
mod log;
mod order;
#[cfg(test)]
mod tests;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::history::{Event, Position};

/// Examples kept per anomaly; counts are always exact.
pub const EXAMPLES_MAX: usize = 20;

/// How to judge a history.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckOptions {
    /// Treat a `fail` send completion like `info` (indeterminate). True by default: the
    /// client crate reports some errors as failures (a connection lost after the request
    /// was written, a timeout inside its retry loop) when the broker may still have
    /// stored the message. When false, a failed send found in the log is the
    /// `failed-but-present` anomaly.
    pub fail_is_indeterminate: bool,
    /// When set, a fault window whose longest gap between acknowledgements exceeds it
    /// makes the run invalid (`gap-exceeded`); otherwise availability is informational.
    pub max_gap: Option<Duration>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            fail_is_indeterminate: true,
            max_gap: None,
        }
    }
}

/// One instance of an anomaly, for humans: which value, replica and position, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// The message body involved, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The replica involved, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The position involved, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pos: Option<Position>,
    /// What is wrong, in words.
    pub detail: String,
}

/// An exact count and the first [`EXAMPLES_MAX`] examples.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    /// How many instances (exact).
    pub count: u64,
    /// The first few instances.
    pub examples: Vec<Example>,
}

impl Anomaly {
    /// Counts one instance, keeping it as an example while there is room.
    pub fn push(&mut self, example: Example) {
        self.count += 1;
        if self.examples.len() < EXAMPLES_MAX {
            self.examples.push(example);
        }
    }
}

/// The options a result was computed with (so `results.json` says how it was judged).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptionsUsed {
    /// See [`CheckOptions::fail_is_indeterminate`].
    pub fail_is_indeterminate: bool,
    /// See [`CheckOptions::max_gap`], in seconds.
    pub max_gap_s: Option<f64>,
}

/// Operation and value counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// Send invoke events (a retried value counts once per attempt).
    pub sends_invoked: u64,
    /// Send ok completions.
    pub sends_ok: u64,
    /// Send fail completions.
    pub sends_fail: u64,
    /// Send info (indeterminate) completions.
    pub sends_info: u64,
    /// Send invokes that never completed (the run ended first): indeterminate.
    pub sends_pending: u64,
    /// Distinct values with at least one send invoke.
    pub values_sent: u64,
    /// Distinct values with at least one ok.
    pub values_acked: u64,
    /// Distinct values in consume events.
    pub values_consumed: u64,
    /// Distinct values in the final drains.
    pub values_drained: u64,
    /// Consume events.
    pub consume_events: u64,
    /// Successful commit events.
    pub commits: u64,
    /// Drain events (ok).
    pub drains: u64,
    /// Replicas that were drained.
    pub drained_nodes: Vec<String>,
    /// Nemesis fault windows.
    pub faults: u64,
}

/// Inconsistent offsets, by kind; `count` is their sum.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InconsistentOffsets {
    /// Sum of the kinds below.
    pub count: u64,
    /// A (broker, queue, offset) read or acknowledged with more than one value.
    pub conflicting: Anomaly,
    /// A value stored once in the log but acknowledged or consumed at another position.
    pub moved: Anomaly,
    /// A drain whose messages are not contiguous from its min offset to its max offset.
    pub holes: Anomaly,
    /// A drain whose offsets go backwards or repeat, or that holds another queue's message.
    pub disorder: Anomaly,
}

/// Producer order (invalid) and consumer offset movement (informational).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OrderResults {
    /// Ordered sends of one producer and key whose acknowledged messages are not at
    /// strictly increasing offsets in sequence order on one queue. Invalidates the run.
    pub violations: Anomaly,
    /// A consumer read an offset at or below one it had read on that queue (Jepsen's
    /// nonmonotonic poll). Informational: rebalances and failovers re-deliver.
    pub rewinds: Anomaly,
    /// A consumer jumped over offsets no consumer ever read. Informational.
    pub poll_skips: Anomaly,
}

/// Log and delivery duplicates.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Duplicates {
    /// Values at 2+ log positions whose send was retried or had an indeterminate or failed
    /// attempt: the client may have stored it twice. Informational.
    pub client_retry: Anomaly,
    /// Values at 2+ log positions sent once with a clean outcome: the broker stored it
    /// twice. Invalidates the run.
    pub broker_made: Anomaly,
    /// Values consumed more than once (re-delivery). Informational.
    pub delivery: Anomaly,
}

/// Sends whose outcome the client did not know, and what the log says about them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Indeterminate {
    /// Values never acknowledged with an info completion or a send that never completed
    /// (and, when fails are indeterminate, a fail completion).
    pub values: u64,
    /// Of those, found in the log or read by a consumer ("info-recovered").
    pub recovered: u64,
    /// Of those, not found anywhere (they did not happen; not lost).
    pub unrecovered: u64,
    /// Values never acknowledged whose every completed attempt failed.
    pub failed_values: u64,
    /// Of those, found in the log or read by a consumer.
    pub failed_recovered: u64,
    /// Whether fails were judged as indeterminate (then `failed_but_present` stays 0).
    pub fail_is_indeterminate: bool,
    /// A send that definitely failed was found in the log. Invalidates the run.
    pub failed_but_present: Anomaly,
}

/// One fault window and the client-visible unavailability around it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultWindow {
    /// Fault name.
    pub fault: String,
    /// Nodes it touched.
    pub targets: Vec<String>,
    /// Start, seconds since the run started.
    pub start_s: f64,
    /// Heal, seconds since the run started.
    pub end_s: f64,
    /// What ended it: `ok`, `fail` or `info` (the nemesis completion), `heal-phase`, or
    /// `end-of-history`.
    pub ended_by: String,
    /// The longest stretch without a send acknowledgement from the window start until
    /// the first acknowledgement after the heal.
    pub longest_gap_s: f64,
    /// From the heal to the first acknowledgement after it; `None` if none came.
    pub recovery_s: Option<f64>,
}

/// Availability per fault window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Availability {
    /// Every fault window in start order.
    pub windows: Vec<FaultWindow>,
    /// Largest `longest_gap_s` over the windows.
    pub max_gap_s: f64,
    /// Largest `recovery_s` over the windows.
    pub max_recovery_s: f64,
    /// Windows with no acknowledgement after the heal.
    pub unrecovered: u64,
    /// Windows whose gap exceeded `max_gap` (only when it is set). Invalidates the run.
    pub gap_exceeded: Anomaly,
}

/// A phase boundary and how long the phase lasted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseTime {
    /// Phase name.
    pub name: String,
    /// When it began, seconds since the run started.
    pub at_s: f64,
    /// Until the next phase or the last event.
    pub duration_s: f64,
}

/// Everything the checker found; serialized as `results.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// True when no invalidating anomaly was found and the history is complete.
    pub valid: bool,
    /// Why the run is invalid, one line each (empty when valid).
    pub reasons: Vec<String>,
    /// How it was judged.
    pub options: Option<OptionsUsed>,
    /// Operation and value counts.
    pub counts: Counts,
    /// Acknowledged values found in no drain and no consume. Invalid.
    pub lost: Anomaly,
    /// Acknowledged values missing from a replica whose drain covers their position. Invalid.
    pub lost_on_node: Anomaly,
    /// Values read that were never sent. Invalid.
    pub unexpected: Anomaly,
    /// Positions where replicas hold different values. Invalid.
    pub divergence: Anomaly,
    /// Replicas whose drain ends before another's, or that have no drain of a queue
    /// another replica was drained for. Informational.
    pub lagging: Anomaly,
    /// Offsets that do not map to exactly one value, and non-contiguous drains. Invalid.
    pub inconsistent_offsets: InconsistentOffsets,
    /// Producer order (invalid) and consumer offsets (informational).
    pub order: OrderResults,
    /// Log and delivery duplicates.
    pub duplicates: Duplicates,
    /// Indeterminate and failed sends.
    pub indeterminate: Indeterminate,
    /// Acknowledged values in the log that no consumer read. Informational.
    pub unseen: Anomaly,
    /// Unavailability per fault.
    pub availability: Availability,
    /// Phase boundaries.
    pub phases: Vec<PhaseTime>,
}

impl Results {
    /// The invalidating anomaly counts in the order of the final line, named as there.
    pub fn tally(&self) -> Vec<(&'static str, u64)> {
        let mut t = vec![
            ("lost", self.lost.count),
            ("unexpected", self.unexpected.count),
            ("divergence", self.divergence.count),
            ("inconsistent-offsets", self.inconsistent_offsets.count),
            ("order", self.order.violations.count),
            ("broker-duplicates", self.duplicates.broker_made.count),
            ("lost-on-node", self.lost_on_node.count),
            (
                "failed-but-present",
                self.indeterminate.failed_but_present.count,
            ),
        ];
        if self.options.as_ref().is_some_and(|o| o.max_gap_s.is_some()) {
            t.push(("gap-exceeded", self.availability.gap_exceeded.count));
        }
        t
    }
}

/// Checks a history. Pure: same events, same result.
pub fn check(events: &[Event], opts: &CheckOptions) -> Results {
    let idx = index::Index::build(events);
    let mut r = Results {
        options: Some(OptionsUsed {
            fail_is_indeterminate: opts.fail_is_indeterminate,
            max_gap_s: opts.max_gap.map(|d| d.as_secs_f64()),
        }),
        counts: idx.counts(),
        phases: idx.phase_times(),
        ..Results::default()
    };
    r.lost = log::lost(&idx);
    r.lost_on_node = log::lost_on_node(&idx);
    r.unexpected = log::unexpected(&idx);
    r.divergence = log::divergence(&idx);
    r.lagging = log::lagging(&idx);
    r.inconsistent_offsets = log::inconsistent_offsets(&idx);
    r.duplicates = log::duplicates(&idx);
    r.indeterminate = log::indeterminate(&idx, opts.fail_is_indeterminate);
    r.unseen = log::unseen(&idx);
    r.order = OrderResults {
        violations: order::producer_order(&idx),
        rewinds: order::rewinds(&idx),
        poll_skips: order::poll_skips(&idx),
    };
    r.availability = availability::availability(&idx, opts.max_gap);
    r.reasons = reasons(&r, &idx);
    r.valid = r.reasons.is_empty();
    r
}

/// Why the run is invalid: an incomplete history first, then each nonzero anomaly.
fn reasons(r: &Results, idx: &index::Index) -> Vec<String> {
    let mut out = idx.incomplete_reasons();
    for (name, n) in r.tally() {
        if n > 0 {
            out.push(format!("{name}={n}"));
        }
    }
    out
}

/// Seconds from nanoseconds, rounded to the millisecond (what the report shows).
fn secs(ns: u64) -> f64 {
    (ns as f64 / 1e6).round() / 1e3
}
