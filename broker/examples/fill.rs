//! Fills a broker group with batches of 1 KiB messages over the raw protocol (to build a
//! large log for restart measurements; the real benchmark tool is `mqbench`).
//!
//! `cargo run --release -p raftmq-broker --example fill -- <master addr> <MiB> [topic]`
//! Prints the per-queue max offsets at the end, one `queue=<id> max=<offset>` per line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use raftmq_protocol::codes::{RequestCode, ResponseCode};
use raftmq_protocol::headers::{
    CommandHeader, GetMaxOffsetRequestHeader, OffsetResponseHeader, SendMessageRequestHeaderV2,
};
use raftmq_protocol::message::{encode_batch, BatchItem};
use raftmq_protocol::{decode_frame, encode_frame, Decoded, RemotingCommand, StrMap};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BATCH: usize = 32;
const CONNECTIONS: usize = 16;
const QUEUES: i32 = 4;

async fn call(s: &mut TcpStream, buf: &mut BytesMut, cmd: &RemotingCommand) -> RemotingCommand {
    s.write_all(&encode_frame(cmd).unwrap()).await.unwrap();
    loop {
        if let Decoded::Frame { command, consumed } = decode_frame(buf).unwrap() {
            buf.advance(consumed);
            return command;
        }
        assert!(s.read_buf(buf).await.unwrap() > 0, "connection closed");
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr: SocketAddr = args.get(1).expect("master address").parse().unwrap();
    let mib: u64 = args.get(2).expect("MiB").parse().unwrap();
    let topic = args.get(3).cloned().unwrap_or_else(|| "FillTopic".into());
    let total_batches = mib * 1024 / BATCH as u64;
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for conn in 0..CONNECTIONS {
        let (next, topic) = (next.clone(), topic.clone());
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.set_nodelay(true).unwrap();
            let mut buf = BytesMut::new();
            let body = Bytes::from(vec![b'x'; 1024]);
            loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                if b >= total_batches {
                    return;
                }
                let items: Vec<BatchItem> = (0..BATCH)
                    .map(|k| {
                        let mut p = StrMap::new();
                        p.insert("UNIQ_KEY", format!("FF{conn:02X}{b:016X}{k:04X}"));
                        BatchItem {
                            flag: 0,
                            body: body.clone(),
                            properties: p,
                        }
                    })
                    .collect();
                let h = SendMessageRequestHeaderV2 {
                    a: "FillProducer".into(),
                    b: topic.clone(),
                    c: "TBW102".into(),
                    d: QUEUES,
                    e: (b % QUEUES as u64) as i32,
                    g: 1_700_000_000_000,
                    m: Some(true),
                    ..Default::default()
                };
                let mut cmd =
                    RemotingCommand::request(RequestCode::SendBatchMessage.code(), h.to_ext())
                        .with_body(encode_batch(&items).unwrap());
                cmd.opaque = b as i32;
                let resp = call(&mut s, &mut buf, &cmd).await;
                assert_eq!(resp.code, ResponseCode::Success.code(), "{:?}", resp.remark);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let msgs = total_batches * BATCH as u64;
    eprintln!(
        "sent {msgs} messages ({mib} MiB) in {secs:.1} s: {:.0} msg/s",
        msgs as f64 / secs
    );
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut buf = BytesMut::new();
    for q in 0..QUEUES {
        let h = GetMaxOffsetRequestHeader {
            topic: topic.clone(),
            queue_id: q,
            ..Default::default()
        };
        let resp = call(
            &mut s,
            &mut buf,
            &RemotingCommand::request(RequestCode::GetMaxOffset.code(), h.to_ext()),
        )
        .await;
        let offset = resp.header::<OffsetResponseHeader>().unwrap().offset;
        println!("queue={q} max={offset}");
    }
}
