//! `mqadmin playground`: a NameServer and one three-node broker group as separate
//! processes on loopback, for trying RaftMQ with one command.
//!
//! ```text
//! binaries next to mqadmin --> ports (defaults unless taken) --> <data-dir>/*.conf
//!   --> spawn mqnamesrv, mqbroker n0..n2 (output to <data-dir>/*.log, pids to playground.pids)
//!   --> poll GET_BROKER_CLUSTER_INFO until the group has a master --> print NAMESRV_ADDR=...
//!   --> status lines from each node's RAFTMQ_GROUP_STATUS (9002), refreshed
//!   --> Ctrl-C / SIGTERM / SIGHUP, or a child that dies --> stop every child
//! ```
//! Every exit path stops the children (SIGTERM, SIGKILL after [`STOP_GRACE`]); a panic
//! still SIGKILLs them when they are dropped. Only a SIGKILL of the playground itself
//! leaves them running, and the next start in the same data directory names them.

pub mod conf;
pub mod ports;
pub mod procs;
pub mod status;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use raftmq_client::remoting::ConnectionPool;
use tokio::time::Instant;

pub use conf::{broker_conf, namesrv_conf, path_value, Ports, DEFAULT_PORTS, GROUP, NODES};
pub use ports::{choose_ports, reserve, PortRequest, PortRequests};
pub use procs::{parse_pid_file, Binaries, PID_FILE};
pub use status::{master_addr, status_line};

use procs::Proc;

// The status refresh asks the nodes with one `tokio::join!` of three queries.
const _: () = assert!(NODES == 3);

/// How long children get to stop after SIGTERM before they are killed.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// How often the playground checks that its children still run.
const CHILD_CHECK_EVERY: Duration = Duration::from_millis(200);
/// How often the NameServer is asked for a master while the group starts.
const MASTER_POLL_EVERY: Duration = Duration::from_millis(250);
/// Connect timeout towards the playground's own servers (all on loopback).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Flags of `mqadmin playground`.
#[derive(Debug, Clone, clap::Args)]
pub struct PlaygroundArgs {
    /// Where the configs, logs, pid file and the nodes' data go.
    #[arg(long, value_name = "DIR", default_value = "playground-data")]
    pub data_dir: PathBuf,
    /// NameServer port; 0 = any free port. Default: 9876, or a free port if it is taken.
    #[arg(long, value_name = "PORT")]
    pub namesrv_port: Option<u16>,
    /// Client ports of n0,n1,n2; 0 = any free port. Default: 30911,30921,30931, each
    /// replaced by a free port if taken.
    #[arg(long, value_name = "P0,P1,P2", value_delimiter = ',')]
    pub broker_ports: Option<Vec<u16>>,
    /// Raft ports of n0,n1,n2 (dLegerPeers); 0 = any free port. Default:
    /// 40911,40912,40913, each replaced by a free port if taken.
    #[arg(long, value_name = "P0,P1,P2", value_delimiter = ',')]
    pub raft_ports: Option<Vec<u16>>,
    /// Seconds the group gets to elect a master before the playground gives up.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub startup_timeout: u64,
    /// Seconds between status refreshes. Default: 1 on a terminal (refreshed in place),
    /// 5 otherwise (one line per node each time).
    #[arg(long, value_name = "SECS")]
    pub status_interval: Option<u64>,
}

/// Why the playground stopped.
enum Stop {
    /// A signal asked for it.
    Signal(&'static str),
}

/// Runs the playground until a signal (then `Ok`) or a failure (a child died, start-up
/// failed: `Err` saying which and where its log is). Children are stopped either way.
pub async fn run(args: PlaygroundArgs) -> anyhow::Result<()> {
    let bins = Binaries::next_to_current_exe()?;
    let requests = PortRequests::from_flags(
        args.namesrv_port,
        args.broker_ports.as_deref(),
        args.raft_ports.as_deref(),
    )
    .map_err(|e| anyhow!(e))?;
    let mut signals = Signals::new()?;
    let dir = prepare_data_dir(&args.data_dir)?;
    let (ports, guards) = choose_ports(&requests, reserve).map_err(|e| anyhow!(e))?;
    let mut configs = vec![write_file(
        &dir,
        "namesrv.conf",
        &namesrv_conf(ports.namesrv),
    )?];
    for node in 0..NODES {
        let store = dir.join(format!("broker-n{node}"));
        let store = path_value(&store).map_err(|e| anyhow!("--data-dir: {e}"))?;
        let text = broker_conf(node, &ports, &store);
        configs.push(write_file(&dir, &format!("broker-n{node}.conf"), &text)?);
    }
    // Released just before the servers bind them.
    drop(guards);

    let mut procs = Vec::new();
    let outcome = supervise(
        &args,
        &bins,
        &dir,
        &ports,
        &configs,
        &mut procs,
        &mut signals,
    )
    .await;
    if let Ok(Stop::Signal(name)) = &outcome {
        eprintln!("playground: {name} received, stopping");
    }
    // Brokers first, so that they unregister from a NameServer still running.
    let first_broker = procs.len().min(1);
    let (namesrv, brokers) = procs.split_at_mut(first_broker);
    procs::stop(brokers, STOP_GRACE).await;
    procs::stop(namesrv, STOP_GRACE).await;
    let _ = std::fs::remove_file(dir.join(PID_FILE));
    outcome.map(|_| ())
}

/// Starts the children into `procs`, waits for a master, then shows status until a
/// signal or a failure.
async fn supervise(
    args: &PlaygroundArgs,
    bins: &Binaries,
    dir: &Path,
    ports: &Ports,
    configs: &[PathBuf],
    procs: &mut Vec<Proc>,
    signals: &mut Signals,
) -> anyhow::Result<Stop> {
    procs.push(Proc::spawn(
        "mqnamesrv",
        &bins.namesrv,
        &[Path::new("-c"), &configs[0]],
        &dir.join("namesrv.log"),
    )?);
    for node in 0..NODES {
        procs.push(Proc::spawn(
            &format!("mqbroker n{node}"),
            &bins.broker,
            &[Path::new("-c"), &configs[node + 1]],
            &dir.join(format!("broker-n{node}.log")),
        )?);
    }
    write_file(dir, PID_FILE, &procs::pid_file_text(procs))?;
    eprintln!(
        "playground: started mqnamesrv and {NODES} mqbroker nodes; configs, logs and data in {}; \
         Ctrl-C stops them",
        dir.display()
    );

    let pool = ConnectionPool::new(CONNECT_TIMEOUT, None);
    let namesrv = ports.namesrv_addr();
    let deadline = Instant::now() + Duration::from_secs(args.startup_timeout);
    let mut last_error;
    loop {
        check_children(procs)?;
        let asked = tokio::select! {
            name = signals.recv() => return Ok(Stop::Signal(name)),
            r = status::cluster_master(&pool, &namesrv, GROUP) => r,
        };
        match asked {
            Ok(Some(_)) => break,
            Ok(None) => last_error = format!("the NameServer knows no master of {GROUP} yet"),
            Err(e) => last_error = e,
        }
        if Instant::now() >= deadline {
            let logs: Vec<String> = procs.iter().map(|p| p.log.display().to_string()).collect();
            bail!(
                "no master elected within {} s ({last_error}); see the logs: {}",
                args.startup_timeout,
                logs.join(", ")
            );
        }
        tokio::select! {
            name = signals.recv() => return Ok(Stop::Signal(name)),
            _ = tokio::time::sleep(MASTER_POLL_EVERY) => {}
        }
    }

    let mut out = StatusView::new(std::io::stdout().is_terminal());
    out.line(&format!("NAMESRV_ADDR={namesrv}"))?;
    let every = Duration::from_secs(
        args.status_interval
            .unwrap_or(if out.tty { 1 } else { 5 })
            .max(1),
    );
    let mut next_status = Instant::now();
    loop {
        check_children(procs)?;
        if Instant::now() >= next_status {
            let query = |node: usize| {
                let (pool, addr) = (&pool, ports.client_addr(node));
                async move {
                    let s = status::group_status(pool, &addr).await;
                    status_line(node, &addr, &s)
                }
            };
            let lines = tokio::select! {
                name = signals.recv() => return Ok(Stop::Signal(name)),
                (a, b, c) = async { tokio::join!(query(0), query(1), query(2)) } => [a, b, c],
            };
            out.print(&lines)?;
            next_status = Instant::now() + every;
        }
        tokio::select! {
            name = signals.recv() => return Ok(Stop::Signal(name)),
            _ = tokio::time::sleep(CHILD_CHECK_EVERY) => {}
        }
    }
}

/// `Err` naming the first child that is no longer running.
fn check_children(procs: &mut [Proc]) -> anyhow::Result<()> {
    for p in procs.iter_mut() {
        match p.exited() {
            Ok(None) => {}
            Ok(Some(status)) => bail!(p.died_message(&status.to_string())),
            Err(e) => bail!(p.died_message(&format!("its status cannot be read: {e}"))),
        }
    }
    Ok(())
}

/// Creates the data directory and returns its absolute path; refuses one in use by
/// servers of an earlier playground.
fn prepare_data_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve the data directory {}", dir.display()))?;
    let running = procs::still_running(&dir);
    if !running.is_empty() {
        let list: Vec<String> = running.iter().map(|(n, p)| format!("{n} {p}")).collect();
        let pids: Vec<String> = running.iter().map(|(_, p)| p.to_string()).collect();
        bail!(
            "servers of an earlier playground still use {} ({}): stop them first (kill {}) \
             or pass another --data-dir",
            dir.display(),
            list.join(", "),
            pids.join(" ")
        );
    }
    Ok(dir)
}

fn write_file(dir: &Path, name: &str, text: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Status output: refreshed in place on a terminal, appended otherwise.
struct StatusView {
    tty: bool,
    /// Lines of the last refresh, to move back over on a terminal.
    printed: usize,
}

impl StatusView {
    fn new(tty: bool) -> Self {
        StatusView { tty, printed: 0 }
    }

    /// A line printed once, above the refreshed ones.
    fn line(&mut self, line: &str) -> anyhow::Result<()> {
        write_stdout(&format!("{line}\n"))
    }

    /// The status lines, replacing the previous ones on a terminal.
    fn print(&mut self, lines: &[String]) -> anyhow::Result<()> {
        let mut text = String::new();
        if self.tty && self.printed > 0 {
            // Cursor up over the previous lines, each then cleared before rewriting.
            text.push_str(&format!("\x1b[{}A", self.printed));
        }
        for line in lines {
            if self.tty {
                text.push_str("\r\x1b[2K");
            }
            text.push_str(line);
            text.push('\n');
        }
        write_stdout(&text)?;
        self.printed = lines.len();
        Ok(())
    }
}

fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
        .context("cannot write to stdout")
}

/// The signals that stop the playground: SIGINT (Ctrl-C), SIGTERM and SIGHUP.
struct Signals {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installed before any child starts, so that no signal goes unnoticed.
    fn new() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let install = |kind: SignalKind, name: &str| {
                signal(kind).with_context(|| format!("cannot listen for {name}"))
            };
            Ok(Signals {
                int: install(SignalKind::interrupt(), "SIGINT")?,
                term: install(SignalKind::terminate(), "SIGTERM")?,
                hup: install(SignalKind::hangup(), "SIGHUP")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// Waits for the next signal and returns its name.
    async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.int.recv() => "SIGINT",
                _ = self.term.recv() => "SIGTERM",
                _ = self.hup.recv() => "SIGHUP",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}
