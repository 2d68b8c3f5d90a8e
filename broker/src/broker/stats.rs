//! Cheap per-node traffic counters behind GET_BROKER_RUNTIME_INFO (spec §2.4.17).
//!
//! Send and pull handlers bump atomic counters; a sampler task ([`Stats::run_sampler`])
//! records them once a second in a ring of [`SAMPLES_MAX`] samples, from which the TPS over
//! the last 10 s, 1 min and 10 min are computed, and keeps the counters seen at the last two
//! UTC midnights (Java's `...YesterdayMorning` / `...TodayMorning`; "0" until a midnight
//! has passed since boot, as in Java). Counters are per node and not replicated.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, Weak};
use std::time::Duration;

use raftmq_raft::status::NodeStatus;
use tokio::sync::watch;

use super::now_ms;

/// Seconds of history kept (the widest TPS window, 10 min, plus one sample).
pub const SAMPLES_MAX: usize = 601;
/// Interval between samples.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
const DAY_MS: i64 = 24 * 3600 * 1000;
/// The window of a group's consume TPS (Java's per-minute GROUP_GET_NUMS).
pub const GROUP_TPS_WINDOW: Duration = Duration::from_secs(60);

/// Messages returned to one group's pulls of one topic, with a sample a second over the
/// last [`GROUP_TPS_WINDOW`].
#[derive(Debug, Default)]
struct GroupCounter {
    total: u64,
    samples: VecDeque<(i64, u64)>,
}

impl GroupCounter {
    /// Messages per second over the window, from its oldest sample (0 without one).
    fn tps(&self, now: i64) -> f64 {
        let window_ms = GROUP_TPS_WINDOW.as_millis() as i64;
        let Some((t0, c0)) = self
            .samples
            .iter()
            .find(|(t, _)| now.saturating_sub(*t) <= window_ms)
            .copied()
        else {
            return 0.0;
        };
        // At least a second: a counter seconds old (or a clock stepped back) must not
        // divide a few messages by a few milliseconds.
        let secs = (now - t0).max(1000) as f64 / 1000.0;
        self.total.saturating_sub(c0) as f64 / secs
    }
}

/// One counter snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Messages stored by sends on this node (duplicates answered from the idempotency
    /// window not counted).
    pub put: u64,
    /// Pulls that found messages.
    pub get_found: u64,
    /// Pulls that found none (no new message, offset moved, nothing matched).
    pub get_miss: u64,
    /// Messages returned by pulls.
    pub get_transferred: u64,
}

/// Per-second rates of the counters over a window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    /// Messages stored.
    pub put: f64,
    /// Pulls.
    pub get_total: f64,
    /// Pulls that found messages.
    pub get_found: f64,
    /// Pulls that found none.
    pub get_miss: f64,
    /// Messages returned by pulls.
    pub get_transferred: f64,
}

/// Counts at the last two UTC midnights.
#[derive(Debug, Clone, Copy, Default)]
struct Mornings {
    day: i64,
    today: Counts,
    yesterday: Counts,
}

/// The node's counters and their history.
#[derive(Debug)]
pub struct Stats {
    /// When this node started, ms since the epoch.
    pub boot_ms: i64,
    put: AtomicU64,
    get_found: AtomicU64,
    get_miss: AtomicU64,
    get_transferred: AtomicU64,
    /// When this node last became the group's leader (0 while it is not leading).
    leader_since_ms: AtomicI64,
    samples: Mutex<VecDeque<(i64, Counts)>>,
    mornings: Mutex<Mornings>,
    /// topic → group → pulled messages.
    groups: Mutex<HashMap<String, HashMap<String, GroupCounter>>>,
}

impl Stats {
    /// Fresh counters, booted now.
    pub fn new() -> Self {
        let boot_ms = now_ms();
        Stats {
            boot_ms,
            put: AtomicU64::new(0),
            get_found: AtomicU64::new(0),
            get_miss: AtomicU64::new(0),
            get_transferred: AtomicU64::new(0),
            leader_since_ms: AtomicI64::new(0),
            samples: Mutex::new(VecDeque::from([(boot_ms, Counts::default())])),
            mornings: Mutex::new(Mornings {
                day: boot_ms.div_euclid(DAY_MS),
                ..Mornings::default()
            }),
            groups: Mutex::default(),
        }
    }

    /// `n` messages stored.
    pub fn add_put(&self, n: u64) {
        self.put.fetch_add(n, Ordering::Relaxed);
    }

    /// One pull that returned `messages` messages (0 = a miss).
    pub fn add_get(&self, messages: u64) {
        if messages == 0 {
            self.get_miss.fetch_add(1, Ordering::Relaxed);
        } else {
            self.get_found.fetch_add(1, Ordering::Relaxed);
            self.get_transferred.fetch_add(messages, Ordering::Relaxed);
        }
    }

    /// `messages` returned to a pull of `group` on `topic`.
    pub fn add_group_get(&self, topic: &str, group: &str, messages: u64) {
        self.add_group_get_at(topic, group, messages, now_ms());
    }

    fn add_group_get_at(&self, topic: &str, group: &str, messages: u64, now: i64) {
        if messages == 0 {
            return;
        }
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        let by_group = match groups.get_mut(topic) {
            Some(g) => g,
            None => groups.entry(topic.to_owned()).or_default(),
        };
        match by_group.get_mut(group) {
            Some(c) => c.total += messages,
            None => {
                by_group.insert(
                    group.to_owned(),
                    GroupCounter {
                        total: messages,
                        // Counting started now, from zero.
                        samples: VecDeque::from([(now, 0)]),
                    },
                );
            }
        }
    }

    /// Messages per second `group` pulled from `topic` over the last minute.
    pub fn group_tps(&self, topic: &str, group: &str) -> f64 {
        self.group_tps_at(topic, group, now_ms())
    }

    fn group_tps_at(&self, topic: &str, group: &str, now: i64) -> f64 {
        let groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        groups
            .get(topic)
            .and_then(|g| g.get(group))
            .map_or(0.0, |c| c.tps(now))
    }

    /// One sample of every group counter; counters idle for a whole window are dropped.
    fn sample_groups(&self, now: i64) {
        let window_ms = GROUP_TPS_WINDOW.as_millis() as i64;
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        for by_group in groups.values_mut() {
            by_group.retain(|_, c| {
                c.samples.push_back((now, c.total));
                while c
                    .samples
                    .front()
                    .is_some_and(|(t, _)| now - t > window_ms + 1000)
                {
                    c.samples.pop_front();
                }
                let idle = c
                    .samples
                    .front()
                    .is_some_and(|(t, total)| now - t >= window_ms && *total == c.total);
                !idle
            });
        }
        groups.retain(|_, g| !g.is_empty());
    }

    /// The counters now.
    pub fn counts(&self) -> Counts {
        Counts {
            put: self.put.load(Ordering::Relaxed),
            get_found: self.get_found.load(Ordering::Relaxed),
            get_miss: self.get_miss.load(Ordering::Relaxed),
            get_transferred: self.get_transferred.load(Ordering::Relaxed),
        }
    }

    /// When this node last became leader, 0 while it is not leading.
    pub fn leader_since_ms(&self) -> i64 {
        self.leader_since_ms.load(Ordering::Relaxed)
    }

    /// (yesterday morning, today morning) counts, UTC midnights.
    pub fn mornings(&self) -> (Counts, Counts) {
        let m = self.mornings.lock().unwrap_or_else(|p| p.into_inner());
        (m.yesterday, m.today)
    }

    /// Per-second rates over the last `window`, from the oldest sample inside it (the
    /// newest one if none is; never before boot).
    pub fn rates(&self, window: Duration) -> Rates {
        let now = now_ms();
        let current = self.counts();
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        let (t0, c0) = {
            let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
            samples
                .iter()
                .find(|(t, _)| now.saturating_sub(*t) <= window_ms)
                .or(samples.back())
                .copied()
                .unwrap_or((self.boot_ms, Counts::default()))
        };
        let secs = (now - t0).max(1) as f64 / 1000.0;
        let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
        Rates {
            put: rate(current.put, c0.put),
            get_total: rate(
                current.get_found + current.get_miss,
                c0.get_found + c0.get_miss,
            ),
            get_found: rate(current.get_found, c0.get_found),
            get_miss: rate(current.get_miss, c0.get_miss),
            get_transferred: rate(current.get_transferred, c0.get_transferred),
        }
    }

    /// Records one sample at `now` and rolls the midnight counts over on a new UTC day.
    pub fn sample(&self, now: i64) {
        self.sample_groups(now);
        let counts = self.counts();
        {
            let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
            samples.push_back((now, counts));
            while samples.len() > SAMPLES_MAX {
                samples.pop_front();
            }
        }
        let mut m = self.mornings.lock().unwrap_or_else(|p| p.into_inner());
        let day = now.div_euclid(DAY_MS);
        if day != m.day {
            m.yesterday = if day == m.day + 1 { m.today } else { counts };
            m.today = counts;
            m.day = day;
        }
    }

    /// Notes a role change: leading since now, or not leading.
    pub fn note_role(&self, status: &NodeStatus) {
        let leading = status.is_caught_up_leader();
        let since = self.leader_since_ms.load(Ordering::Relaxed);
        if leading && since == 0 {
            self.leader_since_ms.store(now_ms(), Ordering::Relaxed);
        } else if !leading && since != 0 {
            self.leader_since_ms.store(0, Ordering::Relaxed);
        }
    }

    /// Samples every [`SAMPLE_INTERVAL`] and follows the role until the stats are dropped
    /// or the node's status channel closes.
    pub async fn run_sampler(stats: Weak<Stats>, mut status: watch::Receiver<NodeStatus>) {
        let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let Some(s) = stats.upgrade() else { return };
            s.note_role(&status.borrow_and_update());
            drop(s);
            tokio::select! {
                _ = tick.tick() => {
                    let Some(s) = stats.upgrade() else { return };
                    s.sample(now_ms());
                }
                changed = status.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

/// Java's `"%.2f %.2f %.2f"` of three rates (10 s, 1 min, 10 min).
pub fn tps_triple(rates: [f64; 3]) -> String {
    format!("{:.2} {:.2} {:.2}", rates[0], rates[1], rates[2])
}

/// Java's `"[ %d days, %d hours, %d minutes, %d seconds ]"` of an uptime.
pub fn runtime_text(uptime_ms: i64) -> String {
    let s = uptime_ms.max(0) / 1000;
    format!(
        "[ {} days, {} hours, {} minutes, {} seconds ]",
        s / 86_400,
        s / 3600 % 24,
        s / 60 % 60,
        s % 60
    )
}

/// Java's `MixAll.humanReadableByteCount(bytes, false)`: `512 B`, `1.5 KiB`, `12.3 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNIT: f64 = 1024.0;
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let b = bytes as f64;
    let exp = ((b.ln() / UNIT.ln()) as usize).clamp(1, 6);
    let prefix = ['K', 'M', 'G', 'T', 'P', 'E'][exp - 1];
    format!("{:.1} {prefix}iB", b / UNIT.powi(exp as i32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::unwrap_used)]
    fn group_tps_is_pulled_messages_over_the_last_minute() {
        let s = Stats::new();
        let t0 = 1_000_000;
        assert_eq!(s.group_tps_at("T", "g", t0), 0.0);
        s.add_group_get_at("T", "g", 0, t0);
        assert_eq!(
            s.group_tps_at("T", "g", t0),
            0.0,
            "empty pulls count nothing"
        );
        s.add_group_get_at("T", "g", 100, t0);
        s.add_group_get_at("T", "other", 7, t0);
        for i in 1..=10 {
            s.sample_groups(t0 + i * 1000);
        }
        assert!((s.group_tps_at("T", "g", t0 + 10_000) - 10.0).abs() < 1e-9);
        // Steady 50 a second for two minutes: the rate forgets the first burst.
        for i in 11..=130 {
            s.add_group_get_at("T", "g", 50, t0 + i * 1000);
            s.sample_groups(t0 + i * 1000);
        }
        let tps = s.group_tps_at("T", "g", t0 + 130_000);
        assert!((tps - 50.0).abs() < 1.0, "{tps}");
        // "other" pulled nothing for over a minute: dropped.
        assert_eq!(s.group_tps_at("T", "other", t0 + 130_000), 0.0);
        assert!(!s.groups.lock().unwrap()["T"].contains_key("other"));
    }

    #[test]
    fn formats_match_java() {
        assert_eq!(tps_triple([1.0, 0.5, 0.004]), "1.00 0.50 0.00");
        assert_eq!(
            runtime_text(((2 * 24 + 3) * 3600 + 4 * 60 + 5) * 1000 + 999),
            "[ 2 days, 3 hours, 4 minutes, 5 seconds ]"
        );
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(10 * 1024 * 1024 * 1024), "10.0 GiB");
    }

    #[test]
    fn counters_rates_and_mornings() {
        let s = Stats::new();
        s.add_put(3);
        s.add_get(2);
        s.add_get(0);
        let c = s.counts();
        assert_eq!(
            (c.put, c.get_found, c.get_miss, c.get_transferred),
            (3, 1, 1, 2)
        );
        let r = s.rates(Duration::from_secs(10));
        assert!(r.put > 0.0 && r.get_total > 0.0 && r.get_found > 0.0 && r.get_miss > 0.0);
        assert!(r.get_transferred > 0.0);
        // A sample on the next UTC day makes today's morning the counts then.
        let next_day = (s.boot_ms.div_euclid(DAY_MS) + 1) * DAY_MS + 5;
        s.sample(next_day);
        let (yesterday, today) = s.mornings();
        assert_eq!(yesterday, Counts::default());
        assert_eq!(today.put, 3);
        s.add_put(1);
        s.sample(next_day + DAY_MS);
        let (yesterday, today) = s.mornings();
        assert_eq!((yesterday.put, today.put), (3, 4));
    }
}
