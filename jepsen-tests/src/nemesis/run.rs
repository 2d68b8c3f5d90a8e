//! Executing a [`Schedule`]: per window, targets chosen when the fault starts, the fault
//! applied and recorded (invoke), held, healed and recorded (ok), then quiet.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::{Fault, Schedule, SeededRng, PACKET_LOSS, STORM_EVERY_MS};
use crate::cluster::{Cluster, NODES};
use crate::history::{EventType, Op, NEMESIS};
use crate::recorder::Recorder;

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
