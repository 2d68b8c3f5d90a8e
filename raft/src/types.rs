//! The openraft type configuration shared by every module of the crate.

use std::io::Cursor;

use bytes::Bytes;

/// A node id: the index of the node in its group's peer list.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// RaftMQ's openraft types: commands and replies are opaque bytes.
    pub TypeConfig:
        D = Bytes,
        R = Bytes,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A log id of this configuration.
pub type LogId = openraft::LogId<NodeId>;
/// A log entry of this configuration.
pub type Entry = openraft::Entry<TypeConfig>;
/// Storage errors of this configuration.
pub type StorageError = openraft::StorageError<NodeId>;
/// The Raft handle of this configuration.
pub type Raft = openraft::Raft<TypeConfig>;
/// Membership as stored.
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
