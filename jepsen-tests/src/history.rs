//! The recorded history of one run: every operation as invoke / ok / fail / info events
//! with monotonic timestamps, one JSON object per line in `history.jsonl`. The checker
//! reads nothing else, so a run can be re-checked offline.

use std::io::{BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// How an operation ended, or that it started (Jepsen's vocabulary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    /// The operation started.
    Invoke,
    /// It succeeded (for a send: SEND_OK was received).
    Ok,
    /// It definitely did not happen.
    Fail,
    /// Indeterminate (a timeout, a lost connection): it may or may not have happened.
    Info,
}

/// Where a message sits: broker group, queue id and queue offset.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    /// Broker group (`brokerName`).
    pub broker: String,
    /// Queue id.
    pub queue: u32,
    /// Queue offset (the consume-queue index, contiguous per queue).
    pub offset: u64,
}

/// One message read back: where it was and its body (the unique value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadMsg {
    /// Where it was read.
    pub queue: u32,
    /// Queue offset.
    pub offset: u64,
    /// The body, the unique value sent (`p3-17` or `k2-p3-17`).
    pub value: String,
}

/// What an event is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "kebab-case")]
pub enum Op {
    /// A synchronous send of one unique value. `key` and `seq` are set for ordered sends
    /// (the value's position in its key's sequence); the completion carries `pos` on ok
    /// and `error` on fail/info.
    Send {
        /// The unique body.
        value: String,
        /// Ordering key (ordered sends go to one fixed queue per key).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
        /// Sequence number within the key, from 0.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
        /// Where the broker said it stored it (ok only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pos: Option<Position>,
        /// Why it failed or is indeterminate (fail/info only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Messages a clustering consumer received (type ok), in delivery order.
    Consume {
        /// Broker group.
        broker: String,
        /// What arrived.
        msgs: Vec<ReadMsg>,
    },
    /// A consumer's offset commit for one queue (type ok or fail).
    Commit {
        /// Broker group.
        broker: String,
        /// Queue id.
        queue: u32,
        /// Next offset to consume.
        offset: u64,
    },
    /// The final drain of one queue from one replica after healing (type ok): every
    /// message from the queue's min offset to its max offset, in offset order.
    Drain {
        /// The replica (`n0`, `n1`, `n2`).
        node: String,
        /// Broker group.
        broker: String,
        /// Queue id.
        queue: u32,
        /// First offset still held (older ones may be purged).
        min_offset: u64,
        /// One past the last offset.
        max_offset: u64,
        /// The messages, offset order.
        msgs: Vec<ReadMsg>,
    },
    /// A fault starting (invoke) or healed (ok); `targets` are node names.
    Nemesis {
        /// Fault name (`kill-leader`, `partition-halves`, ...).
        fault: String,
        /// Nodes it touched.
        #[serde(default)]
        targets: Vec<String>,
        /// Free-form detail (which rule, which signal).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        detail: String,
    },
    /// A phase boundary of the run (`setup`, `faults`, `heal`, `drain`, `done`).
    Phase {
        /// Phase name.
        name: String,
    },
}

/// One line of `history.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Nanoseconds since the run started (monotonic clock).
    pub t_ns: u64,
    /// Which worker: producers and consumers get their own numbers; the nemesis and the
    /// harness use [`NEMESIS`] and [`HARNESS`].
    pub process: u32,
    /// Invoke / ok / fail / info.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// Pairs an invoke with its completion (unique per run); 0 for single events.
    #[serde(default)]
    pub op_id: u64,
    /// What happened.
    #[serde(flatten)]
    pub op: Op,
}

/// `process` of nemesis events.
pub const NEMESIS: u32 = 10_000;
/// `process` of harness events (phases, drains).
pub const HARNESS: u32 = 10_001;

/// Appends `events` to `w` as JSON lines.
pub fn write_events<W: Write>(w: &mut W, events: &[Event]) -> std::io::Result<()> {
    for e in events {
        serde_json::to_writer(&mut *w, e)?;
        w.write_all(b"\n")?;
    }
    Ok(())
}

/// Reads a `history.jsonl`, naming the line of any malformed record.
pub fn read_history(path: &Path) -> anyhow::Result<Vec<Event>> {
    use anyhow::Context;
    let f = std::fs::File::open(path)
        .with_context(|| format!("cannot open history {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let e: Event = serde_json::from_str(&line)
            .with_context(|| format!("{} line {}: not a history event", path.display(), i + 1))?;
        out.push(e);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn events_round_trip_as_json_lines() {
        let events = vec![
            Event {
                t_ns: 5,
                process: 1,
                kind: EventType::Invoke,
                op_id: 7,
                op: Op::Send {
                    value: "k1-p1-0".into(),
                    key: Some("k1".into()),
                    seq: Some(0),
                    pos: None,
                    error: None,
                },
            },
            Event {
                t_ns: 9,
                process: 1,
                kind: EventType::Ok,
                op_id: 7,
                op: Op::Send {
                    value: "k1-p1-0".into(),
                    key: Some("k1".into()),
                    seq: Some(0),
                    pos: Some(Position {
                        broker: "g".into(),
                        queue: 2,
                        offset: 40,
                    }),
                    error: None,
                },
            },
        ];
        let mut buf = Vec::new();
        write_events(&mut buf, &events).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(text.contains("\"f\":\"send\""), "{text}");
        assert!(text.contains("\"type\":\"ok\""), "{text}");
        let back: Vec<Event> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(back, events);
    }
}
