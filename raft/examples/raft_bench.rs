//! Raft-layer benchmark: a 3-node group on loopback in one process, 1 KiB entries.
//!
//! ```sh
//! cargo run --release -p raftmq-raft --example raft_bench -- [--inflight 1,256,1000] [--secs 10] [--flush sync|async]
//! cargo run --release -p raftmq-raft --example raft_bench -- --failover 20 [--inflight 256]
//! ```
//! Throughput mode prints entries/s, MB/s and p50/p99/max commit latency (propose → applied
//! on the leader) per in-flight level, and the number of elections seen during the run.
//! Failover mode kills the leader (shutdown: sockets close, as with kill -9) under write load,
//! N times, and prints p50/p99 of kill → new caught-up leader and kill → first acknowledged
//! write on it. Not a test: numbers go to BENCHMARKS.md.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use raftmq_raft::log_store::FlushPolicy;
use raftmq_raft::network::NetworkFilter;
use raftmq_raft::node::{NodeConfig, RaftNode};
use raftmq_raft::state_machine::{Committed, SmError, StateMachine};
use raftmq_raft::status::Role;
use raftmq_raft::types::StoredMembership;
use raftmq_raft::LogId;

/// Keeps only counters, like a broker that does not hold messages in memory.
#[derive(Default)]
struct CountingSm {
    last: Option<LogId>,
    membership: StoredMembership,
    applied: u64,
}

impl StateMachine for CountingSm {
    fn apply(&mut self, entries: &[Committed]) -> Result<Vec<Bytes>, SmError> {
        for e in entries {
            self.last = Some(e.log_id);
            if let raftmq_raft::state_machine::CommittedPayload::Membership(m) = &e.payload {
                self.membership = m.clone();
            }
            self.applied += 1;
        }
        Ok(vec![Bytes::new(); entries.len()])
    }
    fn applied_state(&self) -> (Option<LogId>, StoredMembership) {
        (self.last, self.membership.clone())
    }
    fn snapshot(&mut self) -> Result<Vec<u8>, SmError> {
        Ok(Vec::new())
    }
    fn install_snapshot(
        &mut self,
        last: Option<LogId>,
        m: StoredMembership,
        _: &[u8],
    ) -> Result<(), SmError> {
        self.last = last;
        self.membership = m;
        Ok(())
    }
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

type Node = Arc<RaftNode<CountingSm>>;

async fn start_cluster(dir: &std::path::Path, flush: FlushPolicy) -> BTreeMap<u64, Node> {
    let mut listeners = Vec::new();
    let mut peers = BTreeMap::new();
    for id in 0..3u64 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        peers.insert(id, l.local_addr().unwrap().to_string());
        listeners.push(l);
    }
    let mut nodes = BTreeMap::new();
    for (id, l) in listeners.into_iter().enumerate() {
        let id = id as u64;
        let mut c = NodeConfig::new(id, peers.clone(), dir.join(format!("n{id}")));
        c.flush = flush;
        let node = RaftNode::start(c, CountingSm::default(), l, NetworkFilter::default())
            .await
            .unwrap();
        nodes.insert(id, Arc::new(node));
    }
    nodes
}

async fn caught_up_leader(nodes: &BTreeMap<u64, Node>) -> Node {
    loop {
        if let Some(n) = nodes
            .values()
            .find(|n| n.status().borrow().is_caught_up_leader())
        {
            return n.clone();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn shutdown_all(nodes: BTreeMap<u64, Node>) {
    for n in nodes.values() {
        n.shutdown().await;
    }
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// Kill the leader under load `trials` times; a fresh group each trial.
async fn failover(trials: usize, inflight: usize, flush: FlushPolicy, base: &std::path::Path) {
    let mut to_leader = Histogram::<u64>::new(3).unwrap();
    let mut to_write = Histogram::<u64>::new(3).unwrap();
    for trial in 0..trials {
        let dir = tempfile::tempdir_in(base).unwrap();
        let mut nodes = start_cluster(dir.path(), flush).await;
        let leader = caught_up_leader(&nodes).await;
        let stop = Arc::new(AtomicBool::new(false));
        let acked_after = Arc::new(Mutex::new(None::<Instant>));
        let kill_at = Arc::new(Mutex::new(None::<Instant>));
        let mut load = Vec::new();
        for _ in 0..inflight {
            let (nodes, stop, acked_after, kill_at) = (
                nodes.clone(),
                stop.clone(),
                acked_after.clone(),
                kill_at.clone(),
            );
            load.push(tokio::spawn(async move {
                let payload = Bytes::from(vec![1u8; 1024]);
                while !stop.load(Ordering::Relaxed) {
                    // Like a client: write to whoever claims leadership now.
                    let target = nodes
                        .values()
                        .find(|n| n.status().borrow().role == Role::Leader)
                        .cloned();
                    let Some(target) = target else {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        continue;
                    };
                    let sent = Instant::now();
                    if target.propose(payload.clone()).await.is_ok() {
                        let killed = *kill_at.lock().unwrap();
                        if killed.is_some_and(|k| sent > k) {
                            let mut a = acked_after.lock().unwrap();
                            if a.is_none() {
                                *a = Some(Instant::now());
                            }
                        }
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let id = leader.id();
        drop(leader);
        let node = nodes.remove(&id).unwrap();
        let t0 = Instant::now();
        *kill_at.lock().unwrap() = Some(t0);
        let killer = tokio::spawn(async move { node.shutdown().await });
        let rest: BTreeMap<u64, Node> = nodes.clone();
        let new = caught_up_leader(&rest).await;
        let elected = t0.elapsed();
        let deadline = Instant::now() + Duration::from_secs(30);
        while acked_after.lock().unwrap().is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let first_write = acked_after.lock().unwrap().map(|a| a.duration_since(t0));
        stop.store(true, Ordering::Relaxed);
        for t in load {
            let _ = t.await;
        }
        let _ = killer.await;
        to_leader.record(elected.as_micros() as u64).unwrap();
        if let Some(w) = first_write {
            to_write.record(w.as_micros() as u64).unwrap();
        }
        println!(
            "trial {trial:>2}: new leader {} after {:>7.1} ms, first write after {:?} ms",
            new.id(),
            elected.as_secs_f64() * 1e3,
            first_write.map(|w| (w.as_secs_f64() * 1e4).round() / 10.0)
        );
        drop(new);
        shutdown_all(rest).await;
    }
    println!(
        "failover over {trials} trials, {inflight} writers: kill -> leader p50 {:.0} ms p99 {:.0} ms max {:.0} ms; kill -> first write p50 {:.0} ms p99 {:.0} ms max {:.0} ms",
        ms(&to_leader, 0.5), ms(&to_leader, 0.99), to_leader.max() as f64 / 1000.0,
        ms(&to_write, 0.5), ms(&to_write, 0.99), to_write.max() as f64 / 1000.0
    );
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let inflights: Vec<usize> = arg("--inflight")
        .unwrap_or_else(|| "1,256,1000".into())
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    let secs: u64 = arg("--secs").map_or(10, |s| s.parse().unwrap());
    let flush = match arg("--flush").as_deref() {
        Some("async") => FlushPolicy::Async,
        _ => FlushPolicy::Sync,
    };
    let size: usize = arg("--size").map_or(1024, |s| s.parse().unwrap());
    let base = std::path::PathBuf::from(arg("--dir").unwrap_or_else(|| ".".into()));
    if let Some(trials) = arg("--failover") {
        let inflight = inflights.first().copied().unwrap_or(64);
        return failover(trials.parse().unwrap(), inflight, flush, &base).await;
    }
    let dir = tempfile::tempdir_in(&base).unwrap();
    let nodes = start_cluster(dir.path(), flush).await;
    let leader = caught_up_leader(&nodes).await;
    let payload = Bytes::from(vec![0x5au8; size]);
    println!("3 nodes, {size} B entries, flush {flush:?}, {secs} s per level");
    for inflight in inflights {
        let stop = Arc::new(AtomicBool::new(false));
        let hist = Arc::new(Mutex::new(Histogram::<u64>::new(3).unwrap()));
        let mut tasks = Vec::new();
        let term_before = leader.status().borrow().term;
        let start = Instant::now();
        for _ in 0..inflight {
            let (leader, stop, hist, payload) =
                (leader.clone(), stop.clone(), hist.clone(), payload.clone());
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                let mut local = Histogram::<u64>::new(3).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    if leader.propose(payload.clone()).await.is_ok() {
                        local.record(t.elapsed().as_micros().max(1) as u64).unwrap();
                        n += 1;
                    }
                }
                hist.lock().unwrap().add(&local).unwrap();
                n
            }));
        }
        tokio::time::sleep(Duration::from_secs(secs)).await;
        stop.store(true, Ordering::Relaxed);
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        let el = start.elapsed().as_secs_f64();
        let h = hist.lock().unwrap();
        let st = *leader.status().borrow();
        println!(
            "inflight {inflight:>5}: {:>9.0} entries/s {:>7.1} MB/s  p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({} {}, elections during run: {})",
            total as f64 / el,
            total as f64 * size as f64 / el / 1e6,
            ms(&h, 0.5),
            ms(&h, 0.99),
            h.max() as f64 / 1000.0,
            st.role,
            leader.id(),
            st.term - term_before
        );
    }
    drop(leader);
    shutdown_all(nodes).await;
}
