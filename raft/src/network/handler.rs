//! What the RPC server calls: the Raft node (or a test fake) and the node layer's custom RPCs.

use std::future::Future;

use bytes::Bytes;
use futures::future::BoxFuture;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};

use crate::network::wire::{AppendEntriesResult, InstallSnapshotResult, VoteResult};
use crate::types::{NodeId, Raft, TypeConfig};

/// The Raft side of the server: a [`Raft`] in production, a fake in I/O tests.
pub trait RaftRpcHandler: Clone + Send + Sync + 'static {
    /// Handles an AppendEntries request from the leader.
    fn append_entries(
        &self,
        req: AppendEntriesRequest<TypeConfig>,
    ) -> impl Future<Output = AppendEntriesResult> + Send;

    /// Handles a Vote request from a candidate.
    fn vote(&self, req: VoteRequest<NodeId>) -> impl Future<Output = VoteResult> + Send;

    /// Handles one snapshot chunk from the leader.
    fn install_snapshot(
        &self,
        req: InstallSnapshotRequest<TypeConfig>,
    ) -> impl Future<Output = InstallSnapshotResult> + Send;
}

impl RaftRpcHandler for Raft {
    fn append_entries(
        &self,
        req: AppendEntriesRequest<TypeConfig>,
    ) -> impl Future<Output = AppendEntriesResult> + Send {
        Raft::append_entries(self, req)
    }

    fn vote(&self, req: VoteRequest<NodeId>) -> impl Future<Output = VoteResult> + Send {
        Raft::vote(self, req)
    }

    fn install_snapshot(
        &self,
        req: InstallSnapshotRequest<TypeConfig>,
    ) -> impl Future<Output = InstallSnapshotResult> + Send {
        Raft::install_snapshot(self, req)
    }
}

/// The node layer's own RPCs (leadership transfer, ...), carried as opaque bytes.
///
/// Errors are strings: they travel back to the caller as [`super::RpcError::Handler`].
pub trait CustomRpcHandler: Send + Sync + 'static {
    /// Handles one request body and returns the response body.
    fn handle(&self, body: Bytes) -> BoxFuture<'static, Result<Bytes, String>>;

    /// Like [`CustomRpcHandler::handle`], told which node called (from the connection's hello).
    /// Override when the caller matters; the default ignores it.
    fn handle_from(&self, from: NodeId, body: Bytes) -> BoxFuture<'static, Result<Bytes, String>> {
        let _ = from;
        self.handle(body)
    }
}

/// A [`CustomRpcHandler`] that rejects every custom RPC, for nodes or tests without any.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCustomRpc;

impl CustomRpcHandler for NoCustomRpc {
    fn handle(&self, _body: Bytes) -> BoxFuture<'static, Result<Bytes, String>> {
        Box::pin(async { Err("custom rpcs are not supported by this node".to_string()) })
    }
}
