//! Consumer offsets: (group, topic, queue id) → next offset to consume.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Committed consumer offsets, in ordered maps (deterministic snapshots).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerOffsets {
    groups: BTreeMap<String, BTreeMap<String, BTreeMap<i32, i64>>>,
}

impl ConsumerOffsets {
    /// Stores `offset` (last write wins; it may go backwards, e.g. an offset reset).
    pub fn commit(&mut self, group: &str, topic: &str, queue_id: i32, offset: i64) {
        let topics = match self.groups.get_mut(group) {
            Some(t) => t,
            None => self.groups.entry(group.to_owned()).or_default(),
        };
        let queues = match topics.get_mut(topic) {
            Some(q) => q,
            None => topics.entry(topic.to_owned()).or_default(),
        };
        queues.insert(queue_id, offset);
    }

    /// The committed offset, if any.
    pub fn get(&self, group: &str, topic: &str, queue_id: i32) -> Option<i64> {
        self.groups.get(group)?.get(topic)?.get(&queue_id).copied()
    }

    /// Every (topic, queue id, offset) of `group`, ordered.
    pub fn of_group(&self, group: &str) -> Vec<(&str, i32, i64)> {
        self.groups
            .get(group)
            .into_iter()
            .flat_map(|ts| {
                ts.iter()
                    .flat_map(|(t, qs)| qs.iter().map(move |(q, o)| (t.as_str(), *q, *o)))
            })
            .collect()
    }

    /// Groups with an offset on `topic`, ordered.
    pub fn groups_of_topic(&self, topic: &str) -> Vec<&str> {
        self.groups
            .iter()
            .filter(|(_, ts)| ts.contains_key(topic))
            .map(|(g, _)| g.as_str())
            .collect()
    }

    /// Forgets every offset on `topic` (topic deletion, as Java's `cleanOffsetByTopic`).
    pub fn remove_topic(&mut self, topic: &str) {
        for ts in self.groups.values_mut() {
            ts.remove(topic);
        }
        self.groups.retain(|_, ts| !ts.is_empty());
    }
}
