//! `mqbroker`: one node of a RaftMQ broker group. Three nodes with the same `brokerName`
//! share one raft log whose committed entries are the commit log (RocketMQ's DLedger
//! mode); the leader is the group's master.
//!
//! Layout (work in progress):
//! - [`config`]: `-c broker.conf` with RocketMQ's key names (DLedger keys included) →
//!   a validated [`BrokerConfig`], its raft peers and the raft node configuration.
//! - [`state`]: the deterministic replicated state machine (commands, consume queues,
//!   topic table, consumer offsets, queue locks, key index, idempotency window, pull
//!   classification, snapshots, checkpoints); [`checkpoint`]: its checkpoint files and
//!   writer thread.
//! - [`registrar`]: registers the node with every NameServer at once on a role or term
//!   change (brokerId 0 + term only for a caught-up leader), periodically, on topic
//!   changes; unregisters on shutdown. [`remoting_client`]: its outgoing connections.
//! - [`broker`]: the node (raft node + state machine) and its request handlers: send,
//!   batch send, pull with long polling, consumer offsets, max/min offset, heartbeat, the
//!   consumer list and orderly-consumption queue locks. [`clients`]: the per-node client
//!   tables behind HEART_BEAT.
//! - [`server`]: the client-facing remoting server (a task per request, out-of-order
//!   responses matched by opaque). The `mqbroker` binary wires it all together.
//!
//! Later work adds transactions, delay levels and retry/DLQ routing. The flow:
//! ```text
//! broker.conf --BrokerConfig::from_properties--> BrokerConfig --raft_node_config--> RaftNode
//! client --SEND_MESSAGE--> handler --propose--> raft log --apply--> consume queues --> SEND_OK
//! ```

pub mod broker;
pub mod checkpoint;
pub mod clients;
pub mod config;
pub mod registrar;
pub mod remoting_client;
pub mod retention;
pub mod server;
pub mod state;

pub use config::{BrokerConfig, DLedgerPeer, DLedgerPeers, UnknownKey};
