//! Consume queues: per (topic, queue id), the 20-byte units of the Java store
//! (physical offset, size, tag code) in logical-offset order, plus each unit's store time.
//!
//! Held in memory (20 + 8 bytes per message) and made durable by checkpoints
//! ([`super::checkpoint`]): units are only ever appended at the tail or dropped from the
//! head, so each checkpoint journals just the units added since the previous one and a
//! restart rebuilds queues from the journal and re-applies only the log after it.

use std::collections::BTreeMap;

/// One consume-queue unit (the Java store's 20-byte entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CqUnit {
    /// Physical offset of the record in the replicated log.
    pub physical_offset: i64,
    /// Record size (TOTALSIZE).
    pub size: i32,
    /// Tag hash (§3.5): Java `String.hashCode` of TAGS, sign-extended; 0 without a tag.
    pub tag_code: i64,
}

impl CqUnit {
    /// Size of the encoded unit.
    pub const BYTES: usize = 20;

    /// The on-disk form: `i64 physical offset | i32 size | i64 tag code`, big-endian.
    pub fn to_bytes(&self) -> [u8; Self::BYTES] {
        let mut out = [0u8; Self::BYTES];
        out[..8].copy_from_slice(&self.physical_offset.to_be_bytes());
        out[8..12].copy_from_slice(&self.size.to_be_bytes());
        out[12..].copy_from_slice(&self.tag_code.to_be_bytes());
        out
    }

    /// Parses [`CqUnit::to_bytes`].
    pub fn from_bytes(b: &[u8; Self::BYTES]) -> CqUnit {
        let mut p = [0u8; 8];
        p.copy_from_slice(&b[..8]);
        let mut s = [0u8; 4];
        s.copy_from_slice(&b[8..12]);
        let mut t = [0u8; 8];
        t.copy_from_slice(&b[12..]);
        CqUnit {
            physical_offset: i64::from_be_bytes(p),
            size: i32::from_be_bytes(s),
            tag_code: i64::from_be_bytes(t),
        }
    }
}

/// Which side SEARCH_OFFSET_BY_TIMESTAMP resolves to (§2.4.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Boundary {
    /// Smallest offset whose store time ≥ the timestamp; the max offset if none.
    #[default]
    Lower,
    /// Largest offset whose store time ≤ the timestamp; the min offset if none.
    Upper,
}

impl Boundary {
    /// Parses the header value (`lower`/`upper`, any case); absent or unknown = lower.
    pub fn parse(s: Option<&str>) -> Boundary {
        match s {
            Some(s) if s.eq_ignore_ascii_case("upper") => Boundary::Upper,
            _ => Boundary::Lower,
        }
    }
}

/// One queue: units for logical offsets `[min_offset, max_offset)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumeQueue {
    min_offset: i64,
    units: Vec<CqUnit>,
    store_times: Vec<i64>,
}

impl ConsumeQueue {
    /// An empty queue whose next (and first retained) offset is `base`.
    pub fn starting_at(base: i64) -> Self {
        ConsumeQueue {
            min_offset: base,
            ..Self::default()
        }
    }

    /// First retained logical offset.
    pub fn min_offset(&self) -> i64 {
        self.min_offset
    }

    /// One past the last unit: the offset the next append gets.
    pub fn max_offset(&self) -> i64 {
        self.min_offset + self.units.len() as i64
    }

    /// Appends a unit stored at `store_time`; returns its logical offset.
    pub fn append(&mut self, unit: CqUnit, store_time: i64) -> i64 {
        let offset = self.max_offset();
        self.units.push(unit);
        self.store_times.push(store_time);
        offset
    }

    fn index(&self, offset: i64) -> Option<usize> {
        let i = usize::try_from(offset.checked_sub(self.min_offset)?).ok()?;
        (i < self.units.len()).then_some(i)
    }

    /// The unit at `offset`, if retained.
    pub fn unit(&self, offset: i64) -> Option<CqUnit> {
        self.index(offset).map(|i| self.units[i])
    }

    /// The store time of the unit at `offset`, if retained.
    pub fn store_time(&self, offset: i64) -> Option<i64> {
        self.index(offset).map(|i| self.store_times[i])
    }

    /// Up to `max_n` units starting at `from` (empty unless `from` is retained).
    pub fn units(&self, from: i64, max_n: usize) -> &[CqUnit] {
        match self.index(from) {
            Some(i) => {
                let end = i.saturating_add(max_n).min(self.units.len());
                &self.units[i..end]
            }
            None => &[],
        }
    }

    /// Makes room for `n` more units.
    pub fn reserve(&mut self, n: usize) {
        self.units.reserve(n);
        self.store_times.reserve(n);
    }

    /// Units and store times from `from` to the end (empty if `from` is not retained).
    pub fn tail(&self, from: i64) -> (&[CqUnit], &[i64]) {
        match self.index(from) {
            Some(i) => (&self.units[i..], &self.store_times[i..]),
            None => (&[], &[]),
        }
    }

    /// Drops the units below logical offset `offset` (no-op if none).
    pub fn drop_before(&mut self, offset: i64) {
        let n = usize::try_from(offset - self.min_offset)
            .unwrap_or(0)
            .min(self.units.len());
        if n > 0 {
            self.units.drain(..n);
            self.store_times.drain(..n);
            self.min_offset += n as i64;
        }
    }

    /// Drops the units whose record starts below `physical_offset` (units are in log order,
    /// so they form a prefix) and raises `min_offset` past them; returns how many.
    pub fn purge_below(&mut self, physical_offset: i64) -> usize {
        let n = self
            .units
            .partition_point(|u| u.physical_offset < physical_offset);
        if n > 0 {
            self.units.drain(..n);
            self.store_times.drain(..n);
            self.min_offset += n as i64;
        }
        n
    }

    /// SEARCH_OFFSET_BY_TIMESTAMP over the retained units (store times are non-decreasing
    /// within a queue: apply clamps them, see the machine docs). See [`Boundary`].
    pub fn search_by_time(&self, timestamp: i64, boundary: Boundary) -> i64 {
        match boundary {
            Boundary::Lower => {
                self.min_offset + self.store_times.partition_point(|&t| t < timestamp) as i64
            }
            Boundary::Upper => {
                let n = self.store_times.partition_point(|&t| t <= timestamp);
                if n == 0 {
                    self.min_offset
                } else {
                    self.min_offset + n as i64 - 1
                }
            }
        }
    }
}

/// All consume queues: topic → queue id → queue (ordered maps: deterministic iteration).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueTable {
    topics: BTreeMap<String, BTreeMap<i32, ConsumeQueue>>,
}

impl QueueTable {
    /// The queue, if it exists.
    pub fn get(&self, topic: &str, queue_id: i32) -> Option<&ConsumeQueue> {
        self.topics.get(topic)?.get(&queue_id)
    }

    /// The queue, created empty at offset 0 if missing.
    pub fn get_or_create(&mut self, topic: &str, queue_id: i32) -> &mut ConsumeQueue {
        if !self.topics.contains_key(topic) {
            self.topics.insert(topic.to_owned(), BTreeMap::new());
        }
        self.topics
            .get_mut(topic)
            .map(|qs| qs.entry(queue_id).or_default())
            .unwrap_or_else(|| unreachable!("inserted above"))
    }

    /// Inserts (or replaces) a queue.
    pub fn insert(&mut self, topic: &str, queue_id: i32, queue: ConsumeQueue) {
        self.topics
            .entry(topic.to_owned())
            .or_default()
            .insert(queue_id, queue);
    }

    /// Removes and returns one queue.
    pub fn take(&mut self, topic: &str, queue_id: i32) -> Option<ConsumeQueue> {
        self.topics.get_mut(topic)?.remove(&queue_id)
    }

    /// Removes every queue of `topic`.
    pub fn remove_topic(&mut self, topic: &str) {
        self.topics.remove(topic);
    }

    /// Queue ids of `topic` that have a queue, ascending.
    pub fn queue_ids(&self, topic: &str) -> Vec<i32> {
        self.topics
            .get(topic)
            .map(|qs| qs.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Every queue as (topic, queue id, queue), in (topic, queue id) order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, i32, &ConsumeQueue)> {
        self.topics
            .iter()
            .flat_map(|(t, qs)| qs.iter().map(move |(q, cq)| (t.as_str(), *q, cq)))
    }

    /// Applies [`ConsumeQueue::purge_below`] to every queue; returns the units dropped.
    pub fn purge_below(&mut self, physical_offset: i64) -> usize {
        self.topics
            .values_mut()
            .flat_map(|qs| qs.values_mut())
            .map(|q| q.purge_below(physical_offset))
            .sum()
    }
}
