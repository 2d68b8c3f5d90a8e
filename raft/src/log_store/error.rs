//! The log store's error type, and its mapping to openraft's `StorageError`.

use std::io;

use openraft::{AnyError, StorageIOError};

use super::frame::FrameError;
use crate::types::StorageError;

/// Everything that can go wrong opening, writing or reading the log store.
#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    /// An I/O operation on a file of the store failed.
    #[error("{op} {file}: {source}")]
    Io {
        /// What was being done (`write`, `sync`, `open`, ...).
        op: &'static str,
        /// The file (or directory) it was done to.
        file: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Another process (or store object) holds the directory's lock.
    #[error("log store directory {dir} is already in use: {detail}")]
    Locked {
        /// The locked directory.
        dir: String,
        /// Who holds it, as far as known.
        detail: String,
    },
    /// Stored bytes are damaged somewhere other than a torn tail: the store refuses to serve.
    #[error("corrupt log: {file} at byte offset {offset}: {reason}")]
    Corrupt {
        /// The damaged file.
        file: String,
        /// Byte offset inside that file.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },
    /// The sled metadata store failed or holds undecodable values.
    #[error("log store metadata: {0}")]
    Meta(String),
    /// The configuration is unusable.
    #[error("invalid log store config: {0}")]
    Config(String),
    /// An append would leave a hole (or rewrite) in the log.
    #[error("append of log index {got} would leave a hole: the next index is {expected}")]
    NotContiguous {
        /// The index that must come next.
        expected: u64,
        /// The index that was offered.
        got: u64,
    },
    /// An entry could not be framed.
    #[error("entry {index} cannot be framed: {source}")]
    Frame {
        /// The entry's log index.
        index: u64,
        /// Why.
        #[source]
        source: FrameError,
    },
    /// A byte range outside the live log (purged, or beyond the end) was asked for.
    #[error("bytes [{pos}, {pos}+{len}) are outside the live log [{start}, {end})")]
    OutOfRange {
        /// Requested position.
        pos: u64,
        /// Requested length.
        len: u64,
        /// First live byte.
        start: u64,
        /// End of the log.
        end: u64,
    },
    /// An earlier sync or write failed; the store refuses further writes (a failed fsync may
    /// have dropped dirty pages, so retrying could report lost data as durable).
    #[error("log store failed earlier and refuses further writes: {0}")]
    Failed(String),
}

impl LogStoreError {
    /// Builds an [`LogStoreError::Io`] mapper for `?`.
    pub(crate) fn io(op: &'static str, file: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let file = file.into();
        move |source| Self::Io { op, file, source }
    }

    /// This error as an `io::Error` (for openraft's flush callback).
    pub(crate) fn to_io(&self) -> io::Error {
        io::Error::other(self.to_string())
    }

    /// As an openraft storage error on a write path.
    pub(crate) fn into_write_error(self) -> StorageError {
        StorageIOError::write_logs(AnyError::new(&self)).into()
    }

    /// As an openraft storage error on a read path.
    pub(crate) fn into_read_error(self) -> StorageError {
        StorageIOError::read_logs(AnyError::new(&self)).into()
    }
}
