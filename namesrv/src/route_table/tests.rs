#![allow(clippy::unwrap_used)]

use super::*;

const T0: u64 = 1_000_000;

fn reg(name: &str, addr: &str, id: i64, term: i64, topics: &[(&str, i32)]) -> Registration {
    Registration {
        cluster: "DefaultCluster".into(),
        broker_name: name.into(),
        broker_addr: addr.into(),
        ha_server_addr: format!("{addr}-ha"),
        broker_id: id,
        timeout_ms: None,
        data_version: DataVersion {
            counter: 1,
            state_version: term,
            timestamp: 0,
        },
        topics: topics
            .iter()
            .map(|(t, q)| (t.to_string(), TopicConfig::new(*t, *q)))
            .collect(),
        ..Default::default()
    }
}

fn addrs(t: &RouteTable, name: &str) -> Vec<(i64, String)> {
    t.cluster_info()
        .broker_addr_table
        .get(name)
        .map(|b| {
            b.broker_addrs
                .iter()
                .map(|(k, v)| (*k, v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

fn accepted() -> RegisterOutcome {
    RegisterOutcome::Accepted {
        master_addr: None,
        ha_server_addr: None,
    }
}

/// Node n0..n2 of broker-a at a:1..a:3; n1 leads in term 3.
fn three_nodes(t: &mut RouteTable) {
    assert_eq!(
        t.register(
            reg("broker-a", "a:2", 0, 3, &[("TopicTest", 4)]),
            Some(2),
            T0
        ),
        accepted()
    );
    for (addr, id, conn) in [("a:1", 1, 1), ("a:3", 3, 3)] {
        let out = t.register(
            reg("broker-a", addr, id, 3, &[("TopicTest", 4)]),
            Some(conn),
            T0,
        );
        assert_eq!(
            out,
            RegisterOutcome::Accepted {
                master_addr: Some("a:2".into()),
                ha_server_addr: Some("a:2-ha".into())
            }
        );
    }
}

#[test]
fn register_builds_route_and_cluster_info() {
    let mut t = RouteTable::new();
    three_nodes(&mut t);
    let route = t.route("TopicTest").unwrap();
    assert_eq!(route.queue_datas.len(), 1);
    assert_eq!(route.queue_datas[0].write_queue_nums, 4);
    assert_eq!(route.queue_datas[0].perm, 6);
    assert_eq!(route.broker_datas[0].master_addr(), Some("a:2"));
    assert_eq!(
        addrs(&t, "broker-a"),
        vec![(0, "a:2".into()), (1, "a:1".into()), (3, "a:3".into())]
    );
    let ci = t.cluster_info();
    assert_eq!(
        ci.cluster_addr_table["DefaultCluster"]
            .iter()
            .collect::<Vec<_>>(),
        vec!["broker-a"]
    );
    assert!(t.route("Nope").is_none());
    assert_eq!(t.topic_names(), vec!["TopicTest".to_string()]);
}

#[test]
fn follower_tables_never_change_routes() {
    let mut t = RouteTable::new();
    t.register(
        reg("broker-a", "a:1", 1, 1, &[("OnlyOnFollower", 8)]),
        None,
        T0,
    );
    assert!(t.route("OnlyOnFollower").is_none());
    t.register(reg("broker-a", "a:2", 0, 1, &[("T", 2)]), None, T0);
    t.register(reg("broker-a", "a:1", 1, 1, &[("T", 16)]), None, T0);
    assert_eq!(t.route("T").unwrap().queue_datas[0].write_queue_nums, 2);
}

#[test]
fn re_register_refreshes_and_updates_topics() {
    let mut t = RouteTable::new();
    three_nodes(&mut t);
    t.register(
        reg("broker-a", "a:2", 0, 3, &[("TopicTest", 8), ("New", 1)]),
        Some(2),
        T0 + 30_000,
    );
    assert_eq!(
        t.route("TopicTest").unwrap().queue_datas[0].read_queue_nums,
        8
    );
    assert!(t.route("New").is_some());
    assert_eq!(t.live_count(), 3);
    // Only a:2 refreshed: at T0+121s the other two have expired, a:2 has not.
    let dropped = t.scan_expired(T0 + 121_000);
    assert_eq!(dropped.len(), 2);
    assert_eq!(addrs(&t, "broker-a"), vec![(0, "a:2".into())]);
}

#[test]
fn role_switch_on_higher_term_takes_over_and_removes_old_id() {
    let mut t = RouteTable::new();
    three_nodes(&mut t);
    // n0 (a:1, id 1) wins term 4: takes id 0 at once and loses its id-1 entry.
    assert_eq!(
        t.register(
            reg("broker-a", "a:1", 0, 4, &[("TopicTest", 4)]),
            Some(1),
            T0 + 10
        ),
        accepted()
    );
    assert_eq!(
        addrs(&t, "broker-a"),
        vec![(0, "a:1".into()), (3, "a:3".into())]
    );
    // The old leader steps down and registers as follower id 2.
    t.register(reg("broker-a", "a:2", 2, 4, &[]), Some(2), T0 + 20);
    assert_eq!(
        addrs(&t, "broker-a"),
        vec![(0, "a:1".into()), (2, "a:2".into()), (3, "a:3".into())]
    );
}

#[test]
fn lower_term_master_claim_is_fenced() {
    let mut t = RouteTable::new();
    three_nodes(&mut t);
    t.register(
        reg("broker-a", "a:1", 0, 4, &[("TopicTest", 4)]),
        Some(1),
        T0 + 10,
    );
    // The deposed leader, still believing it leads term 3, re-registers as master.
    let out = t.register(
        reg("broker-a", "a:2", 0, 3, &[("TopicTest", 99)]),
        Some(2),
        T0 + 20,
    );
    assert_eq!(
        out,
        RegisterOutcome::Fenced {
            holder: "a:1".into(),
            holder_term: 4
        }
    );
    assert_eq!(
        t.route("TopicTest").unwrap().broker_datas[0].master_addr(),
        Some("a:1")
    );
    assert_eq!(
        t.route("TopicTest").unwrap().queue_datas[0].write_queue_nums,
        4,
        "fenced table ignored"
    );
    // ... and its liveness record was dropped, like Java does.
    assert_eq!(t.live_count(), 2);
}

#[test]
fn lower_term_claim_wins_once_the_holder_is_dead() {
    let mut t = RouteTable::new();
    t.register(reg("broker-a", "a:1", 0, 7, &[("T", 4)]), None, T0);
    // a:1 stops registering; past its timeout a lower term may claim id 0.
    let out = t.register(
        reg("broker-a", "a:2", 0, 5, &[("T", 4)]),
        None,
        T0 + 120_001,
    );
    assert_eq!(out, accepted());
    assert_eq!(addrs(&t, "broker-a"), vec![(0, "a:2".into())]);
}

#[test]
fn deposed_master_departure_keeps_the_new_master() {
    let mut t = RouteTable::new();
    three_nodes(&mut t);
    t.register(
        reg("broker-a", "a:1", 0, 4, &[("TopicTest", 4)]),
        Some(1),
        T0 + 10,
    );
    // Old leader's connection closes: its address holds no entry any more.
    assert_eq!(t.connection_closed(2), vec!["a:2".to_string()]);
    assert_eq!(
        addrs(&t, "broker-a"),
        vec![(0, "a:1".into()), (3, "a:3".into())]
    );
    assert!(t.route("TopicTest").is_some());
}

#[test]
fn connection_close_drops_only_the_nodes_of_that_connection() {
    let mut t = RouteTable::new();
    three_nodes(&mut t);
    // a:3 reconnected: its newest registration came on conn 30.
    t.register(reg("broker-a", "a:3", 3, 3, &[]), Some(30), T0 + 5);
    assert!(
        t.connection_closed(3).is_empty(),
        "stale connection of a re-registered node"
    );
    assert_eq!(t.connection_closed(30), vec!["a:3".to_string()]);
    assert_eq!(t.live_count(), 2);
}

#[test]
fn master_loss_keeps_followers_and_queue_data() {
    let mut t = RouteTable::new();
    three_nodes(&mut t);
    t.unregister("DefaultCluster", "broker-a", "a:2");
    let route = t.route("TopicTest").unwrap();
    assert_eq!(route.broker_datas[0].master_addr(), None);
    assert_eq!(route.broker_datas[0].broker_addrs.len(), 2);
}

#[test]
fn last_node_gone_removes_group_cluster_and_topics() {
    let mut t = RouteTable::new();
    three_nodes(&mut t);
    t.register(
        reg("broker-b", "b:1", 0, 1, &[("TopicTest", 2), ("OnlyB", 1)]),
        None,
        T0,
    );
    for a in ["a:1", "a:2", "a:3"] {
        t.unregister("DefaultCluster", "broker-a", a);
    }
    let ci = t.cluster_info();
    assert!(!ci.broker_addr_table.contains_key("broker-a"));
    assert_eq!(ci.cluster_addr_table["DefaultCluster"].len(), 1);
    assert_eq!(t.route("TopicTest").unwrap().queue_datas.len(), 1);
    t.unregister("DefaultCluster", "broker-b", "b:1");
    assert!(t.cluster_info().cluster_addr_table.is_empty());
    assert!(t.topic_names().is_empty());
}

#[test]
fn several_groups_serve_one_topic() {
    let mut t = RouteTable::new();
    three_nodes(&mut t);
    t.register(reg("broker-b", "b:1", 0, 9, &[("TopicTest", 2)]), None, T0);
    let route = t.route("TopicTest").unwrap();
    let names: Vec<_> = route
        .queue_datas
        .iter()
        .map(|q| q.broker_name.as_str())
        .collect();
    assert_eq!(names, vec!["broker-a", "broker-b"]);
    assert_eq!(route.broker_datas.len(), 2);
    assert_eq!(route.broker_datas[1].master_addr(), Some("b:1"));
}

#[test]
fn topic_deletion_whole_and_per_cluster() {
    let mut t = RouteTable::new();
    three_nodes(&mut t);
    let mut other = reg("broker-c", "c:1", 0, 1, &[("TopicTest", 2)]);
    other.cluster = "OtherCluster".into();
    t.register(other, None, T0);
    t.delete_topic("TopicTest", Some("OtherCluster"));
    let route = t.route("TopicTest").unwrap();
    assert_eq!(route.queue_datas.len(), 1);
    assert_eq!(route.queue_datas[0].broker_name, "broker-a");
    t.delete_topic("TopicTest", Some(" "));
    assert!(t.route("TopicTest").is_none());
    t.delete_topic("Missing", Some("DefaultCluster"));
}

#[test]
fn custom_timeout_is_honoured() {
    let mut t = RouteTable::new();
    let mut r = reg("broker-a", "a:1", 0, 1, &[("T", 1)]);
    r.timeout_ms = Some(10_000);
    t.register(r, None, T0);
    assert!(t.scan_expired(T0 + 10_000).is_empty());
    assert_eq!(t.scan_expired(T0 + 10_001), vec!["a:1".to_string()]);
    assert!(t.route("T").is_none());
}
