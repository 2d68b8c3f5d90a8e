//! The message key index (QUERY_MESSAGE) and the idempotent-produce window.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::command::AppendResult;

/// Most index entries kept per `topic#key` (oldest dropped first).
pub const KEY_INDEX_PER_KEY_MAX: usize = 64;
/// Most `(topic, UNIQ_KEY)`s in the idempotency window (oldest evicted first).
pub const DEDUP_WINDOW_MAX: usize = 100_000;

/// One indexed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IndexEntry {
    physical_offset: i64,
    store_time: i64,
}

/// `topic#key` → recent physical offsets, from each record's KEYS (split on spaces) and
/// UNIQ_KEY. Bounded per key; not part of snapshots (a node that installs one has no log
/// below it). Only looked up, never iterated into state, so hash maps keep it deterministic.
#[derive(Debug, Clone, Default)]
pub struct KeyIndex {
    topics: HashMap<String, HashMap<String, VecDeque<IndexEntry>>>,
}

impl KeyIndex {
    /// Indexes one record under `key`.
    pub fn add(&mut self, topic: &str, key: &str, physical_offset: i64, store_time: i64) {
        if key.is_empty() {
            return;
        }
        let keys = match self.topics.get_mut(topic) {
            Some(k) => k,
            None => self.topics.entry(topic.to_owned()).or_default(),
        };
        let entries = match keys.get_mut(key) {
            Some(e) => e,
            None => keys.entry(key.to_owned()).or_default(),
        };
        if entries.len() >= KEY_INDEX_PER_KEY_MAX {
            entries.pop_front();
        }
        entries.push_back(IndexEntry {
            physical_offset,
            store_time,
        });
    }

    /// Physical offsets indexed under `topic#key` with `begin ≤ store time ≤ end`, newest
    /// first, at most `max`.
    pub fn lookup(&self, topic: &str, key: &str, begin: i64, end: i64, max: usize) -> Vec<i64> {
        self.topics
            .get(topic)
            .and_then(|keys| keys.get(key))
            .map(|entries| {
                entries
                    .iter()
                    .rev()
                    .filter(|e| (begin..=end).contains(&e.store_time))
                    .take(max)
                    .map(|e| e.physical_offset)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Drops entries of records starting below `physical_offset` (retention).
    pub fn purge_below(&mut self, physical_offset: i64) {
        for keys in self.topics.values_mut() {
            keys.retain(|_, entries| {
                entries.retain(|e| e.physical_offset >= physical_offset);
                !entries.is_empty()
            });
        }
        self.topics.retain(|_, keys| !keys.is_empty());
    }

    /// Forgets `topic`.
    pub fn remove_topic(&mut self, topic: &str) {
        self.topics.remove(topic);
    }
}

/// One window entry, as serialized in snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupEntry {
    /// Topic.
    pub topic: String,
    /// UNIQ_KEY.
    pub uniq_key: String,
    /// Where the first copy went.
    pub result: AppendResult,
}

/// Recent `(topic, UNIQ_KEY)` → first result, FIFO-evicted at a fixed capacity.
///
/// Deterministic: insertion order is apply order, eviction is by insertion order, and
/// snapshots carry the entries in that order.
#[derive(Debug, Clone)]
pub struct DedupWindow {
    capacity: usize,
    map: HashMap<(String, String), AppendResult>,
    order: VecDeque<(String, String)>,
}

impl Default for DedupWindow {
    fn default() -> Self {
        Self::with_capacity(DEDUP_WINDOW_MAX)
    }
}

impl DedupWindow {
    /// An empty window holding at most `capacity` keys.
    pub fn with_capacity(capacity: usize) -> Self {
        DedupWindow {
            capacity,
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// The first result for `(topic, uniq_key)`, if still in the window.
    pub fn get(&self, topic: &str, uniq_key: &str) -> Option<AppendResult> {
        // Tuple keys cannot be borrowed as (&str, &str); the allocation is per send only.
        self.map
            .get(&(topic.to_owned(), uniq_key.to_owned()))
            .copied()
    }

    /// Remembers a first result, evicting the oldest key when full.
    pub fn insert(&mut self, topic: &str, uniq_key: &str, result: AppendResult) {
        if self.capacity == 0 {
            return;
        }
        let key = (topic.to_owned(), uniq_key.to_owned());
        if self.map.insert(key.clone(), result).is_some() {
            return;
        }
        self.order.push_back(key);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Forgets every key of `topic`.
    pub fn remove_topic(&mut self, topic: &str) {
        self.order.retain(|(t, _)| t != topic);
        self.map.retain(|(t, _), _| t != topic);
    }

    /// Entries in insertion order (for snapshots).
    pub fn entries(&self) -> Vec<DedupEntry> {
        self.order
            .iter()
            .filter_map(|k| {
                self.map.get(k).map(|r| DedupEntry {
                    topic: k.0.clone(),
                    uniq_key: k.1.clone(),
                    result: *r,
                })
            })
            .collect()
    }

    /// A window rebuilt from [`DedupWindow::entries`].
    pub fn from_entries(capacity: usize, entries: Vec<DedupEntry>) -> Self {
        let mut w = Self::with_capacity(capacity);
        for e in entries {
            w.insert(&e.topic, &e.uniq_key, e.result);
        }
        w
    }
}
