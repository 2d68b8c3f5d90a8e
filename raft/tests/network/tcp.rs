//! Client and server over real TCP: pipelining, ordering, deadlines, dead and silent peers,
//! reconnects, the filter, custom RPCs, bad input on the socket.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use openraft::error::{Fatal, RPCError, RaftError};
use openraft::network::RaftNetwork;
use openraft::raft::AppendEntriesResponse;
use openraft::Vote;
use raftmq_raft::network::client::SILENT_CONNECTION_MAX;
use raftmq_raft::network::wire::{Frame, Hello, Kind, RpcRequest, RpcResponse, PROTOCOL_VERSION};
use raftmq_raft::network::{
    NetworkFactory, NetworkFilter, NoCustomRpc, RpcError, RpcKind, DEFAULT_GROUP,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::support::*;

#[tokio::test]
async fn a_search_for_the_matching_point_probes_without_entries() {
    let raft = FakeRaft::default();
    let server = Server::start(raft.clone(), Arc::new(NoCustomRpc)).await;
    let net = NetworkFactory::new(1, NetworkFilter::new());
    let mut c = raft_client(&net, 2, server.addr).await;
    let mut req = append(0);
    req.prev_log_id = Some(log_id(1, 40));
    req.entries[0].log_id = log_id(1, 41);
    // Nothing confirmed yet: the follower is asked whether it holds the batch's last entry
    // (the fake says yes), and the batch is not sent.
    assert_eq!(
        c.append_entries(req, opt(TTL)).await.unwrap(),
        AppendEntriesResponse::Success
    );
    // The next batch starts at what it confirmed: sent as usual.
    let mut req = append(0);
    req.prev_log_id = Some(log_id(1, 41));
    req.entries[0].log_id = log_id(1, 42);
    assert_eq!(
        c.append_entries(req, opt(TTL)).await.unwrap(),
        AppendEntriesResponse::Success
    );
    assert_eq!(*raft.entry_counts.lock().unwrap(), vec![0, 1]);
    server.stop().await;
}

#[tokio::test]
async fn a_node_of_another_group_or_the_wrong_node_is_refused() {
    let raft = FakeRaft::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let identity = raftmq_raft::network::Identity::node("RaftNode00", 2);
    let server = Server::as_node(listener, raft.clone(), Arc::new(NoCustomRpc), identity);
    // Another group reaching this port (reused, or a wrong dLegerPeers entry).
    let other = NetworkFactory::in_group(1, "RaftNode01", NetworkFilter::new());
    let mut c = raft_client(&other, 2, server.addr).await;
    assert!(c.vote(vote(3), opt(TTL)).await.is_err());
    // The right group, but this address is not node 3's.
    let same = NetworkFactory::in_group(1, "RaftNode00", NetworkFilter::new());
    let mut c = raft_client(&same, 3, server.addr).await;
    assert!(c.vote(vote(3), opt(TTL)).await.is_err());
    assert!(raft.appends.lock().unwrap().is_empty());
    // The node it is.
    let mut c = raft_client(&same, 2, server.addr).await;
    assert!(c.vote(vote(3), opt(TTL)).await.unwrap().vote_granted);
    server.stop().await;
}

#[tokio::test]
async fn raft_rpcs_round_trip_and_remote_errors_map_to_remote_error() {
    let raft = FakeRaft::default();
    let server = Server::start(raft.clone(), Arc::new(NoCustomRpc)).await;
    let net = NetworkFactory::new(1, NetworkFilter::new());
    let mut c = raft_client(&net, 2, server.addr).await;

    assert_eq!(
        c.append_entries(append(5), opt(TTL)).await.unwrap(),
        AppendEntriesResponse::Success
    );
    let v = c.vote(vote(3), opt(TTL)).await.unwrap();
    assert!(v.vote_granted);
    assert_eq!(v.vote, Vote::new(3, 1));
    c.install_snapshot(chunk(0, b"abc", false), opt(TTL))
        .await
        .unwrap();
    c.install_snapshot(chunk(3, b"def", true), opt(TTL))
        .await
        .unwrap();
    assert_eq!(*raft.snapshot.lock().unwrap(), b"abcdef");
    assert_eq!(*raft.appends.lock().unwrap(), vec![5]);

    match c.vote(vote(FAILING_TERM), opt(TTL)).await {
        Err(RPCError::RemoteError(e)) => {
            assert_eq!(e.target, 2);
            assert_eq!(e.source, RaftError::Fatal(Fatal::Stopped));
        }
        other => panic!("expected a remote error, got {other:?}"),
    }
    // NoCustomRpc answers custom calls with a handler error.
    assert!(matches!(
        c.call_custom(Bytes::from_static(b"x"), TTL).await,
        Err(RpcError::Handler { target: 2, .. })
    ));
    assert_eq!(
        net.connections_opened(),
        1,
        "all calls shared one connection"
    );
    server.stop().await;
}

#[tokio::test]
async fn custom_rpcs_round_trip_and_carry_handler_errors() {
    let server = Server::start(FakeRaft::default(), Custom::new(0)).await;
    let net = NetworkFactory::new(1, NetworkFilter::new());
    let addr = server.addr.to_string();

    let body = Bytes::from_static(&[ECHO, 1, 2, 3]);
    assert_eq!(
        net.call_custom(2, &addr, body.clone(), TTL).await.unwrap(),
        body
    );
    match net
        .call_custom(2, &addr, Bytes::from_static(&[FAIL]), TTL)
        .await
    {
        Err(RpcError::Handler { target: 2, reason }) => assert_eq!(reason, "asked to fail"),
        other => panic!("expected a handler error, got {other:?}"),
    }
    match net
        .call_custom(2, &addr, Bytes::from_static(&[PANIC]), TTL)
        .await
    {
        Err(RpcError::Rejected { reason, .. }) => assert!(reason.contains("panicked")),
        other => panic!("expected a rejection, got {other:?}"),
    }
    // The connection survived all of that.
    assert_eq!(
        net.call_custom(2, &addr, body.clone(), TTL).await.unwrap(),
        body
    );
    assert_eq!(net.connections_opened(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_calls_on_one_connection_complete_out_of_order() {
    let custom = Custom::new(3);
    let server = Server::start(FakeRaft::default(), custom.clone()).await;
    let net = NetworkFactory::new(1, NetworkFilter::new());
    let client = net.client(2, &server.addr.to_string());
    client
        .call_custom(Bytes::from_static(&[ECHO]), TTL)
        .await
        .unwrap();

    let calls: Vec<JoinHandle<Result<Bytes, RpcError>>> = (0..3u8)
        .map(|gate| {
            let c = client.clone();
            tokio::spawn(async move { c.call_custom(Bytes::from(vec![GATED, gate]), TTL).await })
        })
        .collect();
    // All three are outstanding on the one connection at once.
    custom.wait_started(3).await;
    let mut calls = calls.into_iter().map(Some).collect::<Vec<_>>();
    for gate in [2usize, 0, 1] {
        custom.open(gate);
        let done = calls[gate].take().unwrap();
        let body = tokio::time::timeout(WAIT, done)
            .await
            .expect("released call did not finish")
            .unwrap()
            .unwrap();
        assert_eq!(&body[..], &[GATED, gate as u8]);
        for (other, c) in calls.iter().enumerate() {
            if let Some(c) = c {
                assert!(
                    !c.is_finished(),
                    "call {other} finished before its gate opened"
                );
            }
        }
    }
    assert_eq!(net.connections_opened(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_appends_run_in_send_order() {
    let raft = FakeRaft::default();
    let server = Server::start(raft.clone(), Arc::new(NoCustomRpc)).await;
    let net = NetworkFactory::new(1, NetworkFilter::new());
    let client = raft_client(&net, 2, server.addr).await;
    client
        .clone()
        .append_entries(append(0), opt(TTL))
        .await
        .unwrap();

    // join_all polls in order, so the frames are queued on the connection in order 1..=24 (join_all stays in its in-order polling mode below 30 futures).
    let calls = (1..=24).map(|i| {
        let mut c = client.clone();
        async move { c.append_entries(append(i), opt(TTL)).await }
    });
    for r in futures::future::join_all(calls).await {
        assert_eq!(r.unwrap(), AppendEntriesResponse::Success);
    }
    assert_eq!(
        *raft.appends.lock().unwrap(),
        (0..=24).collect::<Vec<u64>>()
    );
    assert_eq!(net.connections_opened(), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_call_past_its_deadline_times_out_and_the_connection_stays_usable() {
    let server = Server::start(FakeRaft::default(), Custom::new(0)).await;
    let net = NetworkFactory::new(1, NetworkFilter::new());
    let client = net.client(2, &server.addr.to_string());
    client
        .call_custom(Bytes::from_static(&[ECHO]), TTL)
        .await
        .unwrap();

    let ttl = Duration::from_millis(200);
    let started = Instant::now();
    let r = client.call_custom(Bytes::from_static(&[NEVER]), ttl).await;
    assert_eq!(
        r,
        Err(RpcError::Timeout {
            target: 2,
            after: ttl
        })
    );
    assert!(
        started.elapsed() < ttl + Duration::from_secs(1),
        "timeout honoured the deadline"
    );

    assert_eq!(
        client
            .call_custom(Bytes::from_static(&[ECHO, 9]), TTL)
            .await
            .unwrap(),
        &[ECHO, 9][..]
    );
    assert_eq!(net.connections_opened(), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_dead_peer_is_unreachable_at_once_and_openraft_backs_off() {
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let net = NetworkFactory::new(1, NetworkFilter::new());
    let mut c = raft_client(&net, 2, addr).await;
    for _ in 0..3 {
        let started = Instant::now();
        let r = c.vote(vote(2), opt(TTL)).await;
        assert!(matches!(r, Err(RPCError::Unreachable(_))), "got {r:?}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "failed fast, well within the 5 s deadline"
        );
    }
    let steps: Vec<Duration> = c.backoff().take(8).collect();
    assert_eq!(steps[0], Duration::from_millis(50));
    assert!(
        steps.windows(2).all(|w| w[0] <= w[1]),
        "backoff grows: {steps:?}"
    );
    assert_eq!(
        *steps.last().unwrap(),
        Duration::from_secs(1),
        "backoff is capped"
    );
    assert_eq!(net.connections_opened(), 0);
}

#[tokio::test]
async fn a_silent_peer_is_presumed_dead_and_the_connection_replaced() {
    // Never accepted: the kernel completes the handshake, nothing ever answers.
    let hole = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let net = NetworkFactory::new(1, NetworkFilter::new());
    let client = net.client(2, &hole.local_addr().unwrap().to_string());
    let started = Instant::now();
    let ttl = Duration::from_millis(200);
    eventually(WAIT, "a replacement connection", || {
        let (c, net) = (client.clone(), net.clone());
        async move {
            assert!(c
                .call_custom(Bytes::from_static(&[ECHO]), ttl)
                .await
                .is_err());
            (net.connections_opened() >= 2).then_some(())
        }
    })
    .await;
    assert!(
        started.elapsed() >= SILENT_CONNECTION_MAX,
        "not replaced before it was silent that long"
    );
}

#[tokio::test]
async fn reconnects_after_the_server_restarts() {
    let raft = FakeRaft::default();
    let server = Server::start(raft.clone(), Arc::new(NoCustomRpc)).await;
    let addr = server.addr;
    let net = NetworkFactory::new(1, NetworkFilter::new());
    let mut c = raft_client(&net, 2, addr).await;
    c.vote(vote(2), opt(TTL)).await.unwrap();

    server.stop().await;
    let err = c.vote(vote(2), opt(TTL)).await.unwrap_err();
    assert!(
        matches!(err, RPCError::Unreachable(_) | RPCError::Network(_)),
        "got {err:?}"
    );

    let listener = TcpListener::bind(addr).await.unwrap();
    let server = Server::on(listener, raft.clone(), Arc::new(NoCustomRpc));
    let granted = eventually(WAIT, "a vote after the restart", || {
        let mut c = c.clone();
        async move { c.vote(vote(2), opt(TTL)).await.ok() }
    })
    .await;
    assert!(granted.vote_granted);
    assert_eq!(net.connections_opened(), 2);
    server.stop().await;
}

#[tokio::test]
async fn the_filter_drops_by_pair_node_and_kind_then_heals() {
    let raft = FakeRaft::default();
    let server = Server::start(raft.clone(), Arc::new(NoCustomRpc)).await;
    let filter = NetworkFilter::new();
    let net = NetworkFactory::new(1, filter.clone());
    let mut c = raft_client(&net, 2, server.addr).await;
    let votes = || raft.votes.load(Ordering::SeqCst);

    c.vote(vote(2), opt(TTL)).await.unwrap();
    assert_eq!(votes(), 1);

    // Request direction 1 -> 2 blocked: nothing reaches node 2; openraft sees Unreachable.
    filter.block(1, 2);
    assert!(matches!(
        c.vote(vote(2), opt(TTL)).await,
        Err(RPCError::Unreachable(_))
    ));
    assert_eq!(votes(), 1);
    filter.heal();
    c.vote(vote(2), opt(TTL)).await.unwrap();
    assert_eq!(votes(), 2);

    // Response direction 2 -> 1 blocked: node 2 runs the request, the caller never hears back.
    filter.block(2, 1);
    match c.call(RpcRequest::Vote(vote(2)), TTL).await {
        Err(RpcError::Dropped {
            from: 2,
            to: 1,
            kind: RpcKind::Vote,
        }) => {}
        other => panic!("expected a dropped response, got {other:?}"),
    }
    assert_eq!(votes(), 3);
    filter.heal();

    filter.isolate(2);
    assert!(c.append_entries(append(1), opt(TTL)).await.is_err());
    filter.rejoin(2);
    c.append_entries(append(1), opt(TTL)).await.unwrap();

    // Only votes dropped: appends still flow.
    filter.drop_kind(RpcKind::Vote);
    assert!(matches!(
        c.vote(vote(2), opt(TTL)).await,
        Err(RPCError::Unreachable(_))
    ));
    c.append_entries(append(2), opt(TTL)).await.unwrap();
    filter.heal();

    // Only appends 1 -> 2 dropped: votes still flow.
    filter.drop_kind_between(1, 2, RpcKind::AppendEntries);
    assert!(matches!(
        c.append_entries(append(3), opt(TTL)).await,
        Err(RPCError::Unreachable(_))
    ));
    c.vote(vote(2), opt(TTL)).await.unwrap();
    filter.heal();
    c.append_entries(append(3), opt(TTL)).await.unwrap();

    assert_eq!(filter.dropped(), 5);
    assert_eq!(*raft.appends.lock().unwrap(), vec![1, 2, 3]);
    server.stop().await;
}

/// Opens a raw connection and says hello.
async fn raw_connection(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        &Hello {
            version: PROTOCOL_VERSION,
            from: 7,
            to: 1,
            group: DEFAULT_GROUP.to_owned(),
        }
        .encode()
        .unwrap(),
    )
    .await
    .unwrap();
    s
}

async fn read_frame(s: &mut TcpStream) -> Frame {
    let mut len = [0u8; 4];
    tokio::time::timeout(WAIT, s.read_exact(&mut len))
        .await
        .unwrap()
        .unwrap();
    let mut rest = vec![0u8; u32::from_be_bytes(len) as usize];
    tokio::time::timeout(WAIT, s.read_exact(&mut rest))
        .await
        .unwrap()
        .unwrap();
    frame_of([len.to_vec(), rest].concat())
}

#[tokio::test]
async fn unknown_kinds_and_bad_bodies_get_an_error_response_on_a_live_connection() {
    let server = Server::start(FakeRaft::default(), Custom::new(0)).await;
    let mut s = raw_connection(server.addr).await;

    s.write_all(&[0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 7, 0x42])
        .await
        .unwrap();
    let f = read_frame(&mut s).await;
    assert_eq!(
        (f.request_id, Kind::from_code(f.kind)),
        (7, Some(Kind::ErrorResponse))
    );

    // A Vote frame whose body is garbage.
    s.write_all(&[
        0,
        0,
        0,
        11,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        8,
        Kind::Vote.code(),
        0xFF,
        0xFF,
    ])
    .await
    .unwrap();
    let f = read_frame(&mut s).await;
    assert_eq!(
        (f.request_id, Kind::from_code(f.kind)),
        (8, Some(Kind::ErrorResponse))
    );

    s.write_all(
        &RpcRequest::Custom(Bytes::from_static(&[ECHO, 5]))
            .encode(9)
            .unwrap(),
    )
    .await
    .unwrap();
    let f = read_frame(&mut s).await;
    assert_eq!(f.request_id, 9);
    match RpcResponse::decode(&f).unwrap() {
        RpcResponse::Custom(Ok(b)) => assert_eq!(&b[..], &[ECHO, 5]),
        other => panic!("expected an echo, got {other:?}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn a_garbage_stream_closes_only_its_own_connection() {
    let server = Server::start(FakeRaft::default(), Custom::new(0)).await;
    let net = NetworkFactory::new(1, NetworkFilter::new());
    let client = net.client(2, &server.addr.to_string());
    client
        .call_custom(Bytes::from_static(&[ECHO]), TTL)
        .await
        .unwrap();

    // An oversized length prefix after the hello.
    let mut bad = raw_connection(server.addr).await;
    bad.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    let mut byte = [0u8; 1];
    let n = tokio::time::timeout(WAIT, bad.read(&mut byte))
        .await
        .expect("server did not close")
        .unwrap_or(0);
    assert_eq!(n, 0, "server closed the connection");

    // No hello at all: garbage first frame.
    let mut bad = TcpStream::connect(server.addr).await.unwrap();
    bad.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let n = tokio::time::timeout(WAIT, bad.read(&mut byte))
        .await
        .expect("server did not close")
        .unwrap_or(0);
    assert_eq!(n, 0);

    assert_eq!(
        client
            .call_custom(Bytes::from_static(&[ECHO, 1]), TTL)
            .await
            .unwrap(),
        &[ECHO, 1][..]
    );
    assert_eq!(net.connections_opened(), 1);
    server.stop().await;
}
