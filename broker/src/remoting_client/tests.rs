//! The remoting client against tiny fake servers on 127.0.0.1:0.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use raftmq_protocol::codes::ResponseCode;
use raftmq_protocol::{decode_frame, encode_frame, Decoded, RemotingCommand, StrMap};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

const LONG: Duration = Duration::from_secs(10);

async fn listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    (l, addr)
}

/// Reads `n` frames from `stream`.
async fn read_frames(stream: &mut TcpStream, buf: &mut BytesMut, n: usize) -> Vec<RemotingCommand> {
    let mut out = Vec::new();
    while out.len() < n {
        if let Decoded::Frame { command, consumed } = decode_frame(buf).unwrap() {
            buf.advance(consumed);
            out.push(command);
            continue;
        }
        assert!(stream.read_buf(buf).await.unwrap() > 0, "client closed");
    }
    out
}

fn answer(req: &RemotingCommand, remark: &str) -> Vec<u8> {
    encode_frame(&RemotingCommand::response_to(req, ResponseCode::Success).with_remark(remark))
        .unwrap()
}

fn req(code: i32) -> RemotingCommand {
    RemotingCommand::request(code, StrMap::new())
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < LONG, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn pipelined_calls_matched_by_opaque_when_answered_out_of_order() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = BytesMut::new();
        // All three requests arrive before any answer: the client pipelines.
        let reqs = read_frames(&mut s, &mut buf, 3).await;
        for r in reqs.iter().rev() {
            s.write_all(&answer(r, &format!("for code {}", r.code)))
                .await
                .unwrap();
        }
        // One connection served everything.
        let extra = tokio::time::timeout(Duration::from_millis(100), l.accept()).await;
        assert!(extra.is_err(), "a second connection was opened");
    });
    let client = RemotingClient::default();
    let (a, b, c) = tokio::join!(
        client.call(&addr, req(101), LONG),
        client.call(&addr, req(102), LONG),
        client.call(&addr, req(103), LONG),
    );
    for (resp, code) in [(a, 101), (b, 102), (c, 103)] {
        let resp = resp.unwrap();
        assert!(resp.is_response());
        assert_eq!(resp.remark.as_deref(), Some(&*format!("for code {code}")));
    }
    server.await.unwrap();
}

#[tokio::test]
async fn deadline_bounds_a_call_and_the_connection_survives() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = BytesMut::new();
        // Ignore the first request; answer the second; then the late answer to the first.
        let first = read_frames(&mut s, &mut buf, 1).await.remove(0);
        let second = read_frames(&mut s, &mut buf, 1).await.remove(0);
        s.write_all(&answer(&second, "second")).await.unwrap();
        s.write_all(&answer(&first, "late")).await.unwrap();
        read_frames(&mut s, &mut buf, 1).await.remove(0)
    });
    let client = RemotingClient::default();
    let start = Instant::now();
    let err = client
        .call(&addr, req(1), Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Timeout { code: 1, .. }), "{err}");
    assert!(start.elapsed() < Duration::from_secs(2));
    let resp = client.call(&addr, req(2), LONG).await.unwrap();
    assert_eq!(resp.remark.as_deref(), Some("second"));
    // The late answer was dropped; the connection still works.
    client.send_oneway(&addr, req(3), LONG).await.unwrap();
    let oneway = server.await.unwrap();
    assert_eq!(oneway.code, 3);
    assert!(oneway.is_oneway());
    assert!(client.is_connected(&addr));
}

#[tokio::test]
async fn closed_connection_fails_pending_calls_at_once_then_reconnects() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        // First connection: read one request, then hang up without answering.
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = BytesMut::new();
        read_frames(&mut s, &mut buf, 1).await;
        drop(s);
        // Second connection: answer.
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = BytesMut::new();
        let r = read_frames(&mut s, &mut buf, 1).await.remove(0);
        s.write_all(&answer(&r, "again")).await.unwrap();
        // Keep the connection open until the client is done.
        let _ = s.read_buf(&mut buf).await;
    });
    let client = RemotingClient::default();
    let start = Instant::now();
    let err = client.call(&addr, req(7), LONG).await.unwrap_err();
    assert!(matches!(err, ClientError::ConnectionClosed { .. }), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "failed only at the deadline"
    );
    wait_until("the close to be noticed", || !client.is_connected(&addr)).await;
    let resp = client.call(&addr, req(8), LONG).await.unwrap();
    assert_eq!(resp.remark.as_deref(), Some("again"));
    drop(client);
    server.await.unwrap();
}

#[tokio::test]
async fn malformed_frame_closes_the_connection_and_fails_the_call() {
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = BytesMut::new();
        read_frames(&mut s, &mut buf, 1).await;
        // Negative frame length.
        s.write_all(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0])
            .await
            .unwrap();
        let _ = s.read_buf(&mut buf).await;
    });
    let client = RemotingClient::default();
    let err = client.call(&addr, req(9), LONG).await.unwrap_err();
    assert!(matches!(err, ClientError::ConnectionClosed { .. }), "{err}");
}

#[tokio::test]
async fn refused_connection_is_a_connect_error() {
    let (l, addr) = listener().await;
    drop(l);
    let client = RemotingClient::new(Duration::from_secs(1));
    let err = client.call(&addr, req(1), LONG).await.unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err}");
}
