//! What `mqadmin` asks of a cluster, as an async client ([`AdminClient`]): routes, cluster
//! and topic lists from the NameServers; topic creation and deletion, runtime info, queue
//! and consumer offsets, messages by id, key or offset, single sends and pulls, offset
//! resets, and RaftMQ's raft admin codes (9001 leader transfer, 9002 group status) from
//! the brokers.
//!
//! ```text
//! AdminClient --NameServer calls (each address in turn until one answers)--> routes, cluster info
//!             --broker calls (ConnectionPool, one pipelined connection per address)--> offsets, messages
//! ```
//! Layout: this file holds the client, the NameServer calls, topic admin and the raft
//! codes; [`offsets`] queue and consumer offsets (status, progress, reset); [`messages`]
//! lookups, pulls and sends. Reads go to a group's master when it has one, else to any of
//! its nodes (every node serves applied data); writes go to the master. Every server
//! answer is checked: a non-success code is [`ClientError::Broker`] with its code and
//! remark, an undecodable header or body is [`ClientError::BadAnswer`]; nothing panics.

mod messages;
mod offsets;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use raftmq_protocol::body::{
    decode_json, BrokerData, ClusterInfo, KvTable, RaftGroupStatus, TopicConfig, TopicList,
    TopicRouteData,
};
use raftmq_protocol::codes::{RequestCode, ResponseCode};
use raftmq_protocol::headers::{
    CommandHeader, CreateTopicRequestHeader, DeleteTopicFromNamesrvRequestHeader,
    DeleteTopicRequestHeader, GetRouteInfoRequestHeader, RaftLeaderTransferRequestHeader,
};
use raftmq_protocol::msgid::UniqKeyGenerator;
use raftmq_protocol::{RemotingCommand, StrMap};
use tracing::Instrument;

pub use messages::{PullOutcome, PullStatus, SendOutcome, SendRequest};
pub use offsets::{ConsumerProgress, ProgressRow, QueueStatus, ResetEntry};

use crate::instance::now_ms;
use crate::remoting::ConnectionPool;
use crate::ClientError;

/// Time limit of one request unless set with [`AdminClient::with_timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time limit of a connection attempt.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Time limit of RAFTMQ_LEADER_TRANSFER: the broker waits up to 10 s for the target.
pub const LEADER_TRANSFER_TIMEOUT: Duration = Duration::from_secs(15);
/// Template topic whose route stands in for a topic the NameServers do not know yet
/// (brokers with `autoCreateTopicEnable` create it on the first send).
pub const AUTO_CREATE_TOPIC: &str = "TBW102";
/// Consumer group of the tools' pulls and offset queries (RocketMQ's `TOOLS_CONSUMER`).
pub const TOOLS_CONSUMER_GROUP: &str = "TOOLS_CONSUMER";
/// Producer group of the tools' sends.
pub const TOOLS_PRODUCER_GROUP: &str = "TOOLS_PRODUCER";

/// Admin client over the NameServers of one cluster (or several clusters sharing them).
#[derive(Debug)]
pub struct AdminClient {
    namesrvs: Vec<String>,
    next_namesrv: AtomicUsize,
    pool: ConnectionPool,
    timeout: Duration,
    uniq: UniqKeyGenerator,
    /// Where round-robin queue choice starts (random per client, as RocketMQ producers).
    send_start: AtomicUsize,
}

/// The outcome of a topic deletion: who deleted it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeletedTopic {
    /// Master addresses that deleted the topic.
    pub brokers: Vec<String>,
    /// NameServers that dropped it from their routes.
    pub namesrvs: Vec<String>,
}

/// The outcome of RAFTMQ_LEADER_TRANSFER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderTransfer {
    /// The node that answered (the group's leader when the request was made).
    pub addr: String,
    /// Its remark, e.g. `leadership transferred to node 1`.
    pub remark: String,
}

/// One broker group of a cluster and its master, if it has one right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMaster {
    /// Broker group name.
    pub broker_name: String,
    /// The master's address (`brokerId` 0); `None` while the group elects.
    pub master: Option<String>,
}

/// The broker groups of `cluster` in name order, with their masters; `InvalidArgument`
/// naming the known clusters if there is no such cluster.
pub fn cluster_masters(info: &ClusterInfo, cluster: &str) -> Result<Vec<GroupMaster>, ClientError> {
    let Some(names) = info.cluster_addr_table.get(cluster) else {
        let known: Vec<&str> = info.cluster_addr_table.keys().map(String::as_str).collect();
        return Err(ClientError::InvalidArgument(format!(
            "no cluster named {cluster} (the NameServers know: {})",
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        )));
    };
    Ok(names
        .iter()
        .map(|name| GroupMaster {
            broker_name: name.clone(),
            master: info
                .broker_addr_table
                .get(name)
                .and_then(|b| b.master_addr().map(str::to_owned)),
        })
        .collect())
}

/// The address to read a group's applied data from: its master, else its lowest-id node.
pub fn read_addr(group: &BrokerData) -> Option<&str> {
    group
        .master_addr()
        .or_else(|| group.broker_addrs.values().next().map(String::as_str))
}

/// The leader's client address in a follower's "not the leader" remark
/// (`...; not the leader, leader is 127.0.0.1:30912 (raft node 1)`), if it names one.
pub fn leader_hint(remark: &str) -> Option<&str> {
    let rest = remark.split("leader is ").nth(1)?;
    let addr = rest.split(" (").next()?.trim();
    let well_formed = addr
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
    well_formed.then_some(addr)
}

/// The error for an answer from `addr` whose body does not decode.
fn bad_body(addr: &str) -> impl Fn(raftmq_protocol::ProtocolError) -> ClientError + '_ {
    move |e| ClientError::BadAnswer(format!("{addr}: {e}"))
}

/// Decodes a response header, naming who sent it when it does not parse.
fn decode_header<H: CommandHeader>(addr: &str, resp: &RemotingCommand) -> Result<H, ClientError> {
    resp.header::<H>()
        .map_err(|e| ClientError::BadAnswer(format!("{addr}: response header: {e}")))
}

/// A per-process random number without a RNG dependency (std's hasher keys are random).
fn random_u64() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(now_ms())
}

/// The local address a connection to `peer` would leave from (no packet is sent), else
/// 127.0.0.1: it goes into the UNIQ_KEY of sent messages.
fn local_ip(peer: Option<&str>) -> std::net::IpAddr {
    let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
    let Some(peer) = peer.and_then(|p| p.parse::<std::net::SocketAddr>().ok()) else {
        return loopback;
    };
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect(peer)?;
            s.local_addr()
        })
        .map_or(loopback, |a| a.ip())
}

impl AdminClient {
    /// A client of the NameServers `namesrvs` (`host:port` each); none is an error.
    pub fn new(namesrvs: Vec<String>) -> Result<Self, ClientError> {
        if namesrvs.is_empty() {
            return Err(ClientError::NoNamesrv);
        }
        let random = random_u64();
        let uniq = UniqKeyGenerator::new(
            local_ip(namesrvs.first().map(String::as_str)),
            std::process::id(),
            random as i32,
        );
        Ok(AdminClient {
            next_namesrv: AtomicUsize::new(random as usize % namesrvs.len()),
            namesrvs,
            pool: ConnectionPool::new(CONNECT_TIMEOUT, None),
            timeout: DEFAULT_TIMEOUT,
            uniq,
            send_start: AtomicUsize::new((random >> 32) as usize),
        })
    }

    /// A client of the NameServers from `builder` (e.g. `-n`), else `NAMESRV_ADDR`, else
    /// the `rocketmq.namesrv.addr` value `property`.
    pub fn from_env(builder: Option<&str>, property: Option<&str>) -> Result<Self, ClientError> {
        Self::new(crate::namesrv::resolve_from_env(builder, property)?)
    }

    /// Sets the time limit of each request.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The NameServer addresses.
    pub fn namesrvs(&self) -> &[String] {
        &self.namesrvs
    }

    /// Sends `req` to `addr` and returns whatever answer comes back.
    async fn call_with(
        &self,
        addr: &str,
        req: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, ClientError> {
        let span = tracing::debug_span!("admin_call", peer = %addr, code = req.code);
        async {
            let resp = self.pool.call(addr, req, timeout).await;
            if let Ok(r) = &resp {
                tracing::debug!(answer = r.code, "answered");
            }
            resp
        }
        .instrument(span)
        .await
    }

    /// Sends `req` to `addr`; a non-success answer is an error.
    async fn call_ok(
        &self,
        addr: &str,
        req: RemotingCommand,
    ) -> Result<RemotingCommand, ClientError> {
        let resp = self.call_with(addr, req, self.timeout).await?;
        success(addr, resp)
    }

    /// Sends `req` to the NameServers in turn, from a rotating start, until one answers
    /// (whatever the code); the last failure if none does.
    async fn namesrv_call(
        &self,
        req: RemotingCommand,
    ) -> Result<(String, RemotingCommand), ClientError> {
        let n = self.namesrvs.len();
        let start = self.next_namesrv.fetch_add(1, Ordering::Relaxed);
        let mut last = ClientError::NoNamesrv;
        for k in 0..n {
            let addr = &self.namesrvs[(start + k) % n];
            match self.call_with(addr, req.clone(), self.timeout).await {
                Ok(resp) => return Ok((addr.clone(), resp)),
                Err(e) => {
                    tracing::debug!(namesrv = %addr, error = %e, "NameServer did not answer");
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// [`Self::namesrv_call`], a non-success answer being an error.
    async fn namesrv_call_ok(
        &self,
        req: RemotingCommand,
    ) -> Result<(String, RemotingCommand), ClientError> {
        let (addr, resp) = self.namesrv_call(req).await?;
        Ok((addr.clone(), success(&addr, resp)?))
    }

    // ---- NameServer queries ---------------------------------------------------------------

    /// GET_ROUTEINFO_BY_TOPIC: the topic's route (TOPIC_NOT_EXIST when no broker serves it).
    pub async fn topic_route(&self, topic: &str) -> Result<TopicRouteData, ClientError> {
        let header = GetRouteInfoRequestHeader {
            topic: topic.to_owned(),
            accept_standard_json_only: Some(true),
        };
        let req = RemotingCommand::request_with(RequestCode::GetRouteinfoByTopic.code(), &header);
        let (addr, resp) = self.namesrv_call_ok(req).await?;
        decode_json("TopicRouteData", &resp.body).map_err(bad_body(&addr))
    }

    /// GET_BROKER_CLUSTER_INFO: every broker group and cluster the NameServers know.
    pub async fn cluster_info(&self) -> Result<ClusterInfo, ClientError> {
        let req = RemotingCommand::request(RequestCode::GetBrokerClusterInfo.code(), StrMap::new());
        let (addr, resp) = self.namesrv_call_ok(req).await?;
        decode_json("ClusterInfo", &resp.body).map_err(bad_body(&addr))
    }

    /// GET_ALL_TOPIC_LIST_FROM_NAMESERVER: every topic name, sorted.
    pub async fn topic_list(&self) -> Result<Vec<String>, ClientError> {
        let req = RemotingCommand::request(
            RequestCode::GetAllTopicListFromNameserver.code(),
            StrMap::new(),
        );
        let (addr, resp) = self.namesrv_call_ok(req).await?;
        let mut list = decode_json::<TopicList>("TopicList", &resp.body)
            .map_err(bad_body(&addr))?
            .topic_list;
        list.sort();
        list.dedup();
        Ok(list)
    }

    /// The broker groups of `cluster` and their current masters.
    pub async fn cluster_masters(&self, cluster: &str) -> Result<Vec<GroupMaster>, ClientError> {
        cluster_masters(&self.cluster_info().await?, cluster)
    }

    /// The master address of broker group `broker_name` (an error naming the group when it
    /// is unknown or electing).
    pub async fn group_master(&self, broker_name: &str) -> Result<String, ClientError> {
        let info = self.cluster_info().await?;
        let group = info.broker_addr_table.get(broker_name).ok_or_else(|| {
            ClientError::InvalidArgument(format!(
                "no broker group named {broker_name} (the NameServers know: {})",
                info.broker_addr_table
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        group.master_addr().map(str::to_owned).ok_or_else(|| {
            ClientError::InvalidArgument(format!(
                "broker group {broker_name} has no master right now (electing?)"
            ))
        })
    }

    // ---- topic admin ----------------------------------------------------------------------

    /// UPDATE_AND_CREATE_TOPIC on one broker (its group's master).
    pub async fn create_topic_on(
        &self,
        addr: &str,
        config: &TopicConfig,
    ) -> Result<(), ClientError> {
        let header = CreateTopicRequestHeader {
            topic: config.topic_name.clone(),
            default_topic: AUTO_CREATE_TOPIC.to_owned(),
            read_queue_nums: config.read_queue_nums,
            write_queue_nums: config.write_queue_nums,
            perm: config.perm,
            topic_filter_type: config.topic_filter_type.as_str().to_owned(),
            topic_sys_flag: Some(config.topic_sys_flag),
            order: config.order,
            attributes: (!config.attributes.is_empty()).then(|| {
                config
                    .attributes
                    .iter()
                    .map(|(k, v)| format!("+{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            }),
            force: None,
        };
        let req = RemotingCommand::request_with(RequestCode::UpdateAndCreateTopic.code(), &header);
        self.call_ok(addr, req).await.map(|_| ())
    }

    /// UPDATE_AND_CREATE_TOPIC on the master of every group of `cluster`; the masters'
    /// addresses. A group without a master fails the call before anything is sent.
    pub async fn create_topic_in_cluster(
        &self,
        cluster: &str,
        config: &TopicConfig,
    ) -> Result<Vec<String>, ClientError> {
        let masters = self.masters_or_fail(cluster).await?;
        for addr in &masters {
            self.create_topic_on(addr, config).await?;
        }
        Ok(masters)
    }

    async fn masters_or_fail(&self, cluster: &str) -> Result<Vec<String>, ClientError> {
        let groups = self.cluster_masters(cluster).await?;
        if groups.is_empty() {
            return Err(ClientError::InvalidArgument(format!(
                "cluster {cluster} has no broker group"
            )));
        }
        groups
            .into_iter()
            .map(|g| {
                g.master.ok_or_else(|| {
                    ClientError::InvalidArgument(format!(
                        "broker group {} of cluster {cluster} has no master right now (electing?)",
                        g.broker_name
                    ))
                })
            })
            .collect()
    }

    /// DELETE_TOPIC_IN_BROKER on the master of every group of `cluster`, then
    /// DELETE_TOPIC_IN_NAMESRV (for that cluster) on every NameServer.
    pub async fn delete_topic(
        &self,
        cluster: &str,
        topic: &str,
    ) -> Result<DeletedTopic, ClientError> {
        let masters = self.masters_or_fail(cluster).await?;
        let header = DeleteTopicRequestHeader {
            topic: topic.to_owned(),
        };
        for addr in &masters {
            let req =
                RemotingCommand::request_with(RequestCode::DeleteTopicInBroker.code(), &header);
            self.call_ok(addr, req).await?;
        }
        let header = DeleteTopicFromNamesrvRequestHeader {
            topic: topic.to_owned(),
            cluster_name: Some(cluster.to_owned()),
        };
        for ns in &self.namesrvs {
            let req =
                RemotingCommand::request_with(RequestCode::DeleteTopicInNamesrv.code(), &header);
            self.call_ok(ns, req).await?;
        }
        Ok(DeletedTopic {
            brokers: masters,
            namesrvs: self.namesrvs.clone(),
        })
    }

    // ---- broker status and RaftMQ's raft codes --------------------------------------------

    /// GET_BROKER_RUNTIME_INFO: the node's key/value runtime table (raft keys included).
    pub async fn broker_runtime_info(
        &self,
        addr: &str,
    ) -> Result<BTreeMap<String, String>, ClientError> {
        let req = RemotingCommand::request(RequestCode::GetBrokerRuntimeInfo.code(), StrMap::new());
        let resp = self.call_ok(addr, req).await?;
        Ok(decode_json::<KvTable>("KVTable", &resp.body)
            .map_err(bad_body(addr))?
            .table)
    }

    /// RAFTMQ_GROUP_STATUS (9002): the node's view of its raft group.
    pub async fn group_status(&self, addr: &str) -> Result<RaftGroupStatus, ClientError> {
        let req = RemotingCommand::request(RequestCode::RaftGroupStatus.code(), StrMap::new());
        let resp = self.call_ok(addr, req).await?;
        decode_json("RaftGroupStatus", &resp.body).map_err(bad_body(addr))
    }

    /// RAFTMQ_LEADER_TRANSFER (9001) sent to `addr`, which must be the group's leader;
    /// `target` is a `dLegerSelfId` (`n1`) or number, `None` for the most caught-up
    /// follower. A follower's answer names the leader, which is asked in its place (once).
    pub async fn leader_transfer(
        &self,
        addr: &str,
        target: Option<&str>,
    ) -> Result<LeaderTransfer, ClientError> {
        let header = RaftLeaderTransferRequestHeader {
            target_id: target.map(str::to_owned),
        };
        let mut addr = addr.to_owned();
        for attempt in 0..2 {
            let req =
                RemotingCommand::request_with(RequestCode::RaftLeaderTransfer.code(), &header);
            let resp = self.call_with(&addr, req, LEADER_TRANSFER_TIMEOUT).await?;
            let remark = resp.remark.clone().unwrap_or_default();
            if resp.code == ResponseCode::Success.code() {
                return Ok(LeaderTransfer { addr, remark });
            }
            let refused = ClientError::broker(&addr, resp.code, resp.remark.as_deref());
            if attempt > 0 || resp.code != ResponseCode::SystemBusy.code() {
                return Err(refused);
            }
            // A follower names the leader's client address when it knows it; else the
            // NameServers know the group's master.
            let leader = match leader_hint(&remark) {
                Some(h) => Some(h.to_owned()),
                None => self.master_of_node(&addr).await,
            };
            match leader.filter(|l| *l != addr) {
                Some(leader) => {
                    tracing::info!(from = %addr, to = %leader, "not the leader: asking the leader");
                    addr = leader;
                }
                None => return Err(refused),
            }
        }
        Err(ClientError::InvalidArgument(format!(
            "no leader found for the transfer (last asked {addr})"
        )))
    }

    /// The master the NameServers show for the group of node `addr`, if any.
    async fn master_of_node(&self, addr: &str) -> Option<String> {
        let info = self.cluster_info().await.ok()?;
        info.broker_addr_table
            .values()
            .find(|b| b.broker_addrs.values().any(|a| a == addr))
            .and_then(|b| b.master_addr().map(str::to_owned))
    }

    /// [`Self::leader_transfer`] on the current master of broker group `broker_name`.
    pub async fn transfer_group_leadership(
        &self,
        broker_name: &str,
        target: Option<&str>,
    ) -> Result<LeaderTransfer, ClientError> {
        let master = self.group_master(broker_name).await?;
        self.leader_transfer(&master, target).await
    }
}

/// `resp` if it is a success, else the error carrying its code and remark.
fn success(addr: &str, resp: RemotingCommand) -> Result<RemotingCommand, ClientError> {
    if resp.code == ResponseCode::Success.code() {
        Ok(resp)
    } else {
        Err(ClientError::broker(addr, resp.code, resp.remark.as_deref()))
    }
}
