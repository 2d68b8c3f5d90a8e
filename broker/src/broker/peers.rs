//! The peer directory: the client (remoting) address of each node of the group, so a
//! follower's SYSTEM_BUSY can name where clients should send writes (DESIGN.md "The data
//! path", last paragraph).
//!
//! `dLegerPeers` only lists raft addresses, so every node answers a small node-to-node RPC
//! ([`PeerRpcHandler`], served next to raft's own through
//! `RaftNode::start_with_handler`) with its `brokerIP1:listenPort`. [`PeerDirectory`]
//! caches the answers per node id, filled lazily: a lookup never waits for the network;
//! when an address is unknown (or old) it says so and the caller fetches it in the
//! background ([`Broker::fetch_peer_addr`]), answering with what it has meanwhile.
//! A failed fetch is retried on a later lookup, after [`FETCH_RETRY_AFTER`].
//!
//! Request: one byte, [`REQ_CLIENT_ADDR`]. Response: the address as UTF-8.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use raftmq_raft::network::CustomRpcHandler;
use raftmq_raft::NodeId;

use super::Broker;

/// What [`CustomRpcHandler`] returns (`futures::future::BoxFuture`, spelled out).
type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;

/// Request byte: "what is your client address?".
pub const REQ_CLIENT_ADDR: u8 = 1;
/// Longest wait for a peer's answer (in a background task, never on a request path).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause after a failed fetch before a lookup may start another one.
pub const FETCH_RETRY_AFTER: Duration = Duration::from_millis(500);
/// A cached address older than this is still used, and refreshed in the background (a node
/// restarted with another `listenPort` is picked up).
pub const REFRESH_AFTER: Duration = Duration::from_secs(60);

/// Serves [`REQ_CLIENT_ADDR`] with this node's client address.
#[derive(Debug, Clone)]
pub struct PeerRpcHandler {
    client_addr: String,
}

impl PeerRpcHandler {
    /// A handler answering `client_addr` (`brokerIP1:listenPort`).
    pub fn new(client_addr: String) -> Self {
        PeerRpcHandler { client_addr }
    }
}

impl CustomRpcHandler for PeerRpcHandler {
    fn handle(&self, body: Bytes) -> BoxFuture<Result<Bytes, String>> {
        let answer = match body.first() {
            Some(&REQ_CLIENT_ADDR) if body.len() == 1 => {
                Ok(Bytes::from(self.client_addr.clone().into_bytes()))
            }
            _ => Err(format!("unknown peer request ({} bytes)", body.len())),
        };
        Box::pin(async move { answer })
    }
}

/// One node's cache entry.
#[derive(Debug, Default)]
struct Entry {
    addr: Option<String>,
    fetched_at: Option<Instant>,
    fetching: bool,
    retry_at: Option<Instant>,
}

/// What [`PeerDirectory::lookup`] knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// The cached client address, if any.
    pub addr: Option<String>,
    /// The caller should fetch the address now (the directory marked a fetch as running).
    pub fetch: bool,
}

/// Cache of node id → client address (not replicated; each node learns its own).
#[derive(Debug, Default)]
pub struct PeerDirectory {
    entries: Mutex<HashMap<NodeId, Entry>>,
}

impl PeerDirectory {
    /// The cached address of `id`, and whether a fetch should start (at most one at a time
    /// per node; none while a failed one's pause runs; one when the entry is missing or
    /// older than [`REFRESH_AFTER`]).
    pub fn lookup(&self, id: NodeId, now: Instant) -> Lookup {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let e = entries.entry(id).or_default();
        let stale = e
            .fetched_at
            .is_none_or(|t| now.saturating_duration_since(t) >= REFRESH_AFTER);
        let paused = e.retry_at.is_some_and(|t| now < t);
        let fetch = stale && !e.fetching && !paused;
        if fetch {
            e.fetching = true;
        }
        Lookup {
            addr: e.addr.clone(),
            fetch,
        }
    }

    /// Records a fetch's outcome: the address, or a failure (the old address stays, a new
    /// fetch may start after [`FETCH_RETRY_AFTER`]).
    pub fn fetched(&self, id: NodeId, result: Result<String, String>, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let e = entries.entry(id).or_default();
        e.fetching = false;
        match result {
            Ok(addr) => {
                e.addr = Some(addr);
                e.fetched_at = Some(now);
                e.retry_at = None;
            }
            Err(error) => {
                tracing::debug!(node = id, %error, "peer client address not fetched");
                e.retry_at = Some(now + FETCH_RETRY_AFTER);
            }
        }
    }
}

impl Broker {
    /// The client address of node `id` if known; starts a background fetch when it is
    /// unknown or old. Never waits.
    pub(super) fn peer_client_addr(&self, id: NodeId) -> Option<String> {
        if id == self.node.id() {
            return Some(self.client_addr().to_string());
        }
        let lookup = self.peers.lookup(id, Instant::now());
        if lookup.fetch {
            self.fetch_peer_addr(id);
        }
        lookup.addr
    }

    /// Asks node `id` for its client address in a background task and caches the answer.
    fn fetch_peer_addr(&self, id: NodeId) {
        let rpc = self.node.app_rpc();
        let peers = self.peers.clone();
        tokio::spawn(async move {
            let request = Bytes::from_static(&[REQ_CLIENT_ADDR]);
            let result = match rpc.call(id, request, FETCH_TIMEOUT).await {
                Ok(b) => String::from_utf8(b.to_vec())
                    .map_err(|_| "address is not UTF-8".to_owned())
                    .and_then(|a| {
                        if a.is_empty() {
                            Err("empty address".to_owned())
                        } else {
                            Ok(a)
                        }
                    }),
                Err(e) => Err(e.to_string()),
            };
            peers.fetched(id, result, Instant::now());
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn one_fetch_at_a_time_then_cached_then_refreshed() {
        let d = PeerDirectory::default();
        let t0 = Instant::now();
        assert_eq!(
            d.lookup(1, t0),
            Lookup {
                addr: None,
                fetch: true
            }
        );
        assert!(!d.lookup(1, t0).fetch, "a fetch is already running");
        assert!(d.lookup(2, t0).fetch, "per node");
        d.fetched(1, Ok("10.0.0.1:10911".into()), t0);
        let l = d.lookup(1, t0 + Duration::from_secs(1));
        assert_eq!(l.addr.as_deref(), Some("10.0.0.1:10911"));
        assert!(!l.fetch, "fresh");
        let l = d.lookup(1, t0 + REFRESH_AFTER);
        assert_eq!(
            l.addr.as_deref(),
            Some("10.0.0.1:10911"),
            "old is still served"
        );
        assert!(l.fetch, "and refreshed");
    }

    #[test]
    fn a_failed_fetch_is_retried_after_a_pause() {
        let d = PeerDirectory::default();
        let t0 = Instant::now();
        assert!(d.lookup(1, t0).fetch);
        d.fetched(1, Err("unreachable".into()), t0);
        assert!(!d.lookup(1, t0).fetch, "paused");
        let l = d.lookup(1, t0 + FETCH_RETRY_AFTER);
        assert_eq!(l.addr, None);
        assert!(l.fetch);
    }

    #[tokio::test]
    async fn the_handler_answers_its_address_and_rejects_the_rest() {
        let h = PeerRpcHandler::new("127.0.0.1:10911".into());
        let a = h
            .handle(Bytes::from_static(&[REQ_CLIENT_ADDR]))
            .await
            .unwrap();
        assert_eq!(&a[..], b"127.0.0.1:10911");
        assert!(h.handle(Bytes::from_static(&[9])).await.is_err());
        assert!(h.handle(Bytes::new()).await.is_err());
    }
}
