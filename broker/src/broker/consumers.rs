//! HEART_BEAT (34), UNREGISTER_CLIENT (35), GET_CONSUMER_LIST_BY_GROUP (38) and the
//! NOTIFY_CONSUMER_IDS_CHANGED (40) pushes (spec §2.4.8–§2.4.10, §2.6.2).
//!
//! The tables live in [`crate::clients`]; whenever a group's set of client ids changes
//! (join, unregister, connection close, 120 s expiry) every remaining member is sent a
//! oneway NOTIFY_CONSUMER_IDS_CHANGED over its own connection.
//!
//! A heartbeat naming a clustering consumer group whose `%RETRY%<group>` topic does not
//! exist makes the leader create it (1 queue, perm 6) with an `UpsertTopic` proposal in the
//! background (the heartbeat is answered at once) and wake the registrar, so NameServers
//! route it promptly. A follower cannot propose and skips: consumers heartbeat every node of
//! the group, the leader included. Not yet: a replicated subscription-group table (§2.5;
//! every group behaves as the defaults, `retryQueueNums` 1).

use std::sync::{Arc, MutexGuard};

use raftmq_protocol::body::topic::{perm, TopicConfig};
use raftmq_protocol::body::{decode_json, encode_json, ConsumerIdList, HeartbeatData};
use raftmq_protocol::codes::{RequestCode, ResponseCode};
use raftmq_protocol::headers::{ConsumerGroupRequestHeader, UnregisterClientRequestHeader};
use raftmq_protocol::RemotingCommand;
use raftmq_raft::status::Role;

use super::send::{check_topic_name, RETRY_PREFIX};
use super::{bad_header, now_ms, Broker};
use crate::clients::{ClientTable, CLIENT_EXPIRY_MS};
use crate::server::Channel;
use crate::state::{Command, Reply};

/// Queues of an auto-created `%RETRY%<group>` topic (§2.5 `retryQueueNums` default).
pub const RETRY_QUEUE_NUMS: i32 = 1;

impl Broker {
    fn clients(&self) -> MutexGuard<'_, ClientTable<Channel>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// HEART_BEAT: records the client's groups and subscriptions on this node, and has the
    /// leader create missing `%RETRY%<group>` topics.
    pub(super) fn heart_beat(
        self: &Arc<Self>,
        req: &RemotingCommand,
        channel: &Channel,
    ) -> RemotingCommand {
        let hb: HeartbeatData = match decode_json("HeartbeatData", &req.body) {
            Ok(hb) => hb,
            Err(e) => {
                return RemotingCommand::error_to(
                    req,
                    ResponseCode::SystemError,
                    format!("bad HeartbeatData: {e}"),
                )
            }
        };
        let changed = self
            .clients()
            .heartbeat(&hb, channel, channel.id(), now_ms());
        self.notify_changed(&changed);
        self.ensure_retry_topics(&hb);
        let mut resp = RemotingCommand::response_to(req, ResponseCode::Success);
        resp.ext_fields.insert("IS_SUPPORT_HEART_BEAT_V2", "true");
        resp.ext_fields.insert("IS_SUB_CHANGE", "true");
        resp
    }

    /// Starts the creation of `%RETRY%<group>` for each clustering group of `hb` that lacks
    /// it: on the leader only, one proposal per topic at a time, in the background.
    fn ensure_retry_topics(self: &Arc<Self>, hb: &HeartbeatData) {
        if self.status().role != Role::Leader {
            return;
        }
        for cd in &hb.consumer_data_set {
            if cd.group_name.is_empty() || cd.message_model.eq_ignore_ascii_case("BROADCASTING") {
                continue;
            }
            let topic = format!("{RETRY_PREFIX}{}", cd.group_name);
            if check_topic_name(&topic).is_err()
                || self
                    .node
                    .state_machine()
                    .with(|sm| sm.topic(&topic).is_some())
            {
                continue;
            }
            let fresh = self
                .retry_creating
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(topic.clone());
            if fresh {
                let broker = self.clone();
                tokio::spawn(async move { broker.create_retry_topic(topic).await });
            }
        }
    }

    /// Proposes `%RETRY%<group>` (1 queue, perm 6) unless it appeared meanwhile, then wakes
    /// the registrar.
    async fn create_retry_topic(self: Arc<Self>, topic: String) {
        let exists = self
            .node
            .state_machine()
            .with(|sm| sm.topic(&topic).is_some());
        let mut config = TopicConfig::new(topic.clone(), RETRY_QUEUE_NUMS);
        config.perm = perm::READ | perm::WRITE;
        let command = Command::UpsertTopic {
            config,
            timestamp_ms: now_ms(),
        };
        let result = if exists {
            None
        } else {
            Some(self.node.propose(command.encode()).await)
        };
        self.retry_creating
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&topic);
        match result.map(|r| r.map(|b| Reply::decode(&b))) {
            None => {}
            Some(Ok(Some(Reply::Done))) => {
                tracing::info!(%topic, "auto-created retry topic on heartbeat");
                self.poke_registrar();
            }
            Some(Ok(other)) => tracing::warn!(%topic, reply = ?other, "retry topic not created"),
            // A later heartbeat (every 30 s, to every node) tries again.
            Some(Err(e)) => tracing::debug!(%topic, error = %e, "retry topic not created"),
        }
    }

    /// UNREGISTER_CLIENT: removes the client from the named groups; the leader also
    /// releases its queue locks in the consumer group.
    pub(super) fn unregister_client(self: &Arc<Self>, req: &RemotingCommand) -> RemotingCommand {
        let h: UnregisterClientRequestHeader = match req.header() {
            Ok(h) => h,
            Err(e) => return bad_header(req, e),
        };
        let changed = self.clients().unregister(
            &h.client_id,
            h.consumer_group.as_deref(),
            h.producer_group.as_deref(),
        );
        self.notify_changed(&changed);
        if let Some(group) = h.consumer_group.as_deref().filter(|g| !g.is_empty()) {
            self.release_client_locks(group, &h.client_id);
        }
        RemotingCommand::response_to(req, ResponseCode::Success)
    }

    /// GET_CONSUMER_LIST_BY_GROUP: the live client ids of the group on this node.
    pub(super) fn consumer_list(&self, req: &RemotingCommand) -> RemotingCommand {
        let h: ConsumerGroupRequestHeader = match req.header() {
            Ok(h) => h,
            Err(e) => return bad_header(req, e),
        };
        let ids = self.clients().consumer_ids(&h.consumer_group);
        if ids.is_empty() {
            return RemotingCommand::error_to(
                req,
                ResponseCode::SystemError,
                format!("no consumer for this group, {}", h.consumer_group),
            );
        }
        RemotingCommand::response_to(req, ResponseCode::Success).with_body(encode_json(
            &ConsumerIdList {
                consumer_id_list: ids,
            },
        ))
    }

    /// Forgets every client registered over connection `conn_id` (it closed).
    pub fn connection_closed(&self, conn_id: u64) {
        let changed = self.clients().remove_connection(conn_id);
        self.notify_changed(&changed);
    }

    /// Drops clients without a heartbeat for 120 s (the server calls this every 10 s).
    pub fn expire_clients(&self) {
        let changed = self.clients().expire(now_ms(), CLIENT_EXPIRY_MS);
        self.notify_changed(&changed);
    }

    /// The registered subscription of `topic` by `group` (see
    /// [`ClientTable::subscription`]).
    pub(super) fn registered_subscription(
        &self,
        group: &str,
        topic: &str,
    ) -> Option<Option<raftmq_protocol::body::SubscriptionData>> {
        self.clients().subscription(group, topic)
    }

    /// The connections of `group`'s consumers on this node.
    pub(super) fn consumer_channels(&self, group: &str) -> Vec<Channel> {
        self.clients().consumer_channels(group)
    }

    /// Sends NOTIFY_CONSUMER_IDS_CHANGED to every remaining member of each group.
    fn notify_changed(&self, groups: &[String]) {
        for group in groups {
            let channels = self.clients().consumer_channels(group);
            let header = ConsumerGroupRequestHeader {
                consumer_group: group.clone(),
            };
            for channel in channels {
                let push = RemotingCommand::request_with(
                    RequestCode::NotifyConsumerIdsChanged.code(),
                    &header,
                )
                .oneway();
                if !channel.push(push) {
                    tracing::debug!(%group, peer = %channel.peer(), "consumer ids notice dropped");
                }
            }
        }
    }
}
