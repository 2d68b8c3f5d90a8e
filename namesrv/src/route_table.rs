//! The NameServer's route registry: a pure state machine with injected time.
//!
//! Every method takes `now_ms`; nothing here reads a clock or touches a socket, so
//! the rules (role switches, term fencing, expiry) are unit-tested directly.
//!
//! Master tracking (spec §2.3.1, Appendix B): `brokerId == 0` *is* "master". A
//! master claim carries the Raft term as `dataVersion.stateVersion`. A claim for an
//! id whose current holder is alive with a higher term is rejected, so a deposed
//! leader cannot take the route back; a claim with an equal or higher term takes
//! over at once, and the claimant's old (follower) id entry is removed.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use raftmq_protocol::body::{
    BrokerData, ClusterInfo, DataVersion, QueueData, TopicConfig, TopicRouteData, MASTER_ID,
};

/// Default liveness timeout of a registration (spec: 120 s).
pub const BROKER_TIMEOUT_MS_DEFAULT: u64 = 120_000;

/// Identifies the TCP connection a registration arrived on.
pub type ConnId = u64;

/// One REGISTER_BROKER request, decoded.
#[derive(Debug, Clone, Default)]
pub struct Registration {
    /// Cluster name.
    pub cluster: String,
    /// Broker group name.
    pub broker_name: String,
    /// Client-facing `ip:port` of the node.
    pub broker_addr: String,
    /// Replication address (informational).
    pub ha_server_addr: String,
    /// 0 = master, ≥ 1 = follower.
    pub broker_id: i64,
    /// Liveness timeout; `None` = 120 s.
    pub timeout_ms: Option<u64>,
    /// Topic table version; `state_version` is the Raft term of a master claim.
    pub data_version: DataVersion,
    /// The node's topics (only a master's change routes).
    pub topics: BTreeMap<String, TopicConfig>,
    /// 5.x acting-master flag.
    pub enable_acting_master: bool,
    /// Zone name.
    pub zone_name: Option<String>,
}

/// What a registration produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// Recorded. For a follower with a live master, the master's addresses.
    Accepted {
        /// Live master's client address, for follower registrations.
        master_addr: Option<String>,
        /// Live master's HA address.
        ha_server_addr: Option<String>,
    },
    /// A stale claim: the id is held by a live node with a higher term. Not recorded.
    Fenced {
        /// The address currently holding the id.
        holder: String,
        /// Its term (stateVersion).
        holder_term: i64,
    },
}

#[derive(Debug, Clone)]
struct LiveBroker {
    cluster: String,
    broker_name: String,
    last_update_ms: u64,
    timeout_ms: u64,
    data_version: DataVersion,
    ha_server_addr: String,
    conn: Option<ConnId>,
}

/// The route registry of one NameServer.
#[derive(Debug, Default)]
pub struct RouteTable {
    /// topic → broker name → queue data.
    topics: BTreeMap<String, BTreeMap<String, QueueData>>,
    /// broker name → its addresses.
    brokers: BTreeMap<String, BrokerData>,
    /// cluster → broker names.
    clusters: BTreeMap<String, BTreeSet<String>>,
    /// node address → liveness record.
    live: HashMap<String, LiveBroker>,
}

impl RouteTable {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn is_alive(&self, addr: &str, now_ms: u64) -> Option<&LiveBroker> {
        self.live
            .get(addr)
            .filter(|l| now_ms.saturating_sub(l.last_update_ms) <= l.timeout_ms)
    }

    /// REGISTER_BROKER (spec §2.3.1 steps 1–8).
    pub fn register(
        &mut self,
        reg: Registration,
        conn: Option<ConnId>,
        now_ms: u64,
    ) -> RegisterOutcome {
        // Fencing first (step 4), so a rejected claim leaves no trace anywhere.
        let holder = self
            .brokers
            .get(&reg.broker_name)
            .and_then(|b| b.broker_addrs.get(&reg.broker_id))
            .filter(|addr| **addr != reg.broker_addr)
            .cloned();
        if let Some(holder) = holder {
            if let Some(l) = self.is_alive(&holder, now_ms) {
                let holder_term = l.data_version.state_version;
                if holder_term > reg.data_version.state_version {
                    // Java also forgets the rejected address's liveness record.
                    self.live.remove(&reg.broker_addr);
                    return RegisterOutcome::Fenced {
                        holder,
                        holder_term,
                    };
                }
            }
        }

        self.clusters
            .entry(reg.cluster.clone())
            .or_default()
            .insert(reg.broker_name.clone());
        let broker = self
            .brokers
            .entry(reg.broker_name.clone())
            .or_insert_with(|| BrokerData::new(reg.cluster.clone(), reg.broker_name.clone()));
        broker.cluster = reg.cluster.clone();
        broker.enable_acting_master = reg.enable_acting_master;
        if reg.zone_name.is_some() {
            broker.zone_name = reg.zone_name.clone();
        }
        // Step 3: the same address under another id is a role switch.
        broker
            .broker_addrs
            .retain(|id, addr| *id == reg.broker_id || *addr != reg.broker_addr);
        // Step 5.
        broker
            .broker_addrs
            .insert(reg.broker_id, reg.broker_addr.clone());

        // Step 6: only the master's table changes routes.
        if reg.broker_id == MASTER_ID {
            for (name, tc) in &reg.topics {
                let qd = QueueData {
                    broker_name: reg.broker_name.clone(),
                    perm: tc.perm,
                    read_queue_nums: tc.read_queue_nums,
                    topic_sys_flag: tc.topic_sys_flag,
                    write_queue_nums: tc.write_queue_nums,
                };
                self.topics
                    .entry(name.clone())
                    .or_default()
                    .insert(reg.broker_name.clone(), qd);
            }
        }

        // Step 7.
        self.live.insert(
            reg.broker_addr.clone(),
            LiveBroker {
                cluster: reg.cluster.clone(),
                broker_name: reg.broker_name.clone(),
                last_update_ms: now_ms,
                timeout_ms: reg.timeout_ms.unwrap_or(BROKER_TIMEOUT_MS_DEFAULT),
                data_version: reg.data_version,
                ha_server_addr: reg.ha_server_addr.clone(),
                conn,
            },
        );

        // Step 8.
        let (mut master_addr, mut ha_server_addr) = (None, None);
        if reg.broker_id != MASTER_ID {
            let master = self
                .brokers
                .get(&reg.broker_name)
                .and_then(|b| b.master_addr())
                .map(str::to_owned);
            if let Some(m) = master {
                if let Some(l) = self.is_alive(&m, now_ms) {
                    ha_server_addr = Some(l.ha_server_addr.clone());
                    master_addr = Some(m);
                }
            }
        }
        RegisterOutcome::Accepted {
            master_addr,
            ha_server_addr,
        }
    }

    /// UNREGISTER_BROKER, connection close and expiry: forget one node address.
    ///
    /// Removes only entries holding `broker_addr`, so a deposed master's departure
    /// never removes the new master that replaced it under id 0.
    pub fn unregister(&mut self, cluster: &str, broker_name: &str, broker_addr: &str) {
        self.live.remove(broker_addr);
        let Some(broker) = self.brokers.get_mut(broker_name) else {
            return;
        };
        broker.broker_addrs.retain(|_, addr| addr != broker_addr);
        if !broker.broker_addrs.is_empty() {
            return;
        }
        self.brokers.remove(broker_name);
        let cluster = if cluster.is_empty() {
            None
        } else {
            Some(cluster)
        };
        for (name, members) in self.clusters.iter_mut() {
            if cluster.is_none_or(|c| c == name) {
                members.remove(broker_name);
            }
        }
        self.clusters.retain(|_, members| !members.is_empty());
        for queues in self.topics.values_mut() {
            queues.remove(broker_name);
        }
        self.topics.retain(|_, queues| !queues.is_empty());
    }

    /// Drops every node whose last registration is older than its timeout.
    /// Returns the dropped addresses.
    pub fn scan_expired(&mut self, now_ms: u64) -> Vec<String> {
        let expired: Vec<(String, String, String)> = self
            .live
            .iter()
            .filter(|(_, l)| now_ms.saturating_sub(l.last_update_ms) > l.timeout_ms)
            .map(|(addr, l)| (addr.clone(), l.cluster.clone(), l.broker_name.clone()))
            .collect();
        self.drop_all(expired)
    }

    /// Drops every node whose latest registration arrived on `conn`, now closed.
    pub fn connection_closed(&mut self, conn: ConnId) -> Vec<String> {
        let gone: Vec<(String, String, String)> = self
            .live
            .iter()
            .filter(|(_, l)| l.conn == Some(conn))
            .map(|(addr, l)| (addr.clone(), l.cluster.clone(), l.broker_name.clone()))
            .collect();
        self.drop_all(gone)
    }

    fn drop_all(&mut self, nodes: Vec<(String, String, String)>) -> Vec<String> {
        nodes
            .into_iter()
            .map(|(addr, cluster, name)| {
                self.unregister(&cluster, &name, &addr);
                addr
            })
            .collect()
    }

    /// GET_ROUTEINFO_BY_TOPIC: `None` when no registered group serves the topic.
    pub fn route(&self, topic: &str) -> Option<TopicRouteData> {
        let queues = self.topics.get(topic)?;
        let queue_datas: Vec<QueueData> = queues.values().cloned().collect();
        let broker_datas: Vec<BrokerData> = queues
            .keys()
            .filter_map(|name| self.brokers.get(name).cloned())
            .collect();
        if broker_datas.is_empty() {
            return None;
        }
        Some(TopicRouteData {
            broker_datas,
            queue_datas,
            ..Default::default()
        })
    }

    /// GET_BROKER_CLUSTER_INFO.
    pub fn cluster_info(&self) -> ClusterInfo {
        ClusterInfo {
            broker_addr_table: self.brokers.clone(),
            cluster_addr_table: self.clusters.clone(),
        }
    }

    /// GET_ALL_TOPIC_LIST_FROM_NAMESERVER: every topic with queue data.
    pub fn topic_names(&self) -> Vec<String> {
        self.topics.keys().cloned().collect()
    }

    /// DELETE_TOPIC_IN_NAMESRV: the whole topic, or only one cluster's groups.
    pub fn delete_topic(&mut self, topic: &str, cluster: Option<&str>) {
        match cluster.filter(|c| !c.trim().is_empty()) {
            None => {
                self.topics.remove(topic);
            }
            Some(cluster) => {
                let Some(queues) = self.topics.get_mut(topic) else {
                    return;
                };
                if let Some(members) = self.clusters.get(cluster) {
                    queues.retain(|name, _| !members.contains(name));
                }
                if queues.is_empty() {
                    self.topics.remove(topic);
                }
            }
        }
    }

    /// The id `broker_addr` is registered under in group `broker_name`, if any.
    pub fn broker_id_of(&self, broker_name: &str, broker_addr: &str) -> Option<i64> {
        let broker = self.brokers.get(broker_name)?;
        broker
            .broker_addrs
            .iter()
            .find(|(_, a)| *a == broker_addr)
            .map(|(id, _)| *id)
    }

    /// Number of live node records (for status logs and tests).
    pub fn live_count(&self) -> usize {
        self.live.len()
    }
}

#[cfg(test)]
mod tests;
