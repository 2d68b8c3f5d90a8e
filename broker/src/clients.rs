//! Per-node client tables (spec §2.4.8–§2.4.10): who heartbeats in which consumer and
//! producer group, over which connection, with which subscriptions. Not replicated: every
//! node learns its own clients. Pure (the caller passes the clock and the channel type),
//! so the rules are unit-tested here; [`crate::broker`] turns "group changed" results
//! into NOTIFY_CONSUMER_IDS_CHANGED pushes.

use std::collections::BTreeMap;

use raftmq_protocol::body::{HeartbeatData, SubscriptionData};

/// A client without a heartbeat for this long is dropped (checked every 10 s).
pub const CLIENT_EXPIRY_MS: i64 = 120_000;

/// One consumer client of one group.
#[derive(Debug, Clone)]
pub struct ConsumerClient<C> {
    /// The client's connection (push target).
    pub channel: C,
    /// The connection's id; all of a connection's registrations go when it closes.
    pub conn_id: u64,
    /// `CONSUME_PASSIVELY`, `CONSUME_ACTIVELY` or `CONSUME_POP`.
    pub consume_type: String,
    /// `CLUSTERING` or `BROADCASTING`.
    pub message_model: String,
    /// Where a new group starts.
    pub consume_from_where: String,
    /// Subscriptions by topic.
    pub subscriptions: BTreeMap<String, SubscriptionData>,
    /// Last heartbeat, ms since the epoch.
    pub last_seen_ms: i64,
}

/// One producer client of one group.
#[derive(Debug, Clone)]
pub struct ProducerClient<C> {
    /// The client's connection.
    pub channel: C,
    /// The connection's id.
    pub conn_id: u64,
    /// Last heartbeat, ms since the epoch.
    pub last_seen_ms: i64,
}

/// Consumer and producer groups → client id → client.
#[derive(Debug)]
pub struct ClientTable<C> {
    consumers: BTreeMap<String, BTreeMap<String, ConsumerClient<C>>>,
    producers: BTreeMap<String, BTreeMap<String, ProducerClient<C>>>,
}

impl<C> Default for ClientTable<C> {
    fn default() -> Self {
        ClientTable {
            consumers: BTreeMap::new(),
            producers: BTreeMap::new(),
        }
    }
}

impl<C: Clone> ClientTable<C> {
    /// Records a heartbeat; returns the consumer groups whose set of client ids changed.
    pub fn heartbeat(
        &mut self,
        hb: &HeartbeatData,
        channel: &C,
        conn_id: u64,
        now_ms: i64,
    ) -> Vec<String> {
        let mut changed = Vec::new();
        for cd in &hb.consumer_data_set {
            if cd.group_name.is_empty() {
                continue;
            }
            let group = self.consumers.entry(cd.group_name.clone()).or_default();
            let keep_subs = hb.without_sub == Some(true);
            let subscriptions: BTreeMap<String, SubscriptionData> = match group.get(&hb.client_id) {
                Some(old) if keep_subs => old.subscriptions.clone(),
                _ => cd
                    .subscription_data_set
                    .iter()
                    .map(|s| (s.topic.clone(), s.clone()))
                    .collect(),
            };
            let client = ConsumerClient {
                channel: channel.clone(),
                conn_id,
                consume_type: cd.consume_type.clone(),
                message_model: cd.message_model.clone(),
                consume_from_where: cd.consume_from_where.clone(),
                subscriptions,
                last_seen_ms: now_ms,
            };
            if group.insert(hb.client_id.clone(), client).is_none() {
                changed.push(cd.group_name.clone());
            }
        }
        for pd in &hb.producer_data_set {
            if pd.group_name.is_empty() {
                continue;
            }
            self.producers
                .entry(pd.group_name.clone())
                .or_default()
                .insert(
                    hb.client_id.clone(),
                    ProducerClient {
                        channel: channel.clone(),
                        conn_id,
                        last_seen_ms: now_ms,
                    },
                );
        }
        changed
    }

    /// UNREGISTER_CLIENT: removes `client_id` from the named groups; returns the consumer
    /// groups that changed.
    pub fn unregister(
        &mut self,
        client_id: &str,
        consumer_group: Option<&str>,
        producer_group: Option<&str>,
    ) -> Vec<String> {
        if let Some(g) = producer_group {
            remove_from(&mut self.producers, g, |id, _| id == client_id);
        }
        match consumer_group {
            Some(g) if remove_from(&mut self.consumers, g, |id, _| id == client_id) => {
                vec![g.to_owned()]
            }
            _ => Vec::new(),
        }
    }

    /// Drops every registration made over connection `conn_id` (it closed); returns the
    /// consumer groups that changed.
    pub fn remove_connection(&mut self, conn_id: u64) -> Vec<String> {
        self.retain_clients(|c| c.conn_id == conn_id, |p| p.conn_id == conn_id)
    }

    /// Drops clients silent for longer than `expiry_ms`; returns the changed consumer groups.
    pub fn expire(&mut self, now_ms: i64, expiry_ms: i64) -> Vec<String> {
        let stale = |seen: i64| now_ms.saturating_sub(seen) > expiry_ms;
        self.retain_clients(|c| stale(c.last_seen_ms), |p| stale(p.last_seen_ms))
    }

    fn retain_clients(
        &mut self,
        drop_consumer: impl Fn(&ConsumerClient<C>) -> bool,
        drop_producer: impl Fn(&ProducerClient<C>) -> bool,
    ) -> Vec<String> {
        let mut changed = Vec::new();
        for (group, clients) in &mut self.consumers {
            let before = clients.len();
            clients.retain(|_, c| !drop_consumer(c));
            if clients.len() != before {
                changed.push(group.clone());
            }
        }
        self.consumers.retain(|_, c| !c.is_empty());
        for clients in self.producers.values_mut() {
            clients.retain(|_, p| !drop_producer(p));
        }
        self.producers.retain(|_, c| !c.is_empty());
        changed
    }

    /// The group's client ids, sorted (empty for an unknown group).
    pub fn consumer_ids(&self, group: &str) -> Vec<String> {
        self.consumers
            .get(group)
            .map(|c| c.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The group's connections (one per client).
    pub fn consumer_channels(&self, group: &str) -> Vec<C> {
        self.consumers
            .get(group)
            .map(|c| c.values().map(|c| c.channel.clone()).collect())
            .unwrap_or_default()
    }

    /// A producer group's connections.
    pub fn producer_channels(&self, group: &str) -> Vec<C> {
        self.producers
            .get(group)
            .map(|c| c.values().map(|p| p.channel.clone()).collect())
            .unwrap_or_default()
    }

    /// The subscription of `topic` the group's clients registered: `None` when the group
    /// has no clients here, `Some(None)` when it has but none subscribes `topic`. Clients
    /// disagreeing: the newest `subVersion` wins.
    pub fn subscription(&self, group: &str, topic: &str) -> Option<Option<SubscriptionData>> {
        let clients = self.consumers.get(group)?;
        Some(
            clients
                .values()
                .filter_map(|c| c.subscriptions.get(topic))
                .max_by_key(|s| s.sub_version)
                .cloned(),
        )
    }
}

/// Removes the clients of `group` matching `pred`; true when one was removed.
fn remove_from<T>(
    table: &mut BTreeMap<String, BTreeMap<String, T>>,
    group: &str,
    pred: impl Fn(&str, &T) -> bool,
) -> bool {
    let Some(clients) = table.get_mut(group) else {
        return false;
    };
    let before = clients.len();
    clients.retain(|id, c| !pred(id, c));
    let removed = clients.len() != before;
    if clients.is_empty() {
        table.remove(group);
    }
    removed
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use raftmq_protocol::body::{ConsumerData, ProducerData};

    use super::*;

    fn hb(client: &str, group: &str, tag: &str, version: i64) -> HeartbeatData {
        HeartbeatData {
            client_id: client.into(),
            consumer_data_set: vec![ConsumerData {
                group_name: group.into(),
                consume_type: "CONSUME_PASSIVELY".into(),
                message_model: "CLUSTERING".into(),
                subscription_data_set: vec![SubscriptionData {
                    topic: "T".into(),
                    sub_string: tag.into(),
                    sub_version: version,
                    ..SubscriptionData::default()
                }],
                ..ConsumerData::default()
            }],
            producer_data_set: vec![ProducerData {
                group_name: "CLIENT_INNER_PRODUCER".into(),
            }],
            ..HeartbeatData::default()
        }
    }

    #[test]
    fn joins_change_the_group_repeats_do_not() {
        let mut t = ClientTable::<u8>::default();
        assert_eq!(t.heartbeat(&hb("c1", "G", "a", 1), &1, 1, 0), vec!["G"]);
        assert!(t.heartbeat(&hb("c1", "G", "a", 1), &1, 1, 10).is_empty());
        assert_eq!(t.heartbeat(&hb("c2", "G", "b", 2), &2, 2, 20), vec!["G"]);
        assert_eq!(t.consumer_ids("G"), vec!["c1", "c2"]);
        assert_eq!(t.consumer_channels("G"), vec![1, 2]);
        assert_eq!(t.producer_channels("CLIENT_INNER_PRODUCER"), vec![1, 2]);
        let sub = t.subscription("G", "T").unwrap().unwrap();
        assert_eq!(sub.sub_string, "b", "newest subVersion wins");
        assert_eq!(t.subscription("G", "Other").unwrap(), None);
        assert_eq!(t.subscription("NoGroup", "T"), None);
    }

    #[test]
    fn without_sub_keeps_the_old_subscriptions() {
        let mut t = ClientTable::<u8>::default();
        t.heartbeat(&hb("c1", "G", "a", 1), &1, 1, 0);
        let mut again = hb("c1", "G", "ignored", 2);
        again.consumer_data_set[0].subscription_data_set.clear();
        again.without_sub = Some(true);
        t.heartbeat(&again, &1, 1, 5);
        let sub = t.subscription("G", "T").unwrap().unwrap();
        assert_eq!(sub.sub_string, "a");
    }

    #[test]
    fn unregister_close_and_expiry_remove_clients() {
        let mut t = ClientTable::<u8>::default();
        t.heartbeat(&hb("c1", "G", "*", 1), &1, 1, 0);
        t.heartbeat(&hb("c2", "G", "*", 1), &2, 2, 0);
        t.heartbeat(&hb("c3", "H", "*", 1), &3, 3, 100_000);
        assert!(t.unregister("nobody", Some("G"), None).is_empty());
        assert_eq!(t.unregister("c1", Some("G"), None), vec!["G"]);
        assert_eq!(t.consumer_ids("G"), vec!["c2"]);
        assert_eq!(t.remove_connection(2), vec!["G"]);
        assert!(t.consumer_ids("G").is_empty());
        assert_eq!(t.subscription("G", "T"), None, "an emptied group is gone");
        assert!(t.expire(200_000, CLIENT_EXPIRY_MS).is_empty());
        assert_eq!(t.expire(220_001, CLIENT_EXPIRY_MS), vec!["H"]);
        assert!(t.producer_channels("CLIENT_INNER_PRODUCER").is_empty());
    }
}
