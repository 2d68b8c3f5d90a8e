//! The broker node: a raft group member plus the client-facing request handlers.
//!
//! [`Broker`] owns the [`RaftNode`] (whose state machine is the [`BrokerStateMachine`]) and
//! answers the client requests [`crate::server`] hands it, one small method per request:
//! ```text
//! SEND_MESSAGE(_V2) / SEND_BATCH_MESSAGE --send--> propose Append --> SUCCESS + msgId
//! PULL_MESSAGE / LITE_PULL_MESSAGE --pull--> consume queue units --> log().read_at
//!     --> patched records
//! PULL_MESSAGE with SUSPEND, nothing new --> parked until apply signals the queue (pull.rs)
//! QUERY/UPDATE_CONSUMER_OFFSET, GET_MAX/MIN_OFFSET
//! HEART_BEAT / UNREGISTER_CLIENT / GET_CONSUMER_LIST_BY_GROUP --> client table (consumers.rs)
//! LOCK_BATCH_MQ / UNLOCK_BATCH_MQ --locks--> propose LockQueues / UnlockQueues (locks.rs)
//! topic admin, offsets by time, QUERY_MESSAGE / VIEW_MESSAGE_BY_ID, runtime info and the raft
//! admin codes 9001/9002 --> admin.rs (counters behind runtime info: stats.rs)
//! preferredLeaderId: leader --healthy preferred follower--> transfer_leadership (preferred.rs)
//! ```
//! Writes (sends, topic creation, offset commits, queue locks) need the leader; a follower
//! answers SYSTEM_BUSY naming the leader's client address (peers.rs keeps a directory of them).
//! Reads are served by any node from applied state.

mod admin;
mod consumers;
mod locks;
mod maintenance;
mod peers;
mod preferred;
mod progress;
mod pull;
mod reset;
mod send;
mod stats;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use raftmq_protocol::body::{DataVersion, TopicConfigSerializeWrapper};
use raftmq_protocol::codes::{RequestCode, ResponseCode};
use raftmq_protocol::headers::{
    GetMaxOffsetRequestHeader, OffsetResponseHeader, QueryConsumerOffsetRequestHeader,
    QueueRequestHeader, UpdateConsumerOffsetRequestHeader,
};
use raftmq_protocol::msgid::UniqKeyGenerator;
use raftmq_protocol::RemotingCommand;
use raftmq_raft::network::NetworkFilter;
use raftmq_raft::node::{NodeError, ProposeError, RaftNode};
use raftmq_raft::status::{NodeStatus, Role};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::checkpoint::{self, CheckpointWriter};
use crate::clients::ClientTable;
use crate::config::BrokerConfig;
use crate::registrar::{Registrar, RegistrarConfig, TopicSource};
use crate::remoting_client::RemotingClient;
use crate::retention::{DiskMonitor, StatvfsProbe};
use crate::server::Channel;
use crate::state::{Arrivals, BrokerStateMachine, Command, OffsetCommit, Reply};

/// Remark of SYSTEM_BUSY on a follower (what a Java slave says), followed by the leader.
pub const NOT_LEADER_REMARK: &str = "[REJECTREQUEST]system busy, start flow control for a while";

/// Milliseconds since the Unix epoch by this node's clock.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// One broker node; share it as `Arc<Broker>` between the server and the registrar.
pub struct Broker {
    config: BrokerConfig,
    node: RaftNode<BrokerStateMachine>,
    uniq: UniqKeyGenerator,
    /// Seed and counter of the leader's queue picks for `queueId < 0`.
    pick_seed: u64,
    picks: AtomicU64,
    /// Wakes the registrar after a topic change (set by [`Broker::registrar`]).
    poke: Mutex<Option<Arc<Notify>>>,
    /// Apply signals of the state machine, for long polling.
    arrivals: Arc<Arrivals>,
    /// Pulls parked right now (bounded by [`pull::PARKED_PULLS_MAX`]).
    parked: AtomicUsize,
    /// Times a woken parked pull found only messages its filter rejects and parked again.
    reparked: AtomicU64,
    /// This node's clients (not replicated).
    clients: Mutex<ClientTable<Channel>>,
    /// Writes state-machine checkpoints (see [`crate::checkpoint`]).
    checkpoints: Arc<CheckpointWriter>,
    /// The periodic checkpoint task.
    checkpoint_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Last applied index of the checkpoint this node started from.
    restored: Option<u64>,
    /// Disk space of the store (sends are refused while it is full).
    disk: Arc<DiskMonitor>,
    /// Traffic counters for GET_BROKER_RUNTIME_INFO (sampled by a task of [`Broker::start`]).
    stats: Arc<stats::Stats>,
    /// The other nodes' client addresses, for the leader hint of SYSTEM_BUSY (peers.rs).
    peers: Arc<peers::PeerDirectory>,
    /// `%RETRY%` topics whose creation a heartbeat started and that are still proposed.
    retry_creating: Mutex<std::collections::HashSet<String>>,
}

/// How often a changed state machine is checkpointed: bounds what a restart re-applies.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("broker_name", &self.config.broker_name)
            .field("client_addr", &self.config.client_addr())
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// Starts the raft node of `config` with peers served on `raft_listener` (bound to the
    /// config's own `dLegerPeers` address by the caller).
    pub async fn start(
        config: BrokerConfig,
        raft_listener: TcpListener,
    ) -> Result<Self, NodeError> {
        let started = std::time::Instant::now();
        let dir = config.checkpoint_dir();
        let loaded =
            checkpoint::load(&dir).map_err(|e| NodeError::Store(format!("checkpoint: {e}")))?;
        let checkpoints = CheckpointWriter::start(&dir, &loaded).map_err(NodeError::Store)?;
        let found = loaded.found;
        let mut sm = loaded.state;
        let restored = sm.applied_index();
        sm.enable_checkpoints(checkpoints.clone());
        tracing::info!(
            found,
            applied = ?restored,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "state machine checkpoint loaded"
        );
        // Peers ask this node for its client address (the leader hint of `not_leader`).
        let peer_rpc = Arc::new(peers::PeerRpcHandler::new(config.client_addr().to_string()));
        let node = RaftNode::start_with_handler(
            config.raft_node_config(),
            sm,
            raft_listener,
            NetworkFilter::default(),
            peer_rpc,
        )
        .await?;
        let checkpoint_task = {
            let sm = node.state_machine().clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(CHECKPOINT_INTERVAL);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    if let Err(e) = sm.with(|sm| sm.checkpoint(false)) {
                        tracing::warn!(error = %e, "checkpoint not queued");
                    }
                }
            })
        };
        let arrivals = node.state_machine().with(|sm| sm.arrivals());
        let disk = Arc::new(DiskMonitor::new(
            config.store_path_root_dir.clone(),
            Arc::new(StatvfsProbe),
        ));
        let stats = Arc::new(stats::Stats::new());
        tokio::spawn(stats::Stats::run_sampler(
            Arc::downgrade(&stats),
            node.status(),
        ));
        let seed = u64::try_from(now_ms()).unwrap_or(0) ^ u64::from(std::process::id()) << 32;
        let uniq = UniqKeyGenerator::new(
            config.broker_ip1,
            std::process::id(),
            (splitmix(seed) & 0x7FFF_FFFF) as i32,
        );
        Ok(Broker {
            config,
            node,
            uniq,
            pick_seed: seed,
            picks: AtomicU64::new(0),
            poke: Mutex::new(None),
            arrivals,
            parked: AtomicUsize::new(0),
            reparked: AtomicU64::new(0),
            clients: Mutex::new(ClientTable::default()),
            checkpoints,
            checkpoint_task: Mutex::new(Some(checkpoint_task)),
            restored,
            disk,
            stats,
            peers: Arc::new(peers::PeerDirectory::default()),
            retry_creating: Mutex::new(std::collections::HashSet::new()),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// The raft node (status, state machine, log).
    pub fn node(&self) -> &RaftNode<BrokerStateMachine> {
        &self.node
    }

    /// Last applied log index of the checkpoint this node started from (`None`: it started
    /// from an empty state).
    pub fn restored_index(&self) -> Option<u64> {
        self.restored
    }

    /// The disk monitor (tests replace its probe to simulate a full disk).
    pub fn disk(&self) -> &DiskMonitor {
        &self.disk
    }

    /// Pulls parked by long polling right now.
    pub fn parked_pulls(&self) -> usize {
        self.parked.load(Ordering::Acquire)
    }

    /// How many times a woken parked pull found only messages its TAG filter rejects and
    /// parked again instead of answering (diagnostics; tests observe long polling with it).
    pub fn reparked_pulls(&self) -> u64 {
        self.reparked.load(Ordering::Relaxed)
    }

    /// The address stored as STOREHOST and registered with NameServers.
    pub fn client_addr(&self) -> SocketAddr {
        self.config.client_addr()
    }

    /// A registrar for this node (the caller runs it); topic creations poke it.
    pub fn registrar(self: &Arc<Self>, client: RemotingClient) -> Registrar {
        let topics: Arc<dyn TopicSource> = self.clone();
        let registrar = Registrar::new(
            RegistrarConfig::from_broker(&self.config),
            self.node.status(),
            topics,
            client,
        );
        *self.poke.lock().unwrap_or_else(|p| p.into_inner()) = Some(registrar.poke_handle());
        registrar
    }

    /// Stops the raft node, then writes a last checkpoint (so a clean restart re-applies
    /// nothing) and stops the checkpoint writer.
    pub async fn shutdown(&self) {
        self.stop(true).await;
    }

    /// Stops the node; without `final_checkpoint` the data is left as a crash leaves it
    /// (the last periodic checkpoint plus the log), which tests use to exercise recovery.
    pub async fn stop(&self, final_checkpoint: bool) {
        if let Some(t) = self
            .checkpoint_task
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            t.abort();
        }
        self.node.shutdown().await;
        let sm = self.node.state_machine().clone();
        let writer = self.checkpoints.clone();
        let done = tokio::task::spawn_blocking(move || {
            let result = if final_checkpoint {
                sm.with(|sm| sm.checkpoint(true))
            } else {
                Ok(())
            };
            writer.stop();
            result
        })
        .await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "final checkpoint failed"),
            Err(e) => tracing::warn!(error = %e, "final checkpoint task failed"),
        }
    }

    /// Answers one request arriving on `channel`; `None` for a oneway request.
    pub async fn handle(
        self: &Arc<Self>,
        req: RemotingCommand,
        channel: &Channel,
    ) -> Option<RemotingCommand> {
        let peer = channel.peer();
        let oneway = req.is_oneway();
        let resp = match RequestCode::from_code(req.code) {
            Some(RequestCode::SendMessage)
            | Some(RequestCode::SendMessageV2)
            | Some(RequestCode::SendBatchMessage) => self.send(&req, peer).await,
            // LITE_PULL_MESSAGE has the same header and semantics (§5.5).
            Some(RequestCode::PullMessage) | Some(RequestCode::LitePullMessage) => {
                self.pull(&req).await
            }
            Some(RequestCode::QueryConsumerOffset) => self.query_consumer_offset(&req),
            Some(RequestCode::UpdateConsumerOffset) => self.update_consumer_offset(&req).await,
            Some(RequestCode::GetMaxOffset) => self.get_max_offset(&req),
            Some(RequestCode::GetMinOffset) => self.get_min_offset(&req),
            Some(RequestCode::HeartBeat) => self.heart_beat(&req, channel),
            Some(RequestCode::UnregisterClient) => self.unregister_client(&req),
            Some(RequestCode::GetConsumerListByGroup) => self.consumer_list(&req),
            Some(RequestCode::LockBatchMq) => self.lock_batch(&req).await,
            Some(RequestCode::UnlockBatchMq) => self.unlock_batch(&req).await,
            Some(RequestCode::SearchOffsetByTimestamp) => self.search_offset_by_timestamp(&req),
            Some(RequestCode::GetEarliestMsgStoretime) => self.earliest_msg_store_time(&req),
            Some(RequestCode::UpdateAndCreateTopic) => self.update_and_create_topic(&req).await,
            Some(RequestCode::GetAllTopicConfig) => self.get_all_topic_config(&req),
            Some(RequestCode::DeleteTopicInBroker) => self.delete_topic(&req).await,
            Some(RequestCode::ViewMessageById) => self.view_message_by_id(&req),
            Some(RequestCode::QueryMessage) => self.query_message(&req),
            Some(RequestCode::GetBrokerRuntimeInfo) => self.broker_runtime_info(&req),
            Some(RequestCode::RaftLeaderTransfer) => self.raft_leader_transfer(&req).await,
            Some(RequestCode::RaftGroupStatus) => self.raft_group_status(&req),
            Some(RequestCode::InvokeBrokerToResetOffset) => self.invoke_reset_offset(&req).await,
            Some(RequestCode::GetConsumeStats) => self.consume_stats(&req),
            _ => RemotingCommand::error_to(
                &req,
                ResponseCode::RequestCodeNotSupported,
                format!("request type {} not supported", req.code),
            ),
        };
        (!oneway).then_some(resp)
    }

    fn status(&self) -> NodeStatus {
        *self.node.status().borrow()
    }

    /// SYSTEM_BUSY for a write reaching a follower. The remark names the leader's client
    /// address once the peer directory knows it (fetched in the background on first need,
    /// see peers.rs), and its raft address until then.
    fn not_leader(&self, req: &RemotingCommand, leader: Option<u64>) -> RemotingCommand {
        let hint = match leader {
            Some(id) => match self.peer_client_addr(id) {
                Some(addr) => format!("; not the leader, leader is {addr} (raft node {id})"),
                None => {
                    let raft_addr = self
                        .config
                        .raft_peers()
                        .get(&id)
                        .cloned()
                        .unwrap_or_default();
                    format!("; not the leader, raft leader is node {id} (raft address {raft_addr})")
                }
            },
            None => "; not the leader, no leader known".to_owned(),
        };
        RemotingCommand::error_to(
            req,
            ResponseCode::SystemBusy,
            format!("{NOT_LEADER_REMARK}{hint}"),
        )
    }

    /// Maps a proposal failure to a retryable response.
    fn propose_failed(&self, req: &RemotingCommand, e: ProposeError) -> RemotingCommand {
        match e {
            ProposeError::NotLeader { leader_hint } => {
                self.not_leader(req, leader_hint.map(|(id, _)| id))
            }
            e @ (ProposeError::Unknown(_) | ProposeError::Fatal(_)) => {
                RemotingCommand::error_to(req, ResponseCode::SystemError, e.to_string())
            }
        }
    }

    /// Proposes a non-append command; `Err` is the response to send.
    async fn propose_command(
        &self,
        req: &RemotingCommand,
        command: &Command,
    ) -> Result<Reply, RemotingCommand> {
        let bytes = self
            .node
            .propose(command.encode())
            .await
            .map_err(|e| self.propose_failed(req, e))?;
        Reply::decode(&bytes).ok_or_else(|| {
            RemotingCommand::error_to(req, ResponseCode::SystemError, "undecodable apply reply")
        })
    }

    /// Deterministic pseudo-random queue in `[0, n)` for a `queueId < 0` send.
    fn pick_queue(&self, n: i32) -> i32 {
        let k = self.picks.fetch_add(1, Ordering::Relaxed);
        let n = u64::try_from(n.max(1)).unwrap_or(1);
        (splitmix(self.pick_seed.wrapping_add(k)) % n) as i32
    }

    fn poke_registrar(&self) {
        if let Some(p) = &*self.poke.lock().unwrap_or_else(|p| p.into_inner()) {
            p.notify_one();
        }
    }

    fn query_consumer_offset(&self, req: &RemotingCommand) -> RemotingCommand {
        let h: QueryConsumerOffsetRequestHeader = match req.header() {
            Ok(h) => h,
            Err(e) => return bad_header(req, e),
        };
        let (stored, min) = self.node.state_machine().with(|sm| {
            (
                sm.consumer_offset(&h.consumer_group, &h.topic, h.queue_id),
                sm.min_offset(&h.topic, h.queue_id),
            )
        });
        // Everything RaftMQ serves counts as "hot": a young queue (min offset 0) starts at 0.
        let offset = match stored {
            Some(o) => Some(o),
            None if h.set_zero_if_not_found != Some(false) && min <= 0 => Some(0),
            None => None,
        };
        match offset {
            Some(offset) => RemotingCommand::response_to(req, ResponseCode::Success)
                .with_header(&OffsetResponseHeader { offset }),
            None => RemotingCommand::error_to(
                req,
                ResponseCode::QueryNotFound,
                "Not found, V3_0_6_SNAPSHOT maybe this group consumer boot first",
            ),
        }
    }

    async fn update_consumer_offset(&self, req: &RemotingCommand) -> RemotingCommand {
        let h: UpdateConsumerOffsetRequestHeader = match req.header() {
            Ok(h) => h,
            Err(e) => return bad_header(req, e),
        };
        if self
            .node
            .state_machine()
            .with(|sm| sm.topic(&h.topic).is_none())
        {
            return RemotingCommand::error_to(
                req,
                ResponseCode::TopicNotExist,
                format!("topic[{}] not exist", h.topic),
            );
        }
        let status = self.status();
        if status.role != Role::Leader {
            return self.not_leader(req, status.leader);
        }
        let command = Command::CommitOffsets(vec![OffsetCommit {
            group: h.consumer_group,
            topic: h.topic,
            queue_id: h.queue_id,
            offset: h.commit_offset,
        }]);
        match self.propose_command(req, &command).await {
            Ok(_) => RemotingCommand::response_to(req, ResponseCode::Success),
            Err(resp) => resp,
        }
    }

    fn get_max_offset(&self, req: &RemotingCommand) -> RemotingCommand {
        match req.header::<GetMaxOffsetRequestHeader>() {
            Ok(h) => {
                let offset = self
                    .node
                    .state_machine()
                    .with(|sm| sm.max_offset(&h.topic, h.queue_id));
                RemotingCommand::response_to(req, ResponseCode::Success)
                    .with_header(&OffsetResponseHeader { offset })
            }
            Err(e) => bad_header(req, e),
        }
    }

    fn get_min_offset(&self, req: &RemotingCommand) -> RemotingCommand {
        match req.header::<QueueRequestHeader>() {
            Ok(h) => {
                let offset = self
                    .node
                    .state_machine()
                    .with(|sm| sm.min_offset(&h.topic, h.queue_id));
                RemotingCommand::response_to(req, ResponseCode::Success)
                    .with_header(&OffsetResponseHeader { offset })
            }
            Err(e) => bad_header(req, e),
        }
    }
}

impl TopicSource for Broker {
    fn topic_wrapper(&self) -> TopicConfigSerializeWrapper {
        let (table, data_version): (_, DataVersion) = self
            .node
            .state_machine()
            .with(|sm| (sm.topics().clone(), sm.data_version()));
        TopicConfigSerializeWrapper {
            data_version,
            topic_config_table: table,
            ..TopicConfigSerializeWrapper::default()
        }
    }
}

/// A request header that does not decode.
pub(crate) fn bad_header(req: &RemotingCommand, e: impl std::fmt::Display) -> RemotingCommand {
    RemotingCommand::error_to(
        req,
        ResponseCode::InvalidParameter,
        format!("bad request header: {e}"),
    )
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
