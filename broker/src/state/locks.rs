//! Orderly-consumption queue locks (LOCK_BATCH_MQ / UNLOCK_BATCH_MQ, spec §2.4.14):
//! (consumer group, queue) → the client holding it and when it last locked it.
//!
//! The table is replicated state: every time comes from the leader's stamp in the command,
//! so every replica grants the same queues and a new leader keeps "one consumer per queue".
//! A lock is live for [`LOCK_EXPIRY_MS`] after its last grant; entries older than
//! [`LOCK_FORGET_MS`] are dropped at apply so the table only holds recent locks (kept a
//! while past expiry so a next leader whose clock runs a little behind still honours them).

use std::collections::BTreeMap;

use raftmq_protocol::body::MessageQueue;
use serde::{Deserialize, Serialize};

/// How long a lock lives without renewal (the Java broker's 60 s); clients renew every 20 s.
pub const LOCK_EXPIRY_MS: i64 = 60_000;
/// Age past which a lock is forgotten at the next lock or unlock apply.
pub const LOCK_FORGET_MS: i64 = 2 * LOCK_EXPIRY_MS;

/// One held queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueLock {
    /// The client id holding the queue.
    pub client_id: String,
    /// Leader-stamped time of the last grant (lock or renewal), ms.
    pub renewed_ms: i64,
}

impl QueueLock {
    /// True when the lock no longer protects the queue at `now_ms`.
    pub fn expired(&self, now_ms: i64) -> bool {
        now_ms.saturating_sub(self.renewed_ms) > LOCK_EXPIRY_MS
    }
}

/// The lock table, in ordered maps (deterministic snapshots).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueLocks {
    groups: BTreeMap<String, BTreeMap<MessageQueue, QueueLock>>,
}

impl QueueLocks {
    /// Grants each of `queues` to `client_id` if it is free, already held by that client,
    /// or held by a lock expired at `now_ms`; a grant (re)stamps it with `now_ms`. Returns
    /// the positions in `queues` of the queues the client now holds.
    pub fn lock(
        &mut self,
        group: &str,
        client_id: &str,
        queues: &[MessageQueue],
        now_ms: i64,
    ) -> Vec<u32> {
        self.forget_old(now_ms);
        if queues.is_empty() {
            return Vec::new();
        }
        let table = match self.groups.get_mut(group) {
            Some(t) => t,
            None => self.groups.entry(group.to_owned()).or_default(),
        };
        let mut granted = Vec::with_capacity(queues.len());
        for (k, mq) in queues.iter().enumerate() {
            let free = table
                .get(mq)
                .is_none_or(|l| l.client_id == client_id || l.expired(now_ms));
            if !free {
                continue;
            }
            table.insert(
                mq.clone(),
                QueueLock {
                    client_id: client_id.to_owned(),
                    renewed_ms: now_ms,
                },
            );
            // Positions fit: a command holds far fewer than 2^32 queues (size-limited).
            granted.push(k as u32);
        }
        if table.is_empty() {
            self.groups.remove(group);
        }
        granted
    }

    /// Releases those of `queues` that `client_id` holds; others are left alone.
    pub fn unlock(&mut self, group: &str, client_id: &str, queues: &[MessageQueue], now_ms: i64) {
        self.forget_old(now_ms);
        let Some(table) = self.groups.get_mut(group) else {
            return;
        };
        for mq in queues {
            if table.get(mq).is_some_and(|l| l.client_id == client_id) {
                table.remove(mq);
            }
        }
        if table.is_empty() {
            self.groups.remove(group);
        }
    }

    /// The client holding `mq` for `group` at `now_ms` (`None`: free or expired).
    pub fn holder(&self, group: &str, mq: &MessageQueue, now_ms: i64) -> Option<&str> {
        self.groups
            .get(group)?
            .get(mq)
            .filter(|l| !l.expired(now_ms))
            .map(|l| l.client_id.as_str())
    }

    /// Queues of `group` whose entry names `client_id` (expired ones included), ordered.
    pub fn held_by(&self, group: &str, client_id: &str) -> Vec<MessageQueue> {
        self.groups.get(group).map_or_else(Vec::new, |t| {
            t.iter()
                .filter(|(_, l)| l.client_id == client_id)
                .map(|(mq, _)| mq.clone())
                .collect()
        })
    }

    /// Forgets every lock on `topic` (topic deletion).
    pub fn remove_topic(&mut self, topic: &str) {
        for table in self.groups.values_mut() {
            table.retain(|mq, _| mq.topic != topic);
        }
        self.groups.retain(|_, t| !t.is_empty());
    }

    /// Entries in the table (live or not yet forgotten).
    pub fn len(&self) -> usize {
        self.groups.values().map(BTreeMap::len).sum()
    }

    /// True when no lock is recorded.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Drops locks older than [`LOCK_FORGET_MS`] at `now_ms` (and emptied groups).
    fn forget_old(&mut self, now_ms: i64) {
        for table in self.groups.values_mut() {
            table.retain(|_, l| now_ms.saturating_sub(l.renewed_ms) <= LOCK_FORGET_MS);
        }
        self.groups.retain(|_, t| !t.is_empty());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn mq(topic: &str, queue_id: i32) -> MessageQueue {
        MessageQueue {
            broker_name: "b".into(),
            queue_id,
            topic: topic.into(),
        }
    }

    const T0: i64 = 1_700_000_000_000;

    #[test]
    fn grant_renew_and_refuse() {
        let mut l = QueueLocks::default();
        let qs = [mq("T", 0), mq("T", 1)];
        assert_eq!(l.lock("g", "c1", &qs, T0), vec![0, 1]);
        // c2 overlaps: only the free queue.
        assert_eq!(
            l.lock("g", "c2", &[mq("T", 1), mq("T", 2)], T0 + 1),
            vec![1]
        );
        assert_eq!(l.holder("g", &mq("T", 1), T0 + 1), Some("c1"));
        assert_eq!(l.holder("g", &mq("T", 2), T0 + 1), Some("c2"));
        // Another group is independent.
        assert_eq!(l.lock("h", "c2", &qs, T0 + 2), vec![0, 1]);
        // Renewal by the holder moves its stamp: at T0 + 50 s, c1's lock lives until T0 + 110 s.
        assert_eq!(l.lock("g", "c1", &qs, T0 + 50_000), vec![0, 1]);
        assert_eq!(l.lock("g", "c2", &qs, T0 + 100_000), Vec::<u32>::new());
        assert_eq!(l.holder("g", &mq("T", 0), T0 + 110_000), Some("c1"));
        assert_eq!(l.holder("g", &mq("T", 0), T0 + 110_001), None);
    }

    #[test]
    fn steal_only_after_expiry() {
        let mut l = QueueLocks::default();
        let q = [mq("T", 0)];
        assert_eq!(l.lock("g", "c1", &q, T0), vec![0]);
        // Exactly 60 s old is still live (strictly older expires).
        assert!(l.lock("g", "c2", &q, T0 + LOCK_EXPIRY_MS).is_empty());
        assert_eq!(l.lock("g", "c2", &q, T0 + LOCK_EXPIRY_MS + 1), vec![0]);
        assert_eq!(l.holder("g", &q[0], T0 + LOCK_EXPIRY_MS + 1), Some("c2"));
        // The loser cannot unlock the winner's queue; the winner can.
        l.unlock("g", "c1", &q, T0 + LOCK_EXPIRY_MS + 2);
        assert_eq!(l.holder("g", &q[0], T0 + LOCK_EXPIRY_MS + 2), Some("c2"));
        l.unlock("g", "c2", &q, T0 + LOCK_EXPIRY_MS + 3);
        assert_eq!(l.holder("g", &q[0], T0 + LOCK_EXPIRY_MS + 3), None);
        assert!(l.is_empty());
    }

    #[test]
    fn old_locks_are_forgotten_and_topics_removed() {
        let mut l = QueueLocks::default();
        l.lock("g", "c1", &[mq("A", 0), mq("B", 0)], T0);
        l.lock("h", "c2", &[mq("A", 1)], T0 + 60_000);
        assert_eq!(l.len(), 3);
        // An expired but recent lock is still recorded (and still named by held_by).
        l.lock("x", "c3", &[], T0 + LOCK_FORGET_MS);
        assert_eq!(l.len(), 3);
        assert_eq!(l.held_by("g", "c1"), vec![mq("A", 0), mq("B", 0)]);
        // Past LOCK_FORGET_MS it is dropped by any later lock or unlock, of any group.
        l.unlock("x", "c3", &[], T0 + LOCK_FORGET_MS + 1);
        assert_eq!(l.len(), 1);
        assert!(l.held_by("g", "c1").is_empty());
        l.remove_topic("A");
        assert!(l.is_empty());
    }
}
