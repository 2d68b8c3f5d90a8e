//! A NameServer and one 3-node broker group as real processes on free loopback ports, for
//! tests that drive them through the client library or the tools. The binaries come from
//! the target directory the test runs from (a workspace build puts them all there).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use raftmq_client::remoting::ConnectionPool;
use raftmq_tools::playground::conf::{self, Ports, NODES};
use raftmq_tools::playground::ports::reserve;
use raftmq_tools::playground::procs::{Binaries, Proc};
use raftmq_tools::playground::status::cluster_master;

/// Generous deadline for anything a loaded 2-core machine has to do.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Polls `f` until it yields `Some`, or panics naming `what` after `deadline`.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The directory holding `mqnamesrv` and `mqbroker`: the target directory of this test.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>
    exe.parent()
        .and_then(|d| d.parent())
        .expect("target directory")
        .to_path_buf()
}

/// The running servers.
#[derive(Debug)]
pub struct Cluster {
    /// Data, configs and logs.
    pub dir: tempfile::TempDir,
    /// Every port.
    pub ports: Ports,
    namesrv: Option<Proc>,
    nodes: Vec<Option<Proc>>,
    bins: Binaries,
    pool: ConnectionPool,
}

impl Cluster {
    /// Starts a NameServer and three nodes and waits until the group has a master.
    pub async fn start() -> Cluster {
        let bins = Binaries::in_dir(&bin_dir()).expect("server binaries next to the test");
        let dir = tempfile::tempdir().expect("temp dir");
        // Hold every port until all are chosen, so no two choices collide.
        let mut guards = Vec::new();
        let mut take = || {
            let (p, g) = reserve(0).expect("free port");
            guards.push(g);
            p
        };
        let ports = Ports {
            namesrv: take(),
            client: [take(), take(), take()],
            raft: [take(), take(), take()],
        };
        drop(guards);
        let ns_conf = dir.path().join("namesrv.conf");
        std::fs::write(&ns_conf, conf::namesrv_conf(ports.namesrv)).unwrap();
        let namesrv = Proc::spawn(
            "mqnamesrv",
            &bins.namesrv,
            &[std::path::Path::new("-c"), &ns_conf],
            &dir.path().join("namesrv.log"),
        )
        .expect("start mqnamesrv");
        let mut c = Cluster {
            dir,
            ports,
            namesrv: Some(namesrv),
            nodes: (0..NODES).map(|_| None).collect(),
            bins,
            pool: ConnectionPool::new(Duration::from_secs(2), None),
        };
        for i in 0..NODES {
            c.start_node(i);
        }
        c.master().await;
        c
    }

    /// Starts (or restarts) node `i` on its existing data.
    pub fn start_node(&mut self, i: usize) {
        let store = self.dir.path().join(format!("n{i}"));
        let conf_path = self.dir.path().join(format!("broker-n{i}.conf"));
        let text = conf::broker_conf(i, &self.ports, store.to_str().unwrap());
        std::fs::write(&conf_path, text).unwrap();
        let log = self
            .dir
            .path()
            .join(format!("broker-n{i}.{}.log", now_tag()));
        let p = Proc::spawn(
            &format!("mqbroker n{i}"),
            &self.bins.broker,
            &[std::path::Path::new("-c"), &conf_path],
            &log,
        )
        .expect("start mqbroker");
        self.nodes[i] = Some(p);
    }

    /// The NameServer address.
    pub fn namesrv(&self) -> String {
        self.ports.namesrv_addr()
    }

    /// Node `i`'s client address.
    pub fn addr(&self, i: usize) -> String {
        self.ports.client_addr(i)
    }

    /// The master address the NameServer shows, once it shows one.
    pub async fn master(&self) -> String {
        let ns = self.namesrv();
        wait_for("a master on the NameServer", DEADLINE, || async {
            cluster_master(&self.pool, &ns, conf::GROUP)
                .await
                .ok()
                .flatten()
        })
        .await
    }

    /// The index of the node whose address is `addr`.
    pub fn node_of(&self, addr: &str) -> usize {
        (0..NODES)
            .find(|i| self.addr(*i) == addr)
            .expect("a node address")
    }

    /// Waits until the NameServer shows a master other than `old`.
    pub async fn new_master(&self, old: &str) -> String {
        let ns = self.namesrv();
        wait_for("a new master on the NameServer", DEADLINE, || async {
            cluster_master(&self.pool, &ns, conf::GROUP)
                .await
                .ok()
                .flatten()
                .filter(|m| m != old)
        })
        .await
    }

    /// kill -9 of node `i` (dropping the process handle kills it).
    pub fn kill(&mut self, i: usize) {
        self.nodes[i] = None;
    }
}

fn now_tag() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}
