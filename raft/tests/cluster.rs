//! In-process 3-node groups over real TCP on 127.0.0.1:0: election, replication,
//! failover, catch-up, partitions. Conditions are awaited with deadlines, never slept on.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use raftmq_raft::network::{NetworkFilter, RpcKind};
use raftmq_raft::node::{NodeConfig, ProposeError, RaftNode};
use raftmq_raft::state_machine::testing::MemStateMachine;
use raftmq_raft::status::Role;
use raftmq_raft::NodeId;

const DEADLINE: Duration = Duration::from_secs(30);

struct Cluster {
    dir: tempfile::TempDir,
    peers: BTreeMap<NodeId, String>,
    nodes: BTreeMap<NodeId, RaftNode<MemStateMachine>>,
    filter: NetworkFilter,
}

fn config(id: NodeId, peers: &BTreeMap<NodeId, String>, dir: PathBuf) -> NodeConfig {
    let mut c = NodeConfig::new(id, peers.clone(), dir);
    // Each test's group has its own name: tests run in parallel, and a port one test frees
    // (a killed node) may be taken by another test's node before it is rebound.
    c.group = format!("test-{}", peers.get(&0).map_or("", String::as_str));
    c.segment_bytes = 64 * 1024;
    c.propose_timeout = Duration::from_secs(5);
    c
}

impl Cluster {
    async fn start() -> Cluster {
        Self::start_tuned(|_| {}).await
    }

    /// Like [`Cluster::start`], with `tune` applied to every node's config.
    async fn start_tuned(tune: fn(&mut NodeConfig)) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let mut listeners = Vec::new();
        let mut peers = BTreeMap::new();
        for id in 0..3u64 {
            let l = listen().await;
            peers.insert(id, l.local_addr().unwrap().to_string());
            listeners.push(l);
        }
        let filter = NetworkFilter::default();
        let mut nodes = BTreeMap::new();
        for (id, l) in listeners.into_iter().enumerate() {
            let id = id as u64;
            let mut c = config(id, &peers, dir.path().join(format!("n{id}")));
            tune(&mut c);
            let node = RaftNode::start(c, MemStateMachine::default(), l, filter.clone())
                .await
                .unwrap();
            nodes.insert(id, node);
        }
        Cluster {
            dir,
            peers,
            nodes,
            filter,
        }
    }

    async fn restart(&mut self, id: NodeId) {
        let l = bind_retry(&self.peers[&id]).await;
        let c = config(id, &self.peers, self.dir.path().join(format!("n{id}")));
        let node = RaftNode::start(c, MemStateMachine::default(), l, self.filter.clone())
            .await
            .unwrap();
        self.nodes.insert(id, node);
    }

    async fn stop(&mut self, id: NodeId) {
        if let Some(n) = self.nodes.remove(&id) {
            n.shutdown().await;
        }
    }

    /// Waits until the given nodes agree on one leader among them; returns it.
    async fn leader_among(&self, ids: &[NodeId]) -> NodeId {
        let start = Instant::now();
        loop {
            let statuses: Vec<_> = ids
                .iter()
                .map(|id| *self.nodes[id].status().borrow())
                .collect();
            let leaders: Vec<_> = statuses.iter().filter(|s| s.role == Role::Leader).collect();
            if let [l] = leaders.as_slice() {
                if statuses
                    .iter()
                    .all(|s| s.leader == Some(l.id) && s.term == l.term)
                    && l.is_caught_up_leader()
                {
                    return l.id;
                }
            }
            assert!(
                start.elapsed() < DEADLINE,
                "no agreed leader among {ids:?}: {statuses:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn leader(&self) -> NodeId {
        let ids: Vec<_> = self.nodes.keys().copied().collect();
        self.leader_among(&ids).await
    }

    fn applied(&self, id: NodeId) -> Vec<(u64, Bytes, Option<u64>)> {
        self.nodes[&id]
            .state_machine()
            .with(|sm| sm.applied.clone())
    }

    /// Waits until every running node has applied exactly `n` commands, identically.
    async fn converged(&self, n: usize) -> Vec<(u64, Bytes, Option<u64>)> {
        let start = Instant::now();
        loop {
            let all: Vec<_> = self.nodes.keys().map(|id| self.applied(*id)).collect();
            if all.iter().all(|a| a.len() == n) {
                for a in &all[1..] {
                    assert_eq!(a, &all[0], "replicas diverge");
                }
                return all[0].clone();
            }
            assert!(
                start.elapsed() < DEADLINE,
                "not converged to {n}: {:?}",
                all.iter().map(Vec::len).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn shutdown(mut self) {
        for (_, n) in std::mem::take(&mut self.nodes) {
            n.shutdown().await;
        }
    }
}

/// A listener on a free port below Linux's ephemeral range (32768 and up), so no outgoing
/// connection takes the port while a killed node is down, and a restart can rebind it.
async fn listen() -> tokio::net::TcpListener {
    use rand::Rng;
    loop {
        let port: u16 = rand::thread_rng().gen_range(20_000..32_000);
        if let Ok(l) = tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            return l;
        }
    }
}

async fn bind_retry(addr: &str) -> tokio::net::TcpListener {
    let start = Instant::now();
    loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(e) => assert!(start.elapsed() < DEADLINE, "rebind {addr}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn cmd(i: usize) -> Bytes {
    Bytes::from(format!("command-{i:05}"))
}

async fn propose_n(c: &Cluster, leader: NodeId, range: std::ops::Range<usize>) {
    for i in range {
        c.nodes[&leader].propose(cmd(i)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elects_one_leader_and_replicates_identically() {
    let c = Cluster::start().await;
    let leader = c.leader().await;
    // Concurrent proposals: every reply is the entry's log index, all distinct.
    let mut handles = Vec::new();
    for i in 0..200 {
        let fut = c.nodes[&leader].propose(cmd(i));
        handles.push(fut);
    }
    let replies = futures::future::join_all(handles).await;
    // Every reply carries the command's own log position: all distinct, and equal to
    // what the state machine saw.
    let mut pos: Vec<u64> = replies
        .into_iter()
        .map(|r| u64::from_be_bytes(r.unwrap()[8..16].try_into().unwrap()))
        .collect();
    pos.sort_unstable();
    pos.dedup();
    assert_eq!(pos.len(), 200);
    let applied = c.converged(200).await;
    // Payload positions are known, strictly increasing, and identical on every replica.
    let pos: Vec<u64> = applied.iter().map(|a| a.2.unwrap()).collect();
    assert!(pos.windows(2).all(|w| w[0] < w[1]));
    // A follower refuses writes and names the leader.
    let follower = *c.nodes.keys().find(|id| **id != leader).unwrap();
    match c.nodes[&follower].propose(cmd(999)).await {
        Err(ProposeError::NotLeader {
            leader_hint: Some((id, addr)),
        }) => {
            assert_eq!(id, leader);
            assert_eq!(addr, c.peers[&leader]);
        }
        other => panic!("follower accepted a write: {other:?}"),
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_leader_is_replaced_and_nothing_committed_is_lost() {
    let mut c = Cluster::start().await;
    let old = c.leader().await;
    propose_n(&c, old, 0..50).await;
    c.converged(50).await;
    let killed_at = Instant::now();
    c.stop(old).await;
    let rest: Vec<_> = c.nodes.keys().copied().collect();
    let new = c.leader_among(&rest).await;
    assert_ne!(new, old);
    eprintln!("failover: new leader {new} after {:?}", killed_at.elapsed());
    propose_n(&c, new, 50..80).await;
    let applied = c.converged(80).await;
    assert_eq!(
        applied.iter().map(|a| a.1.clone()).collect::<Vec<_>>(),
        (0..80).map(cmd).collect::<Vec<_>>()
    );
    // The old leader comes back as a follower and catches up.
    c.restart(old).await;
    c.converged(80).await;
    assert_eq!(c.leader().await, new);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_follower_catches_up() {
    let mut c = Cluster::start().await;
    let leader = c.leader().await;
    let follower = *c.nodes.keys().find(|id| **id != leader).unwrap();
    propose_n(&c, leader, 0..20).await;
    c.converged(20).await;
    c.stop(follower).await;
    propose_n(&c, leader, 20..60).await;
    c.restart(follower).await;
    c.converged(60).await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_follower_heals_and_converges() {
    let c = Cluster::start().await;
    let leader = c.leader().await;
    let follower = *c.nodes.keys().find(|id| **id != leader).unwrap();
    c.filter.isolate(follower);
    propose_n(&c, leader, 0..30).await;
    // The isolated follower has nothing new (it may stand for election, but cannot win).
    assert!(c.applied(follower).is_empty());
    c.filter.heal();
    c.converged(30).await;
    c.leader().await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deposed_leaders_uncommitted_tail_is_truncated() {
    let c = Cluster::start().await;
    let old = c.leader().await;
    propose_n(&c, old, 0..10).await;
    c.converged(10).await;
    c.filter.isolate(old);
    // Writes to the isolated leader cannot commit: their outcome is unknown.
    let lost: Vec<_> = (100..105)
        .map(|i| {
            let raft = c.nodes[&old].raft().clone();
            tokio::spawn(
                async move { tokio::time::timeout(DEADLINE, raft.client_write(cmd(i))).await },
            )
        })
        .collect();
    let others: Vec<_> = c.nodes.keys().copied().filter(|id| *id != old).collect();
    let new = c.leader_among(&others).await;
    propose_n(&c, new, 10..20).await;
    c.filter.heal();
    for r in futures::future::join_all(lost).await {
        let r = r.unwrap();
        assert!(
            !matches!(r, Ok(Ok(_))),
            "an isolated leader must not acknowledge: {r:?}"
        );
    }
    let applied = c.converged(20).await;
    let payloads: Vec<_> = applied.iter().map(|a| a.1.clone()).collect();
    assert_eq!(
        payloads,
        (0..20).map(cmd).collect::<Vec<_>>(),
        "the deposed tail never applies"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_transfer_moves_the_leader() {
    let c = Cluster::start().await;
    let old = c.leader().await;
    let target = *c.nodes.keys().find(|id| **id != old).unwrap();
    propose_n(&c, old, 0..10).await;
    let started = Instant::now();
    c.nodes[&old]
        .transfer_leadership(target, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(c.leader().await, target);
    eprintln!("transfer took {:?}", started.elapsed());
    propose_n(&c, target, 10..20).await;
    c.converged(20).await;
    c.shutdown().await;
}

/// A command big enough that 150 of them span several 64 KiB segments.
fn big_cmd(i: usize) -> Bytes {
    Bytes::from(format!("command-{i:05}-{}", "x".repeat(2_000)))
}

fn log_segments(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".log"))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiped_follower_catches_up_by_snapshot_at_the_same_positions() {
    let mut c = Cluster::start().await;
    let leader = c.leader().await;
    for i in 0..150 {
        c.nodes[&leader].propose(big_cmd(i)).await.unwrap();
    }
    c.converged(150).await;
    let leader_dir = c.dir.path().join(format!("n{leader}"));
    assert!(
        log_segments(&leader_dir).len() >= 4,
        "{:?}",
        log_segments(&leader_dir)
    );

    // Snapshot and purge everywhere: whole segments go.
    let mut snaps = Vec::new();
    for node in c.nodes.values() {
        snaps.push(node.snapshot_and_purge().await.unwrap().unwrap());
    }
    let snap = snaps[0];
    assert!(snaps.iter().all(|s| s.index == snap.index), "{snaps:?}");
    assert!(snap.index >= 150);
    let log = c.nodes[&leader].log();
    assert_eq!(log.first_index(), None, "every entry is in the snapshot");
    let snap_end = log.end_position();
    assert!(snap_end > 4 * 64 * 1024, "{snap_end}");
    assert_eq!(log.start_position(), snap_end);
    assert_eq!(log.end_of(snap.index), Some(snap_end));
    assert_eq!(
        log_segments(&leader_dir).len(),
        1,
        "purged segments are deleted"
    );

    // A follower loses its disk; the group goes on without it.
    let follower = *c.nodes.keys().find(|id| **id != leader).unwrap();
    c.stop(follower).await;
    let follower_dir = c.dir.path().join(format!("n{follower}"));
    std::fs::remove_dir_all(&follower_dir).unwrap();
    for i in 150..250 {
        c.nodes[&leader].propose(big_cmd(i)).await.unwrap();
    }
    assert_eq!(
        c.nodes[&leader]
            .log()
            .entry_position(snap.index + 1)
            .unwrap()
            .0,
        snap_end
    );

    // Back pristine: it can only catch up through the snapshot, and must continue its log at
    // the snapshot's position, not at 0.
    c.restart(follower).await;
    let applied = c.converged(250).await;
    assert_eq!(c.leader().await, leader);
    let sm = |id: NodeId| {
        c.nodes[&id]
            .state_machine()
            .with(|sm| (sm.applied.clone(), sm.last_applied, sm.membership.clone()))
    };
    assert_eq!(sm(follower), sm(leader), "state machines differ");
    let after: Vec<_> = applied.iter().filter(|a| a.0 > snap.index).collect();
    assert_eq!(after.len(), 100);
    assert!(after.iter().all(|a| a.2.is_some()));
    let (flog, llog) = (c.nodes[&follower].log(), c.nodes[&leader].log());
    assert_eq!(flog.first_index(), Some(snap.index + 1));
    assert_eq!(flog.start_position(), snap_end);
    let last = llog.last_index().unwrap();
    // The follower's log may still be receiving the commit of its last entries; wait for it.
    let start = Instant::now();
    while flog.last_index() != Some(last) {
        assert!(
            start.elapsed() < DEADLINE,
            "follower log did not reach {last}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for i in snap.index + 1..=last {
        assert_eq!(flog.entry_position(i), llog.entry_position(i), "entry {i}");
        assert_eq!(flog.read_payload(i).unwrap(), llog.read_payload(i).unwrap());
    }
    assert_eq!(flog.end_position(), llog.end_position());
    assert!(
        !log_segments(&follower_dir).contains(&"00000000000000000000.log".to_string()),
        "{:?}",
        log_segments(&follower_dir)
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_forms_without_its_lowest_node_at_first_boot() {
    let dir = tempfile::tempdir().unwrap();
    let mut listeners = Vec::new();
    let mut peers = BTreeMap::new();
    for id in 0..3u64 {
        let l = listen().await;
        peers.insert(id, l.local_addr().unwrap().to_string());
        listeners.push(Some(l));
    }
    let filter = NetworkFilter::default();
    let mut c = Cluster {
        dir,
        peers: peers.clone(),
        nodes: BTreeMap::new(),
        filter: filter.clone(),
    };
    // Node 0 (the one that would initialize at once) stays down: 1 and 2 form the group
    // themselves after their wait.
    for id in [1u64, 2] {
        let l = listeners[id as usize].take().unwrap();
        let conf = config(id, &peers, c.dir.path().join(format!("n{id}")));
        c.nodes.insert(
            id,
            RaftNode::start(conf, MemStateMachine::default(), l, filter.clone())
                .await
                .unwrap(),
        );
    }
    let leader = c.leader_among(&[1, 2]).await;
    propose_n(&c, leader, 0..10).await;
    // Node 0 boots late, pristine: it must join, not form a second group.
    let l = listeners[0].take().unwrap();
    let conf = config(0, &peers, c.dir.path().join("n0"));
    c.nodes.insert(
        0,
        RaftNode::start(conf, MemStateMachine::default(), l, filter)
            .await
            .unwrap(),
    );
    c.converged(10).await;
    assert_eq!(c.leader().await, leader);
    c.shutdown().await;
}

/// An application handler that names the node it runs on and its caller.
struct WhoAmI(NodeId);

impl raftmq_raft::network::CustomRpcHandler for WhoAmI {
    fn handle(&self, body: Bytes) -> futures::future::BoxFuture<'static, Result<Bytes, String>> {
        let me = self.0;
        Box::pin(async move { Err(format!("node {me}: caller unknown for {body:?}")) })
    }

    fn handle_from(
        &self,
        from: NodeId,
        body: Bytes,
    ) -> futures::future::BoxFuture<'static, Result<Bytes, String>> {
        let me = self.0;
        Box::pin(async move {
            let body = String::from_utf8_lossy(&body).into_owned();
            Ok(Bytes::from(format!(
                "{body}: node {me} answers node {from}"
            )))
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_rpcs_reach_the_peers_handler_and_transfer_still_works() {
    let dir = tempfile::tempdir().unwrap();
    let mut listeners = Vec::new();
    let mut peers = BTreeMap::new();
    for id in 0..3u64 {
        let l = listen().await;
        peers.insert(id, l.local_addr().unwrap().to_string());
        listeners.push(l);
    }
    let filter = NetworkFilter::default();
    let mut nodes = BTreeMap::new();
    for (id, l) in listeners.into_iter().enumerate() {
        let id = id as u64;
        let conf = config(id, &peers, dir.path().join(format!("n{id}")));
        // Node 2 has no application handler.
        let node = if id < 2 {
            let app = std::sync::Arc::new(WhoAmI(id));
            RaftNode::start_with_handler(conf, MemStateMachine::default(), l, filter.clone(), app)
                .await
                .unwrap()
        } else {
            RaftNode::start(conf, MemStateMachine::default(), l, filter.clone())
                .await
                .unwrap()
        };
        nodes.insert(id, node);
    }
    let c = Cluster {
        dir,
        peers,
        nodes,
        filter,
    };
    let rpc = c.nodes[&0].app_rpc();
    let ttl = Duration::from_secs(10);
    let answer = rpc.call(1, Bytes::from_static(b"hi"), ttl).await.unwrap();
    assert_eq!(&answer[..], b"hi: node 1 answers node 0");
    let err = rpc
        .call(2, Bytes::from_static(b"hi"), ttl)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, raftmq_raft::network::RpcError::Handler { target: 2, reason }
            if reason.contains("no application rpc handler")),
        "{err:?}"
    );
    assert!(
        rpc.call(7, Bytes::new(), ttl).await.is_err(),
        "not a member"
    );

    // Raft's own node rpc (Elect) is unaffected by the application handler.
    let old = c.leader().await;
    let target = *c.nodes.keys().find(|id| **id != old).unwrap();
    c.nodes[&old]
        .transfer_leadership(target, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(c.leader().await, target);
    c.shutdown().await;
}

/// After a leader dies, a follower with the longer log that refuses a candidate with a
/// shorter one stands at once (once the leader's lease is over), in a term above the
/// candidate's whatever their ids, instead of waiting for its own timer. Without the rule
/// it would stand only after `election_max` + a draw in [min, max) (10.5 s or more here,
/// at least 3.5 s after the candidate's attempt).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_longer_log_stands_at_once_when_it_refuses_a_shorter_one() {
    let c = Cluster::start_tuned(|conf| {
        conf.election_min = Duration::from_millis(5000);
        conf.election_max = Duration::from_millis(5500);
    })
    .await;
    let leader = c.leader().await;
    let followers: Vec<_> = c.nodes.keys().copied().filter(|&id| id != leader).collect();
    // The longer log on the lower id: its candidacy in the candidate's term would lose.
    let (long, short) = (followers[0], followers[1]);
    c.filter
        .drop_kind_between(leader, short, RpcKind::AppendEntries);
    propose_n(&c, leader, 0..5).await;
    let term = c.nodes[&leader].status().borrow().term;
    c.filter.isolate(leader);
    // Wait out `long`'s lease from the old leader (no heartbeat reaches it any more).
    let lease_over = Instant::now() + Duration::from_millis(5500 + 1500);
    while Instant::now() < lease_over {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let asked = Instant::now();
    c.nodes[&short].raft().trigger().elect().await.unwrap();
    loop {
        let s = *c.nodes[&long].status().borrow();
        if s.role == Role::Leader {
            assert!(
                s.term >= term + 2,
                "won in term {} (old term {term})",
                s.term
            );
            break;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(3),
            "{long} did not stand after refusing {short}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    c.filter.heal();
    let new = c.leader().await;
    assert_eq!(new, long);
    propose_n(&c, new, 5..8).await;
    let applied = c.converged(8).await;
    let cmds: Vec<_> = applied.iter().map(|a| a.1.clone()).collect();
    assert_eq!(cmds, (0..8).map(cmd).collect::<Vec<_>>());
    c.shutdown().await;
}
