//! The registrar against a real in-process NameServer, driven by a hand-fed raft status.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raftmq_broker::registrar::{Registrar, RegistrarConfig, RegistrarState, Registration};
use raftmq_broker::remoting_client::RemotingClient;
use raftmq_namesrv::{serve, NamesrvConfig};
use raftmq_protocol::body::{decode_json, ClusterInfo, TopicConfig, TopicConfigSerializeWrapper};
use raftmq_protocol::codes::{RequestCode, ResponseCode};
use raftmq_protocol::headers::{CommandHeader, GetRouteInfoRequestHeader};
use raftmq_protocol::{RemotingCommand, StrMap};
use raftmq_raft::status::{NodeStatus, Role};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch, Notify};
use tokio::task::JoinHandle;

const GROUP: &str = "broker-a";
const DEADLINE: Duration = Duration::from_secs(10);
const CALL: Duration = Duration::from_secs(3);

struct Namesrv {
    addr: String,
    _stop: oneshot::Sender<()>,
}

async fn start_namesrv(config: NamesrvConfig) -> Namesrv {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(serve(listener, config, async {
        let _ = rx.await;
    }));
    Namesrv { addr, _stop: tx }
}

fn node_addr(index: u64) -> String {
    format!("127.0.0.1:{}", 30911 + index * 10)
}

fn config(index: u64, namesrv: &[&str]) -> RegistrarConfig {
    RegistrarConfig {
        cluster_name: "DefaultCluster".into(),
        broker_name: GROUP.into(),
        broker_addr: node_addr(index),
        ha_server_addr: format!("127.0.0.1:{}", 40911 + index * 10),
        follower_broker_id: index as i64 + 1,
        namesrv_addrs: namesrv.iter().map(|s| s.to_string()).collect(),
        // Long: a registration seen in these tests is never the periodic one unless asked.
        period: Duration::from_secs(30),
        heartbeat_timeout_ms: 120_000,
        call_timeout: CALL,
        unregister_timeout: CALL,
    }
}

fn status(index: u64, role: Role, term: u64, applied_term: Option<u64>) -> NodeStatus {
    NodeStatus {
        id: index,
        role,
        term,
        leader: (role == Role::Leader).then_some(index),
        last_log_index: Some(5),
        committed_index: Some(5),
        applied_index: Some(5),
        applied_term,
    }
}

type Topics = Arc<Mutex<TopicConfigSerializeWrapper>>;

fn topics(names: &[&str]) -> Topics {
    let mut w = TopicConfigSerializeWrapper::default();
    for t in names {
        w.topic_config_table
            .insert(t.to_string(), TopicConfig::new(*t, 4));
    }
    w.data_version.counter = 1;
    Arc::new(Mutex::new(w))
}

struct Node {
    status: watch::Sender<NodeStatus>,
    state: watch::Receiver<RegistrarState>,
    poke: Arc<Notify>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Node {
    fn start(
        cfg: RegistrarConfig,
        first: NodeStatus,
        topics: Topics,
        client: RemotingClient,
    ) -> Node {
        let (status, rx) = watch::channel(first);
        let source = move || topics.lock().unwrap().clone();
        let registrar = Registrar::new(cfg, rx, Arc::new(source), client);
        let (state, poke) = (registrar.observe(), registrar.poke_handle());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(registrar.run(async {
            let _ = stopped.await;
        }));
        Node {
            status,
            state,
            poke,
            stop: Some(stop),
            task,
        }
    }

    async fn shutdown(mut self) -> RegistrarState {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap();
        self.state.borrow().clone()
    }

    fn acks(&self, ns: &str) -> u64 {
        self.state.borrow().namesrv[ns].acks
    }
}

/// Polls `f` until true; fails after `deadline`.
async fn wait_until<F, Fut>(what: &str, deadline: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn cluster_info(client: &RemotingClient, ns: &str) -> ClusterInfo {
    let req = RemotingCommand::request(RequestCode::GetBrokerClusterInfo.code(), StrMap::new());
    let resp = client.call(ns, req, CALL).await.unwrap();
    assert_eq!(resp.code, ResponseCode::Success.code());
    decode_json("cluster info", &resp.body).unwrap()
}

/// The group's `brokerId → addr` on NameServer `ns` (empty when unknown).
async fn group_addrs(client: &RemotingClient, ns: &str) -> BTreeMap<i64, String> {
    cluster_info(client, ns)
        .await
        .broker_addr_table
        .get(GROUP)
        .map(|b| b.broker_addrs.clone())
        .unwrap_or_default()
}

async fn wait_addrs(client: &RemotingClient, ns: &str, want: &[(i64, String)], deadline: Duration) {
    let want: BTreeMap<i64, String> = want.iter().cloned().collect();
    wait_until(&format!("{ns} to list {want:?}"), deadline, || async {
        group_addrs(client, ns).await == want
    })
    .await;
}

async fn route_code(client: &RemotingClient, ns: &str, topic: &str) -> i32 {
    let h = GetRouteInfoRequestHeader {
        topic: topic.into(),
        ..Default::default()
    };
    let req = RemotingCommand::request(RequestCode::GetRouteinfoByTopic.code(), h.to_ext());
    client.call(ns, req, CALL).await.unwrap().code
}

#[tokio::test]
async fn follower_registers_under_its_follower_id_without_changing_routes() {
    let ns = start_namesrv(NamesrvConfig::default()).await;
    let client = RemotingClient::default();
    let node = Node::start(
        config(1, &[&ns.addr]),
        status(1, Role::Follower, 3, Some(3)),
        topics(&["TopicTest"]),
        client.clone(),
    );
    wait_addrs(&client, &ns.addr, &[(2, node_addr(1))], DEADLINE).await;
    let registered = node.state.borrow().registered;
    assert_eq!(
        registered,
        Some(Registration {
            broker_id: 2,
            state_version: 3
        })
    );
    assert_eq!(
        route_code(&client, &ns.addr, "TopicTest").await,
        ResponseCode::TopicNotExist.code(),
        "a follower registration must not create routes"
    );
}

#[tokio::test]
async fn caught_up_leader_claims_master_at_once_and_poke_publishes_new_topics() {
    let ns = start_namesrv(NamesrvConfig::default()).await;
    let client = RemotingClient::default();
    let table = topics(&["TopicTest"]);
    let node = Node::start(
        config(0, &[&ns.addr]),
        status(0, Role::Follower, 1, Some(1)),
        table.clone(),
        client.clone(),
    );
    wait_addrs(&client, &ns.addr, &[(1, node_addr(0))], DEADLINE).await;
    // Elected and caught up: master at once (the period is 30 s).
    let start = Instant::now();
    node.status
        .send_replace(status(0, Role::Leader, 2, Some(2)));
    wait_addrs(&client, &ns.addr, &[(0, node_addr(0))], DEADLINE).await;
    assert!(start.elapsed() < CALL, "took {:?}", start.elapsed());
    assert_eq!(route_code(&client, &ns.addr, "TopicTest").await, 0);

    // A topic change plus a poke reaches the routes without waiting for the period.
    assert_ne!(route_code(&client, &ns.addr, "NewTopic").await, 0);
    table
        .lock()
        .unwrap()
        .topic_config_table
        .insert("NewTopic".into(), TopicConfig::new("NewTopic", 2));
    node.poke.notify_one();
    wait_until("NewTopic routed", DEADLINE, || async {
        route_code(&client, &ns.addr, "NewTopic").await == 0
    })
    .await;
}

#[tokio::test]
async fn leader_not_caught_up_makes_no_master_claim() {
    let ns = start_namesrv(NamesrvConfig::default()).await;
    let client = RemotingClient::default();
    let mut node = Node::start(
        config(2, &[&ns.addr]),
        status(2, Role::Follower, 4, Some(4)),
        topics(&["TopicTest"]),
        client.clone(),
    );
    wait_addrs(&client, &ns.addr, &[(3, node_addr(2))], DEADLINE).await;
    let acks = node.acks(&ns.addr);
    // Leader of term 5 that has applied nothing of term 5 yet.
    node.status
        .send_replace(status(2, Role::Leader, 5, Some(4)));
    node.state.wait_for(|s| s.wanted.is_none()).await.unwrap();
    // Even when poked, nothing goes out.
    node.poke.notify_one();
    assert_eq!(
        group_addrs(&client, &ns.addr).await,
        [(3, node_addr(2))].into()
    );
    assert_eq!(node.acks(&ns.addr), acks);
    // A candidate does not register either.
    node.status
        .send_replace(status(2, Role::Candidate, 6, Some(4)));
    assert_eq!(
        group_addrs(&client, &ns.addr).await,
        [(3, node_addr(2))].into()
    );
    assert_eq!(node.acks(&ns.addr), acks);
    // Caught up in term 7: now it claims.
    node.status
        .send_replace(status(2, Role::Leader, 7, Some(7)));
    wait_addrs(&client, &ns.addr, &[(0, node_addr(2))], DEADLINE).await;
}

#[tokio::test]
async fn stale_leader_cannot_take_master_back_from_a_higher_term() {
    let ns = start_namesrv(NamesrvConfig::default()).await;
    let client = RemotingClient::default();
    let table = topics(&["TopicTest"]);
    let a = Node::start(
        config(0, &[&ns.addr]),
        status(0, Role::Leader, 2, Some(2)),
        table.clone(),
        client.clone(),
    );
    wait_addrs(&client, &ns.addr, &[(0, node_addr(0))], DEADLINE).await;
    // Node 1 wins term 3 while node 0 still believes it leads term 2.
    let b = Node::start(
        config(1, &[&ns.addr]),
        status(1, Role::Leader, 3, Some(3)),
        table.clone(),
        client.clone(),
    );
    wait_addrs(&client, &ns.addr, &[(0, node_addr(1))], DEADLINE).await;
    // The stale leader re-registers (as it would every period); the NameServer answers
    // SUCCESS but keeps the term-3 master.
    let acks = a.acks(&ns.addr);
    a.poke.notify_one();
    let mut state = a.state.clone();
    state
        .wait_for(|s| s.namesrv[&ns.addr].acks > acks)
        .await
        .unwrap();
    assert_eq!(
        group_addrs(&client, &ns.addr).await,
        [(0, node_addr(1))].into()
    );
    // Node 0 learns of term 3 and steps down: it comes back as follower id 1.
    a.status.send_replace(status(0, Role::Follower, 3, Some(2)));
    wait_addrs(
        &client,
        &ns.addr,
        &[(0, node_addr(1)), (1, node_addr(0))],
        DEADLINE,
    )
    .await;
    assert_eq!(b.acks(&ns.addr), 1);
}

#[tokio::test]
async fn dead_namesrvs_delay_neither_the_live_one_nor_shutdown() {
    let ns = start_namesrv(NamesrvConfig::default()).await;
    // One address refuses connections; one accepts them and never answers.
    let refused = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().to_string()
    };
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let client = RemotingClient::default();
    let start = Instant::now();
    let node = Node::start(
        config(0, &[&refused, &silent_addr, &ns.addr]),
        status(0, Role::Leader, 1, Some(1)),
        topics(&["TopicTest"]),
        client.clone(),
    );
    // Well within the 3 s per-call deadline the silent NameServer is stuck in.
    wait_addrs(&client, &ns.addr, &[(0, node_addr(0))], CALL / 2).await;
    assert!(start.elapsed() < CALL);
    let mut state = node.state.clone();
    state
        .wait_for(|s| s.namesrv[&refused].last_error.is_some())
        .await
        .unwrap();
    state
        .wait_for(|s| s.namesrv[&silent_addr].last_error.is_some())
        .await
        .unwrap();
    let last = node.state.borrow().clone();
    assert!(last.namesrv[&refused]
        .last_error
        .as_ref()
        .unwrap()
        .contains("connecting"));
    assert!(last.namesrv[&silent_addr]
        .last_error
        .as_ref()
        .unwrap()
        .contains("no response"));
    assert_eq!(last.namesrv[&ns.addr].acks, 1);

    // Shutdown is bounded by the unregister timeout even with the silent NameServer.
    let stopping = Instant::now();
    let end = node.shutdown().await;
    assert!(stopping.elapsed() < CALL + Duration::from_secs(1));
    assert!(end.stopped);
    assert!(end.namesrv[&ns.addr].unregistered);
    assert!(!end.namesrv[&silent_addr].unregistered);
    drop(silent);
}

#[tokio::test]
async fn shutdown_unregisters_from_every_namesrv() {
    let ns1 = start_namesrv(NamesrvConfig::default()).await;
    let ns2 = start_namesrv(NamesrvConfig::default()).await;
    // The test keeps a clone of the client, so the connections stay open after the
    // registrar stops: the removal below is the unregister, not a connection close.
    let client = RemotingClient::default();
    let node = Node::start(
        config(0, &[&ns1.addr, &ns2.addr]),
        status(0, Role::Leader, 1, Some(1)),
        topics(&["TopicTest"]),
        client.clone(),
    );
    for ns in [&ns1.addr, &ns2.addr] {
        wait_addrs(&client, ns, &[(0, node_addr(0))], DEADLINE).await;
    }
    let end = node.shutdown().await;
    for ns in [&ns1.addr, &ns2.addr] {
        assert!(end.namesrv[ns].unregistered, "{ns}");
        assert!(client.is_connected(ns));
        assert!(group_addrs(&client, ns).await.is_empty(), "{ns}");
        assert!(!cluster_info(&client, ns)
            .await
            .cluster_addr_table
            .contains_key("DefaultCluster"));
    }
}

#[tokio::test]
async fn periodic_registration_outlives_a_short_heartbeat_timeout() {
    let ns = start_namesrv(NamesrvConfig {
        scan_not_active_broker_interval_ms: 50,
        ..NamesrvConfig::default()
    })
    .await;
    let client = RemotingClient::default();
    let mut cfg = config(0, &[&ns.addr]);
    cfg.period = Duration::from_millis(100);
    cfg.heartbeat_timeout_ms = 400;
    let node = Node::start(
        cfg.clone(),
        status(0, Role::Leader, 1, Some(1)),
        topics(&["TopicTest"]),
        client.clone(),
    );
    wait_addrs(&client, &ns.addr, &[(0, node_addr(0))], DEADLINE).await;

    // Control: a node of another group registered once with the same timeout expires
    // (its connection stays open, so only the scan can drop it).
    let mut control = cfg.clone();
    control.broker_name = "broker-ctl".into();
    control.broker_addr = "127.0.0.1:50911".into();
    let once = client
        .call(&ns.addr, one_registration(&control), CALL)
        .await
        .unwrap();
    assert_eq!(once.code, 0);
    let registered_at = Instant::now();
    wait_until("the control registration to expire", DEADLINE, || async {
        !cluster_info(&client, &ns.addr)
            .await
            .broker_addr_table
            .contains_key("broker-ctl")
    })
    .await;
    assert!(registered_at.elapsed() >= Duration::from_millis(400));
    // Meanwhile the periodic registrations kept the node alive.
    assert_eq!(
        group_addrs(&client, &ns.addr).await,
        [(0, node_addr(0))].into()
    );
    assert!(node.acks(&ns.addr) >= 4, "acks {}", node.acks(&ns.addr));
}

/// One REGISTER_BROKER as a node of `cfg` would send it (follower id, term 1).
fn one_registration(cfg: &RegistrarConfig) -> RemotingCommand {
    use raftmq_protocol::body::RegisterBrokerBody;
    use raftmq_protocol::headers::RegisterBrokerRequestHeader;
    let header = RegisterBrokerRequestHeader {
        broker_name: cfg.broker_name.clone(),
        broker_addr: cfg.broker_addr.clone(),
        cluster_name: cfg.cluster_name.clone(),
        ha_server_addr: cfg.ha_server_addr.clone(),
        broker_id: 1,
        heartbeat_timeout_millis: Some(cfg.heartbeat_timeout_ms),
        ..Default::default()
    };
    RemotingCommand::request(RequestCode::RegisterBroker.code(), header.to_ext())
        .with_body(RegisterBrokerBody::default().encode())
}
