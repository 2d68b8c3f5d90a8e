#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The admin client against scripted servers on 127.0.0.1:0 (no server code of the
//! project): each answers every request with what its handler returns.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use raftmq_protocol::body::{encode_json, BrokerData, QueueData};
use raftmq_protocol::headers::{
    PullMessageRequestHeader, SendMessageRequestHeaderV2, SendMessageResponseHeader,
};
use raftmq_protocol::message::decode_properties;
use tokio::net::TcpListener;

use super::*;
use crate::route::MessageQueue;

use crate::test_support::fake;

/// An address nothing listens on.
async fn dead_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().to_string()
}

fn ok(req: &RemotingCommand) -> RemotingCommand {
    RemotingCommand::response_to(req, ResponseCode::Success)
}

fn cluster_info(groups: &[(&str, Option<&str>)]) -> ClusterInfo {
    ClusterInfo {
        broker_addr_table: groups
            .iter()
            .map(|(name, master)| {
                let mut b = BrokerData::new("C", *name);
                if let Some(m) = master {
                    b.broker_addrs.insert(0, (*m).to_owned());
                }
                b.broker_addrs.insert(2, format!("{name}-follower:1"));
                ((*name).to_owned(), b)
            })
            .collect(),
        cluster_addr_table: BTreeMap::from([(
            "C".to_owned(),
            groups
                .iter()
                .map(|(n, _)| (*n).to_owned())
                .collect::<BTreeSet<_>>(),
        )]),
    }
}

#[tokio::test]
async fn namesrvs_are_tried_in_turn_and_answers_are_checked() {
    let info = cluster_info(&[("a", Some("a:1"))]);
    let body = encode_json(&info);
    let good = fake(move |req| match RequestCode::from_code(req.code) {
        Some(RequestCode::GetBrokerClusterInfo) => ok(req).with_body(body.clone()),
        Some(RequestCode::GetRouteinfoByTopic) => RemotingCommand::error_to(
            req,
            ResponseCode::TopicNotExist,
            "No topic route info in name server for the topic: T",
        ),
        // A body that is not JSON.
        _ => ok(req).with_body(&b"{not json"[..]),
    })
    .await;
    let dead = dead_addr().await;
    let admin = AdminClient::new(vec![dead.clone(), good.clone()]).unwrap();
    // Whichever the rotation starts with, the live one answers.
    for _ in 0..3 {
        assert_eq!(admin.cluster_info().await.unwrap(), info);
    }
    let e = admin.topic_route("T").await.unwrap_err();
    assert!(
        matches!(&e, ClientError::Broker { code: 17, remark, .. } if remark.contains("No topic route")),
        "{e:?}"
    );
    let e = admin.topic_list().await.unwrap_err();
    assert!(
        matches!(&e, ClientError::BadAnswer(m) if m.contains(&good)),
        "{e:?}"
    );

    let all_dead = AdminClient::new(vec![dead]).unwrap();
    assert!(matches!(
        all_dead.cluster_info().await.unwrap_err(),
        ClientError::Connect { .. }
    ));
    assert_eq!(
        AdminClient::new(vec![]).unwrap_err(),
        ClientError::NoNamesrv
    );
}

#[tokio::test]
async fn cluster_masters_name_missing_clusters_and_electing_groups() {
    let info = cluster_info(&[("b", None), ("a", Some("a:1"))]);
    let groups = cluster_masters(&info, "C").unwrap();
    assert_eq!(
        groups,
        vec![
            GroupMaster {
                broker_name: "a".into(),
                master: Some("a:1".into())
            },
            GroupMaster {
                broker_name: "b".into(),
                master: None
            },
        ]
    );
    let e = cluster_masters(&info, "Nope").unwrap_err().to_string();
    assert!(
        e.contains("no cluster named Nope") && e.contains("C"),
        "{e}"
    );

    let body = encode_json(&info);
    let ns = fake(move |req| ok(req).with_body(body.clone())).await;
    let admin = AdminClient::new(vec![ns]).unwrap();
    let e = admin
        .create_topic_in_cluster("C", &TopicConfig::new("T", 4))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("broker group b") && e.contains("no master"),
        "{e}"
    );
    let e = admin.group_master("zz").await.unwrap_err().to_string();
    assert!(e.contains("no broker group named zz"), "{e}");
}

#[test]
fn leader_hints_are_read_from_not_leader_remarks() {
    assert_eq!(
        leader_hint("broker busy; not the leader, leader is 127.0.0.1:30912 (raft node 1)"),
        Some("127.0.0.1:30912")
    );
    assert_eq!(leader_hint("x; not the leader, no leader known"), None);
    assert_eq!(
        leader_hint("x; not the leader, raft leader is node 2 (raft address 1.2.3.4:40913)"),
        None,
        "a raft address is not a client address"
    );
    assert_eq!(leader_hint(""), None);
}

#[tokio::test]
async fn leader_transfer_follows_the_leader_named_by_a_follower() {
    let leader = fake(|req| {
        assert_eq!(req.ext_fields.get("targetId"), Some("n2"));
        ok(req).with_remark("leadership transferred to node 2")
    })
    .await;
    let hint = leader.clone();
    let follower = fake(move |req| {
        RemotingCommand::error_to(
            req,
            ResponseCode::SystemBusy,
            format!("not the leader; not the leader, leader is {hint} (raft node 0)"),
        )
    })
    .await;
    let admin = AdminClient::new(vec![dead_addr().await]).unwrap();
    let t = admin.leader_transfer(&follower, Some("n2")).await.unwrap();
    assert_eq!(t.addr, leader);
    assert_eq!(t.remark, "leadership transferred to node 2");

    // A follower that does not know the leader's client address: the NameServers do.
    let unsure = fake(|req| {
        RemotingCommand::error_to(
            req,
            ResponseCode::SystemBusy,
            "busy; not the leader, raft leader is node 2 (raft address 127.0.0.1:1)",
        )
    })
    .await;
    let mut info = cluster_info(&[("g", Some(leader.as_str()))]);
    info.broker_addr_table
        .get_mut("g")
        .unwrap()
        .broker_addrs
        .insert(1, unsure.clone());
    let body = encode_json(&info);
    let ns = fake(move |req| ok(req).with_body(body.clone())).await;
    let with_ns = AdminClient::new(vec![ns]).unwrap();
    let t = with_ns.leader_transfer(&unsure, Some("n2")).await.unwrap();
    assert_eq!(t.addr, leader);
    let e = admin
        .leader_transfer(&unsure, Some("n2"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, ClientError::Broker { code: 2, .. }),
        "no NameServer: {e:?}"
    );

    let refusing = fake(|req| {
        RemotingCommand::error_to(
            req,
            ResponseCode::InvalidParameter,
            "targetId n9 is not a member",
        )
    })
    .await;
    let e = admin
        .leader_transfer(&refusing, Some("n9"))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ClientError::Broker { code: 29, remark, .. } if remark.contains("n9")),
        "{e:?}"
    );
}

fn route(groups: &[(&str, &str)]) -> TopicRouteData {
    TopicRouteData {
        broker_datas: groups
            .iter()
            .map(|(name, master)| BrokerData {
                broker_name: (*name).to_owned(),
                cluster: "C".into(),
                broker_addrs: BTreeMap::from([(0, (*master).to_owned())]),
                ..Default::default()
            })
            .collect(),
        queue_datas: groups
            .iter()
            .map(|(name, _)| QueueData {
                broker_name: (*name).to_owned(),
                read_queue_nums: 2,
                write_queue_nums: 2,
                perm: 6,
                topic_sys_flag: 0,
            })
            .collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_busy_master_makes_the_send_retry_on_another_group_with_the_same_uniq_key() {
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let busy_seen = seen.clone();
    let busy = fake(move |req| {
        let h: SendMessageRequestHeaderV2 = req.header().unwrap();
        let props = decode_properties(h.i.as_deref().unwrap());
        busy_seen
            .lock()
            .unwrap()
            .push(("busy".into(), props.get("UNIQ_KEY").unwrap().to_owned()));
        RemotingCommand::error_to(req, ResponseCode::SystemBusy, "not the leader")
    })
    .await;
    let good_seen = seen.clone();
    let good = fake(move |req| {
        let h: SendMessageRequestHeaderV2 = req.header().unwrap();
        let props = decode_properties(h.i.as_deref().unwrap());
        assert_eq!(props.get("TAGS"), Some("tagA"));
        assert_eq!(props.get("KEYS"), Some("k1"));
        assert_eq!(&req.body[..], b"hello");
        good_seen
            .lock()
            .unwrap()
            .push(("good".into(), props.get("UNIQ_KEY").unwrap().to_owned()));
        ok(req).with_header(&SendMessageResponseHeader {
            msg_id: "OFFSETID".into(),
            queue_id: h.e,
            queue_offset: 7,
            msg_region: "DefaultRegion".into(),
            trace_on: "true".into(),
            ..Default::default()
        })
    })
    .await;
    let body = encode_json(&route(&[("busy", &busy), ("good", &good)]));
    let ns = fake(move |req| ok(req).with_body(body.clone())).await;
    let admin = AdminClient::new(vec![ns]).unwrap();
    let msg = SendRequest {
        topic: "T".into(),
        body: Bytes::from_static(b"hello"),
        tags: Some("tagA".into()),
        keys: Some("k1".into()),
        ..Default::default()
    };
    // Whichever queue the round robin starts at, every send ends on the good group.
    for _ in 0..3 {
        seen.lock().unwrap().clear();
        let out = admin.send_message(&msg).await.unwrap();
        assert_eq!(out.broker_name, "good");
        assert_eq!(out.addr, good);
        assert_eq!(
            (out.queue_offset, out.offset_msg_id.as_str()),
            (7, "OFFSETID")
        );
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.last().unwrap().0, "good");
        assert!(seen.iter().all(|(_, k)| *k == out.msg_id), "{seen:?}");
        assert!(seen.len() <= 2, "one failure at most: {seen:?}");
    }
    // A fixed queue is not moved elsewhere.
    let fixed = SendRequest {
        broker_name: Some("busy".into()),
        queue_id: Some(1),
        ..msg.clone()
    };
    let e = admin.send_message(&fixed).await.unwrap_err();
    assert!(matches!(e, ClientError::Broker { code: 2, .. }), "{e:?}");
    let bad = SendRequest {
        queue_id: Some(1),
        ..msg
    };
    assert!(matches!(
        admin.send_message(&bad).await.unwrap_err(),
        ClientError::InvalidArgument(_)
    ));
}

#[tokio::test]
async fn pulls_map_codes_and_reject_garbage_bodies() {
    use raftmq_protocol::headers::PullMessageResponseHeader;
    let broker = fake(|req| {
        let h: PullMessageRequestHeader = req.header().unwrap();
        assert_eq!(h.subscription.as_deref(), Some("*"));
        assert_eq!(h.sys_flag & 1, 0, "never commits");
        let header = PullMessageResponseHeader {
            next_begin_offset: h.queue_offset,
            min_offset: 0,
            max_offset: 3,
            ..Default::default()
        };
        match h.queue_offset {
            0 => ok(req)
                .with_header(&header)
                .with_body(&b"\x00\x00\x00\x10garbage"[..]),
            3 => RemotingCommand::error_to(req, ResponseCode::PullNotFound, "NO_NEW_MESSAGE")
                .with_header(&header),
            9 => RemotingCommand::error_to(req, ResponseCode::PullOffsetMoved, "OFFSET_MOVED")
                .with_header(&header),
            _ => RemotingCommand::error_to(req, ResponseCode::TopicNotExist, "topic[T] not exist"),
        }
    })
    .await;
    let admin = AdminClient::new(vec![dead_addr().await]).unwrap();
    let q = MessageQueue {
        topic: "T".into(),
        broker_name: "a".into(),
        queue_id: 0,
    };
    assert!(matches!(
        admin.pull(&broker, &q, 0, 1).await.unwrap_err(),
        ClientError::BadAnswer(_)
    ));
    let p = admin.pull(&broker, &q, 3, 1).await.unwrap();
    assert_eq!((p.status, p.max_offset), (PullStatus::NoNewMessage, 3));
    assert_eq!(
        admin.pull(&broker, &q, 9, 1).await.unwrap().status,
        PullStatus::OffsetIllegal
    );
    assert!(matches!(
        admin.pull(&broker, &q, 5, 1).await.unwrap_err(),
        ClientError::Broker { code: 17, .. }
    ));
    let e = admin.view_message("not an id").await.unwrap_err();
    assert!(matches!(e, ClientError::InvalidArgument(_)), "{e:?}");
}
