//! Test transport filter: drop traffic between node pairs, isolate nodes, or drop only some
//! RPC kinds, then heal. Always compiled (one atomic load when no rule is set) so
//! in-process cluster tests run the production client unchanged.
//!
//! Directions are those of each message: a request travels caller -> callee, its response
//! callee -> caller. `block(a, b)` drops what `a` sends to `b`: a's requests to b, and a's
//! responses to b's requests (b's calls to a then fail after a has run them, as with a one-way
//! link failure). The client checks the request direction before sending and the response
//! direction on receipt; a dropped call fails as [`super::RpcError::Dropped`], which openraft
//! sees as `Unreachable` (it backs off, as it would for a partitioned peer).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::network::wire::Kind;
use crate::types::NodeId;

/// The RPC a message belongs to, for kind-selective drop rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RpcKind {
    /// openraft AppendEntries (replication and heartbeats).
    AppendEntries,
    /// openraft Vote.
    Vote,
    /// openraft InstallSnapshot.
    InstallSnapshot,
    /// Node-layer custom RPCs.
    Custom,
}

impl RpcKind {
    /// The RPC a request or response frame kind belongs to (`None` for hello and errors).
    pub fn of(kind: Kind) -> Option<RpcKind> {
        match kind {
            Kind::AppendEntries | Kind::AppendEntriesResponse => Some(RpcKind::AppendEntries),
            Kind::Vote | Kind::VoteResponse => Some(RpcKind::Vote),
            Kind::InstallSnapshot | Kind::InstallSnapshotResponse => Some(RpcKind::InstallSnapshot),
            Kind::Custom | Kind::CustomResponse => Some(RpcKind::Custom),
            Kind::Hello | Kind::ErrorResponse => None,
        }
    }
}

/// Shared drop rules; clones see the same rules. The default passes everything.
#[derive(Debug, Clone, Default)]
pub struct NetworkFilter {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Fast path: false while no rule is set.
    active: AtomicBool,
    rules: RwLock<Rules>,
    /// Messages dropped so far, for test assertions.
    dropped: AtomicU64,
}

#[derive(Debug, Default)]
struct Rules {
    /// Every message `from -> to` is dropped.
    links: HashSet<(NodeId, NodeId)>,
    /// Every message to or from these nodes is dropped.
    isolated: HashSet<NodeId>,
    /// Messages of these kinds are dropped between any nodes.
    kinds: HashSet<RpcKind>,
    /// Messages of a kind `from -> to` are dropped.
    link_kinds: HashSet<(NodeId, NodeId, RpcKind)>,
}

impl Rules {
    fn is_empty(&self) -> bool {
        self.links.is_empty()
            && self.isolated.is_empty()
            && self.kinds.is_empty()
            && self.link_kinds.is_empty()
    }
}

impl NetworkFilter {
    /// A filter that passes everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// Drops every message sent by `from` to `to` (one direction).
    pub fn block(&self, from: NodeId, to: NodeId) {
        self.update(|r| {
            r.links.insert((from, to));
        });
    }

    /// Drops every message between `a` and `b`, both directions.
    pub fn partition(&self, a: NodeId, b: NodeId) {
        self.update(|r| {
            r.links.insert((a, b));
            r.links.insert((b, a));
        });
    }

    /// Drops every message to or from `node`.
    pub fn isolate(&self, node: NodeId) {
        self.update(|r| {
            r.isolated.insert(node);
        });
    }

    /// Lifts [`NetworkFilter::isolate`] for `node` (pair and kind rules stay).
    pub fn rejoin(&self, node: NodeId) {
        self.update(|r| {
            r.isolated.remove(&node);
        });
    }

    /// Drops every message of `kind`, between any nodes.
    pub fn drop_kind(&self, kind: RpcKind) {
        self.update(|r| {
            r.kinds.insert(kind);
        });
    }

    /// Drops messages of `kind` sent by `from` to `to` (one direction).
    pub fn drop_kind_between(&self, from: NodeId, to: NodeId, kind: RpcKind) {
        self.update(|r| {
            r.link_kinds.insert((from, to, kind));
        });
    }

    /// Removes every rule: the network passes everything again.
    pub fn heal(&self) {
        self.update(|r| *r = Rules::default());
    }

    /// Whether a message of `kind` from `from` to `to` passes the current rules.
    pub fn allows(&self, from: NodeId, to: NodeId, kind: RpcKind) -> bool {
        if !self.inner.active.load(Ordering::Acquire) {
            return true;
        }
        let r = self.inner.rules.read().unwrap_or_else(|e| e.into_inner());
        !(r.links.contains(&(from, to))
            || r.isolated.contains(&from)
            || r.isolated.contains(&to)
            || r.kinds.contains(&kind)
            || r.link_kinds.contains(&(from, to, kind)))
    }

    /// Like [`NetworkFilter::allows`], counting the message as dropped when it does not pass.
    /// The transport calls this once per message.
    pub fn pass(&self, from: NodeId, to: NodeId, kind: RpcKind) -> bool {
        let ok = self.allows(from, to, kind);
        if !ok {
            self.inner.dropped.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// How many messages the transport has dropped because of this filter.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    fn update(&self, f: impl FnOnce(&mut Rules)) {
        let mut r = self.inner.rules.write().unwrap_or_else(|e| e.into_inner());
        f(&mut r);
        self.inner.active.store(!r.is_empty(), Ordering::Release);
    }
}
