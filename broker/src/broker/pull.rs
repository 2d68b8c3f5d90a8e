//! PULL_MESSAGE (11) (spec §2.4.4), and LITE_PULL_MESSAGE (361), which has the same header
//! and semantics (§5.5). Any node serves pulls of applied (hence committed) entries.
//!
//! Long polling (step 5): a pull with the SUSPEND flag that would answer PULL_NOT_FOUND is
//! parked on its queue's apply signal ([`crate::state::Arrivals`], subscribed before the
//! check so nothing applied in between is missed) for min(`suspendTimeoutMillis`, 25 s),
//! then re-run without suspending. It wakes when apply on *this* node (leader or follower)
//! publishes a max offset past the requested one. Woken by messages its TAG filter rejects
//! every one of, it does not answer: it moves its offset past them and parks again for the
//! rest of its hold (so non-matching traffic costs no round trip per message); at the
//! deadline such a pull answers PULL_RETRY_IMMEDIATELY with nextBeginOffset past the rejected
//! messages. Beyond [`PARKED_PULLS_MAX`] parked pulls a node answers at once.
//!
//! The subscription: the header's with PullSysFlag bit 2; else the one registered by the
//! group's HEART_BEATs (none for this topic: SUBSCRIPTION_NOT_EXIST; registered `subVersion`
//! older than the pull's: SUBSCRIPTION_NOT_LATEST, step 2 of §2.4.4). A group without any
//! heartbeat on this node pulls with `*` (a deliberate deviation: Java answers
//! SUBSCRIPTION_NOT_EXIST; raw and lite pull clients need not heartbeat first).
//! A commit flag on the leader proposes the offset in
//! the background (fire-and-forget, as the Java broker's in-memory store is): the pull is
//! not delayed by a raft round, and a lost commit is repeated by the consumer's next pull.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use raftmq_protocol::body::topic::perm;
use raftmq_protocol::codes::ResponseCode;
use raftmq_protocol::headers::{
    PullMessageRequestHeader, PullMessageResponseHeader, PULL_FLAG_COMMIT_OFFSET,
    PULL_FLAG_SUBSCRIPTION, PULL_FLAG_SUSPEND,
};
use raftmq_protocol::message::{set_physical_offset, set_queue_offset};
use raftmq_protocol::RemotingCommand;
use raftmq_raft::status::Role;

use super::{bad_header, Broker};
use crate::state::{Command, OffsetCommit, PullLimits, PullStatus, TagFilter};

/// Most messages one pull returns (the Java broker's in-memory cap).
pub const PULL_MESSAGES_MAX: usize = 32;
/// Longest hold of a parked pull (clients give up on a suspended pull after 30 s).
pub const PULL_HOLD_MAX: Duration = Duration::from_secs(25);
/// Most pulls parked on one node at once; further ones are answered at once.
pub const PARKED_PULLS_MAX: usize = 10_000;

/// How long a suspended pull is held: min(`suspendTimeoutMillis`, [`PULL_HOLD_MAX`]).
pub fn hold_time(suspend_timeout_millis: i64) -> Duration {
    u64::try_from(suspend_timeout_millis)
        .map_or(Duration::ZERO, Duration::from_millis)
        .min(PULL_HOLD_MAX)
}

/// One run of a pull: the response and the store outcome behind it.
struct PullRun {
    /// The classification (after unreadable records); `None` for an error answered before
    /// reading the queue.
    status: Option<PullStatus>,
    /// The response's nextBeginOffset (the request's offset for an error).
    next_begin_offset: i64,
    /// The response.
    resp: RemotingCommand,
}

/// A slot among the parked pulls; released on drop.
struct Parked<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Parked<'a> {
    /// A slot if fewer than `max` are taken.
    fn try_take(count: &'a std::sync::atomic::AtomicUsize, max: usize) -> Option<Self> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Parked(count))
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Broker {
    /// Handles PULL_MESSAGE, parking a suspended pull that finds nothing new.
    ///
    /// A parked pull keeps a cursor: woken by messages its filter rejects all of, it moves the
    /// cursor past them and parks again for the rest of its hold instead of answering (no
    /// round trip per rejected message). It answers with the first matching messages, or at
    /// the deadline with what a run from the cursor finds; when the cursor moved, that is
    /// "messages existed but none matched" (PULL_RETRY_IMMEDIATELY, nextBeginOffset past
    /// them) per the table of §2.4.4.
    pub(super) async fn pull(self: &Arc<Self>, req: &RemotingCommand) -> RemotingCommand {
        let h: PullMessageRequestHeader = match req.header() {
            Ok(h) => h,
            Err(e) => return bad_header(req, e),
        };
        if h.sys_flag & PULL_FLAG_SUSPEND == 0 {
            return self.pull_once(req, &h).resp;
        }
        let mut arrived = self.arrivals.subscribe(&h.topic, h.queue_id);
        let first = self.pull_once(req, &h);
        if first.status != Some(PullStatus::NoNewMessage) {
            return first.resp;
        }
        let Some(_slot) = Parked::try_take(&self.parked, PARKED_PULLS_MAX) else {
            return first.resp;
        };
        let deadline = tokio::time::Instant::now() + hold_time(h.suspend_timeout_millis);
        // The commit (if any) went out with the first run.
        let mut again = h;
        again.sys_flag &= !PULL_FLAG_COMMIT_OFFSET;
        let start = again.queue_offset;
        let mut cursor = start;
        // After a wake that found nothing to do, wait for the next publish (never spin on a
        // published max that the queue does not confirm).
        let mut need_change = false;
        loop {
            let woke = if need_change {
                tokio::time::timeout_at(deadline, arrived.changed())
                    .await
                    .is_ok_and(|r| r.is_ok())
            } else {
                tokio::time::timeout_at(deadline, arrived.wait_for(|&max| max > cursor))
                    .await
                    .is_ok_and(|r| r.is_ok())
            };
            // Not woken: the deadline (or the state machine gone); answer either way.
            again.queue_offset = cursor;
            let mut run = self.pull_once(req, &again);
            match run.status {
                Some(PullStatus::RetryImmediately) if woke && run.next_begin_offset > cursor => {
                    cursor = run.next_begin_offset;
                    need_change = false;
                    self.reparked.fetch_add(1, Ordering::Relaxed);
                }
                Some(PullStatus::NoNewMessage) if woke => need_change = true,
                Some(PullStatus::NoNewMessage) if cursor > start => {
                    // Rejected messages were skipped while parked: nextBeginOffset (the
                    // cursor) is past them.
                    run.resp.code = ResponseCode::PullRetryImmediately.code();
                    run.resp.remark = Some("NO_MATCHED_MESSAGE".to_owned());
                    return run.resp;
                }
                _ => return run.resp,
            }
        }
    }

    /// Steps 1–4 of §2.4.4 once, without suspending.
    fn pull_once(self: &Arc<Self>, req: &RemotingCommand, h: &PullMessageRequestHeader) -> PullRun {
        let err = |code, remark: String| PullRun {
            status: None,
            next_begin_offset: h.queue_offset,
            resp: RemotingCommand::error_to(req, code, remark),
        };
        let Some(topic) = self
            .node
            .state_machine()
            .with(|sm| sm.topic(&h.topic).cloned())
        else {
            return err(
                ResponseCode::TopicNotExist,
                format!("topic[{}] not exist", h.topic),
            );
        };
        if topic.perm & perm::READ == 0 {
            return err(
                ResponseCode::NoPermission,
                format!("the topic[{}] pulling message is forbidden", h.topic),
            );
        }
        if h.queue_id < 0 || h.queue_id >= topic.read_queue_nums {
            return err(
                ResponseCode::InvalidParameter,
                format!(
                    "queueId[{}] is illegal, topic {} has {} read queues",
                    h.queue_id, h.topic, topic.read_queue_nums
                ),
            );
        }
        let filter = if h.sys_flag & PULL_FLAG_SUBSCRIPTION != 0 {
            if h.expression_type
                .as_deref()
                .is_some_and(|t| !t.eq_ignore_ascii_case("TAG"))
            {
                return err(
                    ResponseCode::SubscriptionParseFailed,
                    "only TAG expressions are supported".into(),
                );
            }
            TagFilter::parse(h.subscription.as_deref().unwrap_or("*"))
        } else {
            match self.registered_subscription(&h.consumer_group, &h.topic) {
                None => TagFilter::parse("*"),
                // Step 2: the consumer changed its subscription and this node has not had
                // the heartbeat carrying it yet.
                Some(Some(sub)) if sub.sub_version < h.sub_version => {
                    return err(
                        ResponseCode::SubscriptionNotLatest,
                        format!(
                            "the consumer's subscription not latest, group {} topic {}: \
                             registered subVersion {} < {}",
                            h.consumer_group, h.topic, sub.sub_version, h.sub_version
                        ),
                    )
                }
                Some(Some(sub)) => TagFilter::parse(&sub.sub_string),
                Some(None) => {
                    return err(
                        ResponseCode::SubscriptionNotExist,
                        format!(
                            "the consumer's subscription not exist, group {} topic {}",
                            h.consumer_group, h.topic
                        ),
                    )
                }
            }
        };
        let defaults = PullLimits::default();
        let limits = PullLimits {
            max_messages: usize::try_from(h.max_msg_nums)
                .unwrap_or(1)
                .clamp(1, PULL_MESSAGES_MAX),
            max_bytes: h
                .max_msg_bytes
                .and_then(|b| usize::try_from(b).ok())
                .filter(|&b| b > 0)
                .map_or(defaults.max_bytes, |b| b.min(defaults.max_bytes)),
        };
        let commit = h.sys_flag & PULL_FLAG_COMMIT_OFFSET != 0 && h.commit_offset >= 0;
        let (result, stored) = self.node.state_machine().with(|sm| {
            let result = sm.pull(&h.topic, h.queue_id, h.queue_offset, limits, &filter);
            let stored =
                commit.then(|| sm.consumer_offset(&h.consumer_group, &h.topic, h.queue_id));
            (result, stored.flatten())
        });
        let leader = self.status().role == Role::Leader;

        let mut next_begin_offset = result.classification.next_begin_offset;
        let mut status = result.classification.status;
        let mut body = Vec::new();
        let mut served = 0u64;
        if status == PullStatus::Found {
            for (offset, unit) in &result.units {
                if !self.append_record(&mut body, unit.physical_offset, unit.size, *offset) {
                    // Unreadable (purged under us): serve what was read, restart here.
                    next_begin_offset = *offset;
                    break;
                }
                served += 1;
            }
            if body.is_empty() {
                status = PullStatus::RetryImmediately;
            }
        }
        self.stats.add_get(served);
        self.stats
            .add_group_get(&h.topic, &h.consumer_group, served);
        // Consumers repeat their committed offset on every pull (long polls included): only
        // a changed offset costs a raft proposal.
        if commit && stored != Some(h.commit_offset) && leader {
            self.commit_in_background(h);
        }
        let (code, remark) = match status {
            PullStatus::Found => (ResponseCode::Success, "FOUND"),
            PullStatus::NoNewMessage => (ResponseCode::PullNotFound, "NO_NEW_MESSAGE"),
            // Appendix B / §2.4.4 step 6: a follower answers RETRY instead of MOVED.
            PullStatus::OffsetMoved if !leader => {
                (ResponseCode::PullRetryImmediately, "OFFSET_MOVED")
            }
            PullStatus::OffsetMoved => (ResponseCode::PullOffsetMoved, "OFFSET_MOVED"),
            PullStatus::RetryImmediately => {
                (ResponseCode::PullRetryImmediately, "NO_MATCHED_MESSAGE")
            }
        };
        let header = PullMessageResponseHeader {
            suggest_which_broker_id: 0,
            next_begin_offset,
            min_offset: result.min_offset,
            max_offset: result.max_offset,
            topic_sys_flag: Some(topic.topic_sys_flag),
            ..PullMessageResponseHeader::default()
        };
        PullRun {
            status: Some(status),
            next_begin_offset,
            resp: RemotingCommand::response_to(req, code)
                .with_remark(remark)
                .with_header(&header)
                .with_body(body),
        }
    }

    /// Appends one stored record to `body` with its queue and physical offsets patched in
    /// (one copy from the log into the response); false, with `body` unchanged, if the
    /// record cannot be read.
    fn append_record(
        &self,
        body: &mut Vec<u8>,
        physical_offset: i64,
        size: i32,
        queue_offset: i64,
    ) -> bool {
        let (Ok(pos), Ok(len)) = (u64::try_from(physical_offset), u64::try_from(size)) else {
            return false;
        };
        let bytes = match self.node.log().read_at(pos, len) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(physical_offset, size, error = %e, "cannot read a queued record");
                return false;
            }
        };
        let start = body.len();
        body.extend_from_slice(&bytes);
        let rec = &mut body[start..];
        if set_queue_offset(rec, queue_offset).is_err()
            || set_physical_offset(rec, physical_offset).is_err()
        {
            tracing::warn!(
                physical_offset,
                size,
                "queued offset does not point at a message record"
            );
            body.truncate(start);
            return false;
        }
        true
    }

    fn commit_in_background(self: &Arc<Self>, h: &PullMessageRequestHeader) {
        let command = Command::CommitOffsets(vec![OffsetCommit {
            group: h.consumer_group.clone(),
            topic: h.topic.clone(),
            queue_id: h.queue_id,
            offset: h.commit_offset,
        }]);
        let broker = self.clone();
        tokio::spawn(async move {
            if let Err(e) = broker.node.propose(command.encode()).await {
                tracing::debug!(error = %e, "pull offset commit not stored");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[test]
    fn hold_is_bounded_by_25_s() {
        assert_eq!(hold_time(300), Duration::from_millis(300));
        assert_eq!(hold_time(30_000), PULL_HOLD_MAX);
        assert_eq!(hold_time(-1), Duration::ZERO);
    }

    #[test]
    fn parked_slots_are_limited_and_released() {
        let count = AtomicUsize::new(0);
        let a = Parked::try_take(&count, 2);
        let b = Parked::try_take(&count, 2);
        assert!(a.is_some() && b.is_some());
        assert!(Parked::try_take(&count, 2).is_none(), "beyond the limit");
        drop(a);
        assert_eq!(count.load(Ordering::Acquire), 1);
        assert!(Parked::try_take(&count, 2).is_some());
        drop(b);
    }
}
