//! In-flight bookkeeping of one assigned queue (RocketMQ's `ProcessQueue`): which pulled
//! messages are still being consumed, so the committed offset never passes one of them.

use std::collections::BTreeMap;

/// Messages of one queue pulled but not yet consumed, and where pulling stands.
#[derive(Debug, Clone, Default)]
pub struct ProcessQueue {
    inflight: BTreeMap<i64, usize>,
    bytes: usize,
    pulled_end: i64,
}

impl ProcessQueue {
    /// A queue whose consumption starts at `offset`.
    pub fn new(offset: i64) -> Self {
        ProcessQueue {
            pulled_end: offset,
            ..Default::default()
        }
    }

    /// Records a pull's messages (`(queue offset, body bytes)`) and where the next pull
    /// starts.
    pub fn add(&mut self, msgs: impl IntoIterator<Item = (i64, usize)>, next_begin: i64) {
        for (offset, bytes) in msgs {
            if self.inflight.insert(offset, bytes).is_none() {
                self.bytes += bytes;
            }
        }
        self.pulled_end = self.pulled_end.max(next_begin);
    }

    /// Marks messages consumed.
    pub fn remove(&mut self, offsets: impl IntoIterator<Item = i64>) {
        for o in offsets {
            if let Some(b) = self.inflight.remove(&o) {
                self.bytes -= b;
            }
        }
    }

    /// The offset to commit: the oldest message still in flight, else the pull position
    /// (at-least-once: everything below it was consumed).
    pub fn commit_offset(&self) -> i64 {
        self.inflight
            .keys()
            .next()
            .copied()
            .unwrap_or(self.pulled_end)
    }

    /// Where the next pull starts.
    pub fn pulled_end(&self) -> i64 {
        self.pulled_end
    }

    /// Moves the pull position (offset moved, reset); drops what is in flight.
    pub fn reset(&mut self, offset: i64) {
        self.inflight.clear();
        self.bytes = 0;
        self.pulled_end = offset;
    }

    /// Messages in flight.
    pub fn count(&self) -> usize {
        self.inflight.len()
    }

    /// Body bytes in flight.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_commit_offset_waits_for_the_oldest_message_in_flight() {
        let mut pq = ProcessQueue::new(10);
        assert_eq!(pq.commit_offset(), 10);
        pq.add([(10, 5), (11, 5), (12, 5)], 13);
        assert_eq!((pq.count(), pq.bytes(), pq.commit_offset()), (3, 15, 10));
        pq.remove([11, 12]);
        assert_eq!(pq.commit_offset(), 10, "10 is still being consumed");
        pq.remove([10]);
        assert_eq!((pq.commit_offset(), pq.bytes()), (13, 0));
        // A pull whose messages were all filtered out still advances the position.
        pq.add([], 20);
        assert_eq!(pq.commit_offset(), 20);
        pq.reset(5);
        assert_eq!((pq.commit_offset(), pq.count()), (5, 0));
    }

    proptest::proptest! {
        #[test]
        fn commit_never_passes_an_unconsumed_message(done in proptest::collection::vec(proptest::bool::ANY, 1..50)) {
            let mut pq = ProcessQueue::new(0);
            let n = done.len() as i64;
            pq.add((0..n).map(|o| (o, 1)), n);
            pq.remove((0..n).filter(|o| done[*o as usize]));
            let first_open = (0..n).find(|o| !done[*o as usize]).unwrap_or(n);
            proptest::prop_assert_eq!(pq.commit_offset(), first_open);
        }
    }
}
