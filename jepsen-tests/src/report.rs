//! The report of one run, written next to its `history.jsonl`: `results.json` (the
//! checker's [`Results`], pretty), `summary.txt` (the same for humans, ending with the
//! [`final_line`]), and two plots with the fault windows shaded: `latency.svg` and
//! `throughput.svg`.

mod plot;

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

use crate::checker::{check, Anomaly, CheckOptions, Results};
use crate::history::{read_history, Event};

/// Checks `dir/history.jsonl` and rewrites the report files next to it (what
/// `jepsen-tests check <dir>` does).
pub fn check_dir(dir: &Path, opts: &CheckOptions) -> anyhow::Result<Results> {
    let events = read_history(&dir.join("history.jsonl"))?;
    let results = check(&events, opts);
    write_report(dir, &events, &results)?;
    Ok(results)
}

/// Writes `results.json`, `summary.txt`, `latency.svg` and `throughput.svg` into `dir`.
pub fn write_report(dir: &Path, events: &[Event], results: &Results) -> anyhow::Result<()> {
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    let json = serde_json::to_string_pretty(results).context("cannot serialize the results")?;
    write("results.json", &(json + "\n"))?;
    write("summary.txt", &summary(results))?;
    plot::latency(&dir.join("latency.svg"), events, results)?;
    plot::throughput(&dir.join("throughput.svg"), events, results)?;
    Ok(())
}

/// The verdict line: `valid: true`, or `valid: false (lost=0 unexpected=0 ...)` with every
/// invalidating count and then any reason the history is incomplete.
pub fn final_line(results: &Results) -> String {
    if results.valid {
        return "valid: true".to_string();
    }
    let tally = results.tally();
    let counts: Vec<String> = tally.iter().map(|(k, n)| format!("{k}={n}")).collect();
    let other: Vec<&str> = results
        .reasons
        .iter()
        .filter(|r| !counts.contains(r))
        .map(String::as_str)
        .collect();
    let mut line = format!("valid: false ({}", counts.join(" "));
    if !other.is_empty() {
        line.push_str("; ");
        line.push_str(&other.join("; "));
    }
    line.push(')');
    line
}

/// The human summary: counts, phases, each anomaly with examples, the availability
/// table, and the final line.
pub fn summary(r: &Results) -> String {
    let mut s = String::new();
    let c = &r.counts;
    let _ = writeln!(s, "jepsen-tests results");
    if let Some(o) = &r.options {
        let gap = o.max_gap_s.map_or("none".to_string(), |g| format!("{g}s"));
        let _ = writeln!(
            s,
            "options: fail_is_indeterminate={} max_gap={gap}",
            o.fail_is_indeterminate
        );
    }
    let _ = writeln!(
        s,
        "\nsends: {} invoked, {} ok, {} fail, {} info, {} never completed",
        c.sends_invoked, c.sends_ok, c.sends_fail, c.sends_info, c.sends_pending
    );
    let _ = writeln!(
        s,
        "values: {} sent, {} acknowledged, {} consumed, {} drained",
        c.values_sent, c.values_acked, c.values_consumed, c.values_drained
    );
    let _ = writeln!(
        s,
        "reads: {} consume events, {} commits, {} drain events from [{}]; {} faults",
        c.consume_events,
        c.commits,
        c.drains,
        c.drained_nodes.join(", "),
        c.faults
    );
    if !r.phases.is_empty() {
        let _ = writeln!(s, "\nphases:");
        for p in &r.phases {
            let _ = writeln!(
                s,
                "  {:<10} at {:>9.3}s  for {:>9.3}s",
                p.name, p.at_s, p.duration_s
            );
        }
    }
    let _ = writeln!(s, "\nanomalies (each nonzero one makes the run invalid):");
    let io = &r.inconsistent_offsets;
    let ind = &r.indeterminate;
    let mut invalid: Vec<(&str, &Anomaly)> = vec![
        ("lost", &r.lost),
        ("lost-on-node", &r.lost_on_node),
        ("unexpected", &r.unexpected),
        ("divergence", &r.divergence),
        ("inconsistent-offsets: conflicting", &io.conflicting),
        ("inconsistent-offsets: moved", &io.moved),
        ("inconsistent-offsets: holes", &io.holes),
        ("inconsistent-offsets: disorder", &io.disorder),
        ("order (producer)", &r.order.violations),
        ("broker-made duplicates", &r.duplicates.broker_made),
        ("failed-but-present", &ind.failed_but_present),
    ];
    if r.options.as_ref().is_some_and(|o| o.max_gap_s.is_some()) {
        invalid.push(("gap-exceeded", &r.availability.gap_exceeded));
    }
    for (name, a) in invalid {
        anomaly(&mut s, name, a, EXAMPLES_INVALID);
    }
    let _ = writeln!(s, "\ninformational:");
    for (name, a) in [
        ("lagging replicas", &r.lagging),
        ("client-retry duplicates", &r.duplicates.client_retry),
        ("delivery duplicates", &r.duplicates.delivery),
        ("rewinds (nonmonotonic poll)", &r.order.rewinds),
        ("poll skips", &r.order.poll_skips),
        ("unseen (in the log, never consumed)", &r.unseen),
    ] {
        anomaly(&mut s, name, a, EXAMPLES_INFO);
    }
    let _ = writeln!(
        s,
        "  indeterminate sends: {} values, {} found in the log (info-recovered), {} not",
        ind.values, ind.recovered, ind.unrecovered
    );
    let judged = if ind.fail_is_indeterminate {
        "judged indeterminate"
    } else {
        "judged definite"
    };
    let _ = writeln!(
        s,
        "  failed sends ({judged}): {} values, {} found in the log",
        ind.failed_values, ind.failed_recovered
    );
    availability(&mut s, r);
    if !r.valid {
        let _ = writeln!(s, "\nreasons:");
        for reason in &r.reasons {
            let _ = writeln!(s, "  {reason}");
        }
    }
    let _ = writeln!(s, "\n{}", final_line(r));
    s
}

/// Examples shown in the summary for an invalidating anomaly (all that were kept).
const EXAMPLES_INVALID: usize = crate::checker::EXAMPLES_MAX;
/// Examples shown for an informational one (`results.json` has more).
const EXAMPLES_INFO: usize = 5;

fn anomaly(s: &mut String, name: &str, a: &Anomaly, shown: usize) {
    let _ = writeln!(s, "  {name}: {}", a.count);
    let shown = shown.min(a.examples.len());
    for e in &a.examples[..shown] {
        let mut tags = Vec::new();
        if let Some(v) = &e.value {
            tags.push(format!("value {v}"));
        }
        if let Some(n) = &e.node {
            tags.push(format!("node {n}"));
        }
        if let Some(p) = &e.pos {
            tags.push(format!("at {}/{}@{}", p.broker, p.queue, p.offset));
        }
        let _ = writeln!(s, "    - {} [{}]", e.detail, tags.join(", "));
    }
    if a.count > shown as u64 {
        let _ = writeln!(s, "    ... and {} more", a.count - shown as u64);
    }
}

fn availability(s: &mut String, r: &Results) {
    let a = &r.availability;
    let _ = writeln!(
        s,
        "\navailability (seconds; gap = longest time without a send ack):"
    );
    if a.windows.is_empty() {
        let _ = writeln!(s, "  no faults");
        return;
    }
    let _ = writeln!(
        s,
        "  {:<24} {:>9} {:>9}  {:<14} {:>9} {:>9}  targets",
        "fault", "start", "end", "ended by", "gap", "recovery"
    );
    for w in &a.windows {
        let rec = w
            .recovery_s
            .map_or("never".to_string(), |x| format!("{x:.3}"));
        let _ = writeln!(
            s,
            "  {:<24} {:>9.3} {:>9.3}  {:<14} {:>9.3} {:>9}  {}",
            w.fault,
            w.start_s,
            w.end_s,
            w.ended_by,
            w.longest_gap_s,
            rec,
            w.targets.join(",")
        );
    }
    let _ = writeln!(
        s,
        "  max gap {:.3}s, max recovery {:.3}s, {} window(s) with no ack after the heal",
        a.max_gap_s, a.max_recovery_s, a.unrecovered
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::history::{write_events, EventType, Op, Position, ReadMsg, HARNESS, NEMESIS};

    fn ev(t_ms: u64, process: u32, kind: EventType, op_id: u64, op: Op) -> Event {
        Event {
            t_ns: t_ms * 1_000_000,
            process,
            kind,
            op_id,
            op,
        }
    }

    fn send(value: &str, offset: Option<u64>) -> Op {
        Op::Send {
            value: value.into(),
            key: None,
            seq: None,
            pos: offset.map(|offset| Position {
                broker: "g".into(),
                queue: 0,
                offset,
            }),
            error: None,
        }
    }

    /// Sends every 50 ms for 4 s with a partition from 1 s to 2 s (no acks inside it),
    /// one timed-out send and one failed send, and a drain of what was acknowledged.
    fn history() -> Vec<Event> {
        let mut events = Vec::new();
        let mut stored = Vec::new();
        let mut op = 0;
        for i in 0..80u64 {
            let t = i * 50;
            op += 1;
            let v = format!("p1-{i}");
            events.push(ev(t, 1, EventType::Invoke, op, send(&v, None)));
            let (kind, pos) = match i {
                _ if (20..40).contains(&i) => continue,
                10 => (EventType::Info, None),
                11 => (EventType::Fail, None),
                _ => (EventType::Ok, Some(stored.len() as u64)),
            };
            if kind == EventType::Ok {
                stored.push(ReadMsg {
                    queue: 0,
                    offset: stored.len() as u64,
                    value: v.clone(),
                });
            }
            events.push(ev(t + 3 + i % 7, 1, kind, op, send(&v, pos)));
        }
        let fault = || Op::Nemesis {
            fault: "partition-leader".into(),
            targets: vec!["n0".into()],
            detail: String::new(),
        };
        events.push(ev(1_000, NEMESIS, EventType::Invoke, 9_000, fault()));
        events.push(ev(2_000, NEMESIS, EventType::Ok, 9_000, fault()));
        events.sort_by_key(|e| e.t_ns);
        events.push(ev(
            4_100,
            HARNESS,
            EventType::Ok,
            0,
            Op::Phase {
                name: "heal".into(),
            },
        ));
        for node in ["n0", "n1", "n2"] {
            let op = Op::Drain {
                node: node.into(),
                broker: "g".into(),
                queue: 0,
                min_offset: 0,
                max_offset: stored.len() as u64,
                msgs: stored.clone(),
            };
            events.push(ev(4_200, HARNESS, EventType::Ok, 0, op));
        }
        events
    }

    #[test]
    fn report_writes_four_files_and_well_formed_svgs() {
        let dir = tempfile::tempdir().unwrap();
        let events = history();
        let mut f = std::fs::File::create(dir.path().join("history.jsonl")).unwrap();
        write_events(&mut f, &events).unwrap();
        drop(f);
        let r = check_dir(dir.path(), &CheckOptions::default()).unwrap();
        assert!(r.valid, "{:?}", r.reasons);
        assert_eq!(r.availability.windows.len(), 1);
        for name in [
            "results.json",
            "summary.txt",
            "latency.svg",
            "throughput.svg",
        ] {
            let text = std::fs::read_to_string(dir.path().join(name)).unwrap();
            assert!(!text.is_empty(), "{name} is empty");
        }
        for name in ["latency.svg", "throughput.svg"] {
            let svg = std::fs::read_to_string(dir.path().join(name)).unwrap();
            assert!(
                svg.trim_start().starts_with("<svg"),
                "{name}: {}",
                &svg[..80]
            );
            assert!(svg.trim_end().ends_with("</svg>"), "{name}");
            assert!(
                svg.contains("partition-leader"),
                "{name} lacks the fault name"
            );
            assert_eq!(svg.matches("<svg").count(), 1, "{name}");
        }
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("results.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(json["valid"], true);
        let summary = std::fs::read_to_string(dir.path().join("summary.txt")).unwrap();
        assert!(summary.contains("partition-leader"), "{summary}");
        assert_eq!(summary.lines().last(), Some("valid: true"));
    }

    #[test]
    fn final_line_lists_every_count_and_incomplete_reasons() {
        let r = check(&[], &CheckOptions::default());
        assert_eq!(
            final_line(&r),
            "valid: false (lost=0 unexpected=0 divergence=0 inconsistent-offsets=0 order=0 \
             broker-duplicates=0 lost-on-node=0 failed-but-present=0; no final drain recorded; \
             no send was acknowledged (nothing to check))"
        );
        let mut events = history();
        events.retain(|e| !matches!(&e.op, Op::Send { value, .. } if value == "p1-5"));
        events.push(ev(10, 1, EventType::Invoke, 77, send("p1-lost", None)));
        events.push(ev(11, 1, EventType::Ok, 77, send("p1-lost", Some(10_000))));
        let r = check(&events, &CheckOptions::default());
        let line = final_line(&r);
        assert!(
            line.starts_with("valid: false (lost=1 unexpected=1 "),
            "{line}"
        );
        let summary = summary(&r);
        assert!(summary.contains("value p1-lost"), "{summary}");
        assert_eq!(summary.lines().last(), Some(line.as_str()));
    }

    #[test]
    fn empty_history_still_plots() {
        let dir = tempfile::tempdir().unwrap();
        let r = check(&[], &CheckOptions::default());
        write_report(dir.path(), &[], &r).unwrap();
        let svg = std::fs::read_to_string(dir.path().join("latency.svg")).unwrap();
        assert!(svg.starts_with("<svg"));
    }
}
