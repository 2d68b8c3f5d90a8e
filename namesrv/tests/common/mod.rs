//! A raw remoting client built on the protocol crate only, for black-box tests.
#![allow(clippy::unwrap_used, dead_code)]

use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use raftmq_protocol::body::{DataVersion, RegisterBrokerBody, TopicConfig};
use raftmq_protocol::codes::RequestCode;
use raftmq_protocol::headers::{CommandHeader, RegisterBrokerRequestHeader};
use raftmq_protocol::{decode_frame, encode_frame, Decoded, RemotingCommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct RawClient {
    pub stream: TcpStream,
    buf: BytesMut,
    next_opaque: i32,
}

impl RawClient {
    pub async fn connect(addr: std::net::SocketAddr) -> Self {
        RawClient {
            stream: TcpStream::connect(addr).await.unwrap(),
            buf: BytesMut::new(),
            next_opaque: 1,
        }
    }

    pub async fn send(&mut self, mut cmd: RemotingCommand) -> i32 {
        cmd.opaque = self.next_opaque;
        self.next_opaque += 1;
        self.stream
            .write_all(&encode_frame(&cmd).unwrap())
            .await
            .unwrap();
        cmd.opaque
    }

    /// Next frame, or `None` when the server closed the connection.
    pub async fn recv(&mut self) -> Option<RemotingCommand> {
        loop {
            if let Decoded::Frame { command, consumed } = decode_frame(&self.buf).unwrap() {
                self.buf.advance(consumed);
                return Some(command);
            }
            let read =
                tokio::time::timeout(Duration::from_secs(20), self.stream.read_buf(&mut self.buf))
                    .await
                    .expect("no answer within 20 s");
            match read {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    pub async fn call(&mut self, cmd: RemotingCommand) -> RemotingCommand {
        let opaque = self.send(cmd).await;
        let resp = self.recv().await.expect("connection closed");
        assert_eq!(resp.opaque, opaque);
        assert!(resp.is_response());
        resp
    }
}

pub fn register_cmd(
    name: &str,
    addr: &str,
    id: i64,
    term: i64,
    topics: &[(&str, i32)],
) -> RemotingCommand {
    let header = RegisterBrokerRequestHeader {
        broker_name: name.into(),
        broker_addr: addr.into(),
        cluster_name: "DefaultCluster".into(),
        ha_server_addr: addr.into(),
        broker_id: id,
        ..Default::default()
    };
    let mut body = RegisterBrokerBody::default();
    let w = &mut body.topic_config_serialize_wrapper;
    w.data_version = DataVersion {
        counter: 1,
        state_version: term,
        timestamp: 1,
    };
    for (t, q) in topics {
        w.topic_config_table
            .insert(t.to_string(), TopicConfig::new(*t, *q));
    }
    RemotingCommand::request(RequestCode::RegisterBroker.code(), header.to_ext())
        .with_body(body.encode())
}

/// Polls `f` until it returns true or `deadline` passes.
pub async fn wait_until<F, Fut>(what: &str, deadline: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
