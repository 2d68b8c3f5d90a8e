//! Request handling: one remoting command in, at most one response out.
//!
//! No sockets here; the server loop calls [`NamesrvState::process`] under a lock and
//! performs the I/O (writing the response, persisting the KV file).

use raftmq_protocol::body::{encode_json, KvTable, RegisterBrokerBody, TopicList};
use raftmq_protocol::codes::{RequestCode, ResponseCode};
use raftmq_protocol::headers::*;
use raftmq_protocol::message::body_crc;
use raftmq_protocol::RemotingCommand;
use tracing::{debug, info, warn};

use crate::config::NamesrvConfig;
use crate::kv::{KvConfig, ORDER_TOPIC_CONFIG};
use crate::route_table::{ConnId, RegisterOutcome, Registration, RouteTable};

/// Everything a NameServer knows: routes, KV config and its own config.
#[derive(Debug)]
pub struct NamesrvState {
    /// Route registry.
    pub table: RouteTable,
    /// KV configuration.
    pub kv: KvConfig,
    /// Effective config.
    pub config: NamesrvConfig,
}

/// The result of processing one request.
#[derive(Debug)]
pub struct Processed {
    /// The response; `None` for oneway requests and stray responses.
    pub response: Option<RemotingCommand>,
    /// The KV store changed and should be persisted.
    pub kv_changed: bool,
}

impl NamesrvState {
    /// Fresh state.
    pub fn new(config: NamesrvConfig, kv: KvConfig) -> Self {
        NamesrvState {
            table: RouteTable::new(),
            kv,
            config,
        }
    }

    /// Handles one command received on connection `conn` at `now_ms`.
    pub fn process(&mut self, req: &RemotingCommand, conn: ConnId, now_ms: u64) -> Processed {
        if req.is_response() {
            debug!(
                opaque = req.opaque,
                "ignoring a response frame: the NameServer sends no requests"
            );
            return Processed {
                response: None,
                kv_changed: false,
            };
        }
        let mut kv_changed = false;
        let response = match RequestCode::from_code(req.code) {
            Some(RequestCode::RegisterBroker) => self.register(req, conn, now_ms),
            Some(RequestCode::UnregisterBroker) => self.unregister(req),
            Some(RequestCode::GetRouteinfoByTopic) => self.route(req),
            Some(RequestCode::GetBrokerClusterInfo) => {
                RemotingCommand::response_to(req, ResponseCode::Success)
                    .with_body(encode_json(&self.table.cluster_info()))
            }
            Some(RequestCode::GetAllTopicListFromNameserver) => {
                if self.config.enable_topic_list {
                    let list = TopicList::new(self.table.topic_names());
                    RemotingCommand::response_to(req, ResponseCode::Success)
                        .with_body(encode_json(&list))
                } else {
                    RemotingCommand::error_to(req, ResponseCode::SystemError, "disable")
                }
            }
            Some(RequestCode::DeleteTopicInNamesrv) => {
                match req.header::<DeleteTopicFromNamesrvRequestHeader>() {
                    Ok(h) => {
                        info!(topic = %h.topic, cluster = ?h.cluster_name, "topic deleted from routes");
                        self.table.delete_topic(&h.topic, h.cluster_name.as_deref());
                        RemotingCommand::response_to(req, ResponseCode::Success)
                    }
                    Err(e) => bad_header(req, e),
                }
            }
            Some(RequestCode::GetKvConfig) => match req.header::<GetKvConfigRequestHeader>() {
                Ok(h) => match self.kv.get(&h.namespace, &h.key) {
                    Some(v) => RemotingCommand::response_to(req, ResponseCode::Success)
                        .with_header(&GetKvConfigResponseHeader {
                            value: Some(v.to_owned()),
                        }),
                    None => RemotingCommand::error_to(
                        req,
                        ResponseCode::QueryNotFound,
                        format!("No config item, Namespace: {} Key: {}", h.namespace, h.key),
                    ),
                },
                Err(e) => bad_header(req, e),
            },
            Some(RequestCode::PutKvConfig) => match req.header::<PutKvConfigRequestHeader>() {
                Ok(h) => {
                    kv_changed = self.kv.put(&h.namespace, &h.key, &h.value);
                    info!(namespace = %h.namespace, key = %h.key, value = %h.value, "kv config put");
                    RemotingCommand::response_to(req, ResponseCode::Success)
                }
                Err(e) => bad_header(req, e),
            },
            Some(RequestCode::DeleteKvConfig) => match req.header::<GetKvConfigRequestHeader>() {
                Ok(h) => {
                    kv_changed = self.kv.delete(&h.namespace, &h.key);
                    info!(namespace = %h.namespace, key = %h.key, "kv config deleted");
                    RemotingCommand::response_to(req, ResponseCode::Success)
                }
                Err(e) => bad_header(req, e),
            },
            _ => RemotingCommand::error_to(
                req,
                ResponseCode::RequestCodeNotSupported,
                format!(" request type {} not supported", req.code),
            ),
        };
        Processed {
            response: (!req.is_oneway()).then_some(response),
            kv_changed,
        }
    }

    fn register(&mut self, req: &RemotingCommand, conn: ConnId, now_ms: u64) -> RemotingCommand {
        let h = match req.header::<RegisterBrokerRequestHeader>() {
            Ok(h) => h,
            Err(e) => return bad_header(req, e),
        };
        if let Some(crc) = h.body_crc32.filter(|c| *c != 0) {
            let actual = body_crc(&req.body);
            if actual != crc {
                warn!(broker = %h.broker_addr, expected = crc, actual, "register body crc32 mismatch");
                return RemotingCommand::error_to(
                    req,
                    ResponseCode::SystemError,
                    "crc32 not match",
                );
            }
        }
        let body =
            match RegisterBrokerBody::decode(&req.body, h.compressed.unwrap_or(false), req.version)
            {
                Ok(b) => b,
                Err(e) => {
                    warn!(broker = %h.broker_addr, error = %e, "bad register body");
                    return RemotingCommand::error_to(
                        req,
                        ResponseCode::SystemError,
                        format!("register broker failed: {e}"),
                    );
                }
            };
        let wrapper = body.topic_config_serialize_wrapper;
        let reg = Registration {
            cluster: h.cluster_name.clone(),
            broker_name: h.broker_name.clone(),
            broker_addr: h.broker_addr.clone(),
            ha_server_addr: h.ha_server_addr.clone(),
            broker_id: h.broker_id,
            timeout_ms: h
                .heartbeat_timeout_millis
                .and_then(|t| u64::try_from(t).ok())
                .filter(|t| *t > 0),
            data_version: wrapper.data_version,
            topics: wrapper.topic_config_table,
            enable_acting_master: h.enable_acting_master.unwrap_or(false),
            zone_name: h.zone_name.clone(),
        };
        let term = reg.data_version.state_version;
        let before = self.table.broker_id_of(&h.broker_name, &h.broker_addr);
        match self.table.register(reg, Some(conn), now_ms) {
            RegisterOutcome::Accepted {
                master_addr,
                ha_server_addr,
            } => {
                if before != Some(h.broker_id) {
                    info!(cluster = %h.cluster_name, broker = %h.broker_name, addr = %h.broker_addr,
                        id = h.broker_id, term, previous_id = ?before, "broker node registered");
                } else {
                    debug!(broker = %h.broker_name, addr = %h.broker_addr, id = h.broker_id, term, "broker re-registered");
                }
                let order = self.kv.namespace(ORDER_TOPIC_CONFIG);
                let mut resp = RemotingCommand::response_to(req, ResponseCode::Success)
                    .with_header(&RegisterBrokerResponseHeader {
                        master_addr,
                        ha_server_addr,
                    });
                if !order.is_empty() {
                    resp = resp.with_body(encode_json(&KvTable { table: order }));
                }
                resp
            }
            RegisterOutcome::Fenced {
                holder,
                holder_term,
            } => {
                warn!(broker = %h.broker_name, addr = %h.broker_addr, id = h.broker_id, term, %holder, holder_term,
                    "stale registration fenced: id held by a live node with a higher term");
                // Java answers SUCCESS without masterAddr; the claim is simply not recorded.
                RemotingCommand::response_to(req, ResponseCode::Success)
            }
        }
    }

    fn unregister(&mut self, req: &RemotingCommand) -> RemotingCommand {
        match req.header::<UnregisterBrokerRequestHeader>() {
            Ok(h) => {
                info!(broker = %h.broker_name, addr = %h.broker_addr, id = h.broker_id, "broker node unregistered");
                self.table
                    .unregister(&h.cluster_name, &h.broker_name, &h.broker_addr);
                RemotingCommand::response_to(req, ResponseCode::Success)
            }
            Err(e) => bad_header(req, e),
        }
    }

    fn route(&self, req: &RemotingCommand) -> RemotingCommand {
        let h = match req.header::<GetRouteInfoRequestHeader>() {
            Ok(h) => h,
            Err(e) => return bad_header(req, e),
        };
        match self.table.route(&h.topic) {
            Some(mut route) => {
                if self.config.order_message_enable {
                    route.order_topic_conf =
                        self.kv.get(ORDER_TOPIC_CONFIG, &h.topic).map(str::to_owned);
                }
                RemotingCommand::response_to(req, ResponseCode::Success)
                    .with_body(encode_json(&route))
            }
            None => RemotingCommand::error_to(
                req,
                ResponseCode::TopicNotExist,
                format!(
                    "No topic route info in name server for the topic: {}",
                    h.topic
                ),
            ),
        }
    }
}

fn bad_header(req: &RemotingCommand, e: raftmq_protocol::ProtocolError) -> RemotingCommand {
    warn!(code = req.code, error = %e, "bad request header");
    RemotingCommand::error_to(
        req,
        ResponseCode::SystemError,
        format!("bad request header: {e}"),
    )
}
