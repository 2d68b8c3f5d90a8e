//! NameServer registration of one broker node (spec §2.3.1, §2.3.2, Appendix B).
//!
//! The raft status decides what to announce ([`decide`]): the caught-up leader registers
//! as master (`brokerId` 0) with `stateVersion` = its term, a follower under its follower
//! id. The [`Registrar`] task registers with every NameServer, each through its own worker
//! so one dead NameServer delays nobody:
//! ```text
//! watch<NodeStatus> --decide--> Registration --(change | poke | period)--> Job (watch)
//!     Job --worker per NameServer--> REGISTER_BROKER --> Report --> RegistrarState (watch)
//! shutdown --> UNREGISTER_BROKER to every NameServer (bounded)
//! ```
//! A new registration goes out at once when the decision changes (role, term, broker id),
//! when poked (topic change), and every `registerNameServerPeriod` anyway.
//!
//! Logs: info when the registered role changes (first acknowledgement) and when a
//! NameServer recovers; warn once when a NameServer starts failing (not on every retry);
//! debug for periodic rounds and the latency from the cause to the last acknowledgement.

mod decision;
mod ns;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use raftmq_protocol::body::TopicConfigSerializeWrapper;
use raftmq_raft::status::NodeStatus;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinSet;
use tokio::time::{timeout_at, Instant, MissedTickBehavior};
use tracing::{debug, info, warn};

pub use decision::{decide, Registration};

use crate::config::BrokerConfig;
use crate::remoting_client::RemotingClient;
use ns::{Job, Reason, Report};

/// Registration liveness timeout sent in every request (spec default: 120 s).
pub const HEARTBEAT_TIMEOUT_MS_DEFAULT: i64 = 120_000;
/// Per-call limit for one NameServer.
pub const CALL_TIMEOUT_DEFAULT: Duration = Duration::from_secs(3);

/// The few settings the registrar needs; [`RegistrarConfig::from_broker`] derives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrarConfig {
    /// `clusterName`.
    pub cluster_name: String,
    /// `brokerName` (the raft group).
    pub broker_name: String,
    /// `brokerAddr`: this node's client address.
    pub broker_addr: String,
    /// `haServerAddr`: this node's raft address (informational).
    pub ha_server_addr: String,
    /// The id this node registers with as follower (node index + 1).
    pub follower_broker_id: i64,
    /// NameServers, `host:port`.
    pub namesrv_addrs: Vec<String>,
    /// Re-registration period.
    pub period: Duration,
    /// `heartbeatTimeoutMillis` sent with each registration.
    pub heartbeat_timeout_ms: i64,
    /// Limit on one REGISTER_BROKER call to one NameServer.
    pub call_timeout: Duration,
    /// Limit on the whole UNREGISTER_BROKER round at shutdown.
    pub unregister_timeout: Duration,
}

impl RegistrarConfig {
    /// The registrar settings of a broker node.
    pub fn from_broker(cfg: &BrokerConfig) -> Self {
        RegistrarConfig {
            cluster_name: cfg.broker_cluster_name.clone(),
            broker_name: cfg.broker_name.clone(),
            broker_addr: cfg.client_addr().to_string(),
            ha_server_addr: cfg.raft_self_addr().to_owned(),
            follower_broker_id: i64::try_from(cfg.follower_broker_id()).unwrap_or(i64::MAX),
            namesrv_addrs: cfg.namesrv_addr.clone(),
            period: Duration::from_millis(cfg.register_name_server_period_ms),
            heartbeat_timeout_ms: HEARTBEAT_TIMEOUT_MS_DEFAULT,
            call_timeout: CALL_TIMEOUT_DEFAULT,
            unregister_timeout: CALL_TIMEOUT_DEFAULT,
        }
    }
}

/// Supplies the topic table to register; the broker implements it from its state machine.
pub trait TopicSource: Send + Sync {
    /// The current topic table and its DataVersion (`stateVersion` is overwritten with
    /// the registration's term).
    fn topic_wrapper(&self) -> TopicConfigSerializeWrapper;
}

impl<F> TopicSource for F
where
    F: Fn() -> TopicConfigSerializeWrapper + Send + Sync,
{
    fn topic_wrapper(&self) -> TopicConfigSerializeWrapper {
        self()
    }
}

/// The last outcome with one NameServer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NsOutcome {
    /// The last registration it acknowledged.
    pub last_ok: Option<Registration>,
    /// The last failure (cleared by the next success).
    pub last_error: Option<String>,
    /// The live master it reported on the last acknowledged follower registration.
    pub master_addr: Option<String>,
    /// Registrations acknowledged so far.
    pub acks: u64,
    /// Registrations failed so far.
    pub failures: u64,
    /// It acknowledged UNREGISTER_BROKER at shutdown.
    pub unregistered: bool,
}

/// What the registrar has done, for tests and status lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistrarState {
    /// What the raft status currently calls for (`None`: send nothing).
    pub wanted: Option<Registration>,
    /// The newest registration at least one NameServer acknowledged.
    pub registered: Option<Registration>,
    /// NameServer address → last outcome.
    pub namesrv: BTreeMap<String, NsOutcome>,
    /// The task has finished (after the unregister round).
    pub stopped: bool,
}

/// The registration task of one broker node; see the module docs.
pub struct Registrar {
    cfg: Arc<RegistrarConfig>,
    status: watch::Receiver<NodeStatus>,
    topics: Arc<dyn TopicSource>,
    client: RemotingClient,
    poke: Arc<Notify>,
    state: watch::Sender<RegistrarState>,
}

impl std::fmt::Debug for Registrar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registrar")
            .field("cfg", &self.cfg)
            .field("state", &*self.state.borrow())
            .finish()
    }
}

impl Registrar {
    /// A registrar for `cfg`, driven by `status`, announcing `topics`, calling through
    /// `client` (shared with the broker's other outgoing calls, if any).
    pub fn new(
        cfg: RegistrarConfig,
        status: watch::Receiver<NodeStatus>,
        topics: Arc<dyn TopicSource>,
        client: RemotingClient,
    ) -> Self {
        let namesrv = cfg
            .namesrv_addrs
            .iter()
            .map(|a| (a.clone(), NsOutcome::default()))
            .collect();
        let (state, _) = watch::channel(RegistrarState {
            namesrv,
            ..RegistrarState::default()
        });
        Registrar {
            cfg: Arc::new(cfg),
            status,
            topics,
            client,
            poke: Arc::new(Notify::new()),
            state,
        }
    }

    /// Call `notify_one()` on this to re-register at once (e.g. after a topic change).
    pub fn poke_handle(&self) -> Arc<Notify> {
        self.poke.clone()
    }

    /// A watch of what the registrar has done.
    pub fn observe(&self) -> watch::Receiver<RegistrarState> {
        self.state.subscribe()
    }

    /// Runs until `shutdown` completes, then unregisters from every NameServer (bounded
    /// by `unregister_timeout`). A closed status channel keeps the last decision.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Registrar {
            cfg,
            mut status,
            topics,
            client,
            poke,
            state,
        } = self;
        let (job_tx, job_rx) = watch::channel::<Option<Arc<Job>>>(None);
        let (report_tx, mut reports) = mpsc::unbounded_channel();
        let mut workers = JoinSet::new();
        for (i, addr) in cfg.namesrv_addrs.iter().enumerate() {
            workers.spawn(ns::worker(
                i,
                addr.clone(),
                client.clone(),
                job_rx.clone(),
                report_tx.clone(),
                cfg.call_timeout,
            ));
        }
        drop((job_rx, report_tx));

        let mut round = Rounds::new(&cfg, topics, job_tx, &state);
        let first = *status.borrow_and_update();
        round.set_wanted(decide(&first, cfg.follower_broker_id), &first);
        round.publish(Reason::Start, Instant::now());

        let mut ticker = tokio::time::interval_at(Instant::now() + cfg.period, cfg.period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut status_open = true;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                changed = status.changed(), if status_open => {
                    if changed.is_err() {
                        debug!("raft status channel closed; keeping the last decision");
                        status_open = false;
                        continue;
                    }
                    let since = Instant::now();
                    let s = *status.borrow_and_update();
                    if round.set_wanted(decide(&s, cfg.follower_broker_id), &s) {
                        round.publish(Reason::Change, since);
                    }
                }
                () = poke.notified() => round.publish(Reason::Poke, Instant::now()),
                _ = ticker.tick() => round.publish(Reason::Periodic, Instant::now()),
                Some(report) = reports.recv() => round.on_report(report),
            }
        }

        round.stop_jobs();
        workers.abort_all();
        while workers.join_next().await.is_some() {}
        let registered = state.borrow().registered;
        if let Some(reg) = registered {
            unregister_all(&cfg, &client, reg.broker_id, &state).await;
        }
        state.send_modify(|s| s.stopped = true);
    }
}

/// Bookkeeping of registration rounds: the current decision, the newest job and who
/// acknowledged it, and per-NameServer health for rate-limited logging.
struct Rounds<'a> {
    cfg: &'a RegistrarConfig,
    topics: Arc<dyn TopicSource>,
    jobs: watch::Sender<Option<Arc<Job>>>,
    state: &'a watch::Sender<RegistrarState>,
    wanted: Option<Registration>,
    generation: u64,
    /// Generation of `state.registered`.
    registered_generation: u64,
    /// Who acknowledged the newest generation.
    acked: Vec<bool>,
    /// Per NameServer: `Some(false)` after a failure, `Some(true)` after a success.
    healthy: Vec<Option<bool>>,
}

impl<'a> Rounds<'a> {
    fn new(
        cfg: &'a RegistrarConfig,
        topics: Arc<dyn TopicSource>,
        jobs: watch::Sender<Option<Arc<Job>>>,
        state: &'a watch::Sender<RegistrarState>,
    ) -> Self {
        let n = cfg.namesrv_addrs.len();
        Rounds {
            cfg,
            topics,
            jobs,
            state,
            wanted: None,
            generation: 0,
            registered_generation: 0,
            acked: vec![false; n],
            healthy: vec![None; n],
        }
    }

    /// Records the decision; true when it changed.
    fn set_wanted(&mut self, wanted: Option<Registration>, status: &NodeStatus) -> bool {
        if wanted == self.wanted {
            return false;
        }
        self.wanted = wanted;
        self.state.send_modify(|s| s.wanted = wanted);
        match wanted {
            Some(r) => debug!(broker_id = r.broker_id, term = r.state_version, role = %status.role,
                "registration decision: registering at once"),
            None => {
                info!(role = %status.role, term = status.term,
                    "raft role not settled for registration; pausing NameServer registrations");
                // Nothing new may go out; a worker still busy finishes its current call.
                self.jobs.send_replace(None);
            }
        }
        true
    }

    /// Starts a round for the current decision, if there is one.
    fn publish(&mut self, reason: Reason, since: Instant) {
        let Some(registration) = self.wanted else {
            return;
        };
        self.generation += 1;
        self.acked.iter_mut().for_each(|a| *a = false);
        let request = ns::register_request(self.cfg, registration, self.topics.topic_wrapper());
        debug!(
            generation = self.generation,
            ?reason,
            broker_id = registration.broker_id,
            term = registration.state_version,
            "registering with every NameServer"
        );
        self.jobs.send_replace(Some(Arc::new(Job {
            generation: self.generation,
            registration,
            reason,
            since,
            request,
        })));
    }

    fn stop_jobs(&mut self) {
        self.jobs.send_replace(None);
    }

    fn on_report(&mut self, r: Report) {
        let Some(addr) = self.cfg.namesrv_addrs.get(r.ns) else {
            return;
        };
        let reg = r.registration;
        let ok = r.result.is_ok();
        match (&r.result, self.healthy[r.ns]) {
            (Ok(_), Some(false)) => info!(namesrv = %addr, broker_id = reg.broker_id,
                term = reg.state_version, "NameServer accepts registrations again"),
            (Err(e), Some(true) | None) => warn!(namesrv = %addr, broker_id = reg.broker_id,
                term = reg.state_version, error = %e,
                "registration with NameServer failed (further failures logged at debug)"),
            (Err(e), Some(false)) => {
                debug!(namesrv = %addr, error = %e, "registration still failing")
            }
            (Ok(_), _) => {}
        }
        self.healthy[r.ns] = Some(ok);

        let newly_registered = ok && r.generation > self.registered_generation;
        let role_changed = newly_registered && self.state.borrow().registered != Some(reg);
        if newly_registered {
            self.registered_generation = r.generation;
        }
        if role_changed {
            info!(broker_id = reg.broker_id, term = reg.state_version, role = reg.role_name(),
                namesrv = %addr, latency_ms = r.since.elapsed().as_millis() as u64,
                "registered with NameServer in a new role");
        }
        self.state.send_modify(|s| {
            if newly_registered {
                s.registered = Some(reg);
            }
            let o = s.namesrv.entry(addr.clone()).or_default();
            match &r.result {
                Ok(master) => {
                    o.last_ok = Some(reg);
                    o.last_error = None;
                    o.master_addr = master.clone();
                    o.acks += 1;
                }
                Err(e) => {
                    o.last_error = Some(e.clone());
                    o.failures += 1;
                }
            }
        });

        if ok && r.generation == self.generation {
            self.acked[r.ns] = true;
            if self.acked.iter().all(|a| *a) {
                debug!(generation = r.generation, reason = ?r.reason, broker_id = reg.broker_id,
                    term = reg.state_version, latency_ms = r.since.elapsed().as_millis() as u64,
                    "every NameServer acknowledged the registration");
            }
        }
    }
}

/// UNREGISTER_BROKER to every NameServer at once; gives up after `unregister_timeout`.
async fn unregister_all(
    cfg: &RegistrarConfig,
    client: &RemotingClient,
    broker_id: i64,
    state: &watch::Sender<RegistrarState>,
) {
    let deadline = Instant::now() + cfg.unregister_timeout;
    let mut calls = JoinSet::new();
    for addr in &cfg.namesrv_addrs {
        let (client, addr) = (client.clone(), addr.clone());
        let request = ns::unregister_request(cfg, broker_id);
        let limit = cfg.unregister_timeout;
        calls.spawn(async move {
            let result = client.call(&addr, request, limit).await;
            (addr, result)
        });
    }
    while let Ok(Some(joined)) = timeout_at(deadline, calls.join_next()).await {
        let Ok((addr, result)) = joined else { continue };
        match result
            .map_err(|e| e.to_string())
            .and_then(|r| ns::check_success(&r))
        {
            Ok(()) => {
                info!(namesrv = %addr, broker_id, "unregistered from NameServer");
                state.send_modify(|s| s.namesrv.entry(addr).or_default().unregistered = true);
            }
            Err(e) => {
                warn!(namesrv = %addr, broker_id, error = %e, "unregistering from NameServer failed")
            }
        }
    }
    calls.abort_all();
}
