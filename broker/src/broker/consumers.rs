//! HEART_BEAT (34), UNREGISTER_CLIENT (35), GET_CONSUMER_LIST_BY_GROUP (38) and the
//! NOTIFY_CONSUMER_IDS_CHANGED (40) pushes (spec §2.4.8–§2.4.10, §2.6.2).
//!
//! The tables live in [`crate::clients`]; whenever a group's set of client ids changes
//! (join, unregister, connection close, 120 s expiry) every remaining member is sent a
//! oneway NOTIFY_CONSUMER_IDS_CHANGED over its own connection. Not yet: auto-creating
//! `%RETRY%<group>` topics and subscription groups on heartbeat.

use std::sync::MutexGuard;

use raftmq_protocol::body::{decode_json, encode_json, ConsumerIdList, HeartbeatData};
use raftmq_protocol::codes::{RequestCode, ResponseCode};
use raftmq_protocol::headers::{ConsumerGroupRequestHeader, UnregisterClientRequestHeader};
use raftmq_protocol::RemotingCommand;

use super::{bad_header, now_ms, Broker};
use crate::clients::{ClientTable, CLIENT_EXPIRY_MS};
use crate::server::Channel;

impl Broker {
    fn clients(&self) -> MutexGuard<'_, ClientTable<Channel>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// HEART_BEAT: records the client's groups and subscriptions on this node.
    pub(super) fn heart_beat(&self, req: &RemotingCommand, channel: &Channel) -> RemotingCommand {
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
        let mut resp = RemotingCommand::response_to(req, ResponseCode::Success);
        resp.ext_fields.insert("IS_SUPPORT_HEART_BEAT_V2", "true");
        resp.ext_fields.insert("IS_SUB_CHANGE", "true");
        resp
    }

    /// UNREGISTER_CLIENT: removes the client from the named groups.
    pub(super) fn unregister_client(&self, req: &RemotingCommand) -> RemotingCommand {
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
