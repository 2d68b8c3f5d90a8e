//! `mqbroker`: one node of a RaftMQ broker group. Three nodes with the same `brokerName`
//! share one raft log whose committed entries are the commit log (RocketMQ's DLedger
//! mode); the leader is the group's master.
//!
//! Layout (work in progress: no server and no `mqbroker` binary yet):
//! - [`config`]: `-c broker.conf` with RocketMQ's key names (DLedger keys included) →
//!   a validated [`BrokerConfig`], its raft peers and the raft node configuration.
//! - [`state`]: the deterministic replicated state machine (commands, consume queues,
//!   topic table, consumer offsets, key index, idempotency window, pull classification,
//!   snapshots); in memory for now, persistence and checkpoints come later.
//! - [`registrar`]: registers the node with every NameServer at once on a role or term
//!   change (brokerId 0 + term only for a caught-up leader), periodically, on topic
//!   changes; unregisters on shutdown. [`remoting_client`]: its outgoing connections.
//!
//! Later work adds the remoting server, the send/pull/offset handlers, persistence of
//! consume queues and indexes, long polling and the `mqbroker` binary. The flow:
//! ```text
//! broker.conf --BrokerConfig::from_properties--> BrokerConfig --raft_node_config--> RaftNode
//! client --SEND_MESSAGE--> handler --propose--> raft log --apply--> consume queues --> SEND_OK
//! ```

pub mod config;
pub mod registrar;
pub mod remoting_client;
pub mod state;

pub use config::{BrokerConfig, DLedgerPeer, DLedgerPeers, UnknownKey};
