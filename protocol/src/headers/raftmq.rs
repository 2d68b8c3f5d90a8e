//! Headers of RaftMQ's own admin requests (codes 9001–9002, README "Admin request codes of
//! our own").

use crate::ext_header;

ext_header! {
    /// RAFTMQ_LEADER_TRANSFER (9001), sent to the group's leader.
    pub struct RaftLeaderTransferRequestHeader {
        /// Raft node to hand leadership to: `n1` (a `dLegerSelfId`) or `1`; absent = the
        /// follower with the most replicated log.
        target_id: Option<String> => "targetId",
    }
}
