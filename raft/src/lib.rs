//! RaftMQ's replicated log: openraft 0.9 (storage-v2) over a segmented log store whose
//! entries *are* the commit log.
//!
//! Layout:
//! - [`types`]: the openraft type configuration (opaque `Bytes` commands and replies).
//! - [`log_store`]: segmented, CRC-framed log files; group-commit flusher; recovery.
//! - [`storage_dir`]: the directory/file trait, the real one and a fault-injecting twin.
//! - [`meta`]: vote and committed index in sled.
//! - [`state_machine`]: the hook the broker implements, and its openraft adapter.
//! - [`network`]: node-to-node RPCs over TCP, bincode-framed.
//! - [`node`]: start a node from a config; `propose`; role watch; leadership transfer.
//!
//! Flow of one proposal:
//! ```text
//! propose(bytes) -> Raft::client_write -> LogStore::append (write; flusher fsyncs, fires callback)
//!                -> replicate over network -> commit -> StateMachine::apply -> reply bytes
//! ```
//! This crate knows nothing about topics or queues.

pub mod batch;
pub mod log_store;
pub mod meta;
pub mod network;
pub mod node;
pub mod state_machine;
pub mod status;
pub mod storage_dir;
pub mod types;
mod voter;

pub use types::{LogId, NodeId, TypeConfig};
