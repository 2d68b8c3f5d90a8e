//! One run: start the servers, run the workload under a seeded fault schedule, heal,
//! drain every replica, check the history and write the report. Also the fixed suites.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use raftmq_client::admin::AdminClient;
use raftmq_client::remoting::ConnectionPool;
use raftmq_protocol::body::TopicConfig;

use crate::checker::{CheckOptions, Results};
use crate::cluster::{Cluster, ClusterSpec, NetMode, NODES};
use crate::history::{EventType, Op, HARNESS};
use crate::nemesis::{parse_faults, run_schedule, Schedule};
use crate::recorder::Recorder;
use crate::report::{check_dir, final_line};
use crate::workload::{drain, wait_replicas_agree, Replica, Workload, WorkloadSpec};

/// What `jepsen-tests run` was asked for.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Fault list (`kill-leader,partition-leader`, `a+b` for together).
    pub nemesis: String,
    /// Length of the fault phase.
    pub time_limit: Duration,
    /// Target sends per second over all producers.
    pub rate: f64,
    /// Seed; `None` takes one from the clock (printed either way).
    pub seed: Option<u64>,
    /// Output directory; `None`: `./jepsen-results/<timestamp>`.
    pub out: Option<PathBuf>,
    /// Where mqnamesrv and mqbroker are; `None`: next to this executable.
    pub bin_dir: Option<PathBuf>,
    /// NameServers (1 or 2).
    pub namesrvs: usize,
    /// Loopback instead of network namespaces.
    pub no_netns: bool,
}

/// The topic every run uses.
pub const TOPIC: &str = "JepsenTopic";
/// Its queues.
pub const QUEUES: u32 = 8;
/// Fault-free traffic before the schedule starts.
const WARMUP: Duration = Duration::from_secs(3);
/// How long producers keep going after the last heal (recovery is measured in it).
const RECOVERY: Duration = Duration::from_secs(10);

/// Target sends per second of suite runs (≥ 300 acknowledged per second on average, with
/// the outages included).
const SUITE_RATE: f64 = 400.0;

/// One schedule of a suite: nemesis list, seconds of faults, seed.
pub type SuiteEntry = (&'static str, u64, u64);

/// The named suites: (name, schedules).
pub const SUITES: &[(&str, &[SuiteEntry])] = &[
    (
        "ci",
        &[
            ("kill-leader", 30, 1),
            ("pause-leader", 30, 2),
            ("partition-leader", 30, 3),
            ("partition-halves", 30, 4),
            ("kill-all-restart", 30, 5),
        ],
    ),
    (
        "long",
        &[
            ("kill-leader", 60, 11),
            ("kill-follower", 60, 12),
            ("kill-majority", 60, 13),
            ("kill-all-restart", 60, 14),
            ("pause-leader", 60, 15),
            ("pause-majority", 60, 16),
            ("partition-leader", 60, 17),
            ("partition-follower,partition-one-way", 60, 18),
            ("partition-halves,partition-bridge", 60, 19),
            ("packet-loss", 60, 20),
            ("kill-namesrv,partition-namesrv", 60, 21),
            (
                "leader-transfer-storm,kill-leader+partition-follower",
                60,
                22,
            ),
        ],
    ),
];

fn timestamp() -> String {
    chrono::Local::now().format("%Y%m%dT%H%M%S").to_string()
}

fn default_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

/// Runs one schedule; the returned results say whether the history was valid.
pub async fn run(opts: &RunOptions) -> anyhow::Result<Results> {
    let seed = opts.seed.unwrap_or_else(default_seed);
    let faults = parse_faults(&opts.nemesis)?;
    let out = opts
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("jepsen-results").join(timestamp()));
    std::fs::create_dir_all(&out)
        .with_context(|| format!("cannot create output directory {}", out.display()))?;
    let schedule = Schedule::new(faults, seed, opts.time_limit);
    println!(
        "jepsen-tests: nemesis {} seed {seed} time limit {}s rate {}/s, output {}",
        opts.nemesis,
        opts.time_limit.as_secs(),
        opts.rate,
        out.display()
    );
    println!("{schedule}");
    let bin_dir = match &opts.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()
            .context("cannot find this executable's path")?
            .parent()
            .map(Path::to_path_buf)
            .context("this executable has no directory")?,
    };
    let rec = Recorder::create(&out.join("history.jsonl"))?;
    let mut spec = ClusterSpec::new(bin_dir, out.join("data"), out.join("logs"));
    spec.namesrvs = opts.namesrvs;
    if opts.no_netns {
        spec.net = NetMode::Loopback;
    }
    let phase = |name: &str| {
        rec.record(
            HARNESS,
            EventType::Info,
            0,
            Op::Phase {
                name: name.to_owned(),
            },
        );
    };
    phase("setup");
    let cluster = match Cluster::start(spec) {
        Ok(c) => c,
        Err(e) => {
            rec.close()?;
            return Err(e.context("cannot start the servers"));
        }
    };
    let on_signal = cluster.install_signal_cleanup()?;
    if let Some(reason) = cluster.no_netns_reason() {
        eprintln!(
            "jepsen-tests: WARNING: no network namespaces ({reason}): partition faults are SKIPPED"
        );
    }
    let outcome = drive(&cluster, &rec, opts, schedule, &phase).await;
    phase("done");
    let died = cluster.unexpected_exits();
    cluster.shutdown();
    on_signal.abort();
    rec.close()?;
    outcome?;
    for d in &died {
        eprintln!("jepsen-tests: a server died by itself: {d}");
    }
    let results = check_dir(&out, &CheckOptions::default())?;
    let summary = std::fs::read_to_string(out.join("summary.txt")).unwrap_or_default();
    // The summary's last line is the final `valid: ...` line.
    if summary.is_empty() {
        println!("{}", final_line(&results));
    } else {
        print!("{summary}");
    }
    Ok(results)
}

async fn drive(
    cluster: &Cluster,
    rec: &Recorder,
    opts: &RunOptions,
    schedule: Schedule,
    phase: &impl Fn(&str),
) -> anyhow::Result<()> {
    cluster
        .wait_leader(Instant::now() + Duration::from_secs(60))
        .await
        .context("the group never elected a leader")?;
    let namesrv = cluster.namesrv_addrs().join(";");
    create_topic(&namesrv, Duration::from_secs(60)).await?;
    let wspec = WorkloadSpec {
        namesrv: namesrv.clone(),
        topic: TOPIC.to_owned(),
        queues: QUEUES,
        producers: 3,
        ordered_producers: 1,
        keys_per_ordered: 4,
        rate: opts.rate,
        inflight: 32,
        consumers: 2,
    };
    let mut workload = Workload::start(&wspec, rec).await?;
    phase("faults");
    let started = Instant::now();
    // A few seconds of fault-free traffic first: the baseline of the plots.
    tokio::time::sleep(WARMUP).await;
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let faults_started = Instant::now();
    if let Err(e) = run_schedule(cluster, &schedule, rec, stop_rx).await {
        eprintln!("jepsen-tests: the final heal of the schedule failed: {e:#}");
    }
    // The fault phase lasts the whole time limit, even when the last window ended early.
    if let Some(left) = opts.time_limit.checked_sub(faults_started.elapsed()) {
        tokio::time::sleep(left).await;
    }
    phase("heal");
    if let Err(e) = cluster.heal_all() {
        eprintln!("jepsen-tests: healing failed: {e:#}");
    }
    let healthy = cluster
        .wait_healthy(Instant::now() + Duration::from_secs(90))
        .await;
    if let Err(e) = &healthy {
        eprintln!("jepsen-tests: the group did not become healthy after healing: {e:#}");
    }
    tokio::time::sleep(RECOVERY).await;
    phase("stop-producers");
    workload.stop_producers(Duration::from_secs(30)).await;
    println!(
        "jepsen-tests: {} sends acknowledged in {:.0}s",
        workload.acked(),
        started.elapsed().as_secs_f64()
    );
    workload
        .stop_consumers(Duration::from_secs(3), Duration::from_secs(30))
        .await;
    phase("drain");
    let replicas: Vec<Replica> = (0..NODES)
        .map(|i| Replica {
            name: cluster.node_name(i),
            addr: cluster.node_addr(i),
        })
        .collect();
    let pool = ConnectionPool::new(Duration::from_secs(2), None);
    let broker = cluster.broker_name().to_owned();
    if !wait_replicas_agree(
        &pool,
        &replicas,
        &broker,
        TOPIC,
        QUEUES,
        Duration::from_secs(60),
    )
    .await
    {
        eprintln!(
            "jepsen-tests: replicas still disagree on max offsets after 60 s; draining anyway"
        );
    }
    drain(
        rec,
        &replicas,
        &broker,
        TOPIC,
        QUEUES,
        Duration::from_secs(60),
    )
    .await;
    healthy.map(|_| ())
}

/// Creates the run's topic on the group's master, retrying while there is none yet.
async fn create_topic(namesrv: &str, deadline: Duration) -> anyhow::Result<()> {
    let admin = AdminClient::new(namesrv.split(';').map(str::to_owned).collect())?;
    let cfg = TopicConfig {
        topic_name: TOPIC.to_owned(),
        read_queue_nums: QUEUES as i32,
        write_queue_nums: QUEUES as i32,
        perm: 6,
        ..Default::default()
    };
    let end = Instant::now() + deadline;
    loop {
        match admin.create_topic_in_cluster("RaftCluster", &cfg).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() < end => {
                tracing::debug!("topic creation not yet possible: {e}");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => return Err(anyhow::anyhow!("cannot create topic {TOPIC}: {e}")),
        }
    }
}

/// Runs every schedule of suite `name` in turn, each in its own output directory.
pub async fn suite(
    name: &str,
    out: Option<PathBuf>,
    bin_dir: Option<PathBuf>,
    no_netns: bool,
) -> anyhow::Result<Vec<Results>> {
    let schedules = SUITES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| *s)
        .with_context(|| format!("unknown suite {name}"))?;
    let root = out
        .unwrap_or_else(|| PathBuf::from("jepsen-results").join(format!("{}-{name}", timestamp())));
    let mut all = Vec::new();
    let mut lines = Vec::new();
    for (i, (nemesis, secs, seed)) in schedules.iter().enumerate() {
        let opts = RunOptions {
            nemesis: (*nemesis).to_owned(),
            time_limit: Duration::from_secs(*secs),
            rate: SUITE_RATE,
            seed: Some(*seed),
            out: Some(root.join(format!("{:02}-{}", i + 1, nemesis.replace([',', '+'], "_")))),
            bin_dir: bin_dir.clone(),
            namesrvs: 1,
            no_netns,
        };
        let r = run(&opts).await?;
        lines.push(format!("{nemesis} (seed {seed}): {}", final_line(&r)));
        all.push(r);
    }
    println!("suite {name}:");
    for l in &lines {
        println!("  {l}");
    }
    let text = lines.join("\n") + "\n";
    std::fs::write(root.join("suite.txt"), text)
        .with_context(|| format!("cannot write {}", root.join("suite.txt").display()))?;
    Ok(all)
}
