//! The broker's deterministic replicated state machine (DESIGN.md "The data path" and
//! "The state machine stays deterministic").
//!
//! Pure: no sockets, no clock, no randomness; everything comes from the command. The leader
//! proposes [`Command`]s (one raft command each, encoded by [`Command::encode`]); every
//! replica applies them in log order through [`BrokerStateMachine`] (which implements
//! `raftmq_raft::state_machine::StateMachine`) and reaches the same state byte for byte.
//!
//! - [`arrivals`]: per-queue apply signals that wake long-polling pulls.
//! - [`command`]: commands, their encoding, and the apply [`Reply`].
//! - [`consume_queue`]: per-queue 20-byte units and store times.
//! - [`pull`]: TAG filters and the PULL_MESSAGE classification of §2.4.4.
//! - [`topics`]: the topic table, seeded with the system topics, and its DataVersion.
//! - [`offsets`]: consumer offsets.
//! - [`locks`]: orderly-consumption queue locks (leader-stamped times).
//! - [`key_index`]: `topic#key` → physical offsets, and the idempotent-produce window.
//! - [`snapshot`]: the versioned metadata snapshot.
//! - [`journal`], [`checkpoint`]: durable checkpoints (metadata + journaled units and key
//!   entries) so a restart re-applies only the log after the last one.
//! - [`machine`]: apply rules and queries.
//!
//! Not yet here (tags reserved in [`command::tags`]): delay-delivery progress, transactions,
//! subscription groups.

pub mod arrivals;
pub mod checkpoint;
pub mod command;
pub mod consume_queue;
pub mod journal;
pub mod key_index;
pub mod locks;
pub mod machine;
pub mod offsets;
pub mod pull;
pub mod snapshot;
pub mod topics;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_checkpoint;
#[cfg(test)]
mod tests_locks;
#[cfg(test)]
mod tests_prop;
#[cfg(test)]
mod tests_query;

pub use arrivals::Arrivals;
pub use checkpoint::{CheckpointJob, CheckpointSink};
pub use command::{
    append_header, encode_append, Append, AppendResult, Command, CommandError, OffsetCommit,
    QueueLockRequest, Reply, APPEND_HEADER_BYTES,
};
pub use consume_queue::{Boundary, ConsumeQueue, CqUnit};
pub use machine::BrokerStateMachine;
pub use pull::{classify_pull, PullClassification, PullLimits, PullResult, PullStatus, TagFilter};
