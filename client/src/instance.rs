//! What every producer and consumer of one process shares (RocketMQ's `MQClientInstance`):
//! the NameServer list, the connection pool, the route cache and the client id.
//!
//! Routes are cached per topic and refreshed every 30 s by a background task, and at once
//! by [`ClientCore::refresh_route`] whenever a send or pull meets a not-master, busy or
//! unreachable answer, so a failover is followed within the election time.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use raftmq_protocol::body::{decode_json, TopicRouteData};
use raftmq_protocol::codes::{RequestCode, ResponseCode};
use raftmq_protocol::headers::{CommandHeader, GetRouteInfoRequestHeader};
use raftmq_protocol::msgid::UniqKeyGenerator;
use raftmq_protocol::RemotingCommand;
use tokio::sync::mpsc;

use crate::remoting::ConnectionPool;
use crate::ClientError;

/// How often cached routes are refreshed in the background (RocketMQ: 30 s).
pub const ROUTE_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// Time limit of a NameServer request.
pub const NAMESRV_TIMEOUT: Duration = Duration::from_secs(3);
/// Time limit of a connection attempt.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Requests a server sent to this client (e.g. NOTIFY_CONSUMER_IDS_CHANGED): sender, request.
pub type ServerRequests = mpsc::UnboundedReceiver<(String, RemotingCommand)>;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Shared state of one client process: NameServers, connections, routes, ids.
#[derive(Debug)]
pub struct ClientCore {
    namesrvs: Vec<String>,
    next_namesrv: AtomicUsize,
    pool: ConnectionPool,
    routes: Mutex<HashMap<String, Arc<TopicRouteData>>>,
    client_id: String,
    ip: IpAddr,
    uniq: &'static UniqKeyGenerator,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The local address a connection to `peer` would leave from (no packet is sent), else
/// 127.0.0.1: it names this client in its id and in message ids.
fn local_ip(peer: &str) -> IpAddr {
    UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect(peer)?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// The process's one UNIQ_KEY generator, shared by every client of the process (as
/// RocketMQ's is per JVM): two producers made in the same millisecond with generators of
/// their own would hand out the same ids, and the broker would drop the second message
/// as a duplicate of the first while acknowledging it.
fn process_uniq_generator(ip: IpAddr, pid: u32, random: i32) -> &'static UniqKeyGenerator {
    static GENERATOR: std::sync::OnceLock<UniqKeyGenerator> = std::sync::OnceLock::new();
    GENERATOR.get_or_init(|| UniqKeyGenerator::new(ip, pid, random))
}

impl ClientCore {
    /// A core for `namesrvs`; `instance_name` distinguishes several clients of one
    /// process (RocketMQ's `instanceName`). Returns the core and the channel of requests
    /// servers send to it.
    pub fn new(namesrvs: Vec<String>, instance_name: &str) -> (Arc<Self>, ServerRequests) {
        let ip = namesrvs
            .first()
            .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |a| local_ip(a));
        let pid = std::process::id();
        let client_id = format!("{ip}@{pid}#{instance_name}#{}", now_ms());
        let random = (now_ms() as i32) ^ (pid as i32).rotate_left(16);
        let (tx, rx) = mpsc::unbounded_channel();
        let core = Arc::new(ClientCore {
            next_namesrv: AtomicUsize::new(random.unsigned_abs() as usize),
            namesrvs,
            pool: ConnectionPool::new(CONNECT_TIMEOUT, Some(tx)),
            routes: Mutex::default(),
            client_id,
            ip,
            uniq: process_uniq_generator(ip, pid, random),
        });
        (core, rx)
    }

    /// This client's id, as brokers list it for its consumer groups.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// This client's IP address.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// The connection pool (one pipelined connection per address).
    pub fn pool(&self) -> &ConnectionPool {
        &self.pool
    }

    /// The NameServer addresses.
    pub fn namesrvs(&self) -> &[String] {
        &self.namesrvs
    }

    /// A new message `UNIQ_KEY`.
    pub fn new_uniq_key(&self) -> String {
        self.uniq.generate(now_ms())
    }

    /// Sends `request` to the NameServers in turn (starting after the last one used) until
    /// one answers; the answer may carry any code.
    pub async fn call_namesrv(
        &self,
        request: RemotingCommand,
    ) -> Result<RemotingCommand, ClientError> {
        let n = self.namesrvs.len();
        if n == 0 {
            return Err(ClientError::NoNamesrv);
        }
        let start = self.next_namesrv.load(Ordering::Relaxed);
        let mut last = ClientError::NoNamesrv;
        for k in 0..n {
            let addr = &self.namesrvs[(start + k) % n];
            match self.pool.call(addr, request.clone(), NAMESRV_TIMEOUT).await {
                Ok(resp) => {
                    self.next_namesrv.store((start + k) % n, Ordering::Relaxed);
                    return Ok(resp);
                }
                Err(e) => {
                    tracing::debug!(namesrv = %addr, error = %e, "NameServer unreachable, trying the next");
                    last = e;
                }
            }
        }
        self.next_namesrv.store(start + 1, Ordering::Relaxed);
        Err(last)
    }

    /// Asks a NameServer for `topic`'s route and caches it. TOPIC_NOT_EXIST is a
    /// [`ClientError::Broker`] with that code.
    pub async fn refresh_route(&self, topic: &str) -> Result<Arc<TopicRouteData>, ClientError> {
        let header = GetRouteInfoRequestHeader {
            topic: topic.to_owned(),
            accept_standard_json_only: Some(true),
        };
        let req =
            RemotingCommand::request(RequestCode::GetRouteinfoByTopic.code(), header.to_ext());
        let resp = self.call_namesrv(req).await?;
        if resp.code != ResponseCode::Success.code() {
            return Err(ClientError::broker(
                "NameServer",
                resp.code,
                resp.remark.as_deref(),
            ));
        }
        let route: TopicRouteData = decode_json("TopicRouteData", &resp.body)
            .map_err(|e| ClientError::BadAnswer(format!("route of {topic}: {e}")))?;
        let route = Arc::new(route);
        lock(&self.routes).insert(topic.to_owned(), route.clone());
        Ok(route)
    }

    /// `topic`'s cached route, fetched on first use.
    pub async fn route(&self, topic: &str) -> Result<Arc<TopicRouteData>, ClientError> {
        if let Some(r) = lock(&self.routes).get(topic).cloned() {
            return Ok(r);
        }
        self.refresh_route(topic).await
    }

    /// The cached route of `topic`, if any (never asks a NameServer).
    pub fn cached_route(&self, topic: &str) -> Option<Arc<TopicRouteData>> {
        lock(&self.routes).get(topic).cloned()
    }

    /// Every broker address known from cached routes: group name → (broker id → address).
    pub fn known_brokers(&self) -> HashMap<String, Vec<String>> {
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        for r in lock(&self.routes).values() {
            for b in &r.broker_datas {
                let addrs = out.entry(b.broker_name.clone()).or_default();
                for a in b.broker_addrs.values() {
                    if !addrs.contains(a) {
                        addrs.push(a.clone());
                    }
                }
            }
        }
        out
    }

    /// The master address of `broker_name` from the cached routes.
    pub fn master_of(&self, broker_name: &str) -> Option<String> {
        lock(&self.routes).values().find_map(|r| {
            r.broker_datas
                .iter()
                .find(|b| b.broker_name == broker_name)
                .and_then(|b| b.master_addr().map(str::to_owned))
        })
    }

    /// Any address of `broker_name` (the master first) from the cached routes.
    pub fn any_addr_of(&self, broker_name: &str) -> Option<String> {
        self.master_of(broker_name).or_else(|| {
            lock(&self.routes).values().find_map(|r| {
                r.broker_datas
                    .iter()
                    .find(|b| b.broker_name == broker_name)
                    .and_then(|b| b.broker_addrs.values().next().cloned())
            })
        })
    }

    /// Refreshes every cached route (the 30 s background round); errors are logged.
    pub async fn refresh_all_routes(&self) {
        let topics: Vec<String> = lock(&self.routes).keys().cloned().collect();
        for t in topics {
            if let Err(e) = self.refresh_route(&t).await {
                tracing::debug!(topic = %t, error = %e, "route refresh failed");
            }
        }
    }

    /// Starts the background route refresh; it stops when `stop` fires or the core is
    /// dropped.
    pub fn spawn_route_refresh(self: &Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(ROUTE_REFRESH_INTERVAL);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => return,
                }
                let Some(core) = weak.upgrade() else { return };
                core.refresh_all_routes().await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn clients_of_one_process_never_share_a_uniq_key() {
        // Made in the same millisecond: with a generator each, both started their
        // counters at 1 with the same random part, and the broker deduplicated the
        // second producer's messages away (found by jepsen-tests).
        let (a, _ra) = ClientCore::new(vec!["127.0.0.1:9876".into()], "a");
        let (b, _rb) = ClientCore::new(vec!["127.0.0.1:9876".into()], "b");
        let mut keys = std::collections::HashSet::new();
        for _ in 0..1000 {
            assert!(keys.insert(a.new_uniq_key()));
            assert!(keys.insert(b.new_uniq_key()));
        }
    }
}
