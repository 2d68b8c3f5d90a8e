//! The raft handler the RPC server calls: openraft's own, plus one election rule of ours.
//!
//! After a leader dies, the follower whose timer fires first stands. If its log is the
//! shorter one, the other follower refuses it (openraft 0.9 then adds 2 × the election
//! timeout maximum to the refused node's next election timeout), and the node with the
//! longer log stands only when its own timer fires. Worse, openraft orders votes of one
//! term by node id, so when that node has the lower id its candidacy in the same term is
//! refused too and it waits one more election timeout. Under load the two followers' logs
//! often differ by the last entry, so a failover took up to 3 s instead of ~1.4 s.
//!
//! The rule: a follower (or candidate) that refuses a candidate because its own log is
//! greater, has heard nothing from a leader for a whole lease (so no live leader is
//! deposed), and has not granted its vote to someone else in the candidate's term or
//! later, stands at once, in a term above the candidate's so a same-term candidacy cannot
//! block it. Raft's safety does not depend on who stands or when; this only decides who
//! stands first.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, VoteRequest,
};
use openraft::ServerState;
use tracing::{info, warn};

use crate::network::wire::{AppendEntriesResult, InstallSnapshotResult, VoteResult};
use crate::network::RaftRpcHandler;
use crate::types::{LogId, NodeId, Raft, TypeConfig};

/// [`Raft`] as the RPC server's handler, with the stand-after-refusing rule.
#[derive(Clone)]
pub(crate) struct Voter {
    raft: Raft,
    id: NodeId,
    /// How long after the last word from a leader this node may depose it.
    lease: Duration,
    times: Arc<Mutex<Times>>,
}

#[derive(Debug)]
struct Times {
    /// When an AppendEntries (entries or heartbeat) or a snapshot chunk from a current
    /// leader was last accepted (start-up counts as one).
    heard_leader: Instant,
    /// When this node last stood by the rule (at most once per lease).
    stood: Option<Instant>,
}

/// What a node knows after refusing a vote request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refusal<'a> {
    /// The candidate's last log id.
    pub candidate_last: Option<&'a LogId>,
    /// The candidate's term.
    pub candidate_term: u64,
    /// This node's last log id.
    pub my_last: Option<&'a LogId>,
    /// This node's vote's term after answering.
    pub my_term: u64,
    /// Whether that vote is for this node itself (or for nobody), not promised to another.
    pub my_vote_is_free: bool,
    /// Time since a leader was last heard.
    pub quiet: Duration,
    /// Time since this node last stood by the rule, if it has.
    pub since_stood: Option<Duration>,
}

/// How many elections in a row a node that refused a vote should start at once (0: none).
/// It stands when its own log is greater than the candidate's (it can win where the
/// candidate cannot), no leader has been heard for more than `lease`, its vote is not
/// promised to another node in the candidate's term or later, and it has not stood by this
/// rule within `lease`. Each election is one term up from its own: enough of them put it
/// above the candidate's term, whatever the node ids (at most 8).
pub(crate) fn elections_after_refusing(r: &Refusal<'_>, lease: Duration) -> u64 {
    let stands = r.my_last > r.candidate_last
        && r.quiet > lease
        && (r.my_term < r.candidate_term || r.my_vote_is_free)
        && r.since_stood.is_none_or(|s| s > lease);
    if stands {
        (r.candidate_term + 1).saturating_sub(r.my_term).clamp(1, 8)
    } else {
        0
    }
}

impl Voter {
    /// Wraps `raft` of node `id`; `lease` is its `election_timeout_max`.
    pub(crate) fn new(raft: Raft, id: NodeId, lease: Duration) -> Self {
        // A node just started has heard nobody yet: the leader gets a lease to reach it.
        let times = Times {
            heard_leader: Instant::now(),
            stood: None,
        };
        Voter {
            raft,
            id,
            lease,
            times: Arc::new(Mutex::new(times)),
        }
    }

    fn times(&self) -> std::sync::MutexGuard<'_, Times> {
        self.times.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl RaftRpcHandler for Voter {
    async fn append_entries(&self, req: AppendEntriesRequest<TypeConfig>) -> AppendEntriesResult {
        let res = self.raft.append_entries(req).await;
        // Anything but "your vote is stale" means a current leader reached us.
        if matches!(&res, Ok(r) if !matches!(r, AppendEntriesResponse::HigherVote(_))) {
            self.times().heard_leader = Instant::now();
        }
        res
    }

    async fn vote(&self, req: VoteRequest<NodeId>) -> VoteResult {
        let candidate_last = req.last_log_id;
        let candidate_term = req.vote.leader_id().term;
        let candidate = req.vote.leader_id().voted_for();
        let res = self.raft.vote(req).await;
        let Ok(resp) = &res else { return res };
        if resp.vote_granted {
            return res;
        }
        // openraft ignores an election trigger on a leader; a learner cannot stand.
        let state = self.raft.metrics().borrow().state;
        if !matches!(state, ServerState::Follower | ServerState::Candidate) {
            return res;
        }
        let elections = {
            let mut t = self.times();
            let now = Instant::now();
            let voted_for = resp.vote.leader_id().voted_for();
            let n = elections_after_refusing(
                &Refusal {
                    candidate_last: candidate_last.as_ref(),
                    candidate_term,
                    my_last: resp.last_log_id.as_ref(),
                    my_term: resp.vote.leader_id().term,
                    my_vote_is_free: voted_for.is_none() || voted_for == Some(self.id),
                    quiet: now - t.heard_leader,
                    since_stood: t.stood.map(|s| now - s),
                },
                self.lease,
            );
            if n > 0 {
                t.stood = Some(now);
            }
            n
        };
        if elections > 0 {
            info!(
                candidate = ?candidate,
                candidate_term,
                "refused a candidate with a shorter log, and no leader has been heard for a lease: standing now"
            );
            let raft = self.raft.clone();
            tokio::spawn(async move {
                for _ in 0..elections {
                    if let Err(e) = raft.trigger().elect().await {
                        return warn!(error = %e, "cannot stand for election");
                    }
                }
            });
        }
        res
    }

    async fn install_snapshot(
        &self,
        req: InstallSnapshotRequest<TypeConfig>,
    ) -> InstallSnapshotResult {
        let sender = req.vote;
        let res = self.raft.install_snapshot(req).await;
        // A stale leader's chunk is answered Ok too, with the newer vote.
        if matches!(&res, Ok(r) if r.vote <= sender) {
            self.times().heard_leader = Instant::now();
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, LogId};

    use super::*;

    fn id(term: u64, index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(term, 0), index)
    }

    #[test]
    fn stands_only_with_the_greater_log_after_a_quiet_lease() {
        let lease = Duration::from_millis(700);
        let (short, long) = (id(1, 10), id(1, 11));
        // The case the rule is for: this node at term 1 (its dead leader's), the candidate
        // at term 2: two elections put it at term 3.
        let base = Refusal {
            candidate_last: Some(&short),
            candidate_term: 2,
            my_last: Some(&long),
            my_term: 1,
            my_vote_is_free: false,
            quiet: Duration::from_millis(800),
            since_stood: None,
        };
        let n = |r: Refusal<'_>| elections_after_refusing(&r, lease);
        assert_eq!(n(base), 2);
        // A candidate that retried (term 4): enough elections to get above it ...
        assert_eq!(
            n(Refusal {
                candidate_term: 4,
                ..base
            }),
            4
        );
        // ... but never more than 8.
        assert_eq!(
            n(Refusal {
                candidate_term: 100,
                ..base
            }),
            8
        );
        // Already above the candidate (a candidacy of its own): one more.
        assert_eq!(
            n(Refusal {
                my_term: 5,
                my_vote_is_free: true,
                ..base
            }),
            1
        );
        // A candidate with no log at all.
        assert_eq!(
            n(Refusal {
                candidate_last: None,
                ..base
            }),
            2
        );
        // The candidate's log is as good, or better: it may win, let it.
        assert_eq!(
            n(Refusal {
                candidate_last: Some(&long),
                ..base
            }),
            0
        );
        assert_eq!(
            n(Refusal {
                my_last: Some(&short),
                candidate_last: Some(&long),
                ..base
            }),
            0
        );
        // A higher term beats a longer log of a lower term.
        assert_eq!(
            n(Refusal {
                candidate_last: Some(&id(2, 5)),
                ..base
            }),
            0
        );
        // A leader was heard within the lease: it may be alive; do not depose it.
        assert_eq!(
            n(Refusal {
                quiet: Duration::from_millis(300),
                ..base
            }),
            0
        );
        // Its vote is promised to another node in the candidate's term or later.
        assert_eq!(n(Refusal { my_term: 2, ..base }), 0);
        assert_eq!(
            n(Refusal {
                my_term: 2,
                my_vote_is_free: true,
                ..base
            }),
            1
        );
        // Stood by the rule within the lease already: once is enough.
        let recently = Some(Duration::from_millis(300));
        assert_eq!(
            n(Refusal {
                since_stood: recently,
                ..base
            }),
            0
        );
        let long_ago = Some(Duration::from_millis(800));
        assert_eq!(
            n(Refusal {
                since_stood: long_ago,
                ..base
            }),
            2
        );
    }
}
