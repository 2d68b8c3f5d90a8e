//! The node's role channel: role, term, leader and log progress, published on every change
//! so the broker can react to a role change at once (NameServer registration, timers).

use openraft::ServerState;

use crate::types::NodeId;

/// A node's role in its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Accepts writes.
    Leader,
    /// Replicates from the leader.
    Follower,
    /// Standing for election.
    Candidate,
    /// Non-voting member.
    Learner,
    /// Stopped.
    Shutdown,
}

impl Role {
    /// The role of an openraft server state.
    pub fn from_state(s: ServerState) -> Self {
        match s {
            ServerState::Leader => Role::Leader,
            ServerState::Follower => Role::Follower,
            ServerState::Candidate => Role::Candidate,
            ServerState::Learner => Role::Learner,
            ServerState::Shutdown => Role::Shutdown,
        }
    }

    /// Lower-case name for logs and status lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Learner => "learner",
            Role::Shutdown => "shutdown",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A snapshot of a node's state, sent on the watch channel whenever any field changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeStatus {
    /// This node.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Current term.
    pub term: u64,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Index of the last entry in its log.
    pub last_log_index: Option<u64>,
    /// Highest index known committed (persisted by the log store).
    pub committed_index: Option<u64>,
    /// Index of the last entry applied to the state machine.
    pub applied_index: Option<u64>,
    /// Term of the last applied entry.
    pub applied_term: Option<u64>,
}

impl NodeStatus {
    /// A leader that has applied the first entry of its own term, hence every entry
    /// committed before it: queue offsets are complete, so it may announce itself as master.
    pub fn is_caught_up_leader(&self) -> bool {
        self.role == Role::Leader && self.applied_term == Some(self.term)
    }
}
