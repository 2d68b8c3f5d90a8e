//! A raw remoting client (copied from the NameServer tests) and an in-process group.
#![allow(clippy::unwrap_used, dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use raftmq_broker::broker::Broker;
use raftmq_broker::remoting_client::RemotingClient;
use raftmq_broker::BrokerConfig;
use raftmq_protocol::body::{decode_json, TopicRouteData};
use raftmq_protocol::codes::{RequestCode, ResponseCode};
use raftmq_protocol::headers::{CommandHeader, GetRouteInfoRequestHeader};
use raftmq_protocol::{decode_frame, encode_frame, Decoded, RemotingCommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub const DEADLINE: Duration = Duration::from_secs(30);
/// Poll interval of deadline-bounded waits.
pub const POLL: Duration = Duration::from_millis(20);

pub fn req(code: RequestCode, header: &impl CommandHeader) -> RemotingCommand {
    RemotingCommand::request(code.code(), header.to_ext())
}

/// A disk whose fullness a test sets (percent used); every harness node starts on one at
/// 10 %, so the machine's real disk never decides a test.
#[derive(Debug)]
pub struct FakeDisk(std::sync::Mutex<u64>);

impl FakeDisk {
    pub fn at(used_percent: u64) -> Arc<FakeDisk> {
        Arc::new(FakeDisk(std::sync::Mutex::new(used_percent)))
    }
    pub fn set(&self, used_percent: u64) {
        *self.0.lock().unwrap() = used_percent;
    }
}

impl raftmq_broker::retention::DiskProbe for FakeDisk {
    fn usage(&self, _: &std::path::Path) -> std::io::Result<raftmq_broker::retention::DiskUsage> {
        let used = *self.0.lock().unwrap();
        Ok(raftmq_broker::retention::DiskUsage {
            total: 100 << 30,
            free: (100 - used) << 30,
            available: (100 - used) << 30,
        })
    }
}

pub struct RawClient {
    pub stream: TcpStream,
    buf: BytesMut,
    next_opaque: i32,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> Self {
        RawClient {
            stream: TcpStream::connect(addr).await.unwrap(),
            buf: BytesMut::new(),
            next_opaque: 1,
        }
    }

    pub async fn send(&mut self, mut cmd: RemotingCommand) -> i32 {
        cmd.opaque = self.next_opaque;
        self.next_opaque += 1;
        self.stream
            .write_all(&encode_frame(&cmd).unwrap())
            .await
            .unwrap();
        cmd.opaque
    }

    /// Next frame, or `None` when the server closed the connection.
    pub async fn recv(&mut self) -> Option<RemotingCommand> {
        loop {
            if let Decoded::Frame { command, consumed } = decode_frame(&self.buf).unwrap() {
                self.buf.advance(consumed);
                return Some(command);
            }
            let read =
                tokio::time::timeout(Duration::from_secs(20), self.stream.read_buf(&mut self.buf))
                    .await
                    .expect("no answer within 20 s");
            match read {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    pub async fn call(&mut self, cmd: RemotingCommand) -> RemotingCommand {
        let opaque = self.send(cmd).await;
        let resp = self.recv().await.expect("connection closed");
        assert_eq!(resp.opaque, opaque);
        assert!(resp.is_response());
        resp
    }
}

/// Polls `f` until it returns true or `deadline` passes.
pub async fn wait_until<F, Fut>(what: &str, deadline: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A NameServer and a 3-node broker group, in process. Nodes can be stopped and started
/// again on the same ports and data directories.
pub struct Group {
    pub namesrv: SocketAddr,
    pub nodes: Vec<Arc<Broker>>,
    /// Per node: its config text, client port and raft address (for restarts).
    configs: Vec<String>,
    raft_addrs: Vec<SocketAddr>,
    client_addrs: Vec<SocketAddr>,
    /// Per node: stops its server and registrar.
    node_stops: Vec<watch::Sender<bool>>,
    stop: watch::Sender<bool>,
    dir: tempfile::TempDir,
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

impl Group {
    pub async fn start(group: &str) -> Group {
        Self::start_with(group, "").await
    }

    /// Starts a group whose broker.conf files get `extra` (key=value lines) appended.
    pub async fn start_with(group: &str, extra: &str) -> Group {
        let ns_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let namesrv = ns_listener.local_addr().unwrap();
        let (stop, stop_rx) = watch::channel(false);
        tokio::spawn(raftmq_namesrv::serve(
            ns_listener,
            raftmq_namesrv::NamesrvConfig::default(),
            stopped(stop_rx.clone()),
        ));
        let dir = tempfile::tempdir().unwrap();
        let mut raft = Vec::new();
        let mut clients = Vec::new();
        for _ in 0..3 {
            raft.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
            clients.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        let raft_addrs: Vec<SocketAddr> = raft.iter().map(|l| l.local_addr().unwrap()).collect();
        let client_addrs: Vec<SocketAddr> =
            clients.iter().map(|l| l.local_addr().unwrap()).collect();
        let peers: Vec<String> = raft_addrs
            .iter()
            .enumerate()
            .map(|(i, a)| format!("n{i}-{a}"))
            .collect();
        let configs: Vec<String> = (0..3)
            .map(|i| {
                format!(
                    "brokerClusterName=DefaultCluster\nbrokerName={group}\n\
                     listenPort={}\nnamesrvAddr={namesrv}\nbrokerIP1=127.0.0.1\n\
                     storePathRootDir={}\nenableDLegerCommitLog=true\ndLegerGroup={group}\n\
                     dLegerPeers={}\ndLegerSelfId=n{i}\nflushDiskType=ASYNC_FLUSH\n\
                     registerNameServerPeriod=10000\n{extra}",
                    client_addrs[i].port(),
                    dir.path().join(format!("n{i}")).display(),
                    peers.join(";"),
                )
            })
            .collect();
        let mut g = Group {
            namesrv,
            nodes: Vec::new(),
            configs,
            raft_addrs,
            client_addrs,
            node_stops: Vec::new(),
            stop,
            dir,
        };
        for (i, (raft_l, client_l)) in raft.into_iter().zip(clients).enumerate() {
            let (broker, node_stop) = g.launch(i, raft_l, client_l).await.unwrap();
            g.nodes.push(broker);
            g.node_stops.push(node_stop);
        }
        g
    }

    async fn launch(
        &self,
        i: usize,
        raft_l: TcpListener,
        client_l: TcpListener,
    ) -> Result<(Arc<Broker>, watch::Sender<bool>), String> {
        let (config, unknown) = BrokerConfig::from_properties(&self.configs[i]).unwrap();
        assert!(unknown.is_empty(), "{unknown:?}");
        let broker = Arc::new(
            Broker::start(config, raft_l)
                .await
                .map_err(|e| e.to_string())?,
        );
        broker.disk().set_probe(FakeDisk::at(10));
        let (node_stop, node_stop_rx) = watch::channel(false);
        let stop_rx = self.stop.subscribe();
        let either = move |a: watch::Receiver<bool>, b: watch::Receiver<bool>| async move {
            tokio::select! {
                _ = stopped(a) => {}
                _ = stopped(b) => {}
            }
        };
        let registrar = broker.registrar(RemotingClient::new(Duration::from_secs(3)));
        tokio::spawn(registrar.run(either(stop_rx.clone(), node_stop_rx.clone())));
        tokio::spawn(
            broker
                .clone()
                .run_preferred_leader(either(stop_rx.clone(), node_stop_rx.clone())),
        );
        tokio::spawn(
            broker
                .clone()
                .run_maintenance(either(stop_rx.clone(), node_stop_rx.clone())),
        );
        tokio::spawn(raftmq_broker::server::serve(
            client_l,
            broker.clone(),
            either(stop_rx, node_stop_rx),
        ));
        Ok((broker, node_stop))
    }

    /// The data directory of node `i`.
    pub fn data_dir(&self, i: usize) -> std::path::PathBuf {
        self.dir.path().join(format!("n{i}"))
    }

    /// Stops node `i`: its server and registrar, then the broker — gracefully (with a
    /// final checkpoint) or as a crash leaves it (`graceful = false`: no final checkpoint,
    /// so a restart re-applies the log since the last periodic one).
    pub async fn stop_node(&self, i: usize, graceful: bool) {
        let _ = self.node_stops[i].send(true);
        self.nodes[i].stop(graceful).await;
    }

    /// Starts node `i` again on its ports and data.
    pub async fn restart_node(&mut self, i: usize) {
        self.try_restart_node(i).await.unwrap();
    }

    /// Starts node `i` again; the start error if it refuses.
    pub async fn try_restart_node(&mut self, i: usize) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let (raft_l, client_l) = loop {
            let r = TcpListener::bind(self.raft_addrs[i]).await;
            let c = TcpListener::bind(self.client_addrs[i]).await;
            match (r, c) {
                (Ok(r), Ok(c)) => break (r, c),
                (r, c) => {
                    assert!(
                        Instant::now() < deadline,
                        "ports of node {i} still taken: {:?} {:?}",
                        r.err(),
                        c.err()
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        let (broker, node_stop) = self.launch(i, raft_l, client_l).await?;
        self.nodes[i] = broker;
        self.node_stops[i] = node_stop;
        Ok(())
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for n in &self.nodes {
            n.shutdown().await;
        }
    }
}

/// The master's client address per the NameServer's TBW102 route.
pub async fn master_addr(namesrv: SocketAddr) -> SocketAddr {
    let mut ns = RawClient::connect(namesrv).await;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let h = GetRouteInfoRequestHeader {
            topic: "TBW102".into(),
            ..Default::default()
        };
        let resp = ns.call(req(RequestCode::GetRouteinfoByTopic, &h)).await;
        if resp.code == ResponseCode::Success.code() {
            let route: TopicRouteData = decode_json("route", &resp.body).unwrap();
            let master = route
                .broker_datas
                .iter()
                .find_map(|b| b.broker_addrs.get(&0).cloned());
            if let Some(m) = master {
                return m.parse().unwrap();
            }
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for a master in the route"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// The master once the group is settled: the NameServer's master is a caught-up leader that
/// every node follows.
pub async fn stable_master(group: &Group) -> SocketAddr {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let m = master_addr(group.namesrv).await;
        let statuses: Vec<_> = group
            .nodes
            .iter()
            .map(|n| *n.node().status().borrow())
            .collect();
        let settled = group.nodes.iter().zip(&statuses).any(|(n, st)| {
            n.client_addr() == m
                && st.is_caught_up_leader()
                && statuses.iter().all(|o| o.leader == Some(st.id))
        });
        if settled {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for a settled master"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Sends `r` to the master, retrying on retryable errors against the (new) master; returns
/// the master that answered and its response. Idempotent when `r` carries UNIQ_KEYs.
pub async fn send_retry(
    group: &Group,
    c: &mut RawClient,
    master: &mut SocketAddr,
    r: RemotingCommand,
) -> RemotingCommand {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let resp = c.call(r.clone()).await;
        let retryable = [ResponseCode::SystemBusy, ResponseCode::SystemError]
            .iter()
            .any(|code| code.code() == resp.code);
        if !retryable || Instant::now() > deadline {
            return resp;
        }
        *master = stable_master(group).await;
        *c = RawClient::connect(*master).await;
    }
}

/// Pulls queue `q` of `topic` on `addr` from `from` until the broker has nothing more
/// (any non-SUCCESS answer): the records read and the last response header.
pub async fn pull_from(
    addr: SocketAddr,
    group: &str,
    topic: &str,
    q: i32,
    from: i64,
) -> (
    Vec<raftmq_protocol::message::MessageRecord>,
    raftmq_protocol::headers::PullMessageResponseHeader,
) {
    use raftmq_protocol::headers::{PullMessageRequestHeader, PullMessageResponseHeader};
    let mut c = RawClient::connect(addr).await;
    let mut out = Vec::new();
    let mut offset = from;
    loop {
        let h = PullMessageRequestHeader {
            consumer_group: group.into(),
            topic: topic.into(),
            queue_id: q,
            queue_offset: offset,
            max_msg_nums: 32,
            sys_flag: 0,
            suspend_timeout_millis: 1_000,
            ..Default::default()
        };
        let resp = c.call(req(RequestCode::PullMessage, &h)).await;
        let ph: PullMessageResponseHeader = resp.header().unwrap();
        if resp.code != ResponseCode::Success.code() {
            return (out, ph);
        }
        let records = raftmq_protocol::message::MessageRecord::decode_all(&resp.body).unwrap();
        for (k, r) in records.iter().enumerate() {
            assert_eq!(
                r.queue_offset,
                offset + k as i64,
                "queue offsets are contiguous"
            );
        }
        out.extend(records);
        offset = ph.next_begin_offset;
    }
}

/// The committed offset of (group, topic, q) as `addr` answers QUERY_CONSUMER_OFFSET.
pub async fn consumer_offset(addr: SocketAddr, group: &str, topic: &str, q: i32) -> i64 {
    use raftmq_protocol::headers::{OffsetResponseHeader, QueryConsumerOffsetRequestHeader};
    let mut c = RawClient::connect(addr).await;
    let h = QueryConsumerOffsetRequestHeader {
        consumer_group: group.into(),
        topic: topic.into(),
        queue_id: q,
        ..Default::default()
    };
    let resp = c.call(req(RequestCode::QueryConsumerOffset, &h)).await;
    assert_eq!(resp.code, ResponseCode::Success.code(), "{:?}", resp.remark);
    resp.header::<OffsetResponseHeader>().unwrap().offset
}

/// The settled leader: caught up, followed by every node.
pub async fn stable_leader(group: &Group) -> Arc<Broker> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let statuses: Vec<_> = group
            .nodes
            .iter()
            .map(|n| *n.node().status().borrow())
            .collect();
        let leader = group.nodes.iter().zip(&statuses).find(|(_, st)| {
            st.is_caught_up_leader() && statuses.iter().all(|o| o.leader == Some(st.id))
        });
        if let Some((n, _)) = leader {
            return n.clone();
        }
        assert!(Instant::now() < deadline, "timed out waiting for a leader");
        tokio::time::sleep(POLL).await;
    }
}

/// Some node of the group other than `leader`.
pub fn a_follower(group: &Group, leader: &Broker) -> Arc<Broker> {
    group
        .nodes
        .iter()
        .find(|n| n.client_addr() != leader.client_addr())
        .unwrap()
        .clone()
}
