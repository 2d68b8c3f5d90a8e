//! `mqbench`: RocketMQ's benchmark producer and consumer, with HDR latency summaries.
//!
//! The producer runs K tasks, each doing one synchronous send after another (RocketMQ's
//! `producer.sh -w K`), or with `-y` asynchronous sends capped at `--inflight` in flight.
//! Every report interval it prints RocketMQ's line; at the end a summary with msg/s,
//! MB/s, p50/p99/p999/max, the longest gap between acknowledgements (the unavailability a
//! failover causes) and the CPU seconds of mqbench and of every local mqbroker and
//! mqnamesrv process. The consumer prints RocketMQ's consumer line and a summary.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use bytes::Bytes;
use hdrhistogram::Histogram;
use raftmq_client::consumer::ConsumeFromWhere;
use raftmq_client::{
    ConsumeResult, Listener, Message, Producer, ProducerConfig, PushConsumer, PushConsumerConfig,
};

/// `mqbench producer` flags (RocketMQ's names where they exist).
#[derive(Debug, Clone, clap::Args)]
pub struct ProducerArgs {
    /// NameServer list (else NAMESRV_ADDR).
    #[arg(short = 'n', long = "namesrvAddr")]
    pub namesrv: Option<String>,
    /// Topic.
    #[arg(short = 't', long = "topic", default_value = "BenchmarkTest")]
    pub topic: String,
    /// Sending tasks, each with one synchronous send at a time (RocketMQ's threadCount).
    #[arg(short = 'w', long = "threadCount", default_value_t = 64)]
    pub threads: usize,
    /// Body size in bytes.
    #[arg(short = 's', long = "messageSize", default_value_t = 128)]
    pub size: usize,
    /// Give every message a key (indexed by the broker).
    #[arg(short = 'k', long = "keyEnable", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub keys: bool,
    /// Stop after this many messages (0: run until --duration or Ctrl-C).
    #[arg(short = 'q', long = "messageQuantity", default_value_t = 0)]
    pub quantity: u64,
    /// Asynchronous sends (at most --inflight outstanding).
    #[arg(short = 'y', long = "asyncEnable", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub async_send: bool,
    /// Sends in flight: with sync sends the number of tasks (overrides -w); with -y the cap.
    #[arg(long)]
    pub inflight: Option<usize>,
    /// Messages per batch send (1: single sends).
    #[arg(short = 'b', long = "batchSize", default_value_t = 1)]
    pub batch: usize,
    /// Measured seconds (0: until -q or Ctrl-C).
    #[arg(long, default_value_t = 0.0)]
    pub duration: f64,
    /// Seconds sent before measuring starts (not counted in the summary).
    #[arg(long, default_value_t = 0.0)]
    pub warmup: f64,
    /// Report interval, ms (RocketMQ: -ri, 10000).
    #[arg(long = "reportInterval", default_value_t = 1000)]
    pub report_interval_ms: u64,
    /// Print the summary as JSON too.
    #[arg(long)]
    pub json: bool,
}

/// `mqbench consumer` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ConsumerArgs {
    /// NameServer list (else NAMESRV_ADDR).
    #[arg(short = 'n', long = "namesrvAddr")]
    pub namesrv: Option<String>,
    /// Topic.
    #[arg(short = 't', long = "topic", default_value = "BenchmarkTest")]
    pub topic: String,
    /// Consumer group.
    #[arg(short = 'g', long = "group", default_value = "benchmark_consumer")]
    pub group: String,
    /// Listener calls at once.
    #[arg(short = 'w', long = "threadCount", default_value_t = 20)]
    pub threads: usize,
    /// Start from the first retained message (catch-up), not the end.
    #[arg(long)]
    pub from_first: bool,
    /// Stop after this many messages (0: until --duration or Ctrl-C).
    #[arg(short = 'q', long = "messageQuantity", default_value_t = 0)]
    pub quantity: u64,
    /// Seconds to run (0: until -q or Ctrl-C).
    #[arg(long, default_value_t = 0.0)]
    pub duration: f64,
    /// Messages per listener call.
    #[arg(long, default_value_t = 32)]
    pub consume_batch: usize,
    /// Report interval, ms.
    #[arg(long = "reportInterval", default_value_t = 1000)]
    pub report_interval_ms: u64,
    /// Print the summary as JSON too.
    #[arg(long)]
    pub json: bool,
}

/// `yyyy-MM-dd HH:mm:ss,SSS` (UTC) of `unix_ms`, as RocketMQ's report lines print it.
pub fn format_time(unix_ms: i64) -> String {
    let days = unix_ms.div_euclid(86_400_000);
    let ms_of_day = unix_ms.rem_euclid(86_400_000);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (h, mi, s, ms) = (
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1000 % 60,
        ms_of_day % 1000,
    );
    format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02},{ms:03}")
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// One report interval's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Interval {
    /// Acknowledged messages.
    pub ok: u64,
    /// Sends that raised an error.
    pub send_failed: u64,
    /// Sends answered with a non-OK status.
    pub response_failed: u64,
    /// Sum of acknowledged latencies, µs.
    pub rt_sum_us: u64,
    /// Largest latency, µs.
    pub rt_max_us: u64,
    /// Interval length, s.
    pub secs: f64,
}

/// RocketMQ's producer report line.
pub fn producer_line(now_unix_ms: i64, i: &Interval) -> String {
    let tps = if i.secs > 0.0 {
        i.ok as f64 / i.secs
    } else {
        0.0
    };
    let avg = if i.ok > 0 {
        i.rt_sum_us as f64 / i.ok as f64 / 1000.0
    } else {
        0.0
    };
    format!(
        "Current Time: {} | Send TPS: {:.0} | Max RT(ms): {} | Average RT(ms): {:7.3} | Send Failed: {} | Response Failed: {}",
        format_time(now_unix_ms),
        tps,
        i.rt_max_us.div_ceil(1000),
        avg,
        i.send_failed,
        i.response_failed
    )
}

/// Live counters shared by the sending tasks.
#[derive(Debug, Default)]
struct Counters {
    ok: AtomicU64,
    send_failed: AtomicU64,
    response_failed: AtomicU64,
    rt_sum_us: AtomicU64,
    rt_max_us: AtomicU64,
    /// µs since start of the last acknowledgement, and the longest gap between two.
    last_ack_us: AtomicU64,
    max_gap_us: AtomicU64,
}

impl Counters {
    fn ack(&self, rt_us: u64, since_start_us: u64, messages: u64) {
        self.ok.fetch_add(messages, Ordering::Relaxed);
        self.rt_sum_us
            .fetch_add(rt_us * messages, Ordering::Relaxed);
        self.rt_max_us.fetch_max(rt_us, Ordering::Relaxed);
        let prev = self
            .last_ack_us
            .fetch_max(since_start_us, Ordering::Relaxed);
        if prev > 0 && since_start_us > prev {
            self.max_gap_us
                .fetch_max(since_start_us - prev, Ordering::Relaxed);
        }
    }

    fn take(&self, secs: f64) -> Interval {
        Interval {
            ok: self.ok.swap(0, Ordering::Relaxed),
            send_failed: self.send_failed.swap(0, Ordering::Relaxed),
            response_failed: self.response_failed.swap(0, Ordering::Relaxed),
            rt_sum_us: self.rt_sum_us.swap(0, Ordering::Relaxed),
            rt_max_us: self.rt_max_us.swap(0, Ordering::Relaxed),
            secs,
        }
    }
}

/// CPU seconds (user + system) of a process from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_cpu(&stat)
}

/// utime + stime of a `/proc/<pid>/stat` line, in seconds (USER_HZ = 100).
pub fn parse_stat_cpu(stat: &str) -> Option<f64> {
    // The command name may contain spaces: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Local RaftMQ server processes (`mqbroker`, `mqnamesrv`) by pid, with their names.
pub fn server_processes() -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else {
            continue;
        };
        let comm = comm.trim();
        if comm == "mqbroker" || comm == "mqnamesrv" {
            out.push((pid, comm.to_owned()));
        }
    }
    out.sort();
    out
}

/// CPU use of the processes measured over a window.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CpuUse {
    /// Process (name and pid).
    pub process: String,
    /// CPU seconds in the window.
    pub seconds: f64,
}

struct CpuProbe {
    start: Vec<(u32, String, f64)>,
}

impl CpuProbe {
    fn start() -> Self {
        let mut procs = server_processes();
        procs.push((std::process::id(), "mqbench".into()));
        CpuProbe {
            start: procs
                .into_iter()
                .filter_map(|(pid, name)| Some((pid, name, cpu_seconds(pid)?)))
                .collect(),
        }
    }

    fn finish(&self) -> Vec<CpuUse> {
        self.start
            .iter()
            .filter_map(|(pid, name, s0)| {
                Some(CpuUse {
                    process: format!("{name}({pid})"),
                    seconds: cpu_seconds(*pid)? - s0,
                })
            })
            .collect()
    }
}

/// The end-of-run summary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// Messages acknowledged (or consumed) in the measured window.
    pub messages: u64,
    /// Failed operations in the measured window.
    pub failed: u64,
    /// Measured seconds.
    pub seconds: f64,
    /// Messages per second.
    pub msg_per_sec: f64,
    /// Megabytes (10^6) of bodies per second.
    pub mb_per_sec: f64,
    /// Latency percentiles, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// 99.9th percentile, ms.
    pub p999_ms: f64,
    /// Largest, ms.
    pub max_ms: f64,
    /// Longest time without an acknowledgement, ms (producer).
    pub longest_ack_gap_ms: f64,
    /// CPU seconds per process over the measured window.
    pub cpu: Vec<CpuUse>,
    /// CPU µs summed over all processes, per message.
    pub cpu_us_per_msg: f64,
}

impl Summary {
    /// The human-readable summary lines.
    pub fn lines(&self, what: &str) -> Vec<String> {
        let mut v = vec![
            format!(
                "[Complete] {what} Total: {} | {what} TPS: {:.0} | MB/s: {:.2} | Failed: {} | Seconds: {:.1}",
                self.messages, self.msg_per_sec, self.mb_per_sec, self.failed, self.seconds
            ),
            format!(
                "Latency(ms): p50 {:.3} | p99 {:.3} | p999 {:.3} | max {:.3} | longest gap between acks {:.0}",
                self.p50_ms, self.p99_ms, self.p999_ms, self.max_ms, self.longest_ack_gap_ms
            ),
        ];
        let cpu: Vec<String> = self
            .cpu
            .iter()
            .map(|c| format!("{} {:.2}s", c.process, c.seconds))
            .collect();
        v.push(format!(
            "CPU: {} | {:.1} us/msg summed",
            cpu.join(" | "),
            self.cpu_us_per_msg
        ));
        v
    }
}

fn summarize(
    hist: &Histogram<u64>,
    messages: u64,
    failed: u64,
    bytes_per_msg: usize,
    secs: f64,
    gap_us: u64,
    cpu: Vec<CpuUse>,
) -> Summary {
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let total_cpu: f64 = cpu.iter().map(|c| c.seconds).sum();
    Summary {
        messages,
        failed,
        seconds: secs,
        msg_per_sec: if secs > 0.0 {
            messages as f64 / secs
        } else {
            0.0
        },
        mb_per_sec: if secs > 0.0 {
            (messages as f64 * bytes_per_msg as f64) / secs / 1e6
        } else {
            0.0
        },
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        max_ms: hist.max() as f64 / 1000.0,
        longest_ack_gap_ms: gap_us as f64 / 1000.0,
        cpu_us_per_msg: if messages > 0 {
            total_cpu * 1e6 / messages as f64
        } else {
            0.0
        },
        cpu,
    }
}

fn new_hist() -> Histogram<u64> {
    // 1 µs .. 1 hour, 3 significant digits; the bounds are constants, so this cannot fail.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant histogram bounds are valid")
}

fn progress(started: Instant, duration: f64, done: u64, quantity: u64) {
    let frac = if duration > 0.0 {
        (started.elapsed().as_secs_f64() / duration).min(1.0)
    } else if quantity > 0 {
        (done as f64 / quantity as f64).min(1.0)
    } else {
        return;
    };
    let filled = (frac * 30.0) as usize;
    eprint!(
        "\r[{}{}] {:3.0}% ",
        "#".repeat(filled),
        ".".repeat(30 - filled),
        frac * 100.0
    );
    let _ = std::io::stderr().flush();
}

/// Runs the producer benchmark; prints report lines and the summary.
pub async fn run_producer(args: ProducerArgs) -> anyhow::Result<Summary> {
    if args.size == 0 {
        bail!("-s messageSize must be at least 1");
    }
    if args.batch == 0 {
        bail!("-b batchSize must be at least 1");
    }
    let inflight = args.inflight.unwrap_or(args.threads).max(1);
    let mut cfg = ProducerConfig {
        group: "benchmark_producer".into(),
        namesrv: args.namesrv.clone(),
        // Benchmarks measure the broker: no compression of large bodies.
        compress_over: usize::MAX,
        ..Default::default()
    };
    cfg.instance_name = format!("bench-{}", std::process::id());
    let producer = Producer::start(cfg).context("starting the producer")?;
    producer
        .queues(&args.topic)
        .await
        .with_context(|| format!("no route to topic {}", args.topic))?;
    println!(
        "topic: {}, threadCount: {}, messageSize: {}, keyEnable: {}, messageQuantity: {}, asyncEnable: {}, batchSize: {}, inflight: {}, duration: {}, warmup: {}",
        args.topic, args.threads, args.size, args.keys, args.quantity, args.async_send, args.batch, inflight, args.duration, args.warmup
    );
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(args.warmup <= 0.0));
    let remaining = Arc::new(AtomicU64::new(if args.quantity == 0 {
        u64::MAX
    } else {
        args.quantity
    }));
    let hists: Arc<Mutex<Vec<Histogram<u64>>>> = Arc::default();
    let body = Bytes::from(vec![b'x'; args.size]);
    let started = Instant::now();
    let tasks = if args.async_send { 1 } else { inflight };
    let sem = Arc::new(tokio::sync::Semaphore::new(inflight));
    let mut handles = Vec::new();
    let running = Arc::new(AtomicU64::new(tasks as u64));
    let finished = Arc::new(tokio::sync::Notify::new());
    for t in 0..tasks {
        let (running, finished) = (running.clone(), finished.clone());
        let (producer, counters, stop, measuring, remaining, hists, body, sem) = (
            producer.clone(),
            counters.clone(),
            stop.clone(),
            measuring.clone(),
            remaining.clone(),
            hists.clone(),
            body.clone(),
            sem.clone(),
        );
        let (topic, keys, batch, async_send) =
            (args.topic.clone(), args.keys, args.batch, args.async_send);
        handles.push(tokio::spawn(async move {
            let hist = Arc::new(Mutex::new(new_hist()));
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let want = batch as u64;
                if remaining
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| {
                        r.checked_sub(want)
                    })
                    .is_err()
                {
                    break;
                }
                let msgs: Vec<Message> = (0..batch)
                    .map(|_| {
                        seq += 1;
                        let m = Message::new(topic.clone(), body.clone());
                        if keys {
                            m.with_keys([format!("k{t}-{seq}")])
                        } else {
                            m
                        }
                    })
                    .collect();
                let one = |counters: Arc<Counters>,
                           hist: Arc<Mutex<Histogram<u64>>>,
                           measuring: Arc<AtomicBool>,
                           producer: Arc<Producer>,
                           mut msgs: Vec<Message>| async move {
                    let t0 = Instant::now();
                    let r = if msgs.len() == 1 {
                        producer.send(msgs.remove(0)).await
                    } else {
                        producer.send_batch(msgs).await
                    };
                    let rt = t0.elapsed().as_micros() as u64;
                    match r {
                        Ok(res) if res.status == raftmq_client::SendStatus::SendOk => {
                            counters.ack(rt, started.elapsed().as_micros() as u64, want);
                            if measuring.load(Ordering::Relaxed) {
                                let mut h = hist.lock().unwrap_or_else(|p| p.into_inner());
                                let _ = h.record(rt.max(1));
                            }
                        }
                        Ok(_) => {
                            counters.response_failed.fetch_add(want, Ordering::Relaxed);
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "send failed");
                            counters.send_failed.fetch_add(want, Ordering::Relaxed);
                        }
                    }
                };
                if async_send {
                    let Ok(permit) = sem.clone().acquire_owned().await else {
                        break;
                    };
                    let fut = one(
                        counters.clone(),
                        hist.clone(),
                        measuring.clone(),
                        producer.clone(),
                        msgs,
                    );
                    tokio::spawn(async move {
                        fut.await;
                        drop(permit);
                    });
                } else {
                    one(
                        counters.clone(),
                        hist.clone(),
                        measuring.clone(),
                        producer.clone(),
                        msgs,
                    )
                    .await;
                }
            }
            if async_send {
                // Wait for the sends still in flight.
                let _ = sem.acquire_many(inflight as u32).await;
            }
            let h = hist.lock().unwrap_or_else(|p| p.into_inner()).clone();
            hists.lock().unwrap_or_else(|p| p.into_inner()).push(h);
            if running.fetch_sub(1, Ordering::AcqRel) == 1 {
                finished.notify_one();
            }
        }));
    }
    // Reporting, warm-up and the end of the run.
    let interval = Duration::from_millis(args.report_interval_ms.max(100));
    let tty = std::io::stderr().is_terminal();
    let mut last = Instant::now();
    let mut tick = tokio::time::interval(interval);
    tick.tick().await;
    let warm = Duration::from_secs_f64(args.warmup.max(0.0));
    let mut measure_start = if args.warmup <= 0.0 {
        Some((Instant::now(), CpuProbe::start()))
    } else {
        None
    };
    let mut measured = Interval::default();
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    let run_for = Duration::from_secs_f64(args.duration.max(0.0));
    let t_started = tokio::time::Instant::from_std(started);
    loop {
        // The next moment something changes besides a report: warm-up over, time up.
        let wake_at = match &measure_start {
            None => Some(t_started + warm),
            Some((t, _)) if args.duration > 0.0 => {
                Some(tokio::time::Instant::from_std(*t) + run_for)
            }
            Some(_) => None,
        };
        let far = tokio::time::Instant::now() + Duration::from_secs(86_400);
        let (report, end) = tokio::select! {
            _ = tick.tick() => (true, false),
            _ = &mut ctrl_c => (true, true),
            _ = finished.notified() => (true, true),
            _ = tokio::time::sleep_until(wake_at.unwrap_or(far)) => (measure_start.is_none(), measure_start.is_some()),
        };
        let now = Instant::now();
        let i = counters.take(now.duration_since(last).as_secs_f64());
        last = now;
        if measure_start.is_some() {
            measured.ok += i.ok;
            measured.send_failed += i.send_failed;
            measured.response_failed += i.response_failed;
        }
        if report {
            if tty {
                eprint!("\r\x1b[K");
            }
            println!("{}", producer_line(unix_ms(), &i));
        }
        if measure_start.is_none() && started.elapsed() >= warm {
            measuring.store(true, Ordering::Relaxed);
            counters.max_gap_us.store(0, Ordering::Relaxed);
            measure_start = Some((Instant::now(), CpuProbe::start()));
        }
        if tty {
            progress(
                started,
                args.duration + args.warmup,
                args.quantity
                    .saturating_sub(remaining.load(Ordering::Relaxed).min(args.quantity)),
                args.quantity,
            );
        }
        if end {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (t0, probe) = measure_start.unwrap_or_else(|| (Instant::now(), CpuProbe::start()));
    let secs = t0.elapsed().as_secs_f64();
    // An outage still running at the end is a gap too (no later ack closes it).
    let now_us = started.elapsed().as_micros() as u64;
    let last_ack = counters.last_ack_us.load(Ordering::Relaxed);
    if last_ack > 0 {
        counters
            .max_gap_us
            .fetch_max(now_us.saturating_sub(last_ack), Ordering::Relaxed);
    }
    let cpu = probe.finish();
    for h in handles {
        let _ = h.await;
    }
    // Acks that arrived after the last report line.
    let tail = counters.take(0.0);
    measured.ok += tail.ok;
    measured.send_failed += tail.send_failed;
    measured.response_failed += tail.response_failed;
    let mut hist = new_hist();
    for h in hists.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        let _ = hist.add(h);
    }
    if tty {
        eprint!("\r\x1b[K");
    }
    let s = summarize(
        &hist,
        measured.ok,
        measured.send_failed + measured.response_failed,
        args.size,
        secs,
        counters.max_gap_us.load(Ordering::Relaxed),
        cpu,
    );
    for l in s.lines("Send") {
        println!("{l}");
    }
    if args.json {
        println!("{}", serde_json::to_string(&s)?);
    }
    producer.shutdown();
    Ok(s)
}

/// RocketMQ's consumer report line.
pub fn consumer_line(
    now_unix_ms: i64,
    tps: f64,
    b2c: (f64, f64),
    s2c: (f64, f64),
    failed: u64,
) -> String {
    format!(
        "Current Time: {} | Consume TPS: {:.0} | AVG(B2C) RT(ms): {:7.3} | AVG(S2C) RT(ms): {:7.3} | MAX(B2C) RT(ms): {:.0} | MAX(S2C) RT(ms): {:.0} | Consume Fail: {}",
        format_time(now_unix_ms),
        tps,
        b2c.0,
        s2c.0,
        b2c.1,
        s2c.1,
        failed
    )
}

#[derive(Debug, Default)]
struct ConsumeCounters {
    n: AtomicU64,
    bytes: AtomicU64,
    b2c_sum: AtomicU64,
    b2c_max: AtomicU64,
    s2c_sum: AtomicU64,
    s2c_max: AtomicU64,
}

/// Runs the consumer benchmark; prints report lines and the summary.
pub async fn run_consumer(args: ConsumerArgs) -> anyhow::Result<Summary> {
    let counters = Arc::new(ConsumeCounters::default());
    let hist = Arc::new(Mutex::new(new_hist()));
    let c2 = counters.clone();
    let h2 = hist.clone();
    let listener = Listener::Concurrent(Arc::new(
        move |msgs: &[raftmq_client::ReceivedMessage]| {
            let now = unix_ms();
            let mut h = h2.lock().unwrap_or_else(|p| p.into_inner());
            for m in msgs {
                let b2c = (now - m.record.born_timestamp).max(0) as u64;
                let s2c = (now - m.record.store_timestamp).max(0) as u64;
                c2.n.fetch_add(1, Ordering::Relaxed);
                c2.bytes.fetch_add(m.body().len() as u64, Ordering::Relaxed);
                c2.b2c_sum.fetch_add(b2c, Ordering::Relaxed);
                c2.b2c_max.fetch_max(b2c, Ordering::Relaxed);
                c2.s2c_sum.fetch_add(s2c, Ordering::Relaxed);
                c2.s2c_max.fetch_max(s2c, Ordering::Relaxed);
                let _ = h.record((s2c * 1000).max(1));
            }
            ConsumeResult::Success
        },
    ));
    let cfg = PushConsumerConfig {
        group: args.group.clone(),
        namesrv: args.namesrv.clone(),
        consume_threads: args.threads.max(1),
        consume_batch_max: args.consume_batch.max(1),
        consume_from_where: if args.from_first {
            ConsumeFromWhere::FirstOffset
        } else {
            ConsumeFromWhere::LastOffset
        },
        instance_name: format!("bench-{}", std::process::id()),
        ..Default::default()
    };
    let consumer = PushConsumer::new(cfg, listener)?;
    consumer.subscribe(&args.topic, "*")?;
    consumer.start().await?;
    println!("Consumer Started.");
    let probe = CpuProbe::start();
    let started = Instant::now();
    let interval = Duration::from_millis(args.report_interval_ms.max(100));
    let mut tick = tokio::time::interval(interval);
    tick.tick().await;
    let mut last = Instant::now();
    let mut total = 0u64;
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        let interrupted = tokio::select! {
            _ = tick.tick() => false,
            _ = &mut ctrl_c => true,
        };
        let now = Instant::now();
        let secs = now.duration_since(last).as_secs_f64();
        last = now;
        let n = counters.n.swap(0, Ordering::Relaxed);
        total += n;
        let avg = |sum: &AtomicU64| {
            let s = sum.swap(0, Ordering::Relaxed);
            if n > 0 {
                s as f64 / n as f64
            } else {
                0.0
            }
        };
        let b2c = (
            avg(&counters.b2c_sum),
            counters.b2c_max.swap(0, Ordering::Relaxed) as f64,
        );
        let s2c = (
            avg(&counters.s2c_sum),
            counters.s2c_max.swap(0, Ordering::Relaxed) as f64,
        );
        println!(
            "{}",
            consumer_line(unix_ms(), n as f64 / secs.max(1e-9), b2c, s2c, 0)
        );
        let done = (args.quantity > 0 && total >= args.quantity)
            || (args.duration > 0.0 && started.elapsed().as_secs_f64() >= args.duration);
        if interrupted || done {
            break;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = probe.finish();
    consumer.shutdown().await;
    total += counters.n.swap(0, Ordering::Relaxed);
    let bytes = counters.bytes.load(Ordering::Relaxed);
    let per_msg = bytes.checked_div(total).unwrap_or(0) as usize;
    let h = hist.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let s = summarize(&h, total, 0, per_msg, secs, 0, cpu);
    for l in s.lines("Consume") {
        println!("{l}");
    }
    if args.json {
        println!("{}", serde_json::to_string(&s)?);
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn times_print_like_rocketmq() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00,000");
        assert_eq!(format_time(1_735_725_610_123), "2025-01-01 10:00:10,123");
        assert_eq!(format_time(951_782_400_000), "2000-02-29 00:00:00,000");
    }

    #[test]
    fn report_lines_have_rocketmq_fields() {
        let i = Interval {
            ok: 5000,
            send_failed: 1,
            response_failed: 2,
            rt_sum_us: 5000 * 1234,
            rt_max_us: 210_400,
            secs: 0.5,
        };
        let l = producer_line(1_735_725_610_123, &i);
        assert_eq!(
            l,
            "Current Time: 2025-01-01 10:00:10,123 | Send TPS: 10000 | Max RT(ms): 211 | Average RT(ms):   1.234 | Send Failed: 1 | Response Failed: 2"
        );
        let c = consumer_line(0, 10.0, (3.1, 120.0), (2.9, 118.0), 0);
        assert!(
            c.contains("Consume TPS: 10 | AVG(B2C) RT(ms):   3.100"),
            "{c}"
        );
    }

    #[test]
    fn counters_track_the_longest_gap_between_acks() {
        let c = Counters::default();
        c.ack(100, 1_000, 1);
        c.ack(300, 1_500, 1);
        c.ack(200, 4_500, 2);
        c.ack(200, 4_000, 1); // late completion: no negative gap
        assert_eq!(c.max_gap_us.load(Ordering::Relaxed), 3_000);
        let i = c.take(1.0);
        assert_eq!(
            (i.ok, i.rt_max_us, i.rt_sum_us),
            (5, 300, 100 + 300 + 400 + 200)
        );
    }

    #[test]
    fn proc_stat_cpu_parses_names_with_spaces() {
        let line = "123 (my prog) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0";
        assert_eq!(parse_stat_cpu(line), Some(3.0));
        assert_eq!(parse_stat_cpu("garbage"), None);
        assert!(cpu_seconds(std::process::id()).is_some());
    }

    #[test]
    fn summaries_compute_rates_and_cpu_per_message() {
        let mut h = new_hist();
        for v in 1..=1000u64 {
            h.record(v * 1000).unwrap();
        }
        let s = summarize(
            &h,
            10_000,
            0,
            1024,
            2.0,
            1_500_000,
            vec![
                CpuUse {
                    process: "a".into(),
                    seconds: 0.1,
                },
                CpuUse {
                    process: "b".into(),
                    seconds: 0.1,
                },
            ],
        );
        assert_eq!(s.msg_per_sec, 5000.0);
        assert!((s.mb_per_sec - 5.12).abs() < 1e-9);
        assert!((s.p50_ms - 500.0).abs() < 1.0);
        assert!((s.cpu_us_per_msg - 20.0).abs() < 1e-9);
        assert_eq!(s.longest_ack_gap_ms, 1500.0);
        assert!(s.lines("Send")[0].starts_with("[Complete] Send Total: 10000"));
    }
}
