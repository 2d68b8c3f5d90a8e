//! What a node registers as, from its raft status alone (pure; unit-tested per case).

use raftmq_protocol::body::MASTER_ID;
use raftmq_raft::status::{NodeStatus, Role};

/// What one node announces to the NameServers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Registration {
    /// 0 = master (the caught-up raft leader); ≥ 1 = follower (node index + 1).
    pub broker_id: i64,
    /// `dataVersion.stateVersion`: the raft term the decision was made in. NameServers
    /// reject a master claim with a lower term than the live holder's.
    pub state_version: i64,
}

impl Registration {
    /// True for a master claim (`brokerId` 0).
    pub fn is_master(&self) -> bool {
        self.broker_id == MASTER_ID
    }

    /// "master" or "follower", for logs and status lines.
    pub fn role_name(&self) -> &'static str {
        if self.is_master() {
            "master"
        } else {
            "follower"
        }
    }
}

/// The registration `status` calls for, or `None` when the node must not register.
///
/// - Leader that [`NodeStatus::is_caught_up_leader`]: `brokerId` 0 at its term. A leader
///   that has not yet applied an entry of its own term does not know every queue offset,
///   so it claims nothing yet (`None`); it re-decides as soon as it has caught up.
/// - Follower: its follower id at its term, whether or not it knows a leader yet (right
///   after a term bump it does not). A follower registration never changes topic routes
///   and its id is static, so there is nothing to fence; withholding it would only hide a
///   live replica from consumers during an election.
/// - Candidate, Learner, Shutdown: `None`. A candidate may be a deposed leader in a
///   minority; it must neither refresh a master claim nor invent a role.
///
/// `None` means "send nothing" (not even the periodic refresh): the last registration
/// ages out on the NameServer or is replaced by the new leader's higher-term claim.
pub fn decide(status: &NodeStatus, follower_broker_id: i64) -> Option<Registration> {
    let state_version = i64::try_from(status.term).unwrap_or(i64::MAX);
    match status.role {
        Role::Leader if status.is_caught_up_leader() => Some(Registration {
            broker_id: MASTER_ID,
            state_version,
        }),
        Role::Leader => None,
        Role::Follower => Some(Registration {
            broker_id: follower_broker_id,
            state_version,
        }),
        Role::Candidate | Role::Learner | Role::Shutdown => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn status(role: Role, term: u64, leader: Option<u64>, applied_term: Option<u64>) -> NodeStatus {
        NodeStatus {
            id: 1,
            role,
            term,
            leader,
            last_log_index: Some(10),
            committed_index: Some(10),
            applied_index: Some(10),
            applied_term,
        }
    }

    fn reg(broker_id: i64, state_version: i64) -> Option<Registration> {
        Some(Registration {
            broker_id,
            state_version,
        })
    }

    #[test]
    fn caught_up_leader_claims_master_at_its_term() {
        let s = status(Role::Leader, 5, Some(1), Some(5));
        assert_eq!(decide(&s, 2), reg(0, 5));
        assert!(decide(&s, 2).unwrap().is_master());
        assert_eq!(decide(&s, 2).unwrap().role_name(), "master");
    }

    #[test]
    fn leader_not_caught_up_claims_nothing() {
        // Entries of the previous term applied, none of its own yet.
        assert_eq!(decide(&status(Role::Leader, 5, Some(1), Some(4)), 2), None);
        // Nothing applied at all.
        assert_eq!(decide(&status(Role::Leader, 1, Some(1), None), 2), None);
    }

    #[test]
    fn follower_registers_its_follower_id_at_its_term() {
        let r = decide(&status(Role::Follower, 7, Some(0), Some(7)), 2);
        assert_eq!(r, reg(2, 7));
        assert_eq!(r.unwrap().role_name(), "follower");
        // Applied progress does not matter for a follower.
        assert_eq!(
            decide(&status(Role::Follower, 7, Some(0), Some(3)), 3),
            reg(3, 7)
        );
    }

    #[test]
    fn follower_without_a_known_leader_still_registers_as_follower() {
        assert_eq!(
            decide(&status(Role::Follower, 8, None, Some(7)), 2),
            reg(2, 8)
        );
        // A fresh node at term 0.
        assert_eq!(decide(&status(Role::Follower, 0, None, None), 1), reg(1, 0));
    }

    #[test]
    fn candidate_learner_and_shutdown_register_nothing() {
        for role in [Role::Candidate, Role::Learner, Role::Shutdown] {
            assert_eq!(decide(&status(role, 9, None, Some(9)), 2), None, "{role}");
            assert_eq!(
                decide(&status(role, 9, Some(1), Some(9)), 2),
                None,
                "{role}"
            );
        }
    }

    #[test]
    fn term_changes_the_decision() {
        let a = decide(&status(Role::Follower, 3, Some(0), Some(3)), 2);
        let b = decide(&status(Role::Follower, 4, Some(0), Some(3)), 2);
        assert_ne!(a, b);
    }

    #[test]
    fn huge_term_saturates() {
        let s = status(Role::Leader, u64::MAX, Some(1), Some(u64::MAX));
        assert_eq!(decide(&s, 2), reg(0, i64::MAX));
    }
}
