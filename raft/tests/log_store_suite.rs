//! openraft's own storage test suite, unchanged, against the segmented log store: on the real
//! file system with default segments, and on `MemDir` with tiny segments (almost every entry
//! rolls a segment) under both flush policies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use openraft::testing::{StoreBuilder, Suite};
use raftmq_raft::log_store::{FlushPolicy, LogStoreConfig, SegmentedLogStore};
use raftmq_raft::meta::Meta;
use raftmq_raft::state_machine::testing::MemStateMachine;
use raftmq_raft::state_machine::{NoPositions, SmAdapter};
use raftmq_raft::storage_dir::MemDir;
use raftmq_raft::types::StorageError;
use raftmq_raft::TypeConfig;

type Sm = SmAdapter<MemStateMachine>;

fn sm() -> Sm {
    SmAdapter::new(MemStateMachine::default(), Arc::new(NoPositions))
}

fn io_err(e: impl std::fmt::Display) -> StorageError {
    openraft::StorageIOError::write_logs(openraft::AnyError::error(e)).into()
}

/// Real directories under a temp dir (the guard deletes it).
struct FsBuilder;

impl StoreBuilder<TypeConfig, SegmentedLogStore, Sm, tempfile::TempDir> for FsBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, SegmentedLogStore, Sm), StorageError> {
        let tmp = tempfile::tempdir().map_err(io_err)?;
        let store = SegmentedLogStore::open(LogStoreConfig::new(tmp.path())).map_err(io_err)?;
        Ok((tmp, store, sm()))
    }
}

/// In-memory directories with tiny segments.
struct MemBuilder {
    flush: FlushPolicy,
}

impl StoreBuilder<TypeConfig, SegmentedLogStore, Sm> for MemBuilder {
    async fn build(&self) -> Result<((), SegmentedLogStore, Sm), StorageError> {
        let config = LogStoreConfig {
            segment_bytes: 64,
            flush: self.flush,
            ..LogStoreConfig::new("mem")
        };
        let store = SegmentedLogStore::open_with(config, Arc::new(MemDir::new()), Meta::memory())
            .map_err(io_err)?;
        Ok(((), store, sm()))
    }
}

#[test]
fn openraft_suite_on_real_files() {
    Suite::test_all(FsBuilder).unwrap();
}

#[test]
fn openraft_suite_on_memdir_tiny_segments_sync_flush() {
    Suite::test_all(MemBuilder {
        flush: FlushPolicy::Sync,
    })
    .unwrap();
}

#[test]
fn openraft_suite_on_memdir_tiny_segments_async_flush() {
    Suite::test_all(MemBuilder {
        flush: FlushPolicy::Async,
    })
    .unwrap();
}
