//! Measures how long a broker node takes to serve again after a restart: spawns
//! `mqbroker -c <conf>` and polls its client port with GET_MAX_OFFSET until the queue's
//! max offset equals the expected value (the node has its state back), then prints the
//! elapsed time since the spawn. The process is left running; its log is appended to
//! `$RESTART_PROBE_LOG` if set.
//!
//! `cargo run --release -p raftmq-broker --example restart_probe -- <mqbroker binary>
//!  <broker.conf> <client addr> <topic> <queue id> <expected max offset>`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use raftmq_protocol::codes::{RequestCode, ResponseCode};
use raftmq_protocol::headers::{CommandHeader, GetMaxOffsetRequestHeader, OffsetResponseHeader};
use raftmq_protocol::{decode_frame, encode_frame, Decoded, RemotingCommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn max_offset(addr: SocketAddr, topic: &str, queue_id: i32) -> Option<i64> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    let h = GetMaxOffsetRequestHeader {
        topic: topic.into(),
        queue_id,
        ..Default::default()
    };
    let cmd = RemotingCommand::request(RequestCode::GetMaxOffset.code(), h.to_ext());
    s.write_all(&encode_frame(&cmd).ok()?).await.ok()?;
    let mut buf = BytesMut::new();
    loop {
        if let Decoded::Frame { command, consumed } = decode_frame(&buf).ok()? {
            buf.advance(consumed);
            if command.code != ResponseCode::Success.code() {
                return None;
            }
            return command
                .header::<OffsetResponseHeader>()
                .ok()
                .map(|h| h.offset);
        }
        if s.read_buf(&mut buf).await.ok()? == 0 {
            return None;
        }
    }
}

#[tokio::main]
async fn main() {
    let a: Vec<String> = std::env::args().collect();
    assert!(a.len() == 7, "usage: see the file's docs");
    let addr: SocketAddr = a[3].parse().unwrap();
    let queue: i32 = a[5].parse().unwrap();
    let expect: i64 = a[6].parse().unwrap();
    let started = Instant::now();
    // Left running on purpose (the node keeps serving its group): never waited on.
    #[allow(clippy::zombie_processes)]
    let child = std::process::Command::new(&a[1])
        .args(["-c", &a[2]])
        .stdout(std::process::Stdio::null())
        .stderr(match std::env::var_os("RESTART_PROBE_LOG") {
            // Append the node's log to this file (to see where a slow restart went).
            Some(path) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map(std::process::Stdio::from)
                .unwrap_or_else(|_| std::process::Stdio::null()),
            None => std::process::Stdio::null(),
        })
        .spawn()
        .expect("spawn mqbroker");
    let mut first_answer = None;
    loop {
        if let Some(m) = max_offset(addr, &a[4], queue).await {
            first_answer.get_or_insert(started.elapsed());
            if m == expect {
                break;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(120), "no answer");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    println!(
        "pid={} serving_ms={} first_answer_ms={}",
        child.id(),
        started.elapsed().as_millis(),
        first_answer.map_or(0, |d| d.as_millis())
    );
}
