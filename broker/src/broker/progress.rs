//! GET_CONSUME_STATS (208): a consumer group's progress on this node, as Java's
//! `mqadmin consumerProgress` and dashboards ask for it: per queue the max offset, the
//! group's committed offset and the store time of the last consumed message, plus the
//! messages per second the group pulled here over the last minute.

use std::collections::BTreeSet;

use raftmq_protocol::body::{ConsumeStats, MessageQueue, OffsetWrapper};
use raftmq_protocol::codes::ResponseCode;
use raftmq_protocol::headers::GetConsumeStatsRequestHeader;
use raftmq_protocol::RemotingCommand;

use super::{bad_header, Broker};

impl Broker {
    /// GET_CONSUME_STATS, from applied state on any node (offsets are replicated; the TPS
    /// counts this node's pulls).
    pub(super) fn consume_stats(&self, req: &RemotingCommand) -> RemotingCommand {
        let h: GetConsumeStatsRequestHeader = match req.header() {
            Ok(h) => h,
            Err(e) => return bad_header(req, e),
        };
        let group = h.consumer_group;
        let only = h.topic.filter(|t| !t.is_empty());
        // As Java: a topic that does not exist (or no longer) is skipped, not an error.
        let mut stats = self.node.state_machine().with(|sm| {
            let topics: BTreeSet<String> = match &only {
                Some(t) => BTreeSet::from([t.clone()]),
                None => sm
                    .consumer_offsets()
                    .of_group(&group)
                    .into_iter()
                    .map(|(t, _, _)| t.to_owned())
                    .collect(),
            };
            let mut stats = ConsumeStats::default();
            for topic in &topics {
                let Some(config) = sm.topic(topic) else {
                    continue;
                };
                for q in 0..config.read_queue_nums {
                    let consumer_offset = sm.consumer_offset(&group, topic, q).unwrap_or(0).max(0);
                    let last_timestamp = if consumer_offset > 0 {
                        sm.store_time(topic, q, consumer_offset - 1).unwrap_or(0)
                    } else {
                        0
                    };
                    stats.offset_table.insert(
                        MessageQueue {
                            broker_name: self.config.broker_name.clone(),
                            queue_id: q,
                            topic: topic.clone(),
                        },
                        OffsetWrapper {
                            broker_offset: sm.max_offset(topic, q),
                            consumer_offset,
                            pull_offset: consumer_offset,
                            last_timestamp,
                        },
                    );
                }
            }
            stats
        });
        // The pull counters have their own lock: taken after the state machine's is released.
        let topics: BTreeSet<&str> = stats
            .offset_table
            .keys()
            .map(|q| q.topic.as_str())
            .collect();
        stats.consume_tps = topics.iter().map(|t| self.stats.group_tps(t, &group)).sum();
        RemotingCommand::response_to(req, ResponseCode::Success).with_body(stats.encode())
    }
}
