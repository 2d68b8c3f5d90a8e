//! The nemesis: fault names, a seeded schedule of fault windows, and its execution
//! against a [`Cluster`], recording each fault in the history.
//!
//! ```text
//! "kill-leader,partition-leader+packet-loss" --parse--> [[KillLeader], [PartitionLeader, PacketLoss]]
//! Schedule::new(faults, seed, limit): fault on 4-10 s (pauses 2-5 s), quiet 4-8 s, cycling
//! run_schedule: per window: pick targets (the leader now, seeded choices otherwise)
//!   -> Nemesis invoke (targets, detail) -> apply -> hold (transfer storm ticks) -> heal
//!   -> Nemesis ok -> quiet; at the end (or on stop) heal everything
//! ```
//! Partition faults without network namespaces are recorded as skipped, loudly.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use anyhow::bail;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::cluster::{Cluster, NODES};
use crate::history::{EventType, Op, NEMESIS};
use crate::recorder::Recorder;

/// Probability of dropping a packet on a node-to-node link in `packet-loss`.
pub const PACKET_LOSS: f64 = 0.3;
/// Fault-on time of a window, ms (inclusive range).
const HOLD_MS: (u64, u64) = (4_000, 10_000);
/// Fault-on time of a window of pauses only, ms: past the election timeout (≤ 700 ms).
const PAUSE_HOLD_MS: (u64, u64) = (2_000, 5_000);
/// Quiet time after a window, ms.
const QUIET_MS: (u64, u64) = (4_000, 8_000);
/// Mean interval between transfers of a leader-transfer storm, ms (±50 %).
const STORM_EVERY_MS: u64 = 1_000;

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// kill -9 of the leader, restarted at heal.
    KillLeader,
    /// kill -9 of a follower, restarted at heal.
    KillFollower,
    /// kill -9 of two of the three nodes, restarted at heal.
    KillMajority,
    /// kill -9 of all three nodes, restarted at heal.
    KillAll,
    /// SIGSTOP of the leader, SIGCONT at heal.
    PauseLeader,
    /// SIGSTOP of two nodes, SIGCONT at heal.
    PauseMajority,
    /// The leader cut from both followers (clients and NameServers still reach it).
    PartitionLeader,
    /// A follower cut from the other two nodes.
    PartitionFollower,
    /// A random 2/1 split of the nodes.
    PartitionHalves,
    /// Two nodes cut from each other, the third sees both.
    PartitionBridge,
    /// One direction between the leader and a follower dropped.
    PartitionOneWay,
    /// Random loss ([`PACKET_LOSS`]) on every node-to-node link.
    PacketLoss,
    /// kill -9 of a NameServer, restarted at heal.
    KillNamesrv,
    /// Every broker cut from every NameServer.
    PartitionNamesrv,
    /// Leadership transfers to random nodes about every second.
    LeaderTransferStorm,
}

impl Fault {
    /// Every fault, in the order of their names in messages.
    pub const ALL: [Fault; 15] = [
        Fault::KillLeader,
        Fault::KillFollower,
        Fault::KillMajority,
        Fault::KillAll,
        Fault::PauseLeader,
        Fault::PauseMajority,
        Fault::PartitionLeader,
        Fault::PartitionFollower,
        Fault::PartitionHalves,
        Fault::PartitionBridge,
        Fault::PartitionOneWay,
        Fault::PacketLoss,
        Fault::KillNamesrv,
        Fault::PartitionNamesrv,
        Fault::LeaderTransferStorm,
    ];

    /// The fault's name on the command line and in the history.
    pub fn name(self) -> &'static str {
        match self {
            Fault::KillLeader => "kill-leader",
            Fault::KillFollower => "kill-follower",
            Fault::KillMajority => "kill-majority",
            Fault::KillAll => "kill-all-restart",
            Fault::PauseLeader => "pause-leader",
            Fault::PauseMajority => "pause-majority",
            Fault::PartitionLeader => "partition-leader",
            Fault::PartitionFollower => "partition-follower",
            Fault::PartitionHalves => "partition-halves",
            Fault::PartitionBridge => "partition-bridge",
            Fault::PartitionOneWay => "partition-one-way",
            Fault::PacketLoss => "packet-loss",
            Fault::KillNamesrv => "kill-namesrv",
            Fault::PartitionNamesrv => "partition-namesrv",
            Fault::LeaderTransferStorm => "leader-transfer-storm",
        }
    }

    /// Whether it needs network namespaces (iptables); skipped on loopback.
    pub fn needs_netns(self) -> bool {
        matches!(
            self,
            Fault::PartitionLeader
                | Fault::PartitionFollower
                | Fault::PartitionHalves
                | Fault::PartitionBridge
                | Fault::PartitionOneWay
                | Fault::PacketLoss
                | Fault::PartitionNamesrv
        )
    }

    fn is_pause(self) -> bool {
        matches!(self, Fault::PauseLeader | Fault::PauseMajority)
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Fault {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Fault> {
        let s = s.trim();
        if s == "kill-all" {
            return Ok(Fault::KillAll);
        }
        if let Some(f) = Fault::ALL.into_iter().find(|f| f.name() == s) {
            return Ok(f);
        }
        let names: Vec<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
        bail!(
            "unknown fault {s:?}; valid faults: {} (kill-all = kill-all-restart; join faults \
             with + to combine them in one window)",
            names.join(", ")
        )
    }
}

/// Parses a comma-separated list of fault windows, each one fault or several joined
/// with `+` (`kill-leader,partition-leader+packet-loss`).
pub fn parse_faults(list: &str) -> anyhow::Result<Vec<Vec<Fault>>> {
    let mut out = Vec::new();
    for token in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let mut combo = Vec::new();
        for part in token.split('+') {
            let f: Fault = part.parse()?;
            if combo.contains(&f) {
                bail!("{token}: {f} twice in one combination");
            }
            combo.push(f);
        }
        out.push(combo);
    }
    if out.is_empty() {
        bail!("no faults given");
    }
    Ok(out)
}

/// `a+b` for a combination.
pub fn combo_name(faults: &[Fault]) -> String {
    faults
        .iter()
        .map(|f| f.name())
        .collect::<Vec<_>>()
        .join("+")
}

/// SplitMix64: a tiny seeded generator whose sequence never changes with a dependency
/// update, so a printed seed reproduces a schedule forever.
#[derive(Debug, Clone)]
pub struct SeededRng(u64);

impl SeededRng {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> SeededRng {
        SeededRng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// Uniform index below `n` (> 0).
    pub fn index(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// A seeded permutation of `0..n`.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.index(i + 1);
            v.swap(i, j);
        }
        v
    }
}

/// One fault window, times from the start of [`run_schedule`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// The faults applied together.
    pub faults: Vec<Fault>,
    /// When they start.
    pub start: Duration,
    /// When they are healed.
    pub end: Duration,
    /// Seed of this window's target choices.
    pub seed: u64,
}

/// A seeded list of fault windows within a time limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The seed it was made from.
    pub seed: u64,
    /// Every window ends by then.
    pub time_limit: Duration,
    /// The windows, in time order.
    pub windows: Vec<Window>,
}

impl Schedule {
    /// Windows cycling through `faults` in order: each on for a seeded 4–10 s (2–5 s for
    /// pauses only), then quiet for 4–8 s, until `time_limit` leaves no room for another.
    pub fn new(faults: Vec<Vec<Fault>>, seed: u64, time_limit: Duration) -> Schedule {
        let mut rng = SeededRng::new(seed);
        let limit_ms = u64::try_from(time_limit.as_millis()).unwrap_or(u64::MAX);
        let mut windows = Vec::new();
        let mut t = 0u64;
        for k in 0.. {
            let Some(combo) = faults.get(k % faults.len().max(1)) else {
                break;
            };
            let (lo, hi) = if combo.iter().all(|f| f.is_pause()) {
                PAUSE_HOLD_MS
            } else {
                HOLD_MS
            };
            let hold = rng.range(lo, hi);
            let quiet = rng.range(QUIET_MS.0, QUIET_MS.1);
            let window_seed = rng.next_u64();
            // A window shorter than the minimum hold is not worth starting.
            if t + lo > limit_ms {
                break;
            }
            let end = (t + hold).min(limit_ms);
            windows.push(Window {
                faults: combo.clone(),
                start: Duration::from_millis(t),
                end: Duration::from_millis(end),
                seed: window_seed,
            });
            t = end + quiet;
        }
        Schedule {
            seed,
            time_limit,
            windows,
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "nemesis schedule: seed {}, time limit {} s, {} windows",
            self.seed,
            self.time_limit.as_secs_f64(),
            self.windows.len()
        )?;
        for w in &self.windows {
            writeln!(
                f,
                "  {:>7.1} s .. {:>7.1} s  {}",
                w.start.as_secs_f64(),
                w.end.as_secs_f64(),
                combo_name(&w.faults)
            )?;
        }
        Ok(())
    }
}

/// What to undo at heal.
#[derive(Debug)]
enum Undo {
    /// Restart these nodes.
    Restart(Vec<usize>),
    /// SIGCONT these nodes.
    Cont(Vec<usize>),
    /// Flush the rules of these servers.
    Flush(Vec<String>),
    /// Restart this NameServer.
    RestartNamesrv(usize),
    /// Stop the storm (counts transfers asked and refused, the last refusal).
    Storm {
        asked: u32,
        refused: u32,
        last_error: Option<String>,
    },
    /// Nothing was done.
    Nothing,
}

/// A fault in force.
#[derive(Debug)]
struct Active {
    fault: Fault,
    op_id: u64,
    targets: Vec<String>,
    undo: Undo,
}

fn names(c: &Cluster, nodes: &[usize]) -> Vec<String> {
    nodes.iter().map(|i| c.node_name(*i)).collect()
}

/// The leader now, else a seeded random node and a note saying so.
async fn leader_or_random(c: &Cluster, rng: &mut SeededRng) -> (usize, String) {
    match c.leader().await {
        Some(l) => (l, String::new()),
        None => {
            let n = rng.index(NODES);
            (n, format!("no leader found, chose n{n} at random; "))
        }
    }
}

fn others(n: usize) -> Vec<usize> {
    (0..NODES).filter(|i| *i != n).collect()
}

/// Chooses targets, records the invoke, applies the fault.
async fn start_fault(
    c: &Cluster,
    rec: &Recorder,
    fault: Fault,
    rng: &mut SeededRng,
) -> Option<Active> {
    let op_id = rec.next_op_id();
    let record = |kind: EventType, targets: &[String], detail: String| {
        rec.record(
            NEMESIS,
            kind,
            op_id,
            Op::Nemesis {
                fault: fault.name().to_owned(),
                targets: targets.to_vec(),
                detail,
            },
        );
    };
    if fault.needs_netns() && !c.netns() {
        let why = c.no_netns_reason().unwrap_or("no netns");
        eprintln!(
            "\n!!!!!!!!!! jepsen: fault {fault} SKIPPED: not root / no netns ({why}) !!!!!!!!!!\n"
        );
        let detail = format!("skipped: not root / no netns ({why})");
        record(EventType::Invoke, &[], detail);
        return Some(Active {
            fault,
            op_id,
            targets: Vec::new(),
            undo: Undo::Nothing,
        });
    }
    // Plan: targets, detail and undo before acting, so the invoke precedes the fault.
    let (targets, detail, undo) = match plan(c, fault, rng).await {
        Ok(p) => p,
        Err(e) => {
            record(EventType::Invoke, &[], String::new());
            record(EventType::Fail, &[], format!("{e:#}"));
            return None;
        }
    };
    record(EventType::Invoke, &targets, detail);
    let applied = apply(c, fault, &targets, &undo);
    let active = Active {
        fault,
        op_id,
        targets: targets.clone(),
        undo,
    };
    match applied {
        Ok(()) => Some(active),
        Err(e) => {
            eprintln!("jepsen: nemesis {fault} failed: {e:#}");
            // Undo whatever part was applied; the fault is over.
            let healed = heal(c, &active.undo).await;
            let mut detail = format!("{e:#}");
            if let Err(h) = healed {
                detail.push_str(&format!("; heal: {h:#}"));
            }
            record(EventType::Fail, &targets, detail);
            None
        }
    }
}

/// Targets, detail and what to undo for `fault` now.
async fn plan(
    c: &Cluster,
    fault: Fault,
    rng: &mut SeededRng,
) -> anyhow::Result<(Vec<String>, String, Undo)> {
    let n = |i: usize| c.node_name(i);
    Ok(match fault {
        Fault::KillLeader | Fault::PauseLeader => {
            let (l, note) = leader_or_random(c, rng).await;
            let (what, undo) = if fault == Fault::KillLeader {
                ("SIGKILL", Undo::Restart(vec![l]))
            } else {
                ("SIGSTOP", Undo::Cont(vec![l]))
            };
            (vec![n(l)], format!("{note}{what} leader {}", n(l)), undo)
        }
        Fault::KillFollower => {
            let (l, note) = leader_or_random(c, rng).await;
            let o = others(l);
            let f = o[rng.index(o.len())];
            let detail = format!("{note}SIGKILL follower {} (leader {})", n(f), n(l));
            (vec![n(f)], detail, Undo::Restart(vec![f]))
        }
        Fault::KillMajority | Fault::PauseMajority => {
            let mut two = rng.permutation(NODES);
            two.truncate(2);
            two.sort_unstable();
            let what = if fault == Fault::KillMajority {
                "SIGKILL"
            } else {
                "SIGSTOP"
            };
            let detail = format!("{what} {}", names(c, &two).join(", "));
            let undo = if fault == Fault::KillMajority {
                Undo::Restart(two.clone())
            } else {
                Undo::Cont(two.clone())
            };
            (names(c, &two), detail, undo)
        }
        Fault::KillAll => {
            let all: Vec<usize> = (0..NODES).collect();
            (
                names(c, &all),
                "SIGKILL every node".into(),
                Undo::Restart(all),
            )
        }
        Fault::PartitionLeader | Fault::PartitionFollower | Fault::PartitionHalves => {
            let (lone, note) = match fault {
                Fault::PartitionLeader => leader_or_random(c, rng).await,
                Fault::PartitionFollower => {
                    let (l, note) = leader_or_random(c, rng).await;
                    let o = others(l);
                    (o[rng.index(o.len())], note)
                }
                _ => (rng.index(NODES), String::new()),
            };
            let rest = others(lone);
            let detail = format!(
                "{note}iptables DROP {} <-> {} (halves {{{}}} | {{{}}})",
                n(lone),
                names(c, &rest).join(","),
                names(c, &rest).join(","),
                n(lone)
            );
            let mut all = vec![n(lone)];
            all.extend(names(c, &rest));
            (vec![n(lone)], detail, Undo::Flush(all))
        }
        Fault::PartitionBridge => {
            let mid = rng.index(NODES);
            let ends = others(mid);
            let detail = format!(
                "iptables DROP {} <-> {}; {} sees both",
                n(ends[0]),
                n(ends[1]),
                n(mid)
            );
            (names(c, &ends), detail, Undo::Flush(names(c, &ends)))
        }
        Fault::PartitionOneWay => {
            let (l, note) = leader_or_random(c, rng).await;
            let o = others(l);
            let f = o[rng.index(o.len())];
            let (from, to) = if rng.index(2) == 0 { (l, f) } else { (f, l) };
            let detail = format!(
                "{note}iptables DROP {} -> {} only (leader {})",
                n(from),
                n(to),
                n(l)
            );
            (
                vec![n(from), n(to)],
                detail,
                Undo::Flush(vec![n(from), n(to)]),
            )
        }
        Fault::PacketLoss => {
            let all: Vec<usize> = (0..NODES).collect();
            let detail = format!(
                "iptables statistic DROP {:.0} % on every node<->node link",
                PACKET_LOSS * 100.0
            );
            (names(c, &all), detail, Undo::Flush(names(c, &all)))
        }
        Fault::KillNamesrv => {
            let j = rng.index(c.namesrv_count());
            let name = c.namesrv_name(j);
            (
                vec![name.clone()],
                format!("SIGKILL {name}"),
                Undo::RestartNamesrv(j),
            )
        }
        Fault::PartitionNamesrv => {
            let mut all: Vec<String> = (0..NODES).map(n).collect();
            let ns: Vec<String> = (0..c.namesrv_count()).map(|j| c.namesrv_name(j)).collect();
            let detail = format!(
                "iptables DROP {{{}}} <-> {{{}}} (clients still reach both)",
                all.join(","),
                ns.join(",")
            );
            all.extend(ns);
            (all.clone(), detail, Undo::Flush(all))
        }
        Fault::LeaderTransferStorm => (
            Vec::new(),
            format!("leader transfer to a random node about every {STORM_EVERY_MS} ms"),
            Undo::Storm {
                asked: 0,
                refused: 0,
                last_error: None,
            },
        ),
    })
}

/// Does what `undo` will undo.
fn apply(c: &Cluster, fault: Fault, targets: &[String], undo: &Undo) -> anyhow::Result<()> {
    match undo {
        Undo::Restart(nodes) => {
            for &i in nodes {
                // In a combination another fault may have killed it already.
                if c.is_running(i) {
                    c.kill(i)?;
                }
            }
            Ok(())
        }
        Undo::Cont(nodes) => {
            for &i in nodes {
                c.stop(i)?;
            }
            Ok(())
        }
        Undo::RestartNamesrv(j) => c.kill_namesrv(*j).map(|_| ()),
        Undo::Flush(all) => apply_net(c, fault, targets, all),
        Undo::Storm { .. } | Undo::Nothing => Ok(()),
    }
}

/// The iptables rules of a partition fault, whose targets were planned.
fn apply_net(c: &Cluster, fault: Fault, targets: &[String], all: &[String]) -> anyhow::Result<()> {
    let nodes: Vec<String> = (0..NODES).map(|i| c.node_name(i)).collect();
    match fault {
        Fault::PartitionLeader | Fault::PartitionFollower | Fault::PartitionHalves => {
            let lone = &targets[0];
            for o in nodes.iter().filter(|o| *o != lone) {
                c.block(lone, o)?;
            }
        }
        Fault::PartitionBridge => c.block(&targets[0], &targets[1])?,
        Fault::PartitionOneWay => c.block_one_way(&targets[0], &targets[1])?,
        Fault::PacketLoss => {
            for node in &nodes {
                let from: Vec<&str> = nodes
                    .iter()
                    .filter(|o| *o != node)
                    .map(String::as_str)
                    .collect();
                c.loss(node, &from, PACKET_LOSS)?;
            }
        }
        Fault::PartitionNamesrv => {
            for node in &nodes {
                for ns in all.iter().filter(|s| s.starts_with("ns")) {
                    c.block(node, ns)?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Undoes `undo`; returns what was done, for the heal event.
async fn heal(c: &Cluster, undo: &Undo) -> anyhow::Result<String> {
    match undo {
        Undo::Restart(nodes) => {
            let mut done = Vec::new();
            for &i in nodes {
                if !c.is_running(i) {
                    let pid = c.restart(i)?;
                    done.push(format!("{} pid {pid}", c.node_name(i)));
                }
            }
            Ok(format!("restarted {}", done.join(", ")))
        }
        Undo::Cont(nodes) => {
            for &i in nodes {
                if c.is_paused(i) {
                    c.cont(i)?;
                }
            }
            Ok(format!("SIGCONT {}", names(c, nodes).join(", ")))
        }
        Undo::Flush(servers) => {
            for s in servers {
                c.heal_net(s)?;
            }
            Ok(format!("iptables flushed on {}", servers.join(", ")))
        }
        Undo::RestartNamesrv(j) => {
            let pid = c.restart_namesrv(*j)?;
            Ok(format!("restarted {} pid {pid}", c.namesrv_name(*j)))
        }
        Undo::Storm {
            asked,
            refused,
            last_error,
        } => {
            let mut d = format!("storm over: {asked} transfers asked, {refused} refused or failed");
            if let Some(e) = last_error {
                d.push_str(&format!(" (last: {e})"));
            }
            Ok(d)
        }
        Undo::Nothing => Ok("skipped: not root / no netns".into()),
    }
}

/// One storm step: the current leader is asked to hand over to a random other node;
/// `Err` says why it was refused.
async fn storm_tick(c: &Cluster, rng: &mut SeededRng) -> Option<Result<(), String>> {
    let l = c.leader().await?;
    let o = others(l);
    let to = o[rng.index(o.len())];
    Some(
        c.leader_transfer(l, to)
            .await
            .map(|_| ())
            .map_err(|e| format!("{e:#}")),
    )
}

/// Waits until `until` or until `stop` turns true; `true` if stopped.
async fn sleep_or_stop(until: Instant, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep_until(until) => false,
        r = stop.wait_for(|s| *s) => r.is_ok(),
    }
}

/// Runs `schedule` against `cluster`, recording a Nemesis invoke when each fault starts
/// and an ok when it is healed (fail if it could not be applied). Stops early when
/// `stop` turns true. Heals everything at the end; `Err` only if that final heal fails.
pub async fn run_schedule(
    cluster: &Cluster,
    schedule: &Schedule,
    recorder: &Recorder,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let t0 = Instant::now();
    for w in &schedule.windows {
        if sleep_or_stop(t0 + w.start, &mut stop).await {
            break;
        }
        let mut rng = SeededRng::new(w.seed);
        let mut active = Vec::new();
        for &fault in &w.faults {
            if let Some(a) = start_fault(cluster, recorder, fault, &mut rng).await {
                active.push(a);
            }
        }
        let end = t0 + w.end;
        let storm = active.iter().any(|a| matches!(a.undo, Undo::Storm { .. }));
        let mut stopped = false;
        if storm {
            let (mut asked, mut refused, mut last_error) = (0, 0, None);
            loop {
                let next = Instant::now()
                    + Duration::from_millis(rng.range(STORM_EVERY_MS / 2, STORM_EVERY_MS * 3 / 2));
                if sleep_or_stop(next.min(end), &mut stop).await {
                    stopped = true;
                    break;
                }
                if Instant::now() >= end {
                    break;
                }
                // A transfer can take seconds (the target must catch up): never past `end`.
                match tokio::time::timeout_at(end, storm_tick(cluster, &mut rng)).await {
                    Ok(None) => {}
                    Ok(Some(Ok(()))) => asked += 1,
                    Ok(Some(Err(e))) => {
                        asked += 1;
                        refused += 1;
                        last_error = Some(e);
                    }
                    Err(_) => {
                        asked += 1;
                        refused += 1;
                        last_error = Some("not done when the window ended".into());
                    }
                }
            }
            for a in &mut active {
                if let Undo::Storm { .. } = a.undo {
                    a.undo = Undo::Storm {
                        asked,
                        refused,
                        last_error: last_error.clone(),
                    };
                }
            }
        } else {
            stopped = sleep_or_stop(end, &mut stop).await;
        }
        for a in active.into_iter().rev() {
            let (kind, detail) = match heal(cluster, &a.undo).await {
                Ok(d) => (EventType::Ok, d),
                Err(e) => {
                    eprintln!("jepsen: healing {} failed: {e:#}", a.fault);
                    (EventType::Info, format!("heal failed: {e:#}"))
                }
            };
            recorder.record(
                NEMESIS,
                kind,
                a.op_id,
                Op::Nemesis {
                    fault: a.fault.name().into(),
                    targets: a.targets,
                    detail,
                },
            );
        }
        if stopped {
            break;
        }
    }
    cluster.heal_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_parse_and_print_back() {
        for f in Fault::ALL {
            assert_eq!(f.name().parse::<Fault>().unwrap(), f);
            assert_eq!(f.to_string(), f.name());
        }
        assert_eq!("kill-all".parse::<Fault>().unwrap(), Fault::KillAll);
        let e = "kill-everything".parse::<Fault>().unwrap_err().to_string();
        assert!(e.contains("kill-everything"), "{e}");
        assert!(
            e.contains("partition-bridge") && e.contains("leader-transfer-storm"),
            "{e}"
        );
    }

    #[test]
    fn lists_and_combinations_parse() {
        let got = parse_faults("kill-leader, partition-leader+packet-loss,pause-majority").unwrap();
        assert_eq!(
            got,
            vec![
                vec![Fault::KillLeader],
                vec![Fault::PartitionLeader, Fault::PacketLoss],
                vec![Fault::PauseMajority],
            ]
        );
        assert_eq!(combo_name(&got[1]), "partition-leader+packet-loss");
        assert!(parse_faults("").is_err());
        assert!(parse_faults("kill-leader+kill-leader").is_err());
        let e = parse_faults("kill-leader,nope").unwrap_err().to_string();
        assert!(e.contains("\"nope\""), "{e}");
    }

    #[test]
    fn schedules_are_seeded_and_within_the_limit() {
        let faults = parse_faults("kill-leader,pause-leader,partition-halves+packet-loss").unwrap();
        let limit = Duration::from_secs(60);
        let a = Schedule::new(faults.clone(), 7, limit);
        assert_eq!(a, Schedule::new(faults.clone(), 7, limit));
        assert_ne!(a, Schedule::new(faults.clone(), 8, limit));
        assert!(a.windows.len() >= 3, "{a}");
        let mut prev_end = Duration::ZERO;
        for (k, w) in a.windows.iter().enumerate() {
            assert_eq!(w.faults, faults[k % faults.len()], "cycles in order");
            assert!(w.end <= limit && w.start < w.end, "{a}");
            if k > 0 {
                let quiet = w.start - prev_end;
                assert!(quiet >= Duration::from_secs(4) && quiet <= Duration::from_secs(8));
            }
            let hold = w.end - w.start;
            if w.faults == [Fault::PauseLeader] {
                assert!(hold >= Duration::from_secs(2) && hold <= Duration::from_secs(5));
            } else if w.end < limit {
                assert!(hold >= Duration::from_secs(4) && hold <= Duration::from_secs(10));
            }
            prev_end = w.end;
        }
        let text = a.to_string();
        assert!(text.contains("seed 7") && text.contains("partition-halves+packet-loss"));
        assert!(Schedule::new(faults, 1, Duration::from_secs(3))
            .windows
            .is_empty());
    }

    #[test]
    fn seeded_rng_is_stable() {
        let mut r = SeededRng::new(1);
        let first: Vec<u64> = (0..3).map(|_| r.next_u64() % 1000).collect();
        let mut again = SeededRng::new(1);
        assert_eq!(
            first,
            (0..3).map(|_| again.next_u64() % 1000).collect::<Vec<_>>()
        );
        let mut p = SeededRng::new(9).permutation(5);
        p.sort_unstable();
        assert_eq!(p, vec![0, 1, 2, 3, 4]);
        assert!((0..100).all(|_| (3..=5).contains(&r.range(3, 5))));
    }
}
