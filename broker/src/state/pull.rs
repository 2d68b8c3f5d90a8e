//! PULL_MESSAGE classification (§2.4.4) and TAG subscription filtering (§3.5). Pure.

use std::collections::BTreeSet;

use raftmq_protocol::message::java_string_hash;

use super::consume_queue::{ConsumeQueue, CqUnit};

/// Fewest units a pull examines when looking for matches (the Java broker scans at least
/// 16 000 bytes of consume queue, i.e. 800 units, or `maxMsgNums` units if more).
pub const PULL_SCAN_UNITS_MIN: usize = 800;

/// A TAG-type subscription expression, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagFilter {
    /// `*` or empty: every message.
    All,
    /// `tagA || tagB`: messages whose tag is one of these.
    Tags {
        /// The tags (trimmed, non-empty).
        tags: BTreeSet<String>,
        /// Their hashes, compared with a unit's tag code truncated to 32 bits.
        codes: BTreeSet<i32>,
    },
}

impl TagFilter {
    /// Parses a subscription expression: `*` or empty (after trimming) = all; otherwise tags
    /// separated by `||`, each trimmed, empty ones skipped (an expression with none matches
    /// nothing, as in Java).
    pub fn parse(expr: &str) -> TagFilter {
        let trimmed = expr.trim();
        if trimmed.is_empty() || trimmed == "*" {
            return TagFilter::All;
        }
        let tags: BTreeSet<String> = trimmed
            .split("||")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        let codes = tags.iter().map(|t| java_string_hash(t)).collect();
        TagFilter::Tags { tags, codes }
    }

    /// The consume-queue check: does a unit with this tag code possibly match? (Hash
    /// collisions pass; [`TagFilter::matches_tag`] re-checks the real tag.)
    pub fn matches_code(&self, tag_code: i64) -> bool {
        match self {
            TagFilter::All => true,
            // Java: codeSet.contains(tagsCode.intValue()), i.e. the low 32 bits.
            TagFilter::Tags { codes, .. } => codes.contains(&(tag_code as i32)),
        }
    }

    /// The exact check against a record's TAGS property.
    pub fn matches_tag(&self, tag: Option<&str>) -> bool {
        match self {
            TagFilter::All => true,
            TagFilter::Tags { tags, .. } => tag.is_some_and(|t| tags.contains(t)),
        }
    }
}

/// The store-side outcome of a pull (mapped to response codes by the handler).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullStatus {
    /// ≥ 1 matching message: SUCCESS.
    Found,
    /// Nothing new: PULL_NOT_FOUND (19); long-poll when the request allows it.
    NoNewMessage,
    /// The offset is outside the queue: PULL_OFFSET_MOVED (21).
    OffsetMoved,
    /// Entries examined but none matched (or unreadable): PULL_RETRY_IMMEDIATELY (20).
    RetryImmediately,
}

/// What a scan of `[queue_offset, …)` found (only when the offset was inside the queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanSummary {
    /// Matching units collected.
    pub matched: usize,
    /// Offset after the last unit examined.
    pub next_offset: i64,
}

/// Status and nextBeginOffset of a pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullClassification {
    /// The outcome.
    pub status: PullStatus,
    /// `nextBeginOffset` for the response.
    pub next_begin_offset: i64,
}

/// Classifies a pull exactly per the table of §2.4.4, rows checked in table order:
///
/// | situation | status | nextBeginOffset |
/// |---|---|---|
/// | `max == 0` | OffsetMoved if `queue_offset != 0`, else NoNewMessage | 0 |
/// | `queue_offset < min` | OffsetMoved | min |
/// | `queue_offset == max` | NoNewMessage | queue_offset |
/// | `queue_offset > max` | OffsetMoved | max |
/// | scan matched ≥ 1 | Found | after the last examined |
/// | scan matched none | RetryImmediately | after the last examined |
/// | in range, not scanned (unreadable) | RetryImmediately | queue_offset |
pub fn classify_pull(
    min: i64,
    max: i64,
    queue_offset: i64,
    scan: Option<ScanSummary>,
) -> PullClassification {
    let (status, next_begin_offset) = if max == 0 {
        let status = if queue_offset != 0 {
            PullStatus::OffsetMoved
        } else {
            PullStatus::NoNewMessage
        };
        (status, 0)
    } else if queue_offset < min {
        (PullStatus::OffsetMoved, min)
    } else if queue_offset == max {
        (PullStatus::NoNewMessage, queue_offset)
    } else if queue_offset > max {
        (PullStatus::OffsetMoved, max)
    } else {
        match scan {
            Some(s) if s.matched > 0 => (PullStatus::Found, s.next_offset),
            Some(s) => (PullStatus::RetryImmediately, s.next_offset),
            None => (PullStatus::RetryImmediately, queue_offset),
        }
    };
    PullClassification {
        status,
        next_begin_offset,
    }
}

/// The result of [`pull`]: classification, queue bounds and the units to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullResult {
    /// Status and nextBeginOffset.
    pub classification: PullClassification,
    /// Queue min offset (0 for a missing queue).
    pub min_offset: i64,
    /// Queue max offset (0 for a missing queue).
    pub max_offset: i64,
    /// Matching units with their logical offsets, in queue order.
    pub units: Vec<(i64, CqUnit)>,
}

/// Limits of one pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullLimits {
    /// Most messages returned (`maxMsgNums`).
    pub max_messages: usize,
    /// Byte budget of the returned records; the first match is always returned.
    pub max_bytes: usize,
}

impl Default for PullLimits {
    /// The Java broker's in-memory caps: 32 messages, 256 KiB.
    fn default() -> Self {
        PullLimits {
            max_messages: 32,
            max_bytes: 256 << 10,
        }
    }
}

/// Reads and classifies a pull from `queue` (`None` = the queue does not exist: empty).
///
/// Examines at most `max(max_messages, PULL_SCAN_UNITS_MIN)` units, collecting matches
/// until `max_messages` or the byte budget is reached (a unit that would overflow the budget
/// is not examined, so the next pull starts at it).
pub fn pull(
    queue: Option<&ConsumeQueue>,
    queue_offset: i64,
    limits: PullLimits,
    filter: &TagFilter,
) -> PullResult {
    let (min, max) = queue.map_or((0, 0), |q| (q.min_offset(), q.max_offset()));
    let mut units = Vec::new();
    let scan = queue
        .filter(|_| max > 0 && (min..max).contains(&queue_offset))
        .map(|q| {
            let window = q.units(queue_offset, limits.max_messages.max(PULL_SCAN_UNITS_MIN));
            let mut bytes = 0usize;
            let mut examined = 0usize;
            for u in window {
                let size = usize::try_from(u.size).unwrap_or(0);
                let full = units.len() >= limits.max_messages
                    || (!units.is_empty() && bytes.saturating_add(size) > limits.max_bytes);
                if full {
                    break;
                }
                examined += 1;
                if filter.matches_code(u.tag_code) {
                    bytes = bytes.saturating_add(size);
                    units.push((queue_offset + examined as i64 - 1, *u));
                }
            }
            ScanSummary {
                matched: units.len(),
                next_offset: queue_offset + examined as i64,
            }
        });
    PullResult {
        classification: classify_pull(min, max, queue_offset, scan),
        min_offset: min,
        max_offset: max,
        units,
    }
}
