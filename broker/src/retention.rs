//! Retention and disk space: which log segments to purge, and when the disk is too full to
//! accept writes.
//!
//! - The **leader** decides every [`RETENTION_CHECK_INTERVAL`] ([`purge_point`], pure):
//!   whole segments older than `fileReservedTime` at a `deleteWhen` hour, or the oldest
//!   segment at once when the disk is fuller than `diskMaxUsedSpaceRatio` (as RocketMQ's
//!   forced clean). The decision is proposed as `Command::Purge` through raft, so every
//!   replica drops the same consume-queue units and index entries.
//! - **Every node**, once it applied a purge point, purges its own raft log up to the last
//!   entry ending at or before it (after a snapshot, which writes a checkpoint first), so
//!   segment files go on every node. The active (last) segment is never purged.
//! - **Disk full**: at [`DISK_FULL_RATIO_PERCENT`] used (RocketMQ's
//!   `diskSpaceWarningLevelRatio` default) or less than [`DISK_FREE_MIN_BYTES`] free, the
//!   leader refuses sends with SERVICE_NOT_AVAILABLE before proposing anything; it accepts
//!   them again as soon as a check sees space (checked every second, and at most every
//!   100 ms by a refused send), so nothing acknowledged is lost and writes resume by
//!   themselves. Followers' disks are not checked by the leader: a follower whose disk
//!   fills stops (its log store refuses further writes) and the group goes on with two.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often the leader looks for segments to purge (RocketMQ: 10 s).
pub const RETENTION_CHECK_INTERVAL: Duration = Duration::from_secs(10);
/// How often every node checks disk space and applied purge points.
pub const DISK_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Disk use (percent) at which sends are refused.
pub const DISK_FULL_RATIO_PERCENT: u8 = 90;
/// Free bytes below which sends are refused whatever the ratio.
pub const DISK_FREE_MIN_BYTES: u64 = 256 << 20;

/// Space on the file system of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskUsage {
    /// Total bytes.
    pub total: u64,
    /// Free bytes, including any reserved for root.
    pub free: u64,
    /// Bytes available to this process.
    pub available: u64,
}

impl DiskUsage {
    /// Percent used as `df` reports it: used / (used + available), 0..=100 (space reserved
    /// for root or outside a quota counts as neither, so a quota'd disk reads right).
    pub fn used_percent(&self) -> u8 {
        let used = self.total.saturating_sub(self.free);
        let usable = used.saturating_add(self.available);
        if usable == 0 {
            return 100;
        }
        (u128::from(used) * 100 / u128::from(usable)).min(100) as u8
    }

    /// True when writes must be refused.
    pub fn is_full(&self) -> bool {
        self.used_percent() >= DISK_FULL_RATIO_PERCENT || self.available < DISK_FREE_MIN_BYTES
    }
}

/// Reads disk usage; injectable so tests can fill a disk without filling it.
pub trait DiskProbe: Send + Sync + std::fmt::Debug {
    /// Usage of the file system holding `path`.
    fn usage(&self, path: &Path) -> std::io::Result<DiskUsage>;
}

/// The real probe (`statvfs`).
#[derive(Debug, Default)]
pub struct StatvfsProbe;

impl DiskProbe for StatvfsProbe {
    fn usage(&self, path: &Path) -> std::io::Result<DiskUsage> {
        Ok(DiskUsage {
            total: fs2::total_space(path)?,
            free: fs2::free_space(path)?,
            available: fs2::available_space(path)?,
        })
    }
}

/// The retention settings of broker.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// `fileReservedTime`, hours.
    pub reserved_hours: u32,
    /// `deleteWhen`, hours of the day (local time of the node, like RocketMQ).
    pub delete_hours: Vec<u8>,
    /// `diskMaxUsedSpaceRatio`, percent.
    pub max_used_percent: u8,
}

/// A log segment as retention sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentAge {
    /// Global position of its first byte.
    pub base: u64,
    /// Global position just past its last frame.
    pub end: u64,
    /// Last modification, ms since the epoch (RocketMQ uses the file's mtime too).
    pub modified_ms: i64,
}

/// Why segments are purged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurgeReason {
    /// Older than `fileReservedTime`, at a `deleteWhen` hour.
    Expired,
    /// The disk is fuller than `diskMaxUsedSpaceRatio`: the oldest segment goes now.
    DiskPressure,
}

/// The purge point to propose (a segment boundary), if any: expired segments at a
/// `deleteWhen` hour; under disk pressure at least the oldest segment. Never the last
/// (active) segment, never at or below `purged_upto`.
pub fn purge_point(
    segments: &[SegmentAge],
    now_ms: i64,
    hour_of_day: u8,
    disk: Option<DiskUsage>,
    policy: &RetentionPolicy,
    purged_upto: i64,
) -> Option<(i64, PurgeReason)> {
    let candidates = segments.split_last().map_or(&[][..], |(_, rest)| rest);
    let live: Vec<&SegmentAge> = candidates
        .iter()
        .filter(|s| i64::try_from(s.end).is_ok_and(|e| e > purged_upto))
        .collect();
    let reserved_ms = i64::from(policy.reserved_hours) * 3_600_000;
    let expired = live
        .iter()
        .take_while(|s| s.modified_ms <= now_ms.saturating_sub(reserved_ms))
        .last();
    let pressure = disk.is_some_and(|d| d.used_percent() >= policy.max_used_percent);
    let (point, reason) = match (expired, pressure) {
        (Some(s), _) if policy.delete_hours.contains(&hour_of_day) || pressure => {
            (s.end, PurgeReason::Expired)
        }
        (_, true) => (live.first()?.end, PurgeReason::DiskPressure),
        _ => return None,
    };
    let point = i64::try_from(point).ok()?;
    (point > purged_upto).then_some((point, reason))
}

/// The hour of the day (0..=23) of `now` in UTC. RocketMQ uses local time; nodes here run
/// without a time-zone database, so `deleteWhen` is read as UTC (documented in README).
pub fn hour_of_day(now: SystemTime) -> u8 {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    ((secs / 3600) % 24) as u8
}

/// Segment ages from the files in `dir` (a file that cannot be read counts as new).
pub fn segment_ages(
    dir: &Path,
    segments: &[raftmq_raft::log_store::SegmentSummary],
) -> Vec<SegmentAge> {
    segments
        .iter()
        .map(|s| {
            let modified_ms = std::fs::metadata(dir.join(&s.name))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(i64::MAX, |d| {
                    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
                });
            SegmentAge {
                base: s.base,
                end: s.end,
                modified_ms,
            }
        })
        .collect()
}

/// The node's view of its disk: refreshed periodically, and on demand (rate-limited) while
/// it says full, so a send sees space coming back quickly.
#[derive(Debug)]
pub struct DiskMonitor {
    path: PathBuf,
    probe: Mutex<Arc<dyn DiskProbe>>,
    full: AtomicBool,
    last: Mutex<Option<DiskUsage>>,
    /// Micros since `epoch` of the last check.
    checked_us: AtomicU64,
    epoch: Instant,
}

impl DiskMonitor {
    /// A monitor of the file system holding `path`.
    pub fn new(path: PathBuf, probe: Arc<dyn DiskProbe>) -> Self {
        let m = DiskMonitor {
            path,
            probe: Mutex::new(probe),
            full: AtomicBool::new(false),
            last: Mutex::new(None),
            checked_us: AtomicU64::new(0),
            epoch: Instant::now(),
        };
        m.check();
        m
    }

    /// Replaces the probe (tests inject a fake disk) and checks at once.
    pub fn set_probe(&self, probe: Arc<dyn DiskProbe>) {
        *self.probe.lock().unwrap_or_else(|p| p.into_inner()) = probe;
        self.check();
    }

    /// Reads usage now; returns it (`None` if the probe failed: then nothing changes).
    pub fn check(&self) -> Option<DiskUsage> {
        let probe = self.probe.lock().unwrap_or_else(|p| p.into_inner()).clone();
        self.checked_us
            .store(self.epoch.elapsed().as_micros() as u64, Ordering::Release);
        match probe.usage(&self.path) {
            Ok(u) => {
                let full = u.is_full();
                let was = self.full.swap(full, Ordering::AcqRel);
                if full != was {
                    if full {
                        tracing::warn!(
                            used_percent = u.used_percent(),
                            available = u.available,
                            "disk full: refusing sends until space returns"
                        );
                    } else {
                        tracing::info!(
                            used_percent = u.used_percent(),
                            "disk space back: accepting sends"
                        );
                    }
                }
                *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(u);
                Some(u)
            }
            Err(e) => {
                tracing::warn!(error = %e, path = %self.path.display(), "cannot read disk usage");
                None
            }
        }
    }

    /// The last usage read.
    pub fn last(&self) -> Option<DiskUsage> {
        *self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True when sends must be refused; while full, re-checks at most every 100 ms.
    pub fn is_full(&self) -> bool {
        if !self.full.load(Ordering::Acquire) {
            return false;
        }
        let now = self.epoch.elapsed().as_micros() as u64;
        if now.saturating_sub(self.checked_us.load(Ordering::Acquire)) >= 100_000 {
            self.check();
        }
        self.full.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const HOUR: i64 = 3_600_000;

    fn policy() -> RetentionPolicy {
        RetentionPolicy {
            reserved_hours: 72,
            delete_hours: vec![4],
            max_used_percent: 75,
        }
    }

    fn segs(ages_h: &[i64], now: i64) -> Vec<SegmentAge> {
        ages_h
            .iter()
            .enumerate()
            .map(|(i, h)| SegmentAge {
                base: i as u64 * 100,
                end: (i as u64 + 1) * 100,
                modified_ms: now - h * HOUR,
            })
            .collect()
    }

    fn disk(used_percent: u64) -> Option<DiskUsage> {
        Some(DiskUsage {
            total: 100 << 30,
            free: (100 - used_percent) << 30,
            available: (100 - used_percent) << 30,
        })
    }

    #[test]
    fn expired_segments_go_only_at_delete_hours() {
        let now = 1_000 * HOUR;
        let s = segs(&[100, 80, 10, 200], now);
        // Two oldest expired (the last, active one never counts, however old).
        assert_eq!(
            purge_point(&s, now, 4, disk(10), &policy(), 0),
            Some((200, PurgeReason::Expired))
        );
        assert_eq!(purge_point(&s, now, 5, disk(10), &policy(), 0), None);
        // Already purged up to there: nothing more.
        assert_eq!(purge_point(&s, now, 4, disk(10), &policy(), 200), None);
        // Expiry stops at the first young segment.
        let s = segs(&[100, 10, 80, 1], now);
        assert_eq!(
            purge_point(&s, now, 4, None, &policy(), 0),
            Some((100, PurgeReason::Expired))
        );
    }

    #[test]
    fn disk_pressure_purges_the_oldest_at_any_hour() {
        let now = 1_000 * HOUR;
        let s = segs(&[5, 4, 3, 2], now);
        assert_eq!(
            purge_point(&s, now, 13, disk(80), &policy(), 0),
            Some((100, PurgeReason::DiskPressure))
        );
        assert_eq!(
            purge_point(&s, now, 13, disk(80), &policy(), 100),
            Some((200, PurgeReason::DiskPressure))
        );
        // Expired segments go at once under pressure, all of them.
        let s = segs(&[100, 90, 3, 2], now);
        assert_eq!(
            purge_point(&s, now, 13, disk(80), &policy(), 0),
            Some((200, PurgeReason::Expired))
        );
        // Only the active segment left: nothing to purge.
        assert_eq!(
            purge_point(&segs(&[9], now), now, 4, disk(99), &policy(), 0),
            None
        );
        assert_eq!(purge_point(&[], now, 4, disk(99), &policy(), 0), None);
    }

    #[test]
    fn disk_full_thresholds() {
        assert!(!disk(89).unwrap().is_full());
        assert!(disk(90).unwrap().is_full());
        let tiny = DiskUsage {
            total: 1 << 30,
            free: 100 << 20,
            available: 100 << 20,
        };
        assert!(tiny.is_full(), "less than the free minimum");
        let empty = DiskUsage {
            total: 0,
            free: 0,
            available: 0,
        };
        assert_eq!(empty.used_percent(), 100);
        // This machine's kind of disk: 252 GiB, 66 used, 26 available (the rest outside a
        // quota): 71 % as df says, not 90 %.
        let quota = DiskUsage {
            total: 252 << 30,
            free: 186 << 30,
            available: 26 << 30,
        };
        assert_eq!(quota.used_percent(), 71);
    }

    #[test]
    fn hours_of_day_are_utc() {
        let t = UNIX_EPOCH + Duration::from_secs(3600 * 24 * 10 + 3600 * 4 + 59);
        assert_eq!(hour_of_day(t), 4);
    }
}
