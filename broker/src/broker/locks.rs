//! LOCK_BATCH_MQ (41) and UNLOCK_BATCH_MQ (42) (spec §2.4.14, §5.3): orderly consumers own
//! the queues they consume.
//!
//! The lock table is replicated state ([`crate::state::locks`]): the leader stamps its clock
//! into a `LockQueues` / `UnlockQueues` command and answers with what apply granted, so a
//! new leader after a failover refuses a queue its predecessor had granted. One proposal
//! per request (orderly clients renew every 20 s, so each client adds a raft entry per 20 s).
//! Followers answer SYSTEM_BUSY naming the leader, like every write. An UNREGISTER_CLIENT
//! on the leader releases the client's locks in that group (consumers.rs).
//! ```text
//! LOCK_BATCH_MQ --leader--> propose LockQueues{now_ms} --apply--> granted positions
//!               --> SUCCESS {"lockOKMQSet":[granted queues]}
//! ```

use std::collections::BTreeSet;
use std::sync::Arc;

use raftmq_protocol::body::{
    decode_json, encode_json, LockBatchRequestBody, LockBatchResponseBody, MessageQueue,
};
use raftmq_protocol::codes::ResponseCode;
use raftmq_protocol::RemotingCommand;
use raftmq_raft::status::Role;

use super::{now_ms, Broker};
use crate::state::{Command, QueueLockRequest, Reply};

/// Most distinct queues one lock or unlock request may name (a client names the queues
/// assigned to it on this broker group: a handful, rarely hundreds).
pub const LOCK_BATCH_QUEUES_MAX: usize = 4096;

/// A lock or unlock request body, checked; `Err` is the response to send.
fn lock_request(req: &RemotingCommand) -> Result<QueueLockRequest, RemotingCommand> {
    let bad =
        |remark: String| RemotingCommand::error_to(req, ResponseCode::InvalidParameter, remark);
    let body: LockBatchRequestBody = decode_json("LockBatchRequestBody", &req.body)
        .map_err(|e| bad(format!("bad LockBatchRequestBody: {e}")))?;
    if body.client_id.is_empty() || body.consumer_group.is_empty() {
        return Err(bad("lock request without clientId or consumerGroup".into()));
    }
    // A set, in a defined order: duplicates collapse and the command is canonical.
    let queues: BTreeSet<MessageQueue> = body.mq_set.into_iter().collect();
    if queues.len() > LOCK_BATCH_QUEUES_MAX {
        return Err(bad(format!(
            "{} queues in one lock request, at most {LOCK_BATCH_QUEUES_MAX}",
            queues.len()
        )));
    }
    Ok(QueueLockRequest {
        group: body.consumer_group,
        client_id: body.client_id,
        queues: queues.into_iter().collect(),
        now_ms: now_ms(),
    })
}

impl Broker {
    /// The parsed LOCK/UNLOCK_BATCH_MQ request, or the answer when it is malformed or this
    /// node is not the leader.
    fn leader_lock_request(
        &self,
        req: &RemotingCommand,
    ) -> Result<QueueLockRequest, RemotingCommand> {
        let request = lock_request(req)?;
        let status = self.status();
        if status.role != Role::Leader {
            return Err(self.not_leader(req, status.leader));
        }
        Ok(request)
    }

    /// LOCK_BATCH_MQ: grants the free (or expired, or already own) queues to the client.
    pub(super) async fn lock_batch(&self, req: &RemotingCommand) -> RemotingCommand {
        let request = match self.leader_lock_request(req) {
            Ok(r) => r,
            Err(resp) => return resp,
        };
        let queues = request.queues.clone();
        let (group, client) = (request.group.clone(), request.client_id.clone());
        let granted = if queues.is_empty() {
            Vec::new()
        } else {
            match self
                .propose_command(req, &Command::LockQueues(request))
                .await
            {
                Ok(Reply::Locked(positions)) => positions
                    .iter()
                    .filter_map(|&p| queues.get(p as usize).cloned())
                    .collect(),
                Ok(other) => return unexpected(req, &other),
                Err(resp) => return resp,
            }
        };
        tracing::debug!(
            %group,
            %client,
            requested = queues.len(),
            granted = granted.len(),
            "queues locked"
        );
        RemotingCommand::response_to(req, ResponseCode::Success).with_body(encode_json(
            &LockBatchResponseBody {
                lock_ok_mq_set: granted,
            },
        ))
    }

    /// UNLOCK_BATCH_MQ: releases those of the queues the client holds.
    pub(super) async fn unlock_batch(&self, req: &RemotingCommand) -> RemotingCommand {
        let request = match self.leader_lock_request(req) {
            Ok(r) => r,
            Err(resp) => return resp,
        };
        if request.queues.is_empty() {
            return RemotingCommand::response_to(req, ResponseCode::Success);
        }
        match self
            .propose_command(req, &Command::UnlockQueues(request))
            .await
        {
            Ok(Reply::Done) => RemotingCommand::response_to(req, ResponseCode::Success),
            Ok(other) => unexpected(req, &other),
            Err(resp) => resp,
        }
    }

    /// On the leader, releases in the background every lock `client_id` holds in `group`
    /// (it unregistered); nothing is proposed when it holds none. A follower skips: clients
    /// unregister from every node of the group, the leader included.
    pub(super) fn release_client_locks(self: &Arc<Self>, group: &str, client_id: &str) {
        if self.status().role != Role::Leader {
            return;
        }
        let queues = self
            .node
            .state_machine()
            .with(|sm| sm.locks().held_by(group, client_id));
        if queues.is_empty() {
            return;
        }
        let command = Command::UnlockQueues(QueueLockRequest {
            group: group.to_owned(),
            client_id: client_id.to_owned(),
            queues,
            now_ms: now_ms(),
        });
        let broker = self.clone();
        let (group, client) = (group.to_owned(), client_id.to_owned());
        tokio::spawn(async move {
            match broker.node.propose(command.encode()).await {
                Ok(_) => {
                    tracing::debug!(%group, %client, "released the locks of an unregistered client")
                }
                // They expire by themselves within 60 s.
                Err(e) => tracing::debug!(%group, %client, error = %e, "locks not released"),
            }
        });
    }
}

fn unexpected(req: &RemotingCommand, reply: &Reply) -> RemotingCommand {
    RemotingCommand::error_to(
        req,
        ResponseCode::SystemError,
        format!("unexpected apply reply to a lock command: {reply:?}"),
    )
}
