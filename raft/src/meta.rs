//! The log store's small metadata: vote, committed log id, last purged log id, rebase point.
//!
//! On disk this is sled under `<dir>/meta`. The vote and the purge point are flushed before
//! the call returns (losing either breaks Raft safety or leaves a hole), and so is the rebase
//! point (where the entry after an installed snapshot begins; see [`RebasePoint`]). The committed log id
//! is written but *not* flushed on every call: openraft calls `save_committed` inline on every
//! commit, and a stale value is safe (it is only a lower bound for re-applying on restart; the
//! leader re-sends the commit index), so it rides on sled's own background flush instead of
//! costing an fsync per commit. Tests use [`Meta::memory`], which survives a simulated crash
//! of a [`crate::storage_dir::MemDir`] exactly like flushed sled data.

use std::path::Path;
use std::sync::{Arc, Mutex};

use openraft::Vote;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::log_store::{LogStoreError, RebasePoint};
use crate::types::{LogId, NodeId};

const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_PURGED: &str = "purged";
const KEY_REBASE: &str = "rebase";

/// Vote, committed and purged log ids and the rebase point, persisted in sled (or in memory, for tests).
#[derive(Debug, Clone)]
pub struct Meta {
    backend: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    /// The sled tree at `<dir>/meta`.
    Sled(sled::Db),
    /// Shared values; clones see the same values, like one disk.
    Memory(Arc<Mutex<MemoryMeta>>),
}

#[derive(Debug, Default)]
struct MemoryMeta {
    vote: Option<Vec<u8>>,
    committed: Option<Vec<u8>>,
    purged: Option<Vec<u8>>,
    rebase: Option<Vec<u8>>,
}

impl MemoryMeta {
    fn slot(&mut self, key: &str) -> &mut Option<Vec<u8>> {
        match key {
            KEY_VOTE => &mut self.vote,
            KEY_COMMITTED => &mut self.committed,
            KEY_REBASE => &mut self.rebase,
            _ => &mut self.purged,
        }
    }
}

fn meta_err(what: &str, e: impl std::fmt::Display) -> LogStoreError {
    LogStoreError::Meta(format!("{what}: {e}"))
}

impl Meta {
    /// Opens (creating if needed) the sled metadata store at `path`.
    pub fn open(path: &Path) -> Result<Self, LogStoreError> {
        let db = sled::Config::new()
            .path(path)
            .open()
            .map_err(|e| meta_err(&format!("open {}", path.display()), e))?;
        Ok(Self {
            backend: Backend::Sled(db),
        })
    }

    /// An in-memory metadata store; clones share values (for tests on `MemDir`).
    pub fn memory() -> Self {
        Self {
            backend: Backend::Memory(Arc::default()),
        }
    }

    fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, LogStoreError> {
        let bytes = match &self.backend {
            Backend::Sled(db) => db
                .get(key)
                .map_err(|e| meta_err(&format!("read {key}"), e))?
                .map(|v| v.to_vec()),
            Backend::Memory(m) => m
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .slot(key)
                .clone(),
        };
        bytes
            .map(|b| bincode::deserialize(&b).map_err(|e| meta_err(&format!("decode {key}"), e)))
            .transpose()
    }

    fn put<T: Serialize>(&self, key: &str, value: &T, flush: bool) -> Result<(), LogStoreError> {
        let bytes = bincode::serialize(value).map_err(|e| meta_err(&format!("encode {key}"), e))?;
        match &self.backend {
            Backend::Sled(db) => {
                db.insert(key, bytes)
                    .map_err(|e| meta_err(&format!("write {key}"), e))?;
                if flush {
                    db.flush()
                        .map_err(|e| meta_err(&format!("flush {key}"), e))?;
                }
            }
            Backend::Memory(m) => {
                *m.lock().unwrap_or_else(|e| e.into_inner()).slot(key) = Some(bytes)
            }
        }
        Ok(())
    }

    /// The last saved vote.
    pub fn read_vote(&self) -> Result<Option<Vote<NodeId>>, LogStoreError> {
        self.get(KEY_VOTE)
    }

    /// Saves the vote durably (flushed before returning).
    pub fn save_vote(&self, vote: &Vote<NodeId>) -> Result<(), LogStoreError> {
        self.put(KEY_VOTE, vote, true)
    }

    /// The last saved committed log id (possibly older than the last one saved before a crash).
    pub fn read_committed(&self) -> Result<Option<LogId>, LogStoreError> {
        Ok(self.get::<Option<LogId>>(KEY_COMMITTED)?.flatten())
    }

    /// Saves the committed log id without waiting for a flush (see the module docs).
    pub fn save_committed(&self, committed: Option<LogId>) -> Result<(), LogStoreError> {
        self.put(KEY_COMMITTED, &committed, false)
    }

    /// The last purged log id.
    pub fn read_purged(&self) -> Result<Option<LogId>, LogStoreError> {
        self.get(KEY_PURGED)
    }

    /// Saves the purge point durably (flushed before returning), before segments are deleted.
    pub fn save_purged(&self, purged: &LogId) -> Result<(), LogStoreError> {
        self.put(KEY_PURGED, purged, true)
    }

    /// The last saved rebase point.
    pub fn read_rebase(&self) -> Result<Option<RebasePoint>, LogStoreError> {
        self.get(KEY_REBASE)
    }

    /// Saves the rebase point durably (flushed before returning).
    pub fn save_rebase(&self, point: &RebasePoint) -> Result<(), LogStoreError> {
        self.put(KEY_REBASE, point, true)
    }

    /// Flushes everything written so far (the committed log id included).
    pub fn flush(&self) -> Result<(), LogStoreError> {
        if let Backend::Sled(db) = &self.backend {
            db.flush().map_err(|e| meta_err("flush", e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use openraft::LeaderId;

    use super::*;

    fn exercise(meta: &Meta) {
        assert_eq!(meta.read_vote().unwrap(), None);
        assert_eq!(meta.read_committed().unwrap(), None);
        assert_eq!(meta.read_purged().unwrap(), None);
        assert_eq!(meta.read_rebase().unwrap(), None);
        let vote = Vote::new(3, 1);
        meta.save_vote(&vote).unwrap();
        let id = LogId::new(LeaderId::new(2, 1), 9);
        meta.save_committed(Some(id)).unwrap();
        meta.save_purged(&id).unwrap();
        let point = RebasePoint {
            first_index: 10,
            position: 4096,
        };
        meta.save_rebase(&point).unwrap();
        assert_eq!(meta.read_rebase().unwrap(), Some(point));
        assert_eq!(meta.read_vote().unwrap(), Some(vote));
        assert_eq!(meta.read_committed().unwrap(), Some(id));
        assert_eq!(meta.read_purged().unwrap(), Some(id));
    }

    #[test]
    fn memory_meta_round_trips() {
        exercise(&Meta::memory());
    }

    #[test]
    fn sled_meta_round_trips_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta");
        {
            let meta = Meta::open(&path).unwrap();
            exercise(&meta);
            meta.flush().unwrap();
        }
        let meta = Meta::open(&path).unwrap();
        assert_eq!(meta.read_vote().unwrap(), Some(Vote::new(3, 1)));
        assert_eq!(meta.read_purged().unwrap().map(|l| l.index), Some(9));
        assert_eq!(meta.read_rebase().unwrap().map(|r| r.position), Some(4096));
    }
}
