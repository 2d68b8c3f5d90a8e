//! Per-queue "a message was applied" signals for long polling (spec §2.4.4 step 5).
//!
//! A parked pull [`Arrivals::subscribe`]s to its queue (the sender is created lazily) and
//! waits for the published max offset to pass its requested offset. Apply publishes once
//! per queue per applied command, only to queues somebody subscribed to: a map lookup by
//! `&str` and a `watch` store, no allocation. Senders nobody listens to are dropped on
//! the next publish to their queue.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

type Senders = HashMap<String, HashMap<i32, watch::Sender<i64>>>;

/// The shared signal table; cloning the [`Arc`] shares it.
#[derive(Debug, Default)]
pub struct Arrivals {
    queues: Mutex<Senders>,
}

impl Arrivals {
    /// A new, empty table behind an [`Arc`].
    pub fn shared() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> MutexGuard<'_, Senders> {
        self.queues.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A receiver of the queue's published max offset. Subscribe *before* checking the
    /// queue: anything applied afterwards is seen by the receiver. The initial value is
    /// `i64::MIN` for a new sender (nothing published yet).
    pub fn subscribe(&self, topic: &str, queue_id: i32) -> watch::Receiver<i64> {
        let mut map = self.lock();
        if let Some(tx) = map.get(topic).and_then(|q| q.get(&queue_id)) {
            return tx.subscribe();
        }
        let (tx, rx) = watch::channel(i64::MIN);
        map.entry(topic.to_owned())
            .or_default()
            .insert(queue_id, tx);
        rx
    }

    /// Publishes the queue's new max offset (one past its last message) to its waiters.
    pub fn publish(&self, topic: &str, queue_id: i32, max_offset: i64) {
        let mut map = self.lock();
        let Some(queues) = map.get_mut(topic) else {
            return;
        };
        let Some(tx) = queues.get(&queue_id) else {
            return;
        };
        if tx.receiver_count() == 0 {
            queues.remove(&queue_id);
            if queues.is_empty() {
                map.remove(topic);
            }
            return;
        }
        tx.send_replace(max_offset);
    }

    /// Publishes every subscribed queue's max offset per `max_offset` (after a snapshot
    /// install or a topic deletion).
    pub fn publish_all(&self, max_offset: impl Fn(&str, i32) -> i64) {
        let mut map = self.lock();
        for (topic, queues) in map.iter_mut() {
            queues.retain(|q, tx| {
                tx.send_replace(max_offset(topic, *q));
                tx.receiver_count() > 0
            });
        }
        map.retain(|_, q| !q.is_empty());
    }

    /// Queues with a live sender (for tests and metrics).
    pub fn len(&self) -> usize {
        self.lock().values().map(HashMap::len).sum()
    }

    /// True when no queue has a sender.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn publish_reaches_subscribers_only() {
        let a = Arrivals::default();
        a.publish("T", 0, 5); // nobody listens: nothing created
        assert!(a.is_empty());
        let mut rx = a.subscribe("T", 0);
        let other = a.subscribe("T", 1);
        assert_eq!(*rx.borrow_and_update(), i64::MIN);
        a.publish("T", 0, 3);
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), 3);
        assert!(!other.has_changed().unwrap());
        assert_eq!(a.len(), 2);
    }

    #[test]
    fn unused_senders_are_pruned() {
        let a = Arrivals::default();
        drop(a.subscribe("T", 0));
        let keep = a.subscribe("U", 2);
        a.publish("T", 0, 1);
        assert_eq!(a.len(), 1);
        a.publish_all(|_, _| 7);
        assert_eq!(*keep.borrow(), 7);
        drop(keep);
        a.publish_all(|_, _| 8);
        assert!(a.is_empty());
    }

    #[tokio::test]
    async fn a_waiter_is_woken_by_a_later_publish() {
        let a = Arc::new(Arrivals::default());
        let mut rx = a.subscribe("T", 0);
        let a2 = a.clone();
        let waiter = tokio::spawn(async move { *rx.wait_for(|&m| m > 4).await.unwrap() });
        a2.publish("T", 0, 4);
        a2.publish("T", 0, 5);
        assert_eq!(waiter.await.unwrap(), 5);
    }
}
