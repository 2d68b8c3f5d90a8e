//! Cluster control: one or two NameServers and a 3-node broker group as real processes,
//! each in its own network namespace when running as root ([`crate::net`]), else on
//! 127.0.0.x loopback addresses. Kills, pauses and restarts by pid, the raft view of
//! every node, and cleanup on shutdown, drop, Ctrl-C and SIGTERM.
//!
//! ```text
//! start: netns+bridge (or loopback ports) -> <data>/ns<j>.conf, n<i>.conf, n<i>/ (store)
//!   -> spawn [ip netns exec rmqj<tag>-<name>] mqnamesrv|mqbroker -c <conf>
//!      (output to <logs>/<name>.log, pids to <data>/playground.pids)
//! leader(): RAFTMQ_GROUP_STATUS of every node -> the node saying leader at the top term
//! shutdown / drop / signal: SIGKILL + reap every server, delete namespaces and bridge,
//!   delete what was created in <data> (logs stay)
//! ```

mod config;
mod servers;
mod status;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use raftmq_client::admin::AdminClient;
use raftmq_protocol::body::RaftGroupStatus;
use raftmq_tools::playground::conf::{self, Ports};
use raftmq_tools::playground::ports::reserve;
use raftmq_tools::playground::procs::{self, Binaries, PID_FILE};

use crate::net::{self, host_octet, Net};

pub use config::override_keys;
use servers::{write, Kind, Procs, Slot};
use status::healthy;
pub use status::{leader_of, status_lines};

/// Nodes in the broker group.
pub const NODES: usize = conf::NODES;
/// NameServer port inside a namespace (each namespace has its own ports).
const NETNS_NAMESRV_PORT: u16 = 9876;
/// Broker client port inside a namespace.
const NETNS_CLIENT_PORT: u16 = 10911;
/// Raft port inside a namespace (below the ephemeral range, so never held by an
/// outgoing connection).
const NETNS_RAFT_PORT: u16 = 20911;
/// Time limit of one status request; a paused node must not stall a leader query.
const STATUS_TIMEOUT: Duration = Duration::from_millis(1000);
/// How often the wait_* functions ask again.
const POLL_EVERY: Duration = Duration::from_millis(100);

/// `flushDiskType` of the brokers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushDisk {
    /// `SYNC_FLUSH`: acknowledged once a majority has fsynced.
    Sync,
    /// `ASYNC_FLUSH`: acknowledged once written by a majority.
    Async,
}

impl FlushDisk {
    fn value(self) -> &'static str {
        match self {
            FlushDisk::Sync => "SYNC_FLUSH",
            FlushDisk::Async => "ASYNC_FLUSH",
        }
    }
}

/// Where the servers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetMode {
    /// Namespaces when possible ([`net::netns_unavailable`]), else loopback.
    Auto,
    /// Namespaces; an error when they cannot be used.
    Netns,
    /// 127.0.0.x loopback addresses; partition faults are skipped.
    Loopback,
}

/// What to start.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Directory holding `mqnamesrv` and `mqbroker` (release builds).
    pub bin_dir: PathBuf,
    /// Configs, stores and the pid file; what the cluster creates there is deleted on
    /// shutdown.
    pub data_dir: PathBuf,
    /// Server logs (`n0.log`, `n0.restart1.log`, `ns0.log`); kept on shutdown.
    pub log_dir: PathBuf,
    /// Number of NameServers, 1 or 2.
    pub namesrvs: usize,
    /// The brokers' `flushDiskType`.
    pub flush: FlushDisk,
    /// Namespaces or loopback.
    pub net: NetMode,
    /// Extra broker config keys (e.g. raft timing), applied last.
    pub broker_overrides: Vec<(String, String)>,
}

impl ClusterSpec {
    /// Defaults: one NameServer, SYNC_FLUSH, namespaces when possible, the sample's raft
    /// timing.
    pub fn new(bin_dir: PathBuf, data_dir: PathBuf, log_dir: PathBuf) -> ClusterSpec {
        ClusterSpec {
            bin_dir,
            data_dir,
            log_dir,
            namesrvs: 1,
            flush: FlushDisk::Sync,
            net: NetMode::Auto,
            broker_overrides: Vec::new(),
        }
    }
}

#[derive(Debug)]
struct Inner {
    spec: ClusterSpec,
    bins: Binaries,
    net: Mutex<Option<Net>>,
    /// Why partitions are impossible (loopback mode), `None` with namespaces.
    no_netns: Option<String>,
    namesrv_addrs: Vec<String>,
    node_addrs: Vec<String>,
    admin: AdminClient,
    procs: Mutex<Procs>,
    /// Files and directories created in the data directory, deleted on shutdown.
    created: Vec<PathBuf>,
    /// This cluster's file in [`servers::REGISTRY_DIR`].
    registry: PathBuf,
}

/// A running cluster. Dropping it kills every server and removes the namespaces and the
/// data (logs stay).
#[derive(Debug)]
pub struct Cluster {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Addresses and ports of every server.
struct Layout {
    namesrv_ips: Vec<Ipv4Addr>,
    node_ips: Vec<Ipv4Addr>,
    ports: Ports,
}

impl Layout {
    fn namesrv_addrs(&self) -> Vec<String> {
        self.namesrv_ips
            .iter()
            .map(|ip| format!("{ip}:{}", self.ports.namesrv))
            .collect()
    }
}

impl Cluster {
    /// Writes the configs and starts every server (inside a tokio runtime). Returns once
    /// they are spawned; [`Cluster::wait_leader`] waits for the group.
    pub fn start(spec: ClusterSpec) -> anyhow::Result<Cluster> {
        if !(1..=2).contains(&spec.namesrvs) {
            bail!("namesrvs must be 1 or 2, not {}", spec.namesrvs);
        }
        let bins = Binaries::in_dir(&spec.bin_dir)?;
        for dir in [&spec.data_dir, &spec.log_dir] {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let data_dir = spec
            .data_dir
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", spec.data_dir.display()))?;
        let orphans = servers::kill_orphans();
        if !orphans.is_empty() {
            eprintln!(
                "jepsen: killed servers left by dead runs: {}",
                orphans.join(", ")
            );
        }
        let running = procs::still_running(&data_dir);
        if !running.is_empty() {
            bail!(
                "servers of an earlier run still use {}: {running:?}",
                data_dir.display()
            );
        }
        let mut spec = spec;
        spec.data_dir = data_dir;

        let unavailable = net::netns_unavailable();
        let use_netns = match (spec.net, unavailable) {
            (NetMode::Loopback, _) => false,
            (NetMode::Auto, None) | (NetMode::Netns, None) => true,
            (NetMode::Auto, Some(_)) => false,
            (NetMode::Netns, Some(why)) => bail!("network namespaces requested but {why}"),
        };
        let mut names: Vec<String> = (0..spec.namesrvs).map(|j| format!("ns{j}")).collect();
        names.extend((0..NODES).map(|i| format!("n{i}")));
        let ip_of = |net: Option<&Net>, name: &str| -> anyhow::Result<Ipv4Addr> {
            match net {
                Some(n) => Ok(n.host(name)?.ip),
                None => Ok(Ipv4Addr::new(127, 0, 0, host_octet(name)?)),
            }
        };
        let (net, no_netns, guards) = if use_netns {
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            (Some(Net::create(&refs)?), None, Vec::new())
        } else {
            let why = match spec.net {
                NetMode::Loopback => "loopback mode requested".to_owned(),
                _ => unavailable.unwrap_or("unavailable").to_owned(),
            };
            eprintln!(
                "\n==============================================================\n\
                 jepsen: NO NETWORK NAMESPACES ({why}): servers on 127.0.0.x,\n\
                 every partition fault will be SKIPPED\n\
                 ==============================================================\n"
            );
            (None, Some(why), Vec::new())
        };
        let mut guards = guards;
        let ports = if net.is_some() {
            Ports {
                namesrv: NETNS_NAMESRV_PORT,
                client: [NETNS_CLIENT_PORT; NODES],
                raft: [NETNS_RAFT_PORT; NODES],
            }
        } else {
            // Brokers listen for clients on 0.0.0.0, so ports must differ even though
            // addresses do; the reservations are held until just before the spawns.
            let mut take = || -> anyhow::Result<u16> {
                let (p, g) = reserve(0).context("no free port")?;
                guards.push(g);
                Ok(p)
            };
            Ports {
                namesrv: take()?,
                client: [take()?, take()?, take()?],
                raft: [take()?, take()?, take()?],
            }
        };
        let layout = Layout {
            namesrv_ips: (0..spec.namesrvs)
                .map(|j| ip_of(net.as_ref(), &format!("ns{j}")))
                .collect::<anyhow::Result<_>>()?,
            node_ips: (0..NODES)
                .map(|i| ip_of(net.as_ref(), &format!("n{i}")))
                .collect::<anyhow::Result<_>>()?,
            ports,
        };
        // Two NameServers on loopback would share the port: give the second its own.
        let namesrv_addrs = if net.is_none() && spec.namesrvs == 2 {
            let (p, g) = reserve(0).context("no free port")?;
            guards.push(g);
            vec![
                format!("{}:{}", layout.namesrv_ips[0], layout.ports.namesrv),
                format!("{}:{p}", layout.namesrv_ips[1]),
            ]
        } else {
            layout.namesrv_addrs()
        };

        let mut created = Vec::new();
        let mut namesrv_slots = Vec::new();
        for (j, addr) in namesrv_addrs.iter().enumerate() {
            let (ip, port) = addr
                .rsplit_once(':')
                .ok_or_else(|| anyhow!("bad address {addr}"))?;
            let text = override_keys(
                &conf::namesrv_conf(0),
                &[
                    ("listenPort".into(), port.to_owned()),
                    ("bindAddress".into(), ip.to_owned()),
                ],
            );
            let path = spec.data_dir.join(format!("ns{j}.conf"));
            write(&path, &text)?;
            created.push(path.clone());
            namesrv_slots.push(Slot::new(format!("ns{j}"), path));
        }
        let mut node_slots = Vec::new();
        let node_addrs: Vec<String> = (0..NODES)
            .map(|i| format!("{}:{}", layout.node_ips[i], layout.ports.client[i]))
            .collect();
        let peers: Vec<String> = (0..NODES)
            .map(|i| format!("n{i}-{}:{}", layout.node_ips[i], layout.ports.raft[i]))
            .collect();
        for i in 0..NODES {
            let store = spec.data_dir.join(format!("n{i}"));
            if store.exists() {
                std::fs::remove_dir_all(&store)
                    .with_context(|| format!("cannot remove the old store {}", store.display()))?;
            }
            created.push(store.clone());
            let store_value = conf::path_value(&store).map_err(|e| anyhow!(e))?;
            let mut keys: Vec<(String, String)> = vec![
                ("listenPort".into(), layout.ports.client[i].to_string()),
                ("namesrvAddr".into(), namesrv_addrs.join(";")),
                ("brokerIP1".into(), layout.node_ips[i].to_string()),
                ("dLegerPeers".into(), peers.join(";")),
                ("flushDiskType".into(), spec.flush.value().into()),
            ];
            keys.extend(spec.broker_overrides.iter().cloned());
            let text = override_keys(&conf::broker_conf(i, &layout.ports, &store_value), &keys);
            let path = spec.data_dir.join(format!("n{i}.conf"));
            write(&path, &text)?;
            created.push(path.clone());
            node_slots.push(Slot::new(format!("n{i}"), path));
        }
        created.push(spec.data_dir.join(PID_FILE));

        let admin = AdminClient::new(namesrv_addrs.clone())
            .map_err(|e| anyhow!("admin client: {e}"))?
            .with_timeout(STATUS_TIMEOUT);
        let cluster = Cluster {
            inner: Arc::new(Inner {
                bins,
                net: Mutex::new(net),
                no_netns,
                namesrv_addrs,
                node_addrs,
                admin,
                procs: Mutex::new(Procs {
                    namesrvs: namesrv_slots,
                    nodes: node_slots,
                    all_pids: Vec::new(),
                    unexpected: Vec::new(),
                    shut_down: false,
                }),
                created,
                registry: servers::registry_file(),
                spec,
            }),
        };
        drop(guards);
        for j in 0..cluster.inner.spec.namesrvs {
            cluster.restart_namesrv(j)?;
        }
        for i in 0..NODES {
            cluster.restart(i)?;
        }
        Ok(cluster)
    }

    /// Whether the servers run in network namespaces (partitions possible).
    pub fn netns(&self) -> bool {
        self.inner.no_netns.is_none()
    }

    /// Why partitions are impossible (loopback mode); `None` with namespaces.
    pub fn no_netns_reason(&self) -> Option<&str> {
        self.inner.no_netns.as_deref()
    }

    /// The NameServers' addresses (`ip:port`), for clients and admin requests.
    pub fn namesrv_addrs(&self) -> Vec<String> {
        self.inner.namesrv_addrs.clone()
    }

    /// Node `i`'s client address (`ip:port`).
    pub fn node_addr(&self, i: usize) -> String {
        self.inner.node_addrs.get(i).cloned().unwrap_or_default()
    }

    /// Node `i`'s name: `n0`, `n1`, `n2` (also its raft id and namespace suffix).
    pub fn node_name(&self, i: usize) -> String {
        format!("n{i}")
    }

    /// NameServer `j`'s name: `ns0`, `ns1`.
    pub fn namesrv_name(&self, j: usize) -> String {
        format!("ns{j}")
    }

    /// Number of NameServers.
    pub fn namesrv_count(&self) -> usize {
        self.inner.spec.namesrvs
    }

    /// The broker group (= raft group) name, the `broker` of history positions.
    pub fn broker_name(&self) -> &'static str {
        conf::GROUP
    }

    /// Where the server logs are.
    pub fn log_dir(&self) -> &Path {
        &self.inner.spec.log_dir
    }

    /// The index of the node whose client address is `addr`.
    pub fn node_of_addr(&self, addr: &str) -> Option<usize> {
        self.inner.node_addrs.iter().position(|a| a == addr)
    }

    /// Every node's RAFTMQ_GROUP_STATUS, or why it could not be had (short timeout).
    pub async fn statuses(&self) -> Vec<Result<RaftGroupStatus, String>> {
        let ask = |i: usize| async move {
            let addr = &self.inner.node_addrs[i];
            match tokio::time::timeout(STATUS_TIMEOUT, self.inner.admin.group_status(addr)).await {
                Ok(Ok(s)) => Ok(s),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("{addr}: no status within {STATUS_TIMEOUT:?}")),
            }
        };
        let (a, b, c) = tokio::join!(ask(0), ask(1), ask(2));
        vec![a, b, c]
    }

    /// The node that says it leads at the highest term any node reports, if any.
    pub async fn leader(&self) -> Option<usize> {
        leader_of(&self.statuses().await)
    }

    /// Waits for a leader until `deadline`.
    pub async fn wait_leader(&self, deadline: Instant) -> anyhow::Result<usize> {
        loop {
            let statuses = self.statuses().await;
            if let Some(l) = leader_of(&statuses) {
                return Ok(l);
            }
            if Instant::now() >= deadline {
                bail!("no leader: {}", status_lines(&statuses));
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// Waits until every server runs (none paused), exactly one node leads at the top
    /// term, and every node has applied what that leader had committed when first seen.
    pub async fn wait_healthy(&self, deadline: Instant) -> anyhow::Result<()> {
        // (leader, term, committed index when that leader was first seen)
        let mut target: Option<(usize, u64, u64)> = None;
        loop {
            let why = match self.not_running() {
                Some(why) => why,
                None => {
                    let statuses = self.statuses().await;
                    match healthy(&statuses, &mut target) {
                        Ok(()) => return Ok(()),
                        Err(why) => format!("{why}: {}", status_lines(&statuses)),
                    }
                }
            };
            if Instant::now() >= deadline {
                bail!("cluster not healthy: {why}");
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// Which servers are not running or are paused, `None` if all run.
    fn not_running(&self) -> Option<String> {
        let mut p = lock(&self.inner.procs);
        self.inner.note_exits(&mut p);
        let down: Vec<String> = p
            .namesrvs
            .iter()
            .chain(&p.nodes)
            .filter(|s| s.proc.is_none() || s.paused)
            .map(|s| {
                let state = if s.paused { "paused" } else { "down" };
                format!("{} {state}", s.name)
            })
            .collect();
        (!down.is_empty()).then(|| down.join(", "))
    }

    /// Node `i`'s pid while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        let p = lock(&self.inner.procs);
        p.nodes.get(i).and_then(|s| s.proc.as_ref()).map(|p| p.pid)
    }

    /// Every pid started so far (servers, including restarts).
    pub fn all_pids(&self) -> Vec<u32> {
        lock(&self.inner.procs).all_pids.clone()
    }

    /// Whether node `i` runs (a paused node runs).
    pub fn is_running(&self, i: usize) -> bool {
        let mut p = lock(&self.inner.procs);
        self.inner.note_exits(&mut p);
        p.nodes.get(i).is_some_and(|s| s.proc.is_some())
    }

    /// Whether node `i` is paused (SIGSTOP).
    pub fn is_paused(&self, i: usize) -> bool {
        lock(&self.inner.procs)
            .nodes
            .get(i)
            .is_some_and(|s| s.paused)
    }

    /// Servers that exited without the harness killing them, each with its log tail.
    pub fn unexpected_exits(&self) -> Vec<String> {
        let mut p = lock(&self.inner.procs);
        self.inner.note_exits(&mut p);
        p.unexpected.clone()
    }

    /// kill -9 of node `i`, reaped before returning; returns its pid.
    pub fn kill(&self, i: usize) -> anyhow::Result<u32> {
        self.inner.kill_slot(Kind::Node, i)
    }

    /// Starts node `i` again on its data (an error if it runs).
    pub fn restart(&self, i: usize) -> anyhow::Result<u32> {
        self.inner.start_slot(Kind::Node, i)
    }

    /// SIGSTOP of node `i`; returns its pid.
    pub fn stop(&self, i: usize) -> anyhow::Result<u32> {
        self.inner
            .signal_slot(i, rustix::process::Signal::STOP, true)
    }

    /// SIGCONT of node `i`; returns its pid.
    pub fn cont(&self, i: usize) -> anyhow::Result<u32> {
        self.inner
            .signal_slot(i, rustix::process::Signal::CONT, false)
    }

    /// kill -9 of NameServer `j`; returns its pid.
    pub fn kill_namesrv(&self, j: usize) -> anyhow::Result<u32> {
        self.inner.kill_slot(Kind::Namesrv, j)
    }

    /// Starts NameServer `j` again (an error if it runs).
    pub fn restart_namesrv(&self, j: usize) -> anyhow::Result<u32> {
        self.inner.start_slot(Kind::Namesrv, j)
    }

    /// RAFTMQ_LEADER_TRANSFER asked of node `from` (the leader) towards node `to`;
    /// returns the broker's remark.
    pub async fn leader_transfer(&self, from: usize, to: usize) -> anyhow::Result<String> {
        let target = self.node_name(to);
        let t = self
            .inner
            .admin
            .leader_transfer(&self.node_addr(from), Some(&target))
            .await
            .map_err(|e| anyhow!("leader transfer {} -> {target}: {e}", self.node_name(from)))?;
        Ok(t.remark)
    }

    fn with_net<T>(&self, f: impl FnOnce(&Net) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let net = lock(&self.inner.net);
        match (net.as_ref(), &self.inner.no_netns) {
            (Some(n), _) => f(n),
            (None, Some(why)) => bail!("no network namespaces ({why})"),
            (None, None) => bail!("the network was already removed"),
        }
    }

    /// Cuts servers `a` and `b` (names: `n0`, `ns0`) from each other, both directions.
    pub fn block(&self, a: &str, b: &str) -> anyhow::Result<()> {
        self.with_net(|n| n.block(a, b))
    }

    /// Drops packets from `from` to `to` only.
    pub fn block_one_way(&self, from: &str, to: &str) -> anyhow::Result<()> {
        self.with_net(|n| n.block_one_way(from, to))
    }

    /// Drops packets arriving at `node` from any of `from` with `probability`.
    pub fn loss(&self, node: &str, from: &[&str], probability: f64) -> anyhow::Result<()> {
        self.with_net(|n| n.loss(node, from, probability))
    }

    /// Removes every rule in `node`'s namespace.
    pub fn heal_net(&self, node: &str) -> anyhow::Result<()> {
        self.with_net(|n| n.heal(node))
    }

    /// The iptables rules in `node`'s namespace (`iptables -S`).
    pub fn rules(&self, node: &str) -> anyhow::Result<String> {
        self.with_net(|n| n.rules(node))
    }

    /// The run tag of the namespaces and bridge, with namespaces.
    pub fn net_tag(&self) -> Option<String> {
        lock(&self.inner.net).as_ref().map(|n| n.tag().to_owned())
    }

    /// Flushes every iptables rule, SIGCONTs every paused server and restarts every dead
    /// one (NameServers included). Tries everything; returns the first error.
    pub fn heal_all(&self) -> anyhow::Result<()> {
        let mut first = None;
        if self.netns() {
            if let Err(e) = self.with_net(|n| n.heal_all()) {
                first.get_or_insert(e);
            }
        }
        for i in 0..NODES {
            if self.is_paused(i) {
                if let Err(e) = self.cont(i) {
                    first.get_or_insert(e);
                }
            }
        }
        for j in 0..self.namesrv_count() {
            if !self.inner.slot_running(Kind::Namesrv, j) {
                if let Err(e) = self.restart_namesrv(j) {
                    first.get_or_insert(e);
                }
            }
        }
        for i in 0..NODES {
            if !self.is_running(i) {
                if let Err(e) = self.restart(i) {
                    first.get_or_insert(e);
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Kills every server (reaped), removes the namespaces and bridge and what the
    /// cluster created in the data directory; logs stay. Idempotent.
    pub fn shutdown(&self) {
        self.inner.cleanup();
    }

    /// On SIGINT or SIGTERM: clean up as [`Cluster::shutdown`] and exit with 130 / 143.
    /// Call inside a tokio runtime. Once installed the process no longer dies of these
    /// signals by itself, so the task exits even when the cluster is already gone; abort
    /// the returned task once the cluster is shut down (a suite installs one per run).
    pub fn install_signal_cleanup(&self) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
        let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let task = tokio::spawn(async move {
            let (name, code) = tokio::select! {
                _ = int.recv() => ("SIGINT", 130),
                _ = term.recv() => ("SIGTERM", 143),
            };
            eprintln!("jepsen: {name} received: stopping the servers and removing the network");
            if let Some(inner) = weak.upgrade() {
                inner.cleanup();
            }
            std::process::exit(code);
        });
        Ok(task)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.inner.cleanup();
    }
}
