//! Kill -9 of the master under load, measured from outside: K tasks send 1 KiB messages
//! synchronously to the master the NameServer names (re-resolving it after any error, with
//! the same UNIQ_KEY), the probe kills the master's process after a warm-up, and reports the
//! time from the kill to the NameServer naming a new master, to the first acknowledged write
//! after the kill, and the longest gap between acknowledgements.
//!
//! `failover_probe <namesrv> <topic> <inflight> <kill after s> <run s> <port=pid,...>`
//! (the mapping gives the pid of the mqbroker process serving each client port).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use raftmq_protocol::body::{decode_json, TopicRouteData};
use raftmq_protocol::codes::{RequestCode, ResponseCode};
use raftmq_protocol::headers::{
    CommandHeader, GetRouteInfoRequestHeader, SendMessageRequestHeaderV2,
};
use raftmq_protocol::message::encode_properties;
use raftmq_protocol::{decode_frame, encode_frame, Decoded, RemotingCommand, StrMap};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn call(
    addr: SocketAddr,
    cmd: &RemotingCommand,
    conn: &mut Option<(TcpStream, BytesMut)>,
) -> Option<RemotingCommand> {
    if conn.is_none() {
        let s = tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr))
            .await
            .ok()?
            .ok()?;
        s.set_nodelay(true).ok()?;
        *conn = Some((s, BytesMut::new()));
    }
    let (s, buf) = conn.as_mut()?;
    let r = async {
        s.write_all(&encode_frame(cmd).ok()?).await.ok()?;
        loop {
            if let Decoded::Frame { command, consumed } = decode_frame(buf).ok()? {
                buf.advance(consumed);
                return Some(command);
            }
            if s.read_buf(buf).await.ok()? == 0 {
                return None;
            }
        }
    };
    let out = tokio::time::timeout(Duration::from_secs(3), r)
        .await
        .ok()
        .flatten();
    if out.is_none() {
        *conn = None;
    }
    out
}

async fn master(namesrv: SocketAddr, topic: &str) -> Option<SocketAddr> {
    let h = GetRouteInfoRequestHeader {
        topic: topic.into(),
        ..Default::default()
    };
    let resp = call(
        namesrv,
        &RemotingCommand::request(RequestCode::GetRouteinfoByTopic.code(), h.to_ext()),
        &mut None,
    )
    .await?;
    if resp.code != ResponseCode::Success.code() {
        return None;
    }
    let route: TopicRouteData = decode_json("route", &resp.body).ok()?;
    route
        .broker_datas
        .iter()
        .find_map(|b| b.broker_addrs.get(&0)?.parse().ok())
}

#[tokio::main]
async fn main() {
    let a: Vec<String> = std::env::args().collect();
    assert!(a.len() == 7, "usage: see the file's docs");
    let namesrv: SocketAddr = a[1].parse().unwrap();
    let topic = a[2].clone();
    let inflight: usize = a[3].parse().unwrap();
    let kill_after = Duration::from_secs_f64(a[4].parse().unwrap());
    let run = Duration::from_secs_f64(a[5].parse().unwrap());
    let pids: HashMap<u16, u32> = a[6]
        .split(',')
        .map(|kv| {
            let (p, pid) = kv.split_once('=').unwrap();
            (p.parse().unwrap(), pid.parse().unwrap())
        })
        .collect();
    let m = loop {
        if let Some(m) = master(namesrv, "TBW102").await {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let current = Arc::new(Mutex::new(m));
    let acks: Arc<Mutex<Vec<(Instant, SocketAddr)>>> = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let body = Bytes::from(vec![b'x'; 1024]);
    let mut tasks = Vec::new();
    for t in 0..inflight {
        let (current, acks, topic, body) =
            (current.clone(), acks.clone(), topic.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn: Option<(TcpStream, BytesMut)> = None;
            let mut conn_addr = *current.lock().unwrap();
            let mut seq = 0u64;
            while started.elapsed() < run {
                let mut props = StrMap::new();
                props.insert("UNIQ_KEY", format!("FE{t:06X}{seq:016X}"));
                seq += 1;
                let h = SendMessageRequestHeaderV2 {
                    a: "FailoverProbe".into(),
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
                loop {
                    let addr = *current.lock().unwrap();
                    if addr != conn_addr {
                        conn = None;
                        conn_addr = addr;
                    }
                    match call(addr, &cmd, &mut conn).await {
                        Some(r) if r.code == ResponseCode::Success.code() => {
                            acks.lock().unwrap().push((Instant::now(), addr));
                            break;
                        }
                        _ => {
                            conn = None;
                            if let Some(m) = master(namesrv, &topic).await {
                                *current.lock().unwrap() = m;
                            }
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            if started.elapsed() >= run {
                                break;
                            }
                        }
                    }
                }
            }
        }));
    }
    tokio::time::sleep(kill_after).await;
    let victim = *current.lock().unwrap();
    let pid = pids[&victim.port()];
    let killed = Instant::now();
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    let ns_after = loop {
        if let Some(m) = master(namesrv, &topic).await {
            if m != victim {
                break killed.elapsed();
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    for t in tasks {
        t.await.unwrap();
    }
    let acks = acks.lock().unwrap();
    // The first write the new master acknowledged (answers of the old one may still arrive
    // just after the kill).
    let first_after = acks
        .iter()
        .filter(|(t, a)| *t > killed && *a != victim)
        .map(|(t, _)| t.duration_since(killed))
        .min();
    let gap = acks
        .windows(2)
        .map(|w| w[1].0.saturating_duration_since(w[0].0))
        .max()
        .unwrap_or_default();
    let before = acks.iter().filter(|(t, _)| *t <= killed).count();
    println!(
        "killed={victim} pid={pid} namesrv_new_master_ms={} first_ack_after_kill_ms={} longest_gap_ms={} acks={} rate_before={:.0}/s",
        ns_after.as_millis(),
        first_after.map_or(-1, |d| d.as_millis() as i64),
        gap.as_millis(),
        acks.len(),
        before as f64 / kill_after.as_secs_f64()
    );
}
