//! Throughput sanity check of the log store (not a timed test).
//!
//! ```text
//! cargo run -p raftmq-raft --release --example log_append -- [entries] [in_flight] [batch] [body_bytes] [restart_mib]
//! ```
//! Appends `entries` entries of `body_bytes` (default 1 KiB) with the sync flush policy,
//! `batch` entries per append call (default 1, as openraft's leader does), keeping at most
//! `in_flight` appends not yet durable (default 1000), and prints entries/s. With
//! `restart_mib` > 0 it then grows the log to that size with 1 KiB entries (1 GiB segments)
//! and times a reopen (e.g. 1900: one sealed segment plus an almost full tail, the worst case).
//! `log_append reopen <dir>` only times opening an existing store (e.g. after dropping the
//! page cache); set `LOG_APPEND_KEEP=1` to keep the directory of a run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use bytes::Bytes;
use openraft::{EntryPayload, LeaderId};
use raftmq_raft::log_store::{FlushPolicy, LogStoreConfig, SegmentedLogStore};
use raftmq_raft::types::Entry;
use raftmq_raft::LogId;

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// Counts durable appends and lets the producer wait for room.
#[derive(Default)]
struct Done {
    count: Mutex<u64>,
    cv: Condvar,
    entries: AtomicU64,
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("reopen") {
        let dir = std::env::args().nth(2).expect("reopen <dir>");
        let started = Instant::now();
        let store = SegmentedLogStore::open(LogStoreConfig::new(dir)).unwrap();
        let r = store.read_handle();
        println!(
            "reopen: {} entries, {} bytes, {:.0} ms",
            r.last_index().unwrap_or(0),
            r.end_position(),
            started.elapsed().as_secs_f64() * 1e3
        );
        return;
    }
    let entries = arg(1, 1_000_000);
    let in_flight = arg(2, 1000);
    let batch = arg(3, 1).max(1);
    let body_bytes = arg(4, 1024) as usize;
    let restart_mib = arg(5, 0);
    let tmp = tempfile::tempdir_in(std::env::var("LOG_APPEND_DIR").unwrap_or_else(|_| ".".into()))
        .unwrap();
    let config = LogStoreConfig {
        flush: FlushPolicy::Sync,
        ..LogStoreConfig::new(tmp.path())
    };
    let mut store = SegmentedLogStore::open(config.clone()).unwrap();
    let body = Bytes::from(vec![0x5A; body_bytes]);
    let done = Arc::new(Done::default());

    let started = Instant::now();
    let mut index = 1u64;
    let mut calls = 0u64;
    while index <= entries {
        let n = batch.min(entries - index + 1);
        let batch_entries: Vec<Entry> = (index..index + n)
            .map(|i| Entry {
                log_id: LogId::new(LeaderId::new(1, 1), i),
                payload: EntryPayload::Normal(body.clone()),
            })
            .collect();
        {
            let mut c = done.count.lock().unwrap();
            while calls - *c >= in_flight {
                c = done.cv.wait(c).unwrap();
            }
        }
        let d = done.clone();
        store
            .append_entries(
                batch_entries,
                Box::new(move |r| {
                    r.expect("durable");
                    d.entries.fetch_add(n, Ordering::Relaxed);
                    *d.count.lock().unwrap() += 1;
                    d.cv.notify_one();
                }),
            )
            .unwrap();
        calls += 1;
        index += n;
    }
    {
        let mut c = done.count.lock().unwrap();
        while *c < calls {
            c = done.cv.wait(c).unwrap();
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let durable = done.entries.load(Ordering::Relaxed);
    println!(
        "{durable} entries of {body_bytes} B, {batch} per append, <= {in_flight} appends in flight, sync flush: \
         {:.0} entries/s, {:.1} MB/s, {secs:.2} s",
        durable as f64 / secs,
        durable as f64 * body_bytes as f64 / secs / 1e6
    );

    if restart_mib > 0 {
        let target = restart_mib << 20;
        let kib = Bytes::from(vec![0x33; 1024]);
        while store.read_handle().end_position() < target {
            let e: Vec<Entry> = (index..index + 1024)
                .map(|i| Entry {
                    log_id: LogId::new(LeaderId::new(1, 1), i),
                    payload: EntryPayload::Normal(kib.clone()),
                })
                .collect();
            index += 1024;
            store
                .append_entries(e, Box::new(|r| r.expect("durable")))
                .unwrap();
        }
        store.sync().unwrap();
        let end = store.read_handle().end_position();
        drop(store);
        let started = Instant::now();
        let store = SegmentedLogStore::open(config).unwrap();
        let took = started.elapsed();
        println!(
            "reopen of a {:.2} GiB log ({} entries): {:.0} ms",
            end as f64 / (1u64 << 30) as f64,
            store.read_handle().last_index().unwrap_or(0),
            took.as_secs_f64() * 1e3
        );
    }
    if std::env::var_os("LOG_APPEND_KEEP").is_some() {
        println!("kept {}", tmp.keep().display());
    }
}
