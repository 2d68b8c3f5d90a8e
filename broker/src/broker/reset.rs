//! INVOKE_BROKER_TO_RESET_OFFSET (222): `mqadmin resetOffsetByTime` on a live group.
//!
//! The leader works out each queue's new offset from its applied state (the first message
//! stored at or after the timestamp, or the given offset), commits them through raft like
//! any offset commit, then tells every consumer of the group connected to this node with a
//! oneway RESET_CONSUMER_CLIENT_OFFSET (220) carrying the table, so they drop what they
//! hold of those queues and continue from the new offsets instead of committing their old
//! ones over the reset. The answer carries the same table.

use std::collections::BTreeMap;

use raftmq_protocol::body::{MessageQueue, ResetOffsetBody};
use raftmq_protocol::codes::{RequestCode, ResponseCode};
use raftmq_protocol::headers::{CommandHeader, ResetOffsetRequestHeader};
use raftmq_protocol::RemotingCommand;
use raftmq_raft::status::Role;

use super::{bad_header, Broker};
use crate::state::{Boundary, BrokerStateMachine, Command, OffsetCommit};

/// The new offset of one queue: `offset` if given, else the first message stored at or
/// after `timestamp` (-1: the queue's end); without `force`, an offset ahead of the group's
/// current one is not taken (a reset only rolls back).
pub(super) fn reset_target(
    sm: &BrokerStateMachine,
    h: &ResetOffsetRequestHeader,
    queue_id: i32,
) -> i64 {
    let target = match h.offset {
        Some(o) if h.queue_id.is_some_and(|q| q >= 0) => o.clamp(
            sm.min_offset(&h.topic, queue_id),
            sm.max_offset(&h.topic, queue_id),
        ),
        _ if h.timestamp < 0 => sm.max_offset(&h.topic, queue_id),
        _ => sm.search_offset_by_timestamp(&h.topic, queue_id, h.timestamp, Boundary::Lower),
    };
    choose(
        target,
        sm.consumer_offset(&h.group, &h.topic, queue_id),
        h.is_force,
    )
}

/// The offset a reset stores: `target`, unless it is not forced and would not move the
/// group's `current` offset back.
fn choose(target: i64, current: Option<i64>, force: bool) -> i64 {
    match current {
        Some(current) if !force && target >= current => current,
        _ => target,
    }
}

impl Broker {
    /// INVOKE_BROKER_TO_RESET_OFFSET: on the leader only.
    pub(super) async fn invoke_reset_offset(&self, req: &RemotingCommand) -> RemotingCommand {
        let h: ResetOffsetRequestHeader = match req.header() {
            Ok(h) => h,
            Err(e) => return bad_header(req, e),
        };
        let status = *self.node.status().borrow();
        if status.role != Role::Leader {
            return self.not_leader(req, status.leader);
        }
        let only = h.queue_id.filter(|q| *q >= 0);
        if h.offset.is_some() && only.is_none() {
            return RemotingCommand::error_to(
                req,
                ResponseCode::InvalidParameter,
                "an offset needs a queue id (0 or more)",
            );
        }
        let table: Option<BTreeMap<MessageQueue, i64>> = self.node.state_machine().with(|sm| {
            let topic = sm.topic(&h.topic)?;
            let queues = topic.read_queue_nums.max(topic.write_queue_nums);
            Some(
                (0..queues)
                    .filter(|q| only.is_none_or(|o| o == *q))
                    .map(|q| {
                        let mq = MessageQueue {
                            broker_name: self.config.broker_name.clone(),
                            queue_id: q,
                            topic: h.topic.clone(),
                        };
                        (mq, reset_target(sm, &h, q))
                    })
                    .collect(),
            )
        });
        let Some(table) = table else {
            return RemotingCommand::error_to(
                req,
                ResponseCode::TopicNotExist,
                format!("topic[{}] not exist", h.topic),
            );
        };
        if table.is_empty() {
            return RemotingCommand::error_to(
                req,
                ResponseCode::InvalidParameter,
                format!("topic {} has no queue {:?} on this broker", h.topic, only),
            );
        }
        let commits = table
            .iter()
            .map(|(mq, offset)| OffsetCommit {
                group: h.group.clone(),
                topic: h.topic.clone(),
                queue_id: mq.queue_id,
                offset: *offset,
            })
            .collect();
        if let Err(resp) = self
            .propose_command(req, &Command::CommitOffsets(commits))
            .await
        {
            return resp;
        }
        let body = ResetOffsetBody {
            offset_table: table,
        }
        .encode();
        let channels = self.consumer_channels(&h.group);
        let mut told = 0;
        for channel in &channels {
            let push =
                RemotingCommand::request(RequestCode::ResetConsumerClientOffset.code(), h.to_ext())
                    .with_body(body.clone())
                    .oneway();
            if channel.push(push) {
                told += 1;
            }
        }
        tracing::info!(group = %h.group, topic = %h.topic, timestamp = h.timestamp,
            force = h.is_force, consumers = told, "consumer offsets reset");
        RemotingCommand::response_to(req, ResponseCode::Success).with_body(body)
    }
}

#[cfg(test)]
mod tests {
    use super::choose;

    #[test]
    fn only_a_forced_reset_moves_an_offset_forward() {
        assert_eq!(choose(10, Some(5), true), 10);
        assert_eq!(choose(10, Some(5), false), 5);
        assert_eq!(choose(3, Some(5), false), 3);
        assert_eq!(choose(3, Some(5), true), 3);
        assert_eq!(choose(7, None, false), 7);
    }
}
