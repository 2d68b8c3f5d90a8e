//! The client side: one TCP connection per peer, shared by every call to that peer, with many
//! requests in flight at once (pipelining) matched to responses by request id.
//!
//! ```text
//! call ─ encode(id) ─ Peer::connection ─ Conn: pending[id] = oneshot; frame -> writer queue
//!                                        reader task: response frame -> pending[id].send
//! ```
//! A peer's link is `Idle | Connecting | Up(conn) | Down { retry_at }`. Connecting runs in
//! its own task (bounded by [`CONNECT_TIMEOUT`]); a call waits for it at most until its own
//! deadline. After a failed connect the link stays `Down` for an exponentially growing
//! backoff (up to [`RECONNECT_BACKOFF_MAX`]) and calls fail at once with `Unreachable`, so a
//! dead peer never holds up openraft's core or replication tasks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Timeout,
    Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RPCTypes};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, Instrument};

use crate::network::conn::Conn;
use crate::network::filter::{NetworkFilter, RpcKind};
use crate::network::wire::{RpcRequest, RpcResponse, WireError, FRAME_BYTES_MAX};
use crate::network::RpcError;
use crate::types::{LogId, NodeId, TypeConfig};

/// Longest a background connect may take before the link goes `Down`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// First reconnect delay after a failure (also openraft's first `backoff()` step).
pub const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Cap of the exponential reconnect delay.
pub const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// A connection silent this long while calls give up on it is presumed dead (half-open after
/// the peer's host vanished) and closed, so the next call reconnects.
pub const SILENT_CONNECTION_MAX: Duration = Duration::from_secs(3);

/// The raft group of nodes started without one (tests, benchmarks).
pub const DEFAULT_GROUP: &str = "raftmq";

/// openraft's network factory and the node's pool of peer connections. Cheap to clone.
#[derive(Clone)]
pub struct NetworkFactory {
    pool: Arc<Pool>,
}

struct Pool {
    /// This node, announced in every connection's hello and used by the filter.
    self_id: NodeId,
    /// This node's raft group, announced in every hello.
    group: Arc<str>,
    filter: NetworkFilter,
    peers: Mutex<HashMap<NodeId, Arc<Peer>>>,
    /// TCP connections established so far, all peers.
    connects: Arc<AtomicU64>,
}

impl std::fmt::Debug for NetworkFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkFactory")
            .field("self_id", &self.pool.self_id)
            .finish_non_exhaustive()
    }
}

impl NetworkFactory {
    /// A factory for node `self_id` of group [`DEFAULT_GROUP`]; `filter` is consulted on
    /// every call (pass-all by default).
    pub fn new(self_id: NodeId, filter: NetworkFilter) -> Self {
        Self::in_group(self_id, DEFAULT_GROUP, filter)
    }

    /// A factory for node `self_id` of raft group `group` (announced in every hello, so a
    /// node of another group refuses the connection).
    pub fn in_group(self_id: NodeId, group: &str, filter: NetworkFilter) -> Self {
        let pool = Pool {
            self_id,
            group: Arc::from(group),
            filter,
            peers: Mutex::new(HashMap::new()),
            connects: Arc::new(AtomicU64::new(0)),
        };
        Self {
            pool: Arc::new(pool),
        }
    }

    /// The node this factory calls from.
    pub fn self_id(&self) -> NodeId {
        self.pool.self_id
    }

    /// The transport filter in use.
    pub fn filter(&self) -> &NetworkFilter {
        &self.pool.filter
    }

    /// A client for `target` at `addr` (`ip:port`), sharing the peer's one connection.
    pub fn client(&self, target: NodeId, addr: &str) -> PeerClient {
        let peer = {
            let mut peers = self.pool.peers.lock().unwrap_or_else(|e| e.into_inner());
            match peers.get(&target) {
                Some(p) if p.addr == addr => p.clone(),
                _ => {
                    // New peer, or it moved: the old connection closes when its last user drops.
                    let p = Arc::new(Peer::new(
                        self.pool.self_id,
                        self.pool.group.clone(),
                        target,
                        addr,
                        &self.pool.connects,
                    ));
                    peers.insert(target, p.clone());
                    p
                }
            }
        };
        PeerClient {
            pool: self.pool.clone(),
            peer,
            node: BasicNode {
                addr: addr.to_string(),
            },
            confirmed: None,
        }
    }

    /// Sends a node-layer custom RPC to `target` at `addr` and waits up to `timeout`.
    pub async fn call_custom(
        &self,
        target: NodeId,
        addr: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, RpcError> {
        self.client(target, addr).call_custom(body, timeout).await
    }

    /// TCP connections this factory has established, all peers (diagnostics and tests).
    pub fn connections_opened(&self) -> u64 {
        self.pool.connects.load(Ordering::Relaxed)
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        self.client(target, &node.addr)
    }
}

/// Calls to one peer; implements openraft's [`RaftNetwork`]. Clones share the connection.
#[derive(Clone)]
pub struct PeerClient {
    pool: Arc<Pool>,
    peer: Arc<Peer>,
    node: BasicNode,
    /// The newest log id this follower confirmed to hold, under which leader vote: while
    /// a request starts past it, openraft is still searching for the matching point.
    confirmed: Option<(openraft::Vote<NodeId>, Option<LogId>)>,
}

impl std::fmt::Debug for PeerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerClient")
            .field("from", &self.pool.self_id)
            .field("target", &self.peer.target)
            .field("addr", &self.peer.addr)
            .finish()
    }
}

impl PeerClient {
    /// The peer this client calls.
    pub fn target(&self) -> NodeId {
        self.peer.target
    }

    /// Sends one request and waits for its response, at most `timeout` in all.
    pub async fn call(&self, req: RpcRequest, timeout: Duration) -> Result<RpcResponse, RpcError> {
        let deadline = Instant::now() + timeout;
        let (me, target) = (self.pool.self_id, self.peer.target);
        let kind = match &req {
            RpcRequest::AppendEntries(_) => RpcKind::AppendEntries,
            RpcRequest::Vote(_) => RpcKind::Vote,
            RpcRequest::InstallSnapshot(_) => RpcKind::InstallSnapshot,
            RpcRequest::Custom(_) => RpcKind::Custom,
        };
        let id = self.peer.next_request_id.fetch_add(1, Ordering::Relaxed);
        let span = tracing::debug_span!("rpc", from = me, target, ?kind, id);
        async move {
            if !self.pool.filter.pass(me, target, kind) {
                return Err(RpcError::Dropped {
                    from: me,
                    to: target,
                    kind,
                });
            }
            let frame = req.encode(id).map_err(|e| match e {
                WireError::BodyTooLarge { bytes } => RpcError::TooLarge {
                    bytes,
                    max: FRAME_BYTES_MAX as u64,
                },
                other => RpcError::Codec(other.to_string()),
            })?;
            let conn = self.peer.connection(deadline).await?;
            let resp = match tokio::time::timeout_at(deadline, conn.call(id, frame)).await {
                Ok(resp) => resp?,
                Err(_) => {
                    return Err(RpcError::Timeout {
                        target,
                        after: timeout,
                    })
                }
            };
            if !self.pool.filter.pass(target, me, kind) {
                return Err(RpcError::Dropped {
                    from: target,
                    to: me,
                    kind,
                });
            }
            RpcResponse::decode(&resp).map_err(|e| RpcError::Codec(e.to_string()))
        }
        .instrument(span)
        .await
    }

    /// Sends a node-layer custom RPC and returns the remote handler's response bytes.
    pub async fn call_custom(&self, body: Bytes, timeout: Duration) -> Result<Bytes, RpcError> {
        match self.call(RpcRequest::Custom(body), timeout).await? {
            RpcResponse::Custom(Ok(b)) => Ok(b),
            RpcResponse::Custom(Err(reason)) => Err(RpcError::Handler {
                target: self.peer.target,
                reason,
            }),
            other => Err(self.unexpected(other)),
        }
    }

    fn unexpected(&self, resp: RpcResponse) -> RpcError {
        match resp {
            RpcResponse::Error(reason) => RpcError::Rejected {
                target: self.peer.target,
                reason,
            },
            other => RpcError::Codec(format!("unexpected response kind {:?}", other.kind())),
        }
    }

    /// Maps a transport error to openraft's view: unreachable peers and filtered messages
    /// back off, deadlines are `Timeout`, everything else a retryable network error.
    fn to_rpc_error<E: std::error::Error>(
        &self,
        err: RpcError,
        action: RPCTypes,
        ttl: Duration,
    ) -> RPCError<NodeId, BasicNode, E> {
        match err {
            RpcError::Unreachable { .. } | RpcError::Dropped { .. } => {
                RPCError::Unreachable(Unreachable::new(&err))
            }
            RpcError::Timeout { .. } => RPCError::Timeout(Timeout {
                action,
                id: self.pool.self_id,
                target: self.peer.target,
                timeout: ttl,
            }),
            other => RPCError::Network(NetworkError::new(&other)),
        }
    }

    fn remote<E: std::error::Error>(&self, err: E) -> RPCError<NodeId, BasicNode, E> {
        RPCError::RemoteError(RemoteError::new_with_node(
            self.peer.target,
            self.node.clone(),
            err,
        ))
    }
}

/// Result of a call as openraft wants it.
type RaftResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

/// Most entry bytes in one AppendEntries (at least one entry is always sent): small enough
/// to be written and fsynced by a follower within one heartbeat interval.
pub const APPEND_BYTES_MAX: usize = 4 << 20;

/// How many leading entries fit in `max` payload bytes (at least one).
fn prefix_within(entries: &[crate::types::Entry], max: usize) -> usize {
    let mut total = 0usize;
    for (k, e) in entries.iter().enumerate() {
        total += match &e.payload {
            openraft::EntryPayload::Normal(b) => b.len(),
            _ => 64,
        };
        if total > max && k > 0 {
            return k;
        }
    }
    entries.len()
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RaftResult<AppendEntriesResponse<NodeId>> {
        let mut rpc = rpc;
        // A new leader knows nothing of a follower's log: openraft binary-searches for the
        // matching point and sends every step as a full batch (4096 entries, tens of MiB
        // under load) that the follower mostly holds already, which took seconds after a
        // failover. While the request starts past what this follower confirmed, first ask
        // whether it holds the batch's last entry: if so it holds the whole batch (log
        // matching), and the batch is reported accepted without sending it.
        let known = self
            .confirmed
            .as_ref()
            .filter(|(vote, _)| *vote == rpc.vote)
            .and_then(|(_, id)| *id);
        let last = rpc.entries.last().map(|e| e.log_id);
        let probing = last.is_some() && known.map(|k| k.index) < rpc.prev_log_id.map(|p| p.index);
        if probing {
            let probe = AppendEntriesRequest {
                vote: rpc.vote,
                prev_log_id: last,
                entries: Vec::new(),
                leader_commit: rpc.leader_commit,
            };
            let ttl = option.hard_ttl();
            match self.call(RpcRequest::AppendEntries(probe), ttl).await {
                Ok(RpcResponse::AppendEntries(Ok(AppendEntriesResponse::Success))) => {
                    self.confirmed = Some((rpc.vote, last));
                    return Ok(AppendEntriesResponse::Success);
                }
                // It lacks the last entry: send the batch as usual.
                Ok(RpcResponse::AppendEntries(Ok(AppendEntriesResponse::Conflict))) => {}
                Ok(RpcResponse::AppendEntries(Ok(resp))) => return Ok(resp),
                Ok(RpcResponse::AppendEntries(Err(e))) => return Err(self.remote(e)),
                Ok(other) => {
                    return Err(self.to_rpc_error(
                        self.unexpected(other),
                        RPCTypes::AppendEntries,
                        ttl,
                    ))
                }
                Err(e) => return Err(self.to_rpc_error(e, RPCTypes::AppendEntries, ttl)),
            }
        }
        let vote = rpc.vote;
        // openraft bounds a batch by entry count only and gives every AppendEntries one
        // heartbeat interval: a follower catching up on large entries would time out again
        // and again. Send a prefix of at most APPEND_BYTES_MAX and report partial success.
        let keep = prefix_within(&rpc.entries, APPEND_BYTES_MAX);
        let partial = (keep < rpc.entries.len()).then(|| {
            rpc.entries.truncate(keep);
            rpc.entries.last().map(|e| e.log_id)
        });
        let entries = rpc.entries.len() as u64;
        let sent_prev = rpc.prev_log_id;
        let sent_last = rpc.entries.last().map(|e| e.log_id);
        let ttl = option.hard_ttl();
        match self.call(RpcRequest::AppendEntries(rpc), ttl).await {
            Ok(RpcResponse::AppendEntries(Ok(AppendEntriesResponse::Success))) => {
                // What was sent (after any cut) now matches on the follower.
                self.confirmed = Some((vote, sent_last.or(sent_prev)));
                Ok(match partial {
                    Some(last) => AppendEntriesResponse::PartialSuccess(last),
                    None => AppendEntriesResponse::Success,
                })
            }
            Ok(RpcResponse::AppendEntries(Ok(resp))) => Ok(resp),
            Ok(RpcResponse::AppendEntries(Err(e))) => Err(self.remote(e)),
            Ok(other) => {
                Err(self.to_rpc_error(self.unexpected(other), RPCTypes::AppendEntries, ttl))
            }
            // Ask openraft to split the batch; a single oversized entry it treats as unreachable.
            Err(RpcError::TooLarge { .. }) if entries > 1 => Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(entries / 2),
            )),
            Err(e) => Err(self.to_rpc_error(e, RPCTypes::AppendEntries, ttl)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RaftResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        let ttl = option.hard_ttl();
        match self.call(RpcRequest::InstallSnapshot(rpc), ttl).await {
            Ok(RpcResponse::InstallSnapshot(Ok(resp))) => Ok(resp),
            Ok(RpcResponse::InstallSnapshot(Err(e))) => Err(self.remote(e)),
            Ok(other) => {
                Err(self.to_rpc_error(self.unexpected(other), RPCTypes::InstallSnapshot, ttl))
            }
            Err(e) => Err(self.to_rpc_error(e, RPCTypes::InstallSnapshot, ttl)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RaftResult<VoteResponse<NodeId>> {
        let ttl = option.hard_ttl();
        match self.call(RpcRequest::Vote(rpc), ttl).await {
            Ok(RpcResponse::Vote(Ok(resp))) => Ok(resp),
            Ok(RpcResponse::Vote(Err(e))) => Err(self.remote(e)),
            Ok(other) => Err(self.to_rpc_error(self.unexpected(other), RPCTypes::Vote, ttl)),
            Err(e) => Err(self.to_rpc_error(e, RPCTypes::Vote, ttl)),
        }
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::successors(Some(RECONNECT_BACKOFF_MIN), |d| {
            Some((*d * 2).min(RECONNECT_BACKOFF_MAX))
        }))
    }
}

/// One remote node: its address, its link state, and the request id sequence.
struct Peer {
    self_id: NodeId,
    group: Arc<str>,
    target: NodeId,
    addr: String,
    link: watch::Sender<LinkState>,
    /// Ids are unique per peer across reconnects; 0 is the hello.
    next_request_id: AtomicU64,
    connects: Arc<AtomicU64>,
}

struct LinkState {
    link: Link,
    /// Delay before the next reconnect after a failure.
    backoff: Duration,
    /// Why the last connect failed, for error messages.
    last_error: String,
}

enum Link {
    /// No connection; the next call connects.
    Idle,
    /// A connect task is running; calls wait for it (up to their deadline).
    Connecting,
    /// Connected (it may have closed since; checked on use).
    Up(Arc<Conn>),
    /// A connect failed; calls fail fast until `retry_at`.
    Down { retry_at: Instant },
}

/// What a call does after looking at the link.
enum Step {
    Use(Arc<Conn>),
    Connect,
    Wait,
    FailFast(Duration),
}

impl LinkState {
    /// Decides the call's next step, updating the link; returns whether it changed.
    fn step(&mut self, now: Instant, next: &mut Step) -> bool {
        match &self.link {
            Link::Up(conn) if !conn.is_closed() => {
                *next = Step::Use(conn.clone());
                false
            }
            Link::Up(conn) => {
                // A connection that answered something was healthy: reconnect at once.
                // One that never answered (refused hello, crash loop) counts as a failure.
                if conn.answered() {
                    self.backoff = RECONNECT_BACKOFF_MIN;
                    self.link = Link::Connecting;
                    *next = Step::Connect;
                } else {
                    self.last_error = "connection closed before any response".to_string();
                    *next = Step::FailFast(self.fail(now));
                }
                true
            }
            Link::Down { retry_at } if now < *retry_at => {
                *next = Step::FailFast(*retry_at - now);
                false
            }
            Link::Idle | Link::Down { .. } => {
                self.link = Link::Connecting;
                *next = Step::Connect;
                true
            }
            Link::Connecting => {
                *next = Step::Wait;
                false
            }
        }
    }

    /// Marks the link down for the current backoff and doubles it; returns the delay.
    fn fail(&mut self, now: Instant) -> Duration {
        let delay = self.backoff;
        self.link = Link::Down {
            retry_at: now + delay,
        };
        self.backoff = (self.backoff * 2).min(RECONNECT_BACKOFF_MAX);
        delay
    }
}

impl Peer {
    fn new(
        self_id: NodeId,
        group: Arc<str>,
        target: NodeId,
        addr: &str,
        connects: &Arc<AtomicU64>,
    ) -> Self {
        let state = LinkState {
            link: Link::Idle,
            backoff: RECONNECT_BACKOFF_MIN,
            last_error: String::new(),
        };
        Peer {
            self_id,
            group,
            target,
            addr: addr.to_string(),
            link: watch::Sender::new(state),
            next_request_id: AtomicU64::new(1),
            connects: connects.clone(),
        }
    }

    /// The live connection, connecting if needed; never waits past `deadline`.
    async fn connection(self: &Arc<Self>, deadline: Instant) -> Result<Arc<Conn>, RpcError> {
        let mut rx = self.link.subscribe();
        loop {
            let mut next = Step::Wait;
            self.link
                .send_if_modified(|st| st.step(Instant::now(), &mut next));
            match next {
                Step::Use(conn) => return Ok(conn),
                Step::FailFast(retry_in) => {
                    let last = self.link.borrow().last_error.clone();
                    return Err(self.unreachable(format!("{last}; retrying in {retry_in:?}")));
                }
                Step::Connect => {
                    let span = tracing::debug_span!("raft_connect", target = self.target, addr = %self.addr);
                    tokio::spawn(self.clone().connect().instrument(span));
                }
                Step::Wait => {}
            }
            let connected = rx.wait_for(|st| !matches!(st.link, Link::Connecting));
            match tokio::time::timeout_at(deadline, connected).await {
                Ok(Ok(_)) => continue,
                Ok(Err(_)) => return Err(self.unreachable("peer closed".to_string())),
                Err(_) => {
                    return Err(
                        self.unreachable("connect still running at the call's deadline".into())
                    )
                }
            }
        }
    }

    /// Connects (bounded by [`CONNECT_TIMEOUT`]) and publishes the result on the link.
    async fn connect(self: Arc<Self>) {
        let result =
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.addr)).await {
                Ok(Ok(stream)) => Conn::start(stream, self.self_id, self.target, &self.group),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect timed out",
                )),
            };
        self.link.send_modify(|st| match result {
            Ok(conn) => {
                debug!("connected");
                self.connects.fetch_add(1, Ordering::Relaxed);
                st.link = Link::Up(Arc::new(conn));
            }
            Err(e) => {
                debug!(error = %e, "connect failed");
                st.last_error = format!("connect to {}: {e}", self.addr);
                st.fail(Instant::now());
            }
        });
    }

    fn unreachable(&self, reason: String) -> RpcError {
        RpcError::Unreachable {
            target: self.target,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Entry, LogId};
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(index: u64, len: usize) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 0), index),
            payload: EntryPayload::Normal(Bytes::from(vec![0u8; len])),
        }
    }

    #[test]
    fn append_batches_are_cut_by_bytes_but_never_empty() {
        let small: Vec<Entry> = (1..=100).map(|i| entry(i, 1_000)).collect();
        assert_eq!(prefix_within(&small, APPEND_BYTES_MAX), 100);
        let big: Vec<Entry> = (1..=10).map(|i| entry(i, 1 << 20)).collect();
        assert_eq!(prefix_within(&big, APPEND_BYTES_MAX), 4);
        let huge = vec![entry(1, 8 << 20), entry(2, 10)];
        assert_eq!(
            prefix_within(&huge, APPEND_BYTES_MAX),
            1,
            "one entry always goes"
        );
        assert_eq!(prefix_within(&[], APPEND_BYTES_MAX), 0);
    }
}
