//! Raft-layer benchmark: a 3-node group on loopback in one process, 1 KiB entries.
//!
//! ```sh
//! cargo run --release -p raftmq-raft --example raft_bench -- [--inflight 1,256,1000] [--secs 10] [--flush sync|async]
//! ```
//! Prints entries/s, MB/s and p50/p99/max commit latency (propose → applied on the leader)
//! per in-flight level. Not a test: numbers go to BENCHMARKS.md.
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

#[tokio::main]
async fn main() {
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
    let dir = tempfile::tempdir_in(arg("--dir").unwrap_or_else(|| ".".into())).unwrap();

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
        let mut c = NodeConfig::new(id, peers.clone(), dir.path().join(format!("n{id}")));
        c.flush = flush;
        let node = RaftNode::start(c, CountingSm::default(), l, NetworkFilter::default())
            .await
            .unwrap();
        nodes.insert(id, Arc::new(node));
    }
    let leader = loop {
        if let Some(n) = nodes
            .values()
            .find(|n| n.status().borrow().is_caught_up_leader())
        {
            break n.clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let payload = Bytes::from(vec![0x5au8; size]);
    println!(
        "3 nodes, {size} B entries, flush {flush:?}, {secs} s per level, data in {}",
        dir.path().display()
    );
    for inflight in inflights {
        let stop = Arc::new(AtomicBool::new(false));
        let hist = Arc::new(Mutex::new(
            Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap(),
        ));
        let mut tasks = Vec::new();
        let start = Instant::now();
        for _ in 0..inflight {
            let (leader, stop, hist, payload) =
                (leader.clone(), stop.clone(), hist.clone(), payload.clone());
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                let mut local = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
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
        println!(
            "inflight {inflight:>5}: {:>9.0} entries/s {:>7.1} MB/s  p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            total as f64 / el,
            total as f64 * size as f64 / el / 1e6,
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.max() as f64 / 1000.0
        );
        assert_eq!(
            leader.status().borrow().role,
            Role::Leader,
            "leadership changed during the run"
        );
    }
    for (_, n) in nodes {
        if let Ok(n) = Arc::try_unwrap(n) {
            n.shutdown().await;
        }
    }
}
