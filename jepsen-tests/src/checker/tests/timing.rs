//! Availability measurement, limits on examples, the results format, and properties over
//! altered clean histories.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use proptest::prelude::*;

use super::{assert_invalid_with, clean, H};
use crate::checker::{availability, check, log, CheckOptions, Results, EXAMPLES_MAX};
use crate::history::{Event, EventType, Op};

/// Acks every 100 ms from 0 to 10 s except 3.0..6.0 s, at consecutive offsets of queue 0
/// (drained from three replicas); a fault from 2.5 s healed at 5 s.
fn outage() -> H {
    let mut h = H::new();
    let mut stored: Vec<(u64, String)> = Vec::new();
    for i in 0..100u64 {
        if i == 25 {
            h.at(2_500).fault("kill-leader", EventType::Invoke, 9_001);
        }
        if i == 50 {
            h.at(5_000).fault("kill-leader", EventType::Ok, 9_001);
        }
        if (30..60).contains(&i) {
            continue;
        }
        let value = format!("v{i}");
        let offset = stored.len() as u64;
        h.at(i * 100).ok(1, &value, 0, offset);
        stored.push((offset, value));
    }
    let l: Vec<(u64, &str)> = stored.iter().map(|(o, v)| (*o, v.as_str())).collect();
    h.drain_all(0, 0, l.len() as u64, &l);
    h
}

#[test]
fn gap_and_recovery_are_measured_per_fault() {
    let r = outage().check();
    assert!(r.valid, "{r:#?}");
    let w = &r.availability.windows;
    assert_eq!(w.len(), 1, "{w:#?}");
    assert_eq!(w[0].fault, "kill-leader");
    assert_eq!(w[0].targets, ["n1"]);
    assert_eq!(w[0].ended_by, "ok");
    // Last ack before the outage at 2.902 s, the next at 6.002 s.
    assert_eq!((w[0].start_s, w[0].end_s), (2.501, 5.001));
    assert_eq!(w[0].longest_gap_s, 3.1);
    assert_eq!(w[0].recovery_s, Some(1.001));
    assert_eq!(r.availability.max_gap_s, 3.1);
    assert_eq!(r.availability.max_recovery_s, 1.001);
    assert_eq!(r.availability.unrecovered, 0);
    assert_eq!(r.counts.faults, 1);
}

#[test]
fn gap_over_the_limit_is_invalid_when_asked() {
    let h = outage();
    let opts = CheckOptions {
        max_gap: Some(Duration::from_secs(2)),
        ..CheckOptions::default()
    };
    let r = check(&h.events, &opts);
    assert_invalid_with(&r, "gap-exceeded", 1);
    assert_eq!(r.reasons, ["gap-exceeded=1"]);
    let opts = CheckOptions {
        max_gap: Some(Duration::from_secs(4)),
        ..CheckOptions::default()
    };
    let r = check(&h.events, &opts);
    assert!(r.valid, "{:?}", r.reasons);
    assert!(r.tally().iter().any(|(k, _)| *k == "gap-exceeded"));
}

#[test]
fn unhealed_fault_ends_at_the_heal_phase() {
    let mut h = H::new();
    h.at(0).ok(1, "a", 0, 0);
    h.at(1_000).fault("pause-leader", EventType::Invoke, 0);
    h.at(3_000).phase("heal");
    h.at(3_500).ok(1, "b", 0, 1);
    h.drain_all(0, 0, 2, &[(0, "a"), (1, "b")]);
    let r = h.check();
    let w = &r.availability.windows[0];
    assert_eq!(w.ended_by, "heal-phase");
    assert_eq!(w.end_s, 3.001);
    assert_eq!(w.recovery_s, Some(0.501));
    assert_eq!(w.longest_gap_s, 2.501);
}

#[test]
fn examples_are_capped_but_counts_exact() {
    let mut h = clean(4);
    for i in 0..30 {
        h.ok(1, &format!("gone-{i}"), 3, 100 + i);
    }
    let r = h.check();
    assert_eq!(r.lost.count, 30);
    assert_eq!(r.lost.examples.len(), EXAMPLES_MAX);
}

#[test]
fn missing_ranges_are_maximal_runs() {
    let present = [0u64, 1, 4, 5, 9].into_iter().collect();
    assert_eq!(log::missing_ranges(0, 10, &present), [(2, 4), (6, 9)]);
    assert_eq!(
        log::missing_ranges(0, 12, &present),
        [(2, 4), (6, 9), (10, 12)]
    );
    assert!(log::missing_ranges(4, 6, &present).is_empty());
}

#[test]
fn gap_runs_to_the_horizon_when_nothing_is_acknowledged_after_the_heal() {
    let (gap, rec) = availability::measure(&[1, 2, 10], 3, 5, 20);
    assert_eq!((gap, rec), (7, Some(5)));
    let (gap, rec) = availability::measure(&[1, 2], 3, 5, 20);
    assert_eq!((gap, rec), (17, None));
    let (gap, _) = availability::measure(&[1, 4, 5, 6], 3, 5, 20);
    assert_eq!(gap, 1);
}

#[test]
fn results_json_has_the_documented_fields() {
    let r = clean(4).check();
    let v = serde_json::to_value(&r).unwrap();
    for k in [
        "valid",
        "reasons",
        "options",
        "counts",
        "lost",
        "lost_on_node",
        "unexpected",
        "divergence",
        "lagging",
        "inconsistent_offsets",
        "order",
        "duplicates",
        "indeterminate",
        "unseen",
        "availability",
        "phases",
    ] {
        assert!(v.get(k).is_some(), "missing {k}");
    }
    assert_eq!(v["lost"]["count"], 0);
    assert!(v["duplicates"]["broker_made"]["examples"].is_array());
    let back: Results = serde_json::from_value(v).unwrap();
    assert_eq!((back.valid, &back.counts), (r.valid, &r.counts));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Consume events may arrive in any order: a clean history stays valid (the seed is
    /// printed by proptest on failure).
    #[test]
    fn shuffled_consumes_stay_valid(n in 1u64..40, seed in any::<u64>()) {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        let h = clean(n);
        let mut events = h.events.clone();
        let consume_ix: Vec<usize> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| matches!(e.op, Op::Consume { .. }))
            .map(|(i, _)| i)
            .collect();
        let mut shuffled: Vec<Event> = consume_ix.iter().map(|&i| events[i].clone()).collect();
        shuffled.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        for (&i, e) in consume_ix.iter().zip(shuffled) {
            events[i] = e;
        }
        let r = check(&events, &CheckOptions::default());
        prop_assert!(r.valid, "{:?}", r.reasons);
    }

    /// Removing any acknowledged value from every read makes the run invalid as lost.
    #[test]
    fn erasing_any_acked_value_is_lost(n in 1u64..40, pick in any::<prop::sample::Index>()) {
        let h = clean(n);
        let victim = format!("p{}-{}", pick.index(n as usize) % 2 + 1, pick.index(n as usize));
        let mut events = h.events.clone();
        for e in &mut events {
            if let Op::Consume { msgs, .. } | Op::Drain { msgs, .. } = &mut e.op {
                msgs.retain(|m| m.value != victim);
            }
        }
        let r = check(&events, &CheckOptions::default());
        prop_assert!(!r.valid);
        prop_assert_eq!(r.lost.count, 1);
    }
}
