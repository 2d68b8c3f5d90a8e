//! Shared harness of the compatibility tests: a real RaftMQ cluster (one `mqnamesrv`, one
//! three-node `mqbroker` group) as child processes on free loopback ports, and the
//! external client's runtime. Nothing here links RaftMQ: it only runs its binaries.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::fs::File;
use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rocketmq_client_rust::{
    ClientConfig, ClientRuntime, ClientRuntimeConfig, DefaultMQAdminExt, MQAdminReadExt,
};
use rocketmq_observability::TelemetryRuntimeGuard;
use rocketmq_runtime::{RuntimeConfig, RuntimeOwner};

/// Broker group (raft group) name the test cluster registers.
pub const BROKER_NAME: &str = "RaftNode00";
/// Cluster name the test cluster registers.
pub const CLUSTER: &str = "RaftCluster";

/// Directory holding `mqnamesrv` and `mqbroker`: `RAFTMQ_BIN_DIR`, else the repository's
/// `target/release`.
pub fn bin_dir() -> PathBuf {
    match std::env::var_os("RAFTMQ_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release"),
    }
}

fn binary(name: &str) -> PathBuf {
    let dir = bin_dir();
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "RaftMQ binary `{name}` not found at {} — build it first with \
         `cargo build --release --bin mqnamesrv --bin mqbroker` in the repository root, or set \
         RAFTMQ_BIN_DIR to the directory holding it (e.g. $CARGO_TARGET_DIR/release)",
        path.display()
    );
    path
}

/// `n` distinct free TCP ports on 127.0.0.1 (all held open together, then released).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect()
}

/// A child process killed (SIGKILL) and reaped when dropped.
struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &str, program: &Path, config: &Path, dir: &Path) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log).expect("create process log");
        let err = out.try_clone().expect("clone log handle");
        let child = Command::new(program)
            .arg("-c")
            .arg(config)
            .env("RUST_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({}): {e}", program.display()));
        Proc {
            name: name.to_owned(),
            child,
            log,
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `max` bytes of a log file, for failure reports.
fn tail(path: &Path, max: u64) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::from("(no log)");
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut s = String::new();
    let _ = f.read_to_string(&mut s);
    s
}

/// One NameServer and one three-node broker group, each a child process.
pub struct Cluster {
    /// NameServer address `127.0.0.1:port`, for clients.
    pub namesrv_addr: String,
    /// Client address of each broker node, by node index.
    pub broker_addrs: Vec<String>,
    namesrv: Proc,
    brokers: Vec<Proc>,
    killed: Vec<bool>,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Writes the configurations (the keys of `conf/namesrv.conf` and
    /// `conf/dledger/broker-n*.conf`, with free ports and a temporary store) and starts
    /// the four processes. Readiness is the caller's to wait for ([`wait_for_master`]).
    pub fn start() -> Cluster {
        let namesrv_bin = binary("mqnamesrv");
        let broker_bin = binary("mqbroker");
        let dir = tempfile::Builder::new()
            .prefix("raftmq-compat-")
            .tempdir()
            .expect("create temp dir");
        let ports = free_ports(7);
        let ns_port = ports[0];
        let namesrv_addr = format!("127.0.0.1:{ns_port}");

        let ns_conf = dir.path().join("namesrv.conf");
        std::fs::write(
            &ns_conf,
            format!(
                "listenPort={ns_port}\nbindAddress=127.0.0.1\nscanNotActiveBrokerInterval=5000\n\
                 kvConfigPath=\norderMessageEnable=false\nenableTopicList=true\n"
            ),
        )
        .expect("write namesrv.conf");
        let namesrv = Proc::spawn("namesrv", &namesrv_bin, &ns_conf, dir.path());

        let peers = (0..3)
            .map(|i| format!("n{i}-127.0.0.1:{}", ports[4 + i]))
            .collect::<Vec<_>>()
            .join(";");
        let mut brokers = Vec::new();
        let mut broker_addrs = Vec::new();
        for i in 0..3 {
            let port = ports[1 + i];
            let store = dir.path().join(format!("n{i}"));
            let conf = dir.path().join(format!("broker-n{i}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "brokerClusterName={CLUSTER}\nbrokerName={BROKER_NAME}\nlistenPort={port}\n\
                     namesrvAddr={namesrv_addr}\nbrokerIP1=127.0.0.1\nstorePathRootDir={}\n\
                     enableDLegerCommitLog=true\ndLegerGroup={BROKER_NAME}\ndLegerPeers={peers}\n\
                     dLegerSelfId=n{i}\nflushDiskType=SYNC_FLUSH\nfileReservedTime=72\n\
                     deleteWhen=04\ndiskMaxUsedSpaceRatio=75\nmappedFileSizeCommitLog=67108864\n\
                     autoCreateTopicEnable=true\ndefaultTopicQueueNums=8\nmaxMessageSize=4194304\n\
                     brokerPermission=6\nregisterNameServerPeriod=30000\nraftHeartbeatMillis=100\n\
                     raftElectionTimeoutMinMillis=400\nraftElectionTimeoutMaxMillis=700\n",
                    store.display()
                ),
            )
            .expect("write broker conf");
            brokers.push(Proc::spawn(
                &format!("broker-n{i}"),
                &broker_bin,
                &conf,
                dir.path(),
            ));
            broker_addrs.push(format!("127.0.0.1:{port}"));
        }
        Cluster {
            namesrv_addr,
            broker_addrs,
            namesrv,
            brokers,
            killed: vec![false; 3],
            dir,
        }
    }

    /// The node index serving `addr` (a broker client address).
    pub fn node_of(&self, addr: &str) -> usize {
        self.broker_addrs
            .iter()
            .position(|a| a == addr)
            .unwrap_or_else(|| panic!("{addr} is not a node of the test cluster"))
    }

    /// SIGKILLs broker node `i` (no unregistration, no flush: a crash).
    pub fn kill_node(&mut self, i: usize) {
        self.brokers[i].kill();
        self.killed[i] = true;
    }

    /// Panics unless every process not deliberately killed is still running.
    pub fn assert_alive(&mut self) {
        let mut procs: Vec<(&mut Proc, bool)> = vec![(&mut self.namesrv, false)];
        for (p, k) in self.brokers.iter_mut().zip(&self.killed) {
            procs.push((p, *k));
        }
        for (p, killed) in procs {
            if !killed {
                if let Ok(Some(status)) = p.child.try_wait() {
                    panic!(
                        "{} exited unexpectedly ({status}):\n{}",
                        p.name,
                        tail(&p.log, 4000)
                    );
                }
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for p in std::iter::once(&self.namesrv).chain(&self.brokers) {
                eprintln!(
                    "----- last lines of {} ({}) -----\n{}",
                    p.name,
                    p.log.display(),
                    tail(&p.log, 6000)
                );
            }
        }
        if std::env::var_os("RAFTMQ_COMPAT_KEEP").is_some() {
            self.dir.disable_cleanup(true);
            eprintln!(
                "RAFTMQ_COMPAT_KEEP: configs, stores and logs kept in {}",
                self.dir.path().display()
            );
        }
        // The Proc fields kill their processes after this, then the temp dir goes.
    }
}

/// The external client's runtime: a RuntimeOwner (its Tokio runtime), the shared
/// ClientRuntime, and a no-op telemetry guard.
pub struct ClientEnv {
    /// Shared by every producer, consumer and admin of the test.
    pub runtime: Arc<ClientRuntime>,
    owner: Option<RuntimeOwner>,
    _telemetry: TelemetryRuntimeGuard,
}

impl ClientEnv {
    /// Builds the runtime as the client's README shows.
    pub fn new() -> ClientEnv {
        // The client's own logs (it uses `tracing`), shown with the test's output;
        // RAFTMQ_COMPAT_LOG overrides the filter (e.g. `info`).
        let filter = std::env::var("RAFTMQ_COMPAT_LOG").unwrap_or_else(|_| "warn".to_owned());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
        // Client quirk: the runtime sizes its blocking lanes from the CPU count (on 2 cores
        // the metadata-io lane queues 16 tasks), and the push consumer runs every consume
        // request on that lane; a burst of pulled messages past that depth is refused
        // ("runtime.capacity.exhausted"), which the consumer treats as a failed consumption
        // and sends back for retry. Give the lane a deep queue.
        let parallelism = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut config = RuntimeConfig::for_parallelism("raftmq-compat", parallelism);
        config.blocking_lane_policies.metadata_io.max_queue_depth = 4096;
        let owner = RuntimeOwner::plan(config)
            .expect("valid client runtime configuration")
            .build()
            .expect("client RuntimeOwner");
        let telemetry = TelemetryRuntimeGuard::noop();
        let runtime = ClientRuntime::try_new(
            owner.root_context().component("raftmq-compat"),
            ClientRuntimeConfig::default(),
            telemetry.handle(),
        )
        .expect("client runtime");
        ClientEnv {
            runtime,
            owner: Some(owner),
            _telemetry: telemetry,
        }
    }

    /// Runs `f` on the client's runtime, then shuts the client runtime down.
    pub fn run<F: Future>(mut self, f: F) -> F::Output {
        let owner = self.owner.take().expect("runtime owner present");
        let runtime = Arc::clone(&self.runtime);
        let out = owner.block_on(async move {
            let out = f.await;
            let _ = runtime.shutdown().await;
            out
        });
        let _ = owner.shutdown_runtime_blocking_with_timeout(Duration::from_secs(10));
        out
    }
}

/// Client configuration of the tests: the cluster's NameServer, a distinct instance name,
/// the shortest route poll the client allows (10 s; it is how a client learns of a new
/// master) and 1 s offset persistence.
pub fn client_config(namesrv: &str, instance: &str) -> ClientConfig {
    ClientConfig::builder()
        .namesrv_addr(namesrv)
        .instance_name(instance)
        .poll_name_server_interval(10_000)
        .persist_consumer_offset_interval(1_000)
        .build()
        .expect("valid client config")
}

/// Polls `probe` every 100 ms until it yields `Some`, panicking with `what` and the last
/// observation once `limit` has passed.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + limit;
    loop {
        let last = match probe().await {
            Ok(v) => return v,
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            panic!("timed out after {limit:?} waiting for {what}; last observation: {last}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The master (brokerId 0) client address of the test group in `topic`'s route, as the
/// external client's admin API reads it from the NameServer.
pub async fn route_master(admin: &DefaultMQAdminExt, topic: &str) -> Result<String, String> {
    let route = admin
        .examine_topic_route_info(topic.into())
        .await
        .map_err(|e| format!("route query failed: {e}"))?
        .ok_or_else(|| format!("no route for {topic}"))?;
    let broker = route
        .broker_datas
        .iter()
        .find(|b| b.broker_name().as_str() == BROKER_NAME)
        .ok_or_else(|| format!("{BROKER_NAME} missing from route of {topic}"))?;
    broker
        .broker_addrs()
        .get(&0)
        .map(|a| a.to_string())
        .ok_or_else(|| format!("no master in route of {topic}: {:?}", broker.broker_addrs()))
}

/// Waits until the NameServer's route of `topic` names a master, and returns it.
pub async fn wait_for_master(admin: &DefaultMQAdminExt, topic: &str, limit: Duration) -> String {
    wait_for(&format!("a master in the route of {topic}"), limit, || {
        route_master(admin, topic)
    })
    .await
}

/// A started admin client on the cluster's NameServer.
pub async fn admin(env: &Arc<ClientRuntime>, namesrv: &str, instance: &str) -> DefaultMQAdminExt {
    let mut admin =
        DefaultMQAdminExt::with_admin_ext_group(Arc::clone(env), format!("{instance}_admin"));
    admin.set_namesrv_addr(namesrv);
    admin.client_config_mut().set_instance_name(instance.into());
    admin.start().await.expect("admin start");
    admin
}
