//! Fixtures: request builders, a fake Raft, a gated custom handler, a server harness.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use openraft::error::{Fatal, RaftError};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, CommittedLeaderId, EntryPayload, SnapshotMeta, Vote};
use raftmq_raft::network::wire::{
    decode_frame, AppendEntriesResult, Decoded, Frame, InstallSnapshotResult, VoteResult,
};
use raftmq_raft::network::{
    serve, CustomRpcHandler, Identity, NetworkFactory, PeerClient, RaftRpcHandler, DEFAULT_GROUP,
};
use raftmq_raft::types::{Entry, LogId, NodeId, TypeConfig};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch, Semaphore};
use tokio::task::JoinHandle;

pub(crate) const WAIT: Duration = Duration::from_secs(10);
pub(crate) const TTL: Duration = Duration::from_secs(5);
/// Vote term that makes the fake answer with a remote (Raft) error.
pub(crate) const FAILING_TERM: u64 = 99;

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

pub(crate) fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 0), index)
}

pub(crate) fn append(commit: u64) -> AppendEntriesRequest<TypeConfig> {
    AppendEntriesRequest {
        vote: Vote::new_committed(1, 0),
        // No prev: the transport tests are not about the matching-point search.
        prev_log_id: None,
        entries: vec![Entry {
            log_id: log_id(1, commit + 1),
            payload: EntryPayload::Normal(Bytes::from_static(b"msg")),
        }],
        leader_commit: Some(log_id(1, commit)),
    }
}

pub(crate) fn vote(term: u64) -> VoteRequest<NodeId> {
    VoteRequest::new(Vote::new(term, 1), Some(log_id(1, 7)))
}

pub(crate) fn chunk(offset: u64, data: &[u8], done: bool) -> InstallSnapshotRequest<TypeConfig> {
    InstallSnapshotRequest {
        vote: Vote::new_committed(1, 0),
        meta: SnapshotMeta {
            last_log_id: Some(log_id(1, 9)),
            snapshot_id: "snap-1".into(),
            ..Default::default()
        },
        offset,
        data: data.to_vec(),
        done,
    }
}

/// A Raft stand-in that records what it was asked.
#[derive(Clone, Default)]
pub(crate) struct FakeRaft {
    /// `leader_commit` index of each append, in the order the handler ran them.
    pub(crate) appends: Arc<Mutex<Vec<u64>>>,
    /// Entries carried by each append, same order.
    pub(crate) entry_counts: Arc<Mutex<Vec<usize>>>,
    pub(crate) votes: Arc<AtomicU64>,
    pub(crate) snapshot: Arc<Mutex<Vec<u8>>>,
}

impl RaftRpcHandler for FakeRaft {
    fn append_entries(
        &self,
        req: AppendEntriesRequest<TypeConfig>,
    ) -> impl Future<Output = AppendEntriesResult> + Send {
        let appends = self.appends.clone();
        self.entry_counts.lock().unwrap().push(req.entries.len());
        async move {
            appends
                .lock()
                .unwrap()
                .push(req.leader_commit.map(|l| l.index).unwrap_or(0));
            // Yield so a concurrent dispatcher would have the chance to reorder.
            tokio::task::yield_now().await;
            Ok(AppendEntriesResponse::Success)
        }
    }

    fn vote(&self, req: VoteRequest<NodeId>) -> impl Future<Output = VoteResult> + Send {
        let votes = self.votes.clone();
        async move {
            votes.fetch_add(1, Ordering::SeqCst);
            if req.vote.leader_id().term == FAILING_TERM {
                return Err(RaftError::Fatal(Fatal::Stopped));
            }
            Ok(VoteResponse::new(req.vote, req.last_log_id, true))
        }
    }

    fn install_snapshot(
        &self,
        req: InstallSnapshotRequest<TypeConfig>,
    ) -> impl Future<Output = InstallSnapshotResult> + Send {
        let snapshot = self.snapshot.clone();
        async move {
            let mut s = snapshot.lock().unwrap();
            s.truncate(req.offset as usize);
            s.extend_from_slice(&req.data);
            Ok(InstallSnapshotResponse { vote: req.vote })
        }
    }
}

/// Custom RPC ops, the first body byte.
pub(crate) const ECHO: u8 = 0;
pub(crate) const FAIL: u8 = 1;
/// Wait for gate `body[1]` to be opened, then echo.
pub(crate) const GATED: u8 = 2;
pub(crate) const NEVER: u8 = 3;
pub(crate) const PANIC: u8 = 4;

/// A custom handler with gates the test opens, and a count of gated calls that started.
pub(crate) struct Custom {
    pub(crate) gates: Vec<Arc<Semaphore>>,
    pub(crate) started: watch::Sender<usize>,
}

impl Custom {
    pub(crate) fn new(gates: usize) -> Arc<Custom> {
        Arc::new(Custom {
            gates: (0..gates).map(|_| Arc::new(Semaphore::new(0))).collect(),
            started: watch::Sender::new(0),
        })
    }

    pub(crate) fn open(&self, gate: usize) {
        self.gates[gate].add_permits(1);
    }

    pub(crate) async fn wait_started(&self, n: usize) {
        let mut rx = self.started.subscribe();
        tokio::time::timeout(WAIT, rx.wait_for(|s| *s >= n))
            .await
            .expect("gated calls did not start")
            .unwrap();
    }
}

impl CustomRpcHandler for Custom {
    fn handle(&self, body: Bytes) -> BoxFuture<'static, Result<Bytes, String>> {
        let op = body.first().copied();
        let gate = body
            .get(1)
            .and_then(|g| self.gates.get(*g as usize))
            .cloned();
        if op == Some(GATED) {
            self.started.send_modify(|s| *s += 1);
        }
        Box::pin(async move {
            match op {
                Some(ECHO) => Ok(body),
                Some(FAIL) => Err("asked to fail".to_string()),
                Some(GATED) => {
                    let gate = gate.ok_or("no such gate")?;
                    gate.acquire().await.map_err(|e| e.to_string())?.forget();
                    Ok(body)
                }
                Some(NEVER) => futures::future::pending().await,
                Some(PANIC) => panic!("handler panics on purpose"),
                _ => Err("unknown op".to_string()),
            }
        })
    }
}

/// A server running on a real socket.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    pub(crate) stop: Option<oneshot::Sender<()>>,
    pub(crate) task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    pub(crate) async fn start(raft: FakeRaft, custom: Arc<dyn CustomRpcHandler>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::on(listener, raft, custom)
    }

    pub(crate) fn on(
        listener: TcpListener,
        raft: FakeRaft,
        custom: Arc<dyn CustomRpcHandler>,
    ) -> Server {
        let identity = Identity {
            group: DEFAULT_GROUP.to_owned(),
            id: None,
        };
        Self::as_node(listener, raft, custom, identity)
    }

    /// A server that only accepts hellos matching `identity`.
    pub(crate) fn as_node(
        listener: TcpListener,
        raft: FakeRaft,
        custom: Arc<dyn CustomRpcHandler>,
        identity: Identity,
    ) -> Server {
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(identity, listener, raft, custom, async {
            let _ = rx.await;
        }));
        Server {
            addr,
            stop: Some(tx),
            task,
        }
    }

    pub(crate) async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("server did not stop")
            .unwrap()
            .unwrap();
    }
}

pub(crate) fn node(addr: SocketAddr) -> BasicNode {
    BasicNode {
        addr: addr.to_string(),
    }
}

pub(crate) fn opt(ttl: Duration) -> RPCOption {
    RPCOption::new(ttl)
}

pub(crate) async fn raft_client(
    net: &NetworkFactory,
    target: NodeId,
    addr: SocketAddr,
) -> PeerClient {
    net.clone().new_client(target, &node(addr)).await
}

/// Retries `f` until it returns `Some`, failing after `limit`; the pause only paces polling.
pub(crate) async fn eventually<T, Fut: Future<Output = Option<T>>>(
    limit: Duration,
    what: &str,
    mut f: impl FnMut() -> Fut,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Decodes bytes that hold exactly one whole frame.
pub(crate) fn frame_of(bytes: Vec<u8>) -> Frame {
    let mut buf = BytesMut::from(&bytes[..]);
    match decode_frame(&mut buf).unwrap() {
        Decoded::Frame(f) => {
            assert!(
                buf.is_empty(),
                "one encoded frame decodes to exactly one frame"
            );
            f
        }
        Decoded::Incomplete { .. } => panic!("a whole frame reported incomplete"),
    }
}
