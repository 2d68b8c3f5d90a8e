//! A topic's route as a producer uses it: the writable queues of every broker group that
//! has a master, chosen round robin while avoiding masters that failed lately.
//!
//! Avoidance is keyed by the master's *address*, not the group name as in RocketMQ: after
//! a RaftMQ failover the group keeps its name and gets a new master within seconds, which
//! must not inherit the old one's penalty.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use raftmq_protocol::body::topic::perm;
use raftmq_protocol::body::TopicRouteData;

/// One queue of a topic on one broker group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageQueue {
    /// Topic.
    pub topic: String,
    /// Broker group name.
    pub broker_name: String,
    /// Queue id within the group.
    pub queue_id: i32,
}

/// Where a producer may send a topic's messages.
#[derive(Debug, Default)]
pub struct TopicPublishInfo {
    /// Writable queues of groups that have a master, group by group in route order.
    pub queues: Vec<MessageQueue>,
    /// Writable queues of every group, master or not: ordered sends choose from these so
    /// a key keeps its queue while its group elects a new master.
    pub all_queues: Vec<MessageQueue>,
    /// Master address per broker group.
    pub masters: HashMap<String, String>,
    /// True when the route named an order configuration (`orderTopicConf`).
    pub ordered: bool,
    next: AtomicUsize,
}

impl TopicPublishInfo {
    /// Builds the publish info of `topic` from its route: groups with a master (brokerId
    /// 0) and write permission, `writeQueueNums` queues each; with `orderTopicConf`
    /// (`brokerA:4;brokerB:4`) exactly the queues it lists.
    pub fn from_route(topic: &str, route: &TopicRouteData) -> Self {
        let masters: HashMap<String, String> = route
            .broker_datas
            .iter()
            .filter_map(|b| Some((b.broker_name.clone(), b.broker_addrs.get(&0)?.clone())))
            .collect();
        let mut all_queues = Vec::new();
        let order = route
            .order_topic_conf
            .as_deref()
            .filter(|c| !c.trim().is_empty());
        if let Some(conf) = order {
            for item in conf.split(';') {
                let Some((name, n)) = item.split_once(':') else {
                    continue;
                };
                let n: i32 = n.trim().parse().unwrap_or(0);
                let name = name.trim();
                all_queues.extend((0..n).map(|queue_id| MessageQueue {
                    topic: topic.to_owned(),
                    broker_name: name.to_owned(),
                    queue_id,
                }));
            }
        } else {
            for q in &route.queue_datas {
                if q.perm & perm::WRITE == 0 {
                    continue;
                }
                all_queues.extend((0..q.write_queue_nums.max(0)).map(|queue_id| MessageQueue {
                    topic: topic.to_owned(),
                    broker_name: q.broker_name.clone(),
                    queue_id,
                }));
            }
        }
        let queues = all_queues
            .iter()
            .filter(|q| masters.contains_key(&q.broker_name))
            .cloned()
            .collect();
        TopicPublishInfo {
            queues,
            all_queues,
            masters,
            ordered: order.is_some(),
            next: AtomicUsize::new(0),
        }
    }

    /// True when there is somewhere to send.
    pub fn is_ok(&self) -> bool {
        !self.queues.is_empty()
    }

    /// The next queue round robin, skipping queues of `avoid_group` (the group a retry
    /// failed on) and of masters `faults` says to avoid at `now_ms`; if every queue is to
    /// be avoided, the next one anyway (a send must go somewhere).
    pub fn select(
        &self,
        avoid_group: Option<&str>,
        faults: &FaultTracker,
        now_ms: i64,
    ) -> Option<&MessageQueue> {
        let n = self.queues.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let healthy = |q: &MessageQueue| {
            avoid_group != Some(q.broker_name.as_str())
                && self
                    .masters
                    .get(&q.broker_name)
                    .is_none_or(|addr| faults.is_available(addr, now_ms))
        };
        (0..n)
            .map(|k| &self.queues[(start + k) % n])
            .find(|q| healthy(q))
            .or_else(|| {
                (0..n)
                    .map(|k| &self.queues[(start + k) % n])
                    .find(|q| avoid_group != Some(q.broker_name.as_str()))
            })
            .or(Some(&self.queues[start % n]))
    }
}

/// Masters to avoid for a while after slow or failed sends (RocketMQ's latency fault
/// tolerance, with shorter penalties: a RaftMQ group replaces a dead master in seconds).
#[derive(Debug, Default)]
pub struct FaultTracker {
    until: HashMap<String, i64>,
}

/// Latency thresholds (ms) and the avoidance each earns (ms): fast answers cost nothing.
const PENALTIES: [(i64, i64); 5] = [
    (550, 0),
    (1_000, 1_000),
    (2_000, 2_000),
    (3_000, 5_000),
    (i64::MAX, 10_000),
];
/// Avoidance after a failed send (connection refused, timeout, not the master).
pub const FAILURE_PENALTY_MS: i64 = 3_000;

impl FaultTracker {
    /// Records a send to `addr` that took `latency_ms` (`failed`: it did not succeed).
    pub fn record(&mut self, addr: &str, latency_ms: i64, failed: bool, now_ms: i64) {
        let penalty = if failed {
            FAILURE_PENALTY_MS
        } else {
            PENALTIES
                .iter()
                .find(|(limit, _)| latency_ms < *limit)
                .map_or(0, |(_, p)| *p)
        };
        if penalty == 0 {
            self.until.remove(addr);
        } else {
            self.until.insert(addr.to_owned(), now_ms + penalty);
        }
    }

    /// True unless `addr` is being avoided at `now_ms`.
    pub fn is_available(&self, addr: &str, now_ms: i64) -> bool {
        self.until.get(addr).is_none_or(|u| now_ms >= *u)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeMap;

    use raftmq_protocol::body::route::{BrokerData, QueueData};

    use super::*;

    fn route(groups: &[(&str, Option<&str>, i32, i32)]) -> TopicRouteData {
        TopicRouteData {
            broker_datas: groups
                .iter()
                .map(|(name, master, _, _)| BrokerData {
                    broker_name: (*name).to_owned(),
                    cluster: "C".into(),
                    broker_addrs: master
                        .map(|m| BTreeMap::from([(0, m.to_owned()), (2, "f:1".to_owned())]))
                        .unwrap_or_else(|| BTreeMap::from([(2, "f:1".to_owned())])),
                    ..Default::default()
                })
                .collect(),
            queue_datas: groups
                .iter()
                .map(|(name, _, n, p)| QueueData {
                    broker_name: (*name).to_owned(),
                    read_queue_nums: *n,
                    write_queue_nums: *n,
                    perm: *p,
                    topic_sys_flag: 0,
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn only_groups_with_a_master_and_write_permission_take_sends() {
        let r = route(&[
            ("a", Some("a:1"), 2, 6),
            ("b", None, 4, 6),        // electing: no master yet
            ("c", Some("c:1"), 3, 4), // read only
        ]);
        let info = TopicPublishInfo::from_route("T", &r);
        let names: Vec<_> = info
            .queues
            .iter()
            .map(|q| (q.broker_name.as_str(), q.queue_id))
            .collect();
        assert_eq!(names, vec![("a", 0), ("a", 1)]);
        assert!(info.is_ok() && !info.ordered);
        let none = TopicPublishInfo::from_route("T", &route(&[("b", None, 4, 6)]));
        assert!(!none.is_ok());
        assert!(none.select(None, &FaultTracker::default(), 0).is_none());
    }

    #[test]
    fn order_conf_lists_the_queues() {
        let mut r = route(&[("a", Some("a:1"), 8, 6), ("b", Some("b:1"), 8, 6)]);
        r.order_topic_conf = Some("a:2;b:1;gone:5".into());
        let info = TopicPublishInfo::from_route("T", &r);
        assert!(info.ordered);
        assert_eq!(info.queues.len(), 3);
    }

    #[test]
    fn round_robin_skips_the_failed_group_and_avoided_masters() {
        let r = route(&[("a", Some("a:1"), 2, 6), ("b", Some("b:1"), 2, 6)]);
        let info = TopicPublishInfo::from_route("T", &r);
        let mut faults = FaultTracker::default();
        let picks: Vec<_> = (0..4)
            .map(|_| info.select(None, &faults, 0).unwrap().clone())
            .collect();
        let distinct: std::collections::BTreeSet<_> = picks.iter().collect();
        assert_eq!(distinct.len(), 4, "every queue once in four sends");
        // A retry avoids the group that just failed.
        for _ in 0..4 {
            assert_eq!(info.select(Some("a"), &faults, 0).unwrap().broker_name, "b");
        }
        // A failed master is avoided for a while, then used again.
        faults.record("b:1", 10, true, 1_000);
        for _ in 0..4 {
            assert_eq!(info.select(None, &faults, 2_000).unwrap().broker_name, "a");
        }
        assert!(faults.is_available("b:1", 1_000 + FAILURE_PENALTY_MS));
        // Everything avoided: still somewhere to send.
        faults.record("a:1", 10, true, 1_000);
        assert!(info.select(None, &faults, 2_000).is_some());
        assert!(info.select(Some("a"), &faults, 2_000).unwrap().broker_name == "b");
    }

    #[test]
    fn slow_answers_earn_short_penalties_and_fast_ones_clear_them() {
        let mut f = FaultTracker::default();
        f.record("m:1", 100, false, 0);
        assert!(f.is_available("m:1", 0));
        f.record("m:1", 2_500, false, 0);
        assert!(!f.is_available("m:1", 4_999) && f.is_available("m:1", 5_000));
        f.record("m:1", 5, false, 10);
        assert!(f.is_available("m:1", 10));
    }
}
