//! Single-message send throughput over ONE multiplexed connection (as RocketMQ clients
//! do: one connection per broker, requests matched by opaque): K tasks each send 1 KiB
//! messages synchronously to the master through a shared pipelined client.
//!
//! `send_bench <master addr> <in flight> <seconds> [topic]` prints msg/s and latency
//! percentiles. A measuring aid for the broker's send path; mqbench (issue 5) is the tool.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use raftmq_broker::remoting_client::RemotingClient;
use raftmq_protocol::codes::{RequestCode, ResponseCode};
use raftmq_protocol::headers::{CommandHeader, SendMessageRequestHeaderV2};
use raftmq_protocol::message::encode_properties;
use raftmq_protocol::{RemotingCommand, StrMap};

#[tokio::main]
async fn main() {
    let a: Vec<String> = std::env::args().collect();
    let addr = a.get(1).expect("master addr").clone();
    let inflight: usize = a.get(2).expect("in flight").parse().unwrap();
    let secs: f64 = a.get(3).expect("seconds").parse().unwrap();
    let topic = a.get(4).cloned().unwrap_or_else(|| "BenchTopic".into());
    let client = RemotingClient::new(Duration::from_secs(3));
    let lat = Arc::new(Mutex::new(hdrhistogram::Histogram::<u64>::new(3).unwrap()));
    let started = Instant::now();
    let warm = Duration::from_secs(2);
    let run = warm + Duration::from_secs_f64(secs);
    let body = Bytes::from(vec![b'b'; 1024]);
    let mut tasks = Vec::new();
    for t in 0..inflight {
        let (client, addr, topic, body, lat) = (
            client.clone(),
            addr.clone(),
            topic.clone(),
            body.clone(),
            lat.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            let mut seq = 0u64;
            while started.elapsed() < run {
                let mut props = StrMap::new();
                props.insert("UNIQ_KEY", format!("FD{t:06X}{seq:016X}"));
                seq += 1;
                let h = SendMessageRequestHeaderV2 {
                    a: "SendBench".into(),
                    b: topic.clone(),
                    c: "TBW102".into(),
                    d: 4,
                    e: (t % 4) as i32,
                    g: 1_700_000_000_000,
                    i: Some(encode_properties(&props)),
                    ..Default::default()
                };
                let cmd = RemotingCommand::request(RequestCode::SendMessageV2.code(), h.to_ext())
                    .with_body(body.clone());
                let t0 = Instant::now();
                let resp = client.call(&addr, cmd, Duration::from_secs(5)).await;
                let ok = matches!(&resp, Ok(r) if r.code == ResponseCode::Success.code());
                if ok && started.elapsed() > warm {
                    n += 1;
                    let us = t0.elapsed().as_micros() as u64;
                    lat.lock().unwrap().record(us.max(1)).unwrap();
                }
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    let h = lat.lock().unwrap();
    println!(
        "in_flight={inflight} msgs={total} rate={:.0}/s p50={:.2}ms p99={:.2}ms max={:.2}ms",
        total as f64 / secs,
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.max() as f64 / 1000.0
    );
}
