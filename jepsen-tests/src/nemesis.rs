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

mod run;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use anyhow::bail;

pub use run::run_schedule;

/// Probability of dropping a packet on a node-to-node link in `packet-loss`.
pub const PACKET_LOSS: f64 = 0.3;
/// Fault-on time of a window, ms (inclusive range).
const HOLD_MS: (u64, u64) = (4_000, 10_000);
/// Fault-on time of a window of pauses only, ms: past the election timeout (≤ 700 ms).
const PAUSE_HOLD_MS: (u64, u64) = (2_000, 5_000);
/// Quiet time after a window, ms.
const QUIET_MS: (u64, u64) = (4_000, 8_000);
/// Mean interval between transfers of a leader-transfer storm, ms (±50 %).
pub const STORM_EVERY_MS: u64 = 1_000;

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
