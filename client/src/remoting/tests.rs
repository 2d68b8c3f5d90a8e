#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Against a tiny scripted server on 127.0.0.1:0 (no server code of the project): request
//! code 1 = answer, paired out of order; 2 = never answer; 3 = close the connection;
//! 4 = answer and also send the client a request; 5 = answer with garbage.

use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use raftmq_protocol::codes::ResponseCode;
use raftmq_protocol::{decode_frame, encode_frame, Decoded, RemotingCommand, StrMap};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::*;

const T: Duration = Duration::from_secs(10);

async fn server() -> (String, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = BytesMut::new();
                let mut held: Option<RemotingCommand> = None;
                loop {
                    while let Ok(Decoded::Frame { command, consumed }) = decode_frame(&buf) {
                        buf.advance(consumed);
                        let answer = |r: &RemotingCommand| {
                            encode_frame(
                                &RemotingCommand::response_to(r, ResponseCode::Success)
                                    .with_remark(format!(
                                        "answer to {}",
                                        r.ext_fields.get("who").unwrap_or("?")
                                    )),
                            )
                            .unwrap()
                        };
                        match command.code {
                            1 => match held.take() {
                                // Answer the second first: responses out of order.
                                Some(first) => {
                                    s.write_all(&answer(&command)).await.unwrap();
                                    s.write_all(&answer(&first)).await.unwrap();
                                }
                                None => held = Some(command),
                            },
                            2 => {}
                            3 => return,
                            4 => {
                                s.write_all(&answer(&command)).await.unwrap();
                                let push = RemotingCommand::request(40, StrMap::new());
                                s.write_all(&encode_frame(&push).unwrap()).await.unwrap();
                            }
                            5 => {
                                s.write_all(&[0x7F, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0])
                                    .await
                                    .unwrap();
                            }
                            _ => {}
                        }
                    }
                    match s.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            });
        }
    });
    (addr, task)
}

fn req(code: i32) -> RemotingCommand {
    RemotingCommand::request(code, StrMap::new())
}

fn req_from(code: i32, who: &str) -> RemotingCommand {
    let mut ext = StrMap::new();
    ext.insert("who", who);
    RemotingCommand::request(code, ext)
}

#[tokio::test]
async fn pipelined_calls_get_their_own_answers_out_of_order() {
    let (addr, _s) = server().await;
    let pool = ConnectionPool::new(T, None);
    // The server holds the first request and answers the second before it.
    let (a, b) = tokio::join!(
        pool.call(&addr, req_from(1, "a"), T),
        pool.call(&addr, req_from(1, "b"), T)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a.is_response() && b.is_response());
    assert_eq!(a.remark.as_deref(), Some("answer to a"));
    assert_eq!(b.remark.as_deref(), Some("answer to b"));
    assert_ne!(a.opaque, b.opaque);
}

#[tokio::test]
async fn a_call_without_answer_times_out_and_the_connection_stays() {
    let (addr, _s) = server().await;
    let pool = ConnectionPool::new(T, None);
    let started = Instant::now();
    let e = pool
        .call(&addr, req(2), Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Timeout { code: 2, .. }), "{e}");
    assert!(started.elapsed() < T);
    assert!(!pool.get(&addr).await.unwrap().is_closed());
}

#[tokio::test]
async fn a_closed_connection_fails_pending_calls_and_is_replaced() {
    let (addr, _s) = server().await;
    let pool = ConnectionPool::new(T, None);
    let first = pool.get(&addr).await.unwrap();
    // A call waiting for an answer when the server closes is failed at once.
    let waiting = {
        let first = first.clone();
        tokio::spawn(async move { first.call(req(2), T).await })
    };
    pool.oneway(&addr, req(3)).await.unwrap();
    let e = tokio::time::timeout(T, waiting)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(matches!(e, ClientError::ConnectionClosed { .. }), "{e}");
    assert!(first.is_closed());
    // The next call opens a new connection.
    let (a, b) = tokio::join!(pool.call(&addr, req(1), T), pool.call(&addr, req(1), T));
    assert!(a.is_ok() && b.is_ok());
    assert!(!std::sync::Arc::ptr_eq(
        &first,
        &pool.get(&addr).await.unwrap()
    ));
}

#[tokio::test]
async fn server_requests_reach_the_handler_channel() {
    let (addr, _s) = server().await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let pool = ConnectionPool::new(T, Some(tx));
    pool.call(&addr, req(4), T).await.unwrap();
    let (from, pushed) = tokio::time::timeout(T, rx.recv()).await.unwrap().unwrap();
    assert_eq!((from, pushed.code), (addr, 40));
}

#[tokio::test]
async fn garbage_from_the_server_closes_the_connection() {
    let (addr, _s) = server().await;
    let pool = ConnectionPool::new(T, None);
    let e = pool.call(&addr, req(5), T).await.unwrap_err();
    assert!(matches!(e, ClientError::ConnectionClosed { .. }), "{e}");
}

#[tokio::test]
async fn refused_and_oversized_requests_are_errors() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = l.local_addr().unwrap().to_string();
    drop(l);
    let pool = ConnectionPool::new(T, None);
    let e = pool.call(&dead, req(1), T).await.unwrap_err();
    assert!(
        matches!(e, ClientError::Connect { .. }) && e.is_retryable(),
        "{e}"
    );
    let (addr, _s) = server().await;
    let big = req(1).with_body(bytes::Bytes::from(vec![0u8; 17 << 20]));
    let e = pool.call(&addr, big, T).await.unwrap_err();
    assert!(matches!(e, ClientError::Encode(_)), "{e}");
}

#[test]
fn json_headers_only_when_the_environment_names_them() {
    assert_eq!(serialize_type_from(None), SerializeType::RocketMq);
    assert_eq!(
        serialize_type_from(Some("ROCKETMQ")),
        SerializeType::RocketMq
    );
    assert_eq!(serialize_type_from(Some("json")), SerializeType::Json);
    assert_eq!(serialize_type_from(Some(" JSON ")), SerializeType::Json);
    assert_eq!(serialize_type_from(Some("xml")), SerializeType::RocketMq);
}

#[tokio::test]
async fn requests_carry_the_process_serialization_and_answers_keep_it() {
    let (addr, _s) = server().await;
    let pool = ConnectionPool::new(T, None);
    let (a, b) = tokio::join!(
        pool.call(&addr, req_from(1, "bin \u{1}x\u{2}y"), T),
        pool.call(&addr, req_from(1, "b"), T)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    // The scripted server answers in the request's serialization, as servers must.
    assert_eq!(a.serialize_type, request_serialize_type());
    assert_eq!(b.serialize_type, request_serialize_type());
    assert_eq!(a.remark.as_deref(), Some("answer to bin \u{1}x\u{2}y"));
}
