//! Bodies of RaftMQ's own admin requests (codes 9001–9002, README "Admin request codes of
//! our own").

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// RAFTMQ_GROUP_STATUS (9002) body: the answering node's view of its raft group.
///
/// Indexes are raft log indexes; absent when the node has none yet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RaftGroupStatus {
    /// Index of the last entry applied to the state machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_index: Option<u64>,
    /// The broker group (= raft group) name.
    #[serde(default)]
    pub broker_name: String,
    /// This node's client address `ip:port` (what it registers with NameServers).
    #[serde(default)]
    pub client_addr: String,
    /// Highest index this node knows committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed_index: Option<u64>,
    /// Index of the last entry in this node's log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_log_index: Option<u64>,
    /// Raft id of the leader this node knows of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_id: Option<u64>,
    /// This node's raft id (the number in its `dLegerSelfId`).
    #[serde(default)]
    pub node_id: u64,
    /// Every voter: raft id → raft address.
    #[serde(default)]
    pub peers: BTreeMap<u64, String>,
    /// This node's raft address.
    #[serde(default)]
    pub raft_addr: String,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    #[serde(default)]
    pub role: String,
    /// Current raft term.
    #[serde(default)]
    pub term: u64,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::body::json::{decode_json, encode_json};

    #[test]
    fn group_status_round_trips_and_omits_absent_indexes() {
        let s = RaftGroupStatus {
            broker_name: "broker-a".into(),
            client_addr: "127.0.0.1:10911".into(),
            leader_id: Some(1),
            node_id: 0,
            peers: [(0, "127.0.0.1:40911".to_owned())].into(),
            raft_addr: "127.0.0.1:40911".into(),
            role: "follower".into(),
            term: 3,
            ..RaftGroupStatus::default()
        };
        let json = String::from_utf8(encode_json(&s)).unwrap();
        assert_eq!(
            json,
            r#"{"brokerName":"broker-a","clientAddr":"127.0.0.1:10911","leaderId":1,"nodeId":0,"peers":{"0":"127.0.0.1:40911"},"raftAddr":"127.0.0.1:40911","role":"follower","term":3}"#
        );
        assert_eq!(
            decode_json::<RaftGroupStatus>("status", json.as_bytes()).unwrap(),
            s
        );
    }
}
