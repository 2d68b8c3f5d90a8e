//! A Raft node: start from a config, propose commands, watch the role, transfer leadership.
//!
//! ```text
//! RaftNode::start(config, state_machine, listener)
//!   ├─ SegmentedLogStore::open(data_dir/log)       the commit log (+ sled meta)
//!   ├─ SmAdapter(state_machine, log positions)     apply in log order
//!   ├─ openraft::Raft::new(.., NetworkFactory)     elections, replication
//!   ├─ network::serve(listener, raft, node rpc)    peers' RPCs (Elect, the app's own)
//!   └─ status task: RaftMetrics -> watch<NodeStatus>
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use openraft::error::{InitializeError, RaftError};
use openraft::{BasicNode, Config};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::batch::Proposer;
use crate::log_store::{FlushPolicy, LogReadHandle, LogStoreConfig, LogSyncer, SegmentedLogStore};
use crate::network::{self, CustomRpcHandler, NetworkFactory, NetworkFilter, RpcError};
use crate::state_machine::{SmAdapter, SmHandle, StateMachine};
use crate::status::{NodeStatus, Role};
use crate::types::{LogId, NodeId, Raft};
use crate::voter::Voter;

/// Everything needed to start one node of a group.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's id (its index in `peers`).
    pub id: NodeId,
    /// The raft group's name, checked on every peer connection (`dLegerGroup`).
    pub group: String,
    /// Every voter of the group, this node included: id → raft RPC address `ip:port`.
    pub peers: BTreeMap<NodeId, String>,
    /// Root of this node's raft data (`log/` segments and sled `meta/` below it).
    pub data_dir: PathBuf,
    /// When an append counts as durable.
    pub flush: FlushPolicy,
    /// Segment file capacity.
    pub segment_bytes: u64,
    /// Leader heartbeat interval.
    pub heartbeat: Duration,
    /// Election timeout lower bound.
    pub election_min: Duration,
    /// Election timeout upper bound (also the leader lease).
    pub election_max: Duration,
    /// A proposal whose outcome is unknown after this long returns [`ProposeError::Timeout`].
    pub propose_timeout: Duration,
    /// Entries a follower may lag before the leader sends a snapshot instead of the log.
    pub replication_lag_threshold: u64,
    /// Most entries in one AppendEntries. A new leader searches each follower's matching
    /// point with requests of this many entries, reading them from the log first, so a
    /// large value costs failover time (4096 entries of ~45 KB: ~280 ms a step, ~1.1 s
    /// in all); 64 keeps a step to a few milliseconds and still far exceeds the entry
    /// rate (the proposer packs every waiting command into one entry).
    pub max_payload_entries: u64,
    /// Build a snapshot automatically once this many entries were applied since the last one;
    /// `None` (the default): never automatically, only through
    /// [`RaftNode::snapshot_and_purge`].
    pub snapshot_logs_since_last: Option<u64>,
}

impl NodeConfig {
    /// Defaults that replace a killed leader in about 1–1.5 s on a loaded 2-core machine
    /// (failover ≈ lease `election_max` + a draw in `[election_min, election_max)` + a vote).
    pub fn new(id: NodeId, peers: BTreeMap<NodeId, String>, data_dir: PathBuf) -> Self {
        NodeConfig {
            id,
            group: crate::network::DEFAULT_GROUP.to_owned(),
            peers,
            data_dir,
            flush: FlushPolicy::Sync,
            segment_bytes: 1 << 30,
            heartbeat: Duration::from_millis(100),
            election_min: Duration::from_millis(400),
            election_max: Duration::from_millis(700),
            propose_timeout: Duration::from_secs(10),
            replication_lag_threshold: 1_000_000,
            max_payload_entries: 64,
            snapshot_logs_since_last: None,
        }
    }

    fn raft_config(&self) -> Result<Config, NodeError> {
        let c = Config {
            cluster_name: "raftmq".into(),
            heartbeat_interval: self.heartbeat.as_millis() as u64,
            election_timeout_min: self.election_min.as_millis() as u64,
            election_timeout_max: self.election_max.as_millis() as u64,
            replication_lag_threshold: self.replication_lag_threshold,
            max_payload_entries: self.max_payload_entries,
            snapshot_policy: match self.snapshot_logs_since_last {
                Some(n) => openraft::SnapshotPolicy::LogsSinceLast(n),
                None => openraft::SnapshotPolicy::Never,
            },
            ..Default::default()
        };
        c.validate().map_err(|e| NodeError::Config(e.to_string()))
    }
}

/// Errors starting or running a node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The timing or membership configuration is invalid.
    #[error("invalid raft config: {0}")]
    Config(String),
    /// The log store failed to open (lock held, corruption, I/O).
    #[error("log store: {0}")]
    Store(String),
    /// openraft refused to start, or has stopped.
    #[error("raft: {0}")]
    Raft(String),
    /// An operation did not finish in time.
    #[error("timed out: {0}")]
    Timeout(String),
}

/// Why a proposal did not produce a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// This node is not the leader (or is handing leadership over); retry at the hint.
    #[error("not leader; leader is {leader_hint:?}")]
    NotLeader {
        /// The leader's id and raft address, when known.
        leader_hint: Option<(NodeId, String)>,
    },
    /// The outcome is unknown (timeout, leadership lost in flight): it may or may not commit.
    #[error("outcome unknown: {0}")]
    Unknown(String),
    /// The node has stopped.
    #[error("node stopped: {0}")]
    Fatal(String),
}

/// Node-layer RPCs carried as `Custom` network messages.
///
/// Variants are only ever appended: bincode encodes the variant index, so `Elect` keeps the
/// bytes it always had and a node without `App` support rejects it cleanly.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum NodeRpc {
    /// "Stand for election now" (leadership transfer target).
    Elect,
    /// An opaque request for the application's handler (see [`RaftNode::start_with_handler`]).
    App(Bytes),
}

/// The server side of [`NodeRpc`]: raft's own requests, then the application's.
struct NodeRpcHandler {
    raft: Raft,
    app: Option<Arc<dyn CustomRpcHandler>>,
}

impl NodeRpcHandler {
    /// Dispatches one request; `from` is the calling node when the server knows it.
    fn dispatch(
        &self,
        from: Option<NodeId>,
        body: Bytes,
    ) -> futures::future::BoxFuture<'static, Result<Bytes, String>> {
        let raft = self.raft.clone();
        match bincode::deserialize::<NodeRpc>(&body) {
            Ok(NodeRpc::Elect) => Box::pin(async move {
                info!("leadership transfer: standing for election");
                raft.trigger().elect().await.map_err(|e| e.to_string())?;
                Ok(Bytes::new())
            }),
            Ok(NodeRpc::App(body)) => match (&self.app, from) {
                (Some(app), Some(from)) => app.handle_from(from, body),
                (Some(app), None) => app.handle(body),
                (None, _) => {
                    Box::pin(async { Err("no application rpc handler on this node".into()) })
                }
            },
            Err(e) => Box::pin(async move { Err(format!("bad node rpc: {e}")) }),
        }
    }
}

impl CustomRpcHandler for NodeRpcHandler {
    fn handle(&self, body: Bytes) -> futures::future::BoxFuture<'static, Result<Bytes, String>> {
        self.dispatch(None, body)
    }

    fn handle_from(
        &self,
        from: NodeId,
        body: Bytes,
    ) -> futures::future::BoxFuture<'static, Result<Bytes, String>> {
        self.dispatch(Some(from), body)
    }
}

/// Calls the application handlers of the group's other nodes (see
/// [`RaftNode::start_with_handler`]); cheap to clone, so background tasks can own one.
#[derive(Clone, Debug)]
pub struct AppRpcClient {
    net: NetworkFactory,
    peers: Arc<BTreeMap<NodeId, String>>,
}

impl AppRpcClient {
    /// Sends `body` to node `target`'s application handler and waits up to `timeout` for its
    /// answer (the handler's error comes back as [`RpcError::Handler`]).
    pub async fn call(
        &self,
        target: NodeId,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, RpcError> {
        let Some(addr) = self.peers.get(&target) else {
            return Err(RpcError::Unreachable {
                target,
                reason: "not a member of the group".into(),
            });
        };
        let request =
            bincode::serialize(&NodeRpc::App(body)).map_err(|e| RpcError::Codec(e.to_string()))?;
        self.net
            .call_custom(target, addr, Bytes::from(request), timeout)
            .await
    }
}

/// A running node.
pub struct RaftNode<S: StateMachine> {
    id: NodeId,
    peers: BTreeMap<NodeId, String>,
    raft: Raft,
    sm: SmHandle<S>,
    log: LogReadHandle,
    syncer: LogSyncer,
    status: watch::Receiver<NodeStatus>,
    transferring: Arc<AtomicBool>,
    net: NetworkFactory,
    proposer: Proposer,
    status_tx: Arc<watch::Sender<NodeStatus>>,
    propose_timeout: Duration,
    election_max: Duration,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
    stop_server: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

impl<S: StateMachine> std::fmt::Debug for RaftNode<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftNode")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl<S: StateMachine> RaftNode<S> {
    /// Opens the store, starts raft, serves peers on `listener`, and initializes the
    /// group from `peers` if this node is pristine (the same membership on every node).
    pub async fn start(
        config: NodeConfig,
        sm: S,
        listener: TcpListener,
        filter: NetworkFilter,
    ) -> Result<Self, NodeError> {
        Self::start_inner(config, sm, listener, filter, None).await
    }

    /// Like [`RaftNode::start`], and serves the application's own node-to-node requests with
    /// `app` (peers send them through [`RaftNode::app_rpc`]); raft's own RPCs are unchanged.
    pub async fn start_with_handler(
        config: NodeConfig,
        sm: S,
        listener: TcpListener,
        filter: NetworkFilter,
        app: Arc<dyn CustomRpcHandler>,
    ) -> Result<Self, NodeError> {
        Self::start_inner(config, sm, listener, filter, Some(app)).await
    }

    async fn start_inner(
        config: NodeConfig,
        sm: S,
        listener: TcpListener,
        filter: NetworkFilter,
        app: Option<Arc<dyn CustomRpcHandler>>,
    ) -> Result<Self, NodeError> {
        if !config.peers.contains_key(&config.id) {
            return Err(NodeError::Config(format!(
                "node {} is not in its peer list",
                config.id
            )));
        }
        let raft_config = Arc::new(config.raft_config()?);
        let store = SegmentedLogStore::open(LogStoreConfig {
            dir: config.data_dir.clone(),
            segment_bytes: config.segment_bytes,
            flush: config.flush,
            ..LogStoreConfig::default()
        })
        .map_err(|e| NodeError::Store(e.to_string()))?;
        let log = store.read_handle();
        let syncer = store.syncer();
        let mut sm = sm;
        sm.on_log_open(syncer.clone());
        let adapter =
            SmAdapter::new(sm, Arc::new(log.clone())).with_rebase_hint(store.rebase_hint());
        let sm_handle = adapter.handle();
        let net = NetworkFactory::in_group(config.id, &config.group, filter);
        let raft = Raft::new(config.id, raft_config, net.clone(), store, adapter)
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;

        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let handler = Arc::new(NodeRpcHandler {
            raft: raft.clone(),
            app,
        });
        let identity = network::Identity::node(&config.group, config.id);
        let lease = Duration::from_millis(raft.config().election_timeout_max);
        let server = tokio::spawn(network::serve(
            identity,
            listener,
            Voter::new(raft.clone(), config.id, lease),
            handler,
            async {
                let _ = stop_rx.await;
            },
        ));
        let server = tokio::spawn(async move {
            if let Ok(Err(e)) = server.await {
                warn!(error = %e, "raft rpc server stopped");
            }
        });

        let members: BTreeMap<NodeId, BasicNode> = config
            .peers
            .iter()
            .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
            .collect();
        // Only the lowest id forms a new group at once: if all three initialized together
        // they would all stand in term 1 and the first leader often loses a moment later.
        // The others form it themselves only if nobody has reached them after two election
        // timeouts (the lowest node may be down at first boot). Same membership everywhere,
        // so either way is safe.
        let first = config.peers.keys().next().copied();
        if first == Some(config.id) {
            initialize(&raft, members).await?;
        } else {
            let raft = raft.clone();
            let wait = config.election_max * 2;
            tokio::spawn(async move {
                if !initialized_within(&raft, wait).await {
                    if let Err(e) = initialize(&raft, members).await {
                        warn!(error = %e, "cannot initialize the group");
                    }
                }
            });
        }

        let (status_tx, status_rx) = watch::channel(status_of(&raft.metrics().borrow(), &log));
        let status_tx = Arc::new(status_tx);
        let status_task = tokio::spawn(watch_status(raft.clone(), log.clone(), status_tx.clone()));

        let proposer = Proposer::start(raft.clone(), config.peers.clone(), config.propose_timeout);
        Ok(RaftNode {
            id: config.id,
            peers: config.peers,
            raft,
            sm: sm_handle,
            log,
            syncer,
            status: status_rx,
            transferring: Arc::new(AtomicBool::new(false)),
            net,
            proposer,
            status_tx,
            propose_timeout: config.propose_timeout,
            election_max: config.election_max,
            tasks: std::sync::Mutex::new(vec![server, status_task]),
            stop_server: std::sync::Mutex::new(Some(stop_tx)),
        })
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The role channel.
    pub fn status(&self) -> watch::Receiver<NodeStatus> {
        self.status.clone()
    }

    /// The state machine (for reads by the broker and tests).
    pub fn state_machine(&self) -> &SmHandle<S> {
        &self.sm
    }

    /// Reads of the commit log by index or byte position.
    pub fn log(&self) -> &LogReadHandle {
        &self.log
    }

    /// Syncs the local log from any thread (state-machine checkpoints use it).
    pub fn log_syncer(&self) -> &LogSyncer {
        &self.syncer
    }

    /// The openraft handle (metrics, admin).
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// A client of the other nodes' application handlers (see
    /// [`RaftNode::start_with_handler`]).
    pub fn app_rpc(&self) -> AppRpcClient {
        AppRpcClient {
            net: self.net.clone(),
            peers: Arc::new(self.peers.clone()),
        }
    }

    fn leader_hint(&self, leader: Option<NodeId>) -> Option<(NodeId, String)> {
        leader.and_then(|id| self.peers.get(&id).map(|a| (id, a.clone())))
    }

    /// Proposes `command`; returns the state machine's reply once it is committed and
    /// applied on this node.
    pub async fn propose(&self, command: Bytes) -> Result<Bytes, ProposeError> {
        if self.transferring.load(Ordering::Acquire) {
            return Err(ProposeError::NotLeader { leader_hint: None });
        }
        self.proposer.propose(command).await
    }

    /// Hands leadership to `target`: stop taking writes, wait until the target has the
    /// whole log, silence heartbeats, ask it to stand. Restores writes and heartbeats if
    /// it has not won within `timeout`.
    pub async fn transfer_leadership(
        &self,
        target: NodeId,
        timeout: Duration,
    ) -> Result<(), ProposeError> {
        let status = *self.status.borrow();
        if status.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader_hint: self.leader_hint(status.leader),
            });
        }
        if target == self.id {
            return Ok(());
        }
        let Some(target_addr) = self.peers.get(&target).cloned() else {
            return Err(ProposeError::Unknown(format!(
                "node {target} is not a member"
            )));
        };
        let deadline = Instant::now() + timeout;
        self.transferring.store(true, Ordering::Release);
        let result = self.do_transfer(target, &target_addr, deadline).await;
        self.raft.runtime_config().heartbeat(true);
        self.transferring.store(false, Ordering::Release);
        result
    }

    async fn do_transfer(
        &self,
        target: NodeId,
        target_addr: &str,
        deadline: Instant,
    ) -> Result<(), ProposeError> {
        let mut metrics = self.raft.metrics();
        // Wait until the target's matched log id equals our last log id.
        loop {
            let caught_up = {
                let m = metrics.borrow();
                let last = m.last_log_index;
                m.replication
                    .as_ref()
                    .and_then(|r| r.get(&target).cloned().flatten())
                    .is_some_and(|matched| Some(matched.index) == last)
            };
            if caught_up {
                break;
            }
            wait_changed(&mut metrics, deadline).await.map_err(|_| {
                ProposeError::Unknown(format!("node {target} did not catch up in time"))
            })?;
        }
        self.raft.runtime_config().heartbeat(false);
        // openraft 0.9 voters refuse every candidate while their lease from this leader is
        // fresh (`election_timeout_max` after the last heartbeat they saw): a candidate that
        // stands at once is refused, and the other follower's own timer may then win the
        // retry. So the target stands once the leases have run out; the other follower's
        // timer fires `election_timeout_min` later still, and this node, heartbeats off,
        // grants too.
        let lease = Duration::from_millis(self.raft.config().election_timeout_max);
        let stand_at = Instant::now() + lease + Duration::from_millis(50);
        if stand_at >= deadline {
            return Err(ProposeError::Unknown(format!(
                "transfer timeout too short to outlast the followers' {lease:?} lease"
            )));
        }
        tokio::time::sleep_until(stand_at.into()).await;
        let body = bincode::serialize(&NodeRpc::Elect)
            .map_err(|e| ProposeError::Unknown(e.to_string()))?;
        let left = deadline.saturating_duration_since(Instant::now());
        self.net
            .call_custom(target, target_addr, Bytes::from(body), left)
            .await
            .map_err(|e| ProposeError::Unknown(format!("elect rpc to node {target}: {e}")))?;
        // Done once the target leads.
        loop {
            if self.raft.metrics().borrow().current_leader == Some(target) {
                info!(target, "leadership transferred");
                return Ok(());
            }
            wait_changed(&mut metrics, deadline).await.map_err(|_| {
                ProposeError::Unknown(format!(
                    "node {target} did not win within the transfer timeout"
                ))
            })?;
        }
    }

    /// Builds a snapshot of everything applied so far, waits for it, then purges the log up to
    /// the snapshot's last log id and waits for that (within the proposal timeout); returns
    /// that log id, or `None` if nothing was applied yet.
    ///
    /// On a leader openraft defers a purge while a replication stream still reads those
    /// entries; if that outlasts the timeout this returns [`NodeError::Timeout`] and the purge
    /// still happens later.
    pub async fn snapshot_and_purge(&self) -> Result<Option<LogId>, NodeError> {
        let Some(target) = self.raft.metrics().borrow().last_applied else {
            return Ok(None);
        };
        self.purge_upto(target.index).await
    }

    /// Purges the log up to `index` (at most the last applied entry): makes sure a snapshot
    /// covers it (building one if needed), then purges and waits (within the proposal
    /// timeout). Log retention goes through here. Returns the purged log id, `None` if
    /// nothing was applied yet.
    pub async fn purge_upto(&self, index: u64) -> Result<Option<LogId>, NodeError> {
        let deadline = Instant::now() + self.propose_timeout;
        let mut metrics = self.raft.metrics();
        let Some(applied) = metrics.borrow_and_update().last_applied else {
            return Ok(None);
        };
        let index = index.min(applied.index);
        let fatal = |e: openraft::error::Fatal<NodeId>| NodeError::Raft(e.to_string());
        // A trigger while a build is running is ignored; trigger again once it is done.
        loop {
            let current = metrics.borrow_and_update().snapshot;
            if current.is_some_and(|s| s.index >= index) {
                break;
            }
            self.raft.trigger().snapshot().await.map_err(fatal)?;
            while metrics.borrow_and_update().snapshot == current {
                wait_changed(&mut metrics, deadline).await.map_err(|_| {
                    NodeError::Timeout(format!("snapshot covering log index {index}"))
                })?;
            }
        }
        self.raft.trigger().purge_log(index).await.map_err(fatal)?;
        let purged = loop {
            if let Some(p) = metrics
                .borrow_and_update()
                .purged
                .filter(|p| p.index >= index)
            {
                break p;
            }
            wait_changed(&mut metrics, deadline)
                .await
                .map_err(|_| NodeError::Timeout(format!("purge up to log index {index}")))?;
        };
        info!(purged = %purged, "log purged");
        Ok(Some(purged))
    }

    /// The upper election timeout (tests size their deadlines from it).
    pub fn election_max(&self) -> Duration {
        self.election_max
    }

    /// Stops raft and the RPC server (idempotent; sockets close as with a crash).
    pub async fn shutdown(&self) {
        let stop = self
            .stop_server
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(tx) = stop {
            let _ = tx.send(());
        }
        let _ = self.raft.shutdown().await;
        let tasks: Vec<_> = self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        for t in tasks {
            t.abort();
        }
        // Whoever watches this node (the broker, clients in tests) must not keep seeing
        // the last role of a stopped node.
        self.status_tx.send_modify(|s| {
            s.role = Role::Shutdown;
            s.leader = None;
        });
    }
}

async fn initialize(raft: &Raft, members: BTreeMap<NodeId, BasicNode>) -> Result<(), NodeError> {
    match raft.initialize(members).await {
        Ok(()) => {
            info!("initialized a new group");
            Ok(())
        }
        Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
        Err(e) => Err(NodeError::Raft(format!("initialize: {e}"))),
    }
}

/// True once this node knows a membership (formed by itself or learned from a leader).
async fn initialized_within(raft: &Raft, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    let mut metrics = raft.metrics();
    loop {
        if metrics
            .borrow_and_update()
            .membership_config
            .voter_ids()
            .next()
            .is_some()
        {
            return true;
        }
        if wait_changed(&mut metrics, deadline).await.is_err() {
            return false;
        }
    }
}

async fn wait_changed<T>(rx: &mut watch::Receiver<T>, deadline: Instant) -> Result<(), ()> {
    let left = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(left, rx.changed()).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

fn status_of(m: &openraft::RaftMetrics<NodeId, BasicNode>, log: &LogReadHandle) -> NodeStatus {
    NodeStatus {
        id: m.id,
        role: Role::from_state(m.state),
        term: m.current_term,
        leader: m.current_leader,
        last_log_index: m.last_log_index,
        committed_index: log.committed_index(),
        applied_index: m.last_applied.map(|l| l.index),
        applied_term: m.last_applied.map(|l| l.leader_id.term),
    }
}

async fn watch_status(raft: Raft, log: LogReadHandle, tx: Arc<watch::Sender<NodeStatus>>) {
    let mut metrics = raft.metrics();
    let mut last_role = None;
    loop {
        let status = status_of(&metrics.borrow_and_update(), &log);
        if last_role != Some((status.role, status.term)) {
            info!(role = %status.role, term = status.term, leader = ?status.leader, "raft role");
            last_role = Some((status.role, status.term));
        }
        tx.send_if_modified(|cur| {
            let changed = *cur != status;
            *cur = status;
            changed
        });
        if status.role == Role::Shutdown || metrics.changed().await.is_err() {
            return;
        }
    }
}
