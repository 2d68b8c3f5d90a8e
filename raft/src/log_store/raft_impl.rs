//! openraft storage-v2 glue: `RaftLogReader` for the read handle and the store,
//! `RaftLogStorage` for the store. Every method maps onto the synchronous store API.

use std::fmt::Debug;
use std::ops::RangeBounds;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, LogState, OptionalSend, RaftLogReader, StorageIOError, Vote};

use super::{LogReadHandle, SegmentedLogStore};
use crate::types::{Entry, LogId, NodeId, StorageError, TypeConfig};

impl RaftLogReader<TypeConfig> for LogReadHandle {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        self.read_entries(range).map_err(|e| e.into_read_error())
    }
}

impl RaftLogReader<TypeConfig> for SegmentedLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        self.read_handle()
            .read_entries(range)
            .map_err(|e| e.into_read_error())
    }
}

impl RaftLogStorage<TypeConfig> for SegmentedLogStore {
    type LogReader = LogReadHandle;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let (last_purged_log_id, last_log_id) = self.log_state();
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.read_handle()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.meta()
            .save_vote(vote)
            .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.meta()
            .read_vote()
            .map_err(|e| StorageIOError::read_vote(AnyError::new(&e)).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        SegmentedLogStore::save_committed(self, committed).map_err(|e| e.into_write_error())
    }

    /// The committed log id last saved (checked against the log at open).
    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.read_handle().committed())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.append_entries(
            entries,
            Box::new(move |result| callback.log_io_completed(result)),
        )
        .map_err(|e| e.into_write_error())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.truncate_from(log_id.index)
            .map_err(|e| e.into_write_error())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.purge_upto(log_id).map_err(|e| e.into_write_error())
    }
}

impl crate::state_machine::PayloadPositions for LogReadHandle {
    fn payload_position(&self, index: u64) -> Option<u64> {
        self.entry_position(index)
            .map(|(pos, _)| super::payload_position(pos))
    }

    fn end_of(&self, index: u64) -> Option<u64> {
        LogReadHandle::end_of(self, index)
    }
}
