//! Queue offsets (min, max, last store time, search by time) and consumer offsets
//! (query, update, progress against the queues, reset by time).
//!
//! RaftMQ brokers keep consumer offsets in the replicated state machine, so any node
//! answers QUERY_CONSUMER_OFFSET; updates go to the master. They do not answer
//! GET_CONSUME_STATS or list subscription groups, so a group's progress is assembled here
//! from per-queue queries, and its topics are found by asking every topic of the
//! NameServers' list (or only the one given).

use raftmq_protocol::body::TopicRouteData;
use raftmq_protocol::body::{decode_json, ConsumeStats, ConsumerIdList, ResetOffsetBody};
use raftmq_protocol::codes::{RequestCode, ResponseCode};
use raftmq_protocol::headers::{
    ConsumerGroupRequestHeader, EarliestMsgStoretimeResponseHeader, GetConsumeStatsRequestHeader,
    GetMaxOffsetRequestHeader, OffsetResponseHeader, QueryConsumerOffsetRequestHeader,
    QueueRequestHeader, ResetOffsetRequestHeader, SearchOffsetRequestHeader,
    UpdateConsumerOffsetRequestHeader,
};
use raftmq_protocol::RemotingCommand;

use super::{bad_body, decode_header, read_addr, success, AdminClient, PullStatus};
use crate::route::MessageQueue;
use crate::ClientError;

/// Prefix of a consumer group's retry topic.
pub const RETRY_PREFIX: &str = "%RETRY%";
/// Prefix of a consumer group's dead-letter topic.
pub const DLQ_PREFIX: &str = "%DLQ%";

/// One queue of a topic: its offsets and when it was last written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStatus {
    /// The queue.
    pub queue: MessageQueue,
    /// First retained offset.
    pub min_offset: i64,
    /// Next offset to be written (so the queue holds `max - min` messages).
    pub max_offset: i64,
    /// Store time of the last message, ms; `None` for an empty queue.
    pub last_update_ms: Option<i64>,
}

/// One queue of a consumer group's progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressRow {
    /// The queue.
    pub queue: MessageQueue,
    /// The queue's max offset.
    pub broker_offset: i64,
    /// The group's committed offset; `None` when the group has none for this queue.
    pub consumer_offset: Option<i64>,
    /// The consumer that would own the queue under RocketMQ's default allocation
    /// (averagely) given the group's live client ids; `None` without live clients.
    pub client: Option<String>,
    /// Store time of the last consumed message (at `consumer_offset - 1`), ms.
    pub last_timestamp: Option<i64>,
}

impl ProgressRow {
    /// Messages not yet consumed: broker offset minus consumer offset (0 if none stored).
    pub fn diff(&self) -> i64 {
        self.broker_offset - self.consumer_offset.unwrap_or(0).min(self.broker_offset)
    }
}

/// A consumer group's progress over the topics it has offsets for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConsumerProgress {
    /// Queues in (topic, broker, queue id) order.
    pub rows: Vec<ProgressRow>,
    /// The group's live client ids (GET_CONSUMER_LIST_BY_GROUP), sorted.
    pub clients: Vec<String>,
    /// Messages per second the group pulled over the last minute, summed over the
    /// masters' GET_CONSUME_STATS (`None`: a master did not answer it).
    pub consume_tps: Option<f64>,
}

impl ConsumerProgress {
    /// Sum of [`ProgressRow::diff`].
    pub fn diff_total(&self) -> i64 {
        self.rows.iter().map(ProgressRow::diff).sum()
    }
}

/// One queue's new consumer offset after a reset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetEntry {
    /// The queue.
    pub queue: MessageQueue,
    /// The offset stored for the group.
    pub offset: i64,
}

/// True for topics a consumer group's progress never includes: other groups' retry and
/// dead-letter topics and RocketMQ's system topics.
fn skipped_for_progress(topic: &str, group: &str) -> bool {
    const SYSTEM: &[&str] = &[
        super::AUTO_CREATE_TOPIC,
        "SCHEDULE_TOPIC_XXXX",
        "SELF_TEST_TOPIC",
        "OFFSET_MOVED_EVENT",
        "RMQ_SYS_TRACE_TOPIC",
    ];
    if let Some(g) = topic.strip_prefix(RETRY_PREFIX) {
        return g != group;
    }
    topic.starts_with(DLQ_PREFIX)
        || topic.starts_with("rmq_sys_")
        || topic.starts_with("RMQ_SYS_")
        || SYSTEM.contains(&topic)
}

/// The queues of `topic` per group in `route`, with the address to read them from, in
/// broker-name order; `read` counts `readQueueNums`, else the larger of the two counts.
pub(super) fn route_queues(
    topic: &str,
    route: &TopicRouteData,
    read_only: bool,
) -> Vec<(String, Vec<MessageQueue>)> {
    let mut groups: Vec<_> = route
        .queue_datas
        .iter()
        .filter_map(|q| {
            let bd = route
                .broker_datas
                .iter()
                .find(|b| b.broker_name == q.broker_name)?;
            let addr = read_addr(bd)?.to_owned();
            let n = if read_only {
                q.read_queue_nums
            } else {
                q.read_queue_nums.max(q.write_queue_nums)
            };
            let queues = (0..n.max(0))
                .map(|queue_id| MessageQueue {
                    topic: topic.to_owned(),
                    broker_name: q.broker_name.clone(),
                    queue_id,
                })
                .collect();
            Some((addr, queues))
        })
        .collect();
    groups.sort_by(|a, b| {
        let name = |g: &(String, Vec<MessageQueue>)| g.1.first().map(|q| q.broker_name.clone());
        name(a).cmp(&name(b))
    });
    groups
}

/// The master of broker group `broker_name` in `route`.
pub(super) fn route_master(
    route: &TopicRouteData,
    broker_name: &str,
) -> Result<String, ClientError> {
    let bd = route
        .broker_datas
        .iter()
        .find(|b| b.broker_name == broker_name)
        .ok_or_else(|| {
            ClientError::InvalidArgument(format!("the route has no broker group {broker_name}"))
        })?;
    bd.master_addr().map(str::to_owned).ok_or_else(|| {
        ClientError::InvalidArgument(format!(
            "broker group {broker_name} has no master right now (electing?)"
        ))
    })
}

impl AdminClient {
    /// GET_MAX_OFFSET: the queue's next offset to be written.
    pub async fn max_offset(&self, addr: &str, queue: &MessageQueue) -> Result<i64, ClientError> {
        let header = GetMaxOffsetRequestHeader {
            topic: queue.topic.clone(),
            queue_id: queue.queue_id,
            committed: Some(true),
            bname: Some(queue.broker_name.clone()),
        };
        let req = RemotingCommand::request_with(RequestCode::GetMaxOffset.code(), &header);
        let resp = self.call_ok(addr, req).await?;
        Ok(decode_header::<OffsetResponseHeader>(addr, &resp)?.offset)
    }

    /// GET_MIN_OFFSET: the queue's first retained offset.
    pub async fn min_offset(&self, addr: &str, queue: &MessageQueue) -> Result<i64, ClientError> {
        let req =
            RemotingCommand::request_with(RequestCode::GetMinOffset.code(), &queue_header(queue));
        let resp = self.call_ok(addr, req).await?;
        Ok(decode_header::<OffsetResponseHeader>(addr, &resp)?.offset)
    }

    /// GET_EARLIEST_MSG_STORETIME: store time of the queue's first message; `None` if empty.
    pub async fn earliest_store_time(
        &self,
        addr: &str,
        queue: &MessageQueue,
    ) -> Result<Option<i64>, ClientError> {
        let req = RemotingCommand::request_with(
            RequestCode::GetEarliestMsgStoretime.code(),
            &queue_header(queue),
        );
        let resp = self.call_ok(addr, req).await?;
        let t = decode_header::<EarliestMsgStoretimeResponseHeader>(addr, &resp)?.timestamp;
        Ok((t >= 0).then_some(t))
    }

    /// SEARCH_OFFSET_BY_TIMESTAMP: the first offset stored at or after `timestamp_ms` (the
    /// max offset when none is).
    pub async fn search_offset(
        &self,
        addr: &str,
        queue: &MessageQueue,
        timestamp_ms: i64,
    ) -> Result<i64, ClientError> {
        let header = SearchOffsetRequestHeader {
            topic: queue.topic.clone(),
            queue_id: queue.queue_id,
            timestamp: timestamp_ms,
            boundary_type: None,
            bname: Some(queue.broker_name.clone()),
        };
        let req =
            RemotingCommand::request_with(RequestCode::SearchOffsetByTimestamp.code(), &header);
        let resp = self.call_ok(addr, req).await?;
        Ok(decode_header::<OffsetResponseHeader>(addr, &resp)?.offset)
    }

    /// Store time of the message at `offset`, if the queue still has it.
    async fn store_time_at(&self, addr: &str, queue: &MessageQueue, offset: i64) -> Option<i64> {
        let pulled = self.pull(addr, queue, offset, 1).await.ok()?;
        (pulled.status == PullStatus::Found)
            .then(|| pulled.messages.first().map(|m| m.store_timestamp))
            .flatten()
    }

    /// Min and max offsets and last store time of every queue of `topic` (of the groups
    /// of `cluster` only, when given).
    pub async fn topic_status(
        &self,
        topic: &str,
        cluster: Option<&str>,
    ) -> Result<Vec<QueueStatus>, ClientError> {
        let route = self.topic_route(topic).await?;
        let mut out = Vec::new();
        for (addr, queues) in route_queues(topic, &route, false) {
            let in_cluster = |name: &str| {
                cluster.is_none_or(|c| {
                    route
                        .broker_datas
                        .iter()
                        .any(|b| b.broker_name == name && b.cluster == c)
                })
            };
            for queue in queues {
                if !in_cluster(&queue.broker_name) {
                    continue;
                }
                let min_offset = self.min_offset(&addr, &queue).await?;
                let max_offset = self.max_offset(&addr, &queue).await?;
                let last_update_ms = if max_offset > min_offset {
                    self.store_time_at(&addr, &queue, max_offset - 1).await
                } else {
                    None
                };
                out.push(QueueStatus {
                    queue,
                    min_offset,
                    max_offset,
                    last_update_ms,
                });
            }
        }
        Ok(out)
    }

    /// QUERY_CONSUMER_OFFSET: the group's committed offset of the queue, `None` if none.
    pub async fn consumer_offset(
        &self,
        addr: &str,
        group: &str,
        queue: &MessageQueue,
    ) -> Result<Option<i64>, ClientError> {
        let header = QueryConsumerOffsetRequestHeader {
            consumer_group: group.to_owned(),
            topic: queue.topic.clone(),
            queue_id: queue.queue_id,
            set_zero_if_not_found: Some(false),
            bname: Some(queue.broker_name.clone()),
        };
        let req = RemotingCommand::request_with(RequestCode::QueryConsumerOffset.code(), &header);
        let resp = self.call_with(addr, req, self.timeout).await?;
        if resp.code == ResponseCode::QueryNotFound.code() {
            return Ok(None);
        }
        let resp = success(addr, resp)?;
        Ok(Some(
            decode_header::<OffsetResponseHeader>(addr, &resp)?.offset,
        ))
    }

    /// UPDATE_CONSUMER_OFFSET (two-way, so the store is confirmed) on the group's master.
    pub async fn update_consumer_offset(
        &self,
        master: &str,
        group: &str,
        queue: &MessageQueue,
        offset: i64,
    ) -> Result<(), ClientError> {
        let header = UpdateConsumerOffsetRequestHeader {
            consumer_group: group.to_owned(),
            topic: queue.topic.clone(),
            queue_id: queue.queue_id,
            commit_offset: offset,
            bname: Some(queue.broker_name.clone()),
        };
        let req = RemotingCommand::request_with(RequestCode::UpdateConsumerOffset.code(), &header);
        self.call_ok(master, req).await.map(|_| ())
    }

    /// GET_CONSUMER_LIST_BY_GROUP: the group's live client ids on `addr`, sorted (empty when
    /// the broker knows no consumer of the group).
    pub async fn consumer_ids(&self, addr: &str, group: &str) -> Result<Vec<String>, ClientError> {
        let header = ConsumerGroupRequestHeader {
            consumer_group: group.to_owned(),
        };
        let req =
            RemotingCommand::request_with(RequestCode::GetConsumerListByGroup.code(), &header);
        let resp = self.call_with(addr, req, self.timeout).await?;
        if resp.code == ResponseCode::SystemError.code() {
            // "no consumer for this group"
            return Ok(Vec::new());
        }
        let resp = success(addr, resp)?;
        let mut ids = decode_json::<ConsumerIdList>("ConsumerIdList", &resp.body)
            .map_err(bad_body(addr))?
            .consumer_id_list;
        ids.sort();
        Ok(ids)
    }

    /// Consumer groups known by their `%RETRY%<group>` topics (created by the brokers when
    /// a clustering consumer first heartbeats), sorted.
    pub async fn consumer_groups(&self) -> Result<Vec<String>, ClientError> {
        Ok(self
            .topic_list()
            .await?
            .into_iter()
            .filter_map(|t| t.strip_prefix(RETRY_PREFIX).map(str::to_owned))
            .collect())
    }

    /// The progress of `group` on `topic`, or on every topic it has offsets for (its
    /// retry topic included) when `topic` is `None`.
    pub async fn consumer_progress(
        &self,
        group: &str,
        topic: Option<&str>,
    ) -> Result<ConsumerProgress, ClientError> {
        let topics = match topic {
            Some(t) => vec![t.to_owned()],
            None => self
                .topic_list()
                .await?
                .into_iter()
                .filter(|t| !skipped_for_progress(t, group))
                .collect(),
        };
        let mut progress = ConsumerProgress::default();
        let mut clients_from: Option<String> = None;
        let mut masters = std::collections::BTreeSet::new();
        for t in &topics {
            let route = match self.topic_route(t).await {
                Ok(r) => r,
                // Scanning every topic: one deleted meanwhile is skipped.
                Err(ClientError::Broker { code, .. })
                    if topic.is_none() && code == ResponseCode::TopicNotExist.code() =>
                {
                    continue
                }
                Err(e) => return Err(e),
            };
            let mut rows = Vec::new();
            for (addr, queues) in route_queues(t, &route, true) {
                clients_from.get_or_insert_with(|| addr.clone());
                masters.insert(addr.clone());
                for queue in queues {
                    let consumer_offset = self.consumer_offset(&addr, group, &queue).await?;
                    let broker_offset = self.max_offset(&addr, &queue).await?;
                    let last_timestamp = match consumer_offset {
                        Some(o) if o > 0 => self.store_time_at(&addr, &queue, o - 1).await,
                        _ => None,
                    };
                    rows.push(ProgressRow {
                        queue,
                        broker_offset,
                        consumer_offset,
                        client: None,
                        last_timestamp,
                    });
                }
            }
            if topic.is_some() || rows.iter().any(|r| r.consumer_offset.is_some()) {
                progress.rows.extend(rows);
            }
        }
        if let Some(addr) = clients_from {
            progress.clients = self.consumer_ids(&addr, group).await?;
        }
        let mut tps = Some(0.0);
        for addr in &masters {
            match self.consume_stats(addr, group, topic).await {
                Ok(s) => tps = tps.map(|t| t + s.consume_tps),
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "no consume stats");
                    tps = None;
                }
            }
        }
        progress.consume_tps = tps;
        assign_clients(&mut progress);
        Ok(progress)
    }

    /// GET_CONSUME_STATS: `group`'s offsets and consume TPS on `addr` (of `topic` only,
    /// when given).
    pub async fn consume_stats(
        &self,
        addr: &str,
        group: &str,
        topic: Option<&str>,
    ) -> Result<ConsumeStats, ClientError> {
        let header = GetConsumeStatsRequestHeader {
            consumer_group: group.to_owned(),
            topic: topic.map(str::to_owned),
        };
        let req = RemotingCommand::request_with(RequestCode::GetConsumeStats.code(), &header);
        let resp = self.call_ok(addr, req).await?;
        ConsumeStats::decode(&resp.body).map_err(|e| ClientError::BadAnswer(format!("{addr}: {e}")))
    }

    /// Sets the group's offset of every queue of `topic` (of group `broker_name` / queue
    /// `queue_id` only, when given) to the first message stored at or after
    /// `timestamp_ms` (-1: the queue's end), on each group's master, which also tells the
    /// group's online consumers to continue from there (INVOKE_BROKER_TO_RESET_OFFSET →
    /// RESET_CONSUMER_CLIENT_OFFSET, as RocketMQ). Without `force` a queue only rolls back.
    pub async fn reset_offset_by_time(
        &self,
        group: &str,
        topic: &str,
        timestamp_ms: i64,
        broker_name: Option<&str>,
        queue_id: Option<i32>,
        force: bool,
    ) -> Result<Vec<ResetEntry>, ClientError> {
        let route = self.topic_route(topic).await?;
        let mut out = Vec::new();
        for (_, queues) in route_queues(topic, &route, true) {
            let Some(name) = queues.first().map(|q| q.broker_name.clone()) else {
                continue;
            };
            if broker_name.is_some_and(|b| b != name) {
                continue;
            }
            if queue_id.is_some_and(|q| !queues.iter().any(|mq| mq.queue_id == q)) {
                continue;
            }
            let master = route_master(&route, &name)?;
            let header = ResetOffsetRequestHeader {
                topic: topic.to_owned(),
                group: group.to_owned(),
                timestamp: timestamp_ms,
                is_force: force,
                queue_id,
                offset: None,
            };
            out.extend(self.invoke_reset(&master, &header).await?);
        }
        if out.is_empty() {
            return Err(ClientError::InvalidArgument(format!(
                "no queue of topic {topic} matches{}{}",
                broker_name
                    .map(|b| format!(" broker {b}"))
                    .unwrap_or_default(),
                queue_id.map(|q| format!(" queue {q}")).unwrap_or_default()
            )));
        }
        Ok(out)
    }

    /// Sets one queue's offset for the group on its group's master, which tells the
    /// group's online consumers (as [`Self::reset_offset_by_time`]).
    pub async fn reset_queue_offset(
        &self,
        group: &str,
        queue: &MessageQueue,
        offset: i64,
    ) -> Result<i64, ClientError> {
        if queue.queue_id < 0 {
            return Err(ClientError::InvalidArgument(format!(
                "queue id {} is negative",
                queue.queue_id
            )));
        }
        let route = self.topic_route(&queue.topic).await?;
        let master = route_master(&route, &queue.broker_name)?;
        let header = ResetOffsetRequestHeader {
            topic: queue.topic.clone(),
            group: group.to_owned(),
            timestamp: -1,
            is_force: true,
            queue_id: Some(queue.queue_id),
            offset: Some(offset),
        };
        let entries = self.invoke_reset(&master, &header).await?;
        Ok(entries
            .iter()
            .find(|e| e.queue.queue_id == queue.queue_id)
            .map_or(offset, |e| e.offset))
    }

    /// INVOKE_BROKER_TO_RESET_OFFSET to `master`: the offsets it set.
    async fn invoke_reset(
        &self,
        master: &str,
        header: &ResetOffsetRequestHeader,
    ) -> Result<Vec<ResetEntry>, ClientError> {
        let req =
            RemotingCommand::request_with(RequestCode::InvokeBrokerToResetOffset.code(), header);
        let resp = self.call_ok(master, req).await?;
        let body = ResetOffsetBody::decode(&resp.body)
            .map_err(|e| ClientError::BadAnswer(format!("{master}: {e}")))?;
        Ok(body
            .offset_table
            .into_iter()
            .map(|(q, offset)| ResetEntry {
                queue: MessageQueue {
                    topic: q.topic,
                    broker_name: q.broker_name,
                    queue_id: q.queue_id,
                },
                offset,
            })
            .collect())
    }
}

/// Fills each row's predicted owner from the live client ids, topic by topic.
fn assign_clients(progress: &mut ConsumerProgress) {
    let clients = &progress.clients;
    let mut start = 0;
    while start < progress.rows.len() {
        let topic = progress.rows[start].queue.topic.clone();
        let end = progress.rows[start..]
            .iter()
            .position(|r| r.queue.topic != topic)
            .map_or(progress.rows.len(), |n| start + n);
        // Each client's share as its own rebalance computes it.
        let queues: Vec<MessageQueue> = progress.rows[start..end]
            .iter()
            .map(|r| r.queue.clone())
            .collect();
        let mut owner = std::collections::HashMap::new();
        for c in clients {
            for q in crate::consumer::allocate_averagely(c, &queues, clients) {
                owner.insert(q, c.clone());
            }
        }
        for row in &mut progress.rows[start..end] {
            row.client = owner.get(&row.queue).cloned();
        }
        start = end;
    }
}

fn queue_header(queue: &MessageQueue) -> QueueRequestHeader {
    QueueRequestHeader {
        topic: queue.topic.clone(),
        queue_id: queue.queue_id,
        bname: Some(queue.broker_name.clone()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn progress_skips_other_groups_and_system_topics() {
        assert!(!skipped_for_progress("TopicTest", "g"));
        assert!(!skipped_for_progress("%RETRY%g", "g"));
        assert!(skipped_for_progress("%RETRY%other", "g"));
        assert!(skipped_for_progress("%DLQ%g", "g"));
        assert!(skipped_for_progress("TBW102", "g"));
        assert!(skipped_for_progress("RMQ_SYS_TRANS_HALF_TOPIC", "g"));
    }

    fn row(topic: &str, broker: &str, q: i32) -> ProgressRow {
        ProgressRow {
            queue: MessageQueue {
                topic: topic.into(),
                broker_name: broker.into(),
                queue_id: q,
            },
            broker_offset: 10,
            consumer_offset: Some(4),
            client: None,
            last_timestamp: None,
        }
    }

    #[test]
    fn clients_are_assigned_per_topic_and_diffs_add_up() {
        let mut p = ConsumerProgress {
            rows: vec![
                row("A", "b", 0),
                row("A", "b", 1),
                row("A", "a", 0),
                row("B", "a", 0),
            ],
            clients: vec!["c1".into(), "c2".into()],
            consume_tps: None,
        };
        assign_clients(&mut p);
        let owners: Vec<_> = p.rows.iter().map(|r| r.client.as_deref()).collect();
        // Topic A sorted: a/0, b/0, b/1 → c1, c1, c2.
        assert_eq!(owners, [Some("c1"), Some("c2"), Some("c1"), Some("c1")]);
        assert_eq!(p.diff_total(), 24);
        let mut none = row("A", "a", 0);
        none.consumer_offset = None;
        assert_eq!(none.diff(), 10);
        none.consumer_offset = Some(12);
        assert_eq!(none.diff(), 0, "never negative");
    }

    #[test]
    fn route_queues_and_masters() {
        use raftmq_protocol::body::{BrokerData, QueueData};
        use std::collections::BTreeMap;
        let route = TopicRouteData {
            broker_datas: vec![
                BrokerData {
                    broker_name: "b".into(),
                    cluster: "C".into(),
                    broker_addrs: BTreeMap::from([(2, "f:2".to_owned())]),
                    ..Default::default()
                },
                BrokerData {
                    broker_name: "a".into(),
                    cluster: "C".into(),
                    broker_addrs: BTreeMap::from([(0, "m:1".to_owned()), (1, "f:1".to_owned())]),
                    ..Default::default()
                },
            ],
            queue_datas: vec![
                QueueData {
                    broker_name: "b".into(),
                    read_queue_nums: 2,
                    write_queue_nums: 3,
                    perm: 6,
                    topic_sys_flag: 0,
                },
                QueueData {
                    broker_name: "a".into(),
                    read_queue_nums: 1,
                    write_queue_nums: 1,
                    perm: 6,
                    topic_sys_flag: 0,
                },
            ],
            ..Default::default()
        };
        let q = route_queues("T", &route, true);
        assert_eq!(q.len(), 2);
        assert_eq!(q[0].0, "m:1", "master first, groups in name order");
        assert_eq!(q[1].0, "f:2", "no master: a follower serves reads");
        assert_eq!(q[1].1.len(), 2);
        assert_eq!(route_queues("T", &route, false)[1].1.len(), 3);
        assert_eq!(route_master(&route, "a").unwrap(), "m:1");
        assert!(route_master(&route, "b")
            .unwrap_err()
            .to_string()
            .contains("no master"));
        assert!(route_master(&route, "z").is_err());
    }
}
