//! Node-to-node RPCs over TCP: openraft's AppendEntries / Vote / InstallSnapshot plus the
//! node layer's own `Custom` RPCs, bincode-framed and pipelined on one connection per peer.
//!
//! Layout:
//! - [`wire`]: the frame format and the request/response body codec (pure, no I/O).
//! - `stream`: reading frames off a socket and the batching writer task (both sides).
//! - [`client`]: [`NetworkFactory`] (openraft's factory and the peer pool) and [`PeerClient`].
//! - `conn`: one pipelined client connection (writer task, reader task, calls in flight).
//! - [`server`]: [`serve`], the accept loop and per-connection dispatch.
//! - [`handler`]: what the server calls: [`RaftRpcHandler`] (a [`crate::types::Raft`] or a test
//!   fake) and [`CustomRpcHandler`] (the node layer).
//! - [`filter`]: [`NetworkFilter`], drop/partition rules for in-process cluster tests.
//!
//! One call:
//! ```text
//! PeerClient::append_entries ─ filter? ─ encode frame(id) ─ peer connection (connect/backoff)
//!   ─ writer task ══ TCP ══ server reader ─ AppendEntries lane (in order) ─ Raft::append_entries
//!   ─ server writer ══ TCP ══ client reader ─ pending[id] oneshot ─ filter? ─ decode response
//! ```
//!
//! Ordering: openraft 0.9 sends at most one AppendEntries at a time per target (the replication
//! task awaits each response), so the server runs a connection's AppendEntries sequentially in
//! arrival order, which keeps a retried or timed-out append from overtaking its successor.
//! Vote, InstallSnapshot and Custom requests each get their own task, so a slow snapshot
//! chunk never delays heartbeats. Responses may leave in any order; the client matches them
//! to calls by request id.

pub mod client;
mod conn;
pub mod filter;
pub mod handler;
pub mod server;
mod stream;
pub mod wire;

use std::time::Duration;

use crate::types::NodeId;

pub use client::{NetworkFactory, PeerClient, DEFAULT_GROUP};
pub use filter::{NetworkFilter, RpcKind};
pub use handler::{CustomRpcHandler, NoCustomRpc, RaftRpcHandler};
pub use server::{serve, Identity};
pub use wire::FRAME_BYTES_MAX;

/// Why a node-to-node call failed, as seen by the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// No connection to the peer: connect failed or is backing off. Retry later.
    #[error("node {target} unreachable: {reason}")]
    Unreachable {
        /// The peer called.
        target: NodeId,
        /// What failed (connect error, backoff, connect slower than the deadline).
        reason: String,
    },
    /// The request was sent but no response arrived before the call's deadline.
    #[error("node {target} did not answer within {after:?}")]
    Timeout {
        /// The peer called.
        target: NodeId,
        /// The deadline that passed.
        after: Duration,
    },
    /// The connection broke while the call was outstanding; the request may have run.
    #[error("connection to node {target} lost: {reason}")]
    ConnectionLost {
        /// The peer called.
        target: NodeId,
        /// What broke it.
        reason: String,
    },
    /// A [`NetworkFilter`] rule dropped the request or its response (tests only).
    #[error("{kind:?} {from}->{to} dropped by the network filter")]
    Dropped {
        /// Sender of the dropped message.
        from: NodeId,
        /// Receiver of the dropped message.
        to: NodeId,
        /// The RPC it belonged to.
        kind: RpcKind,
    },
    /// The request does not fit in one frame.
    #[error("request of {bytes} bytes exceeds the frame limit of {max} bytes")]
    TooLarge {
        /// Encoded size of the request body (a lower bound when the encoder stopped early).
        bytes: u64,
        /// The frame limit, [`FRAME_BYTES_MAX`].
        max: u64,
    },
    /// The peer could not handle the request (undecodable body, unknown kind, version).
    #[error("node {target} rejected the request: {reason}")]
    Rejected {
        /// The peer called.
        target: NodeId,
        /// The peer's explanation.
        reason: String,
    },
    /// The peer's custom RPC handler returned an error.
    #[error("custom rpc failed on node {target}: {reason}")]
    Handler {
        /// The peer called.
        target: NodeId,
        /// The handler's error message.
        reason: String,
    },
    /// Encoding the request or decoding the response failed.
    #[error("codec error: {0}")]
    Codec(String),
}
