//! The directory and file operations the log store needs, behind a trait, so tests can swap the
//! real file system for [`MemDir`], an in-memory twin that can "pull the plug".
//!
//! The log store only ever needs positional reads and writes, `set_len`, `fdatasync`, a flat
//! directory listing, create/remove/rename, `fsync` of the directory, and an exclusive lock.

mod mem;

use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use mem::MemDir;

/// One open file of a [`StorageDir`]: positional I/O only, so readers and the writer never
/// share a cursor.
pub trait SegmentFile: Send + Sync + Debug {
    /// Writes all of `buf` at byte `pos` (like `pwrite(2)` in a loop).
    fn write_at(&self, buf: &[u8], pos: u64) -> io::Result<()>;
    /// Fills `buf` from byte `pos`; `UnexpectedEof` if the file is shorter.
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()>;
    /// Truncates or extends the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// The current length of the file in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file has no bytes.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Makes the file's data (and its length) durable, like `fdatasync(2)`.
    fn sync_data(&self) -> io::Result<()>;
}

/// A flat directory of files, plus an exclusive lock that keeps a second process out.
pub trait StorageDir: Send + Sync + Debug {
    /// Names of the regular files in the directory, in no particular order.
    fn list(&self) -> io::Result<Vec<String>>;
    /// Opens an existing file for reading and writing.
    fn open(&self, name: &str) -> io::Result<Arc<dyn SegmentFile>>;
    /// Creates a new, empty file (truncating any file of that name) for reading and writing.
    fn create(&self, name: &str) -> io::Result<Arc<dyn SegmentFile>>;
    /// Removes a file; handles already open stay readable.
    fn remove(&self, name: &str) -> io::Result<()>;
    /// Atomically renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Makes creations, removals and renames durable (`fsync` of the directory).
    fn sync_dir(&self) -> io::Result<()>;
    /// Takes the directory's exclusive lock; `WouldBlock` if someone else holds it.
    fn lock(&self) -> io::Result<DirLock>;
}

/// Proof that the directory's exclusive lock is held; dropping it releases the lock.
#[derive(Debug)]
pub struct DirLock {
    /// What keeps the lock alive (the locked file, or the in-memory flag's releaser).
    _holder: Box<dyn Debug + Send + Sync>,
}

impl DirLock {
    /// Wraps whatever keeps a lock alive until dropped.
    pub fn new(holder: Box<dyn Debug + Send + Sync>) -> Self {
        Self { _holder: holder }
    }
}

/// The name of the lock file inside a [`FsDir`].
pub const LOCK_FILE_NAME: &str = "LOCK";

/// The real directory: `std::fs` with positional I/O (`pread`/`pwrite`).
#[derive(Debug, Clone)]
pub struct FsDir {
    /// The directory all names are relative to.
    path: PathBuf,
}

impl FsDir {
    /// Opens (creating if needed) the directory at `path`.
    pub fn open(path: impl Into<PathBuf>) -> io::Result<Self> {
        let path = path.into();
        std::fs::create_dir_all(&path)?;
        Ok(Self { path })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn file_path(&self, name: &str) -> io::Result<PathBuf> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad file name {name:?}"),
            ));
        }
        Ok(self.path.join(name))
    }
}

/// A real file opened by [`FsDir`].
#[derive(Debug)]
struct FsFile {
    /// The open file; every access is positional, so no cursor is shared.
    file: File,
}

impl SegmentFile for FsFile {
    fn write_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.file.write_all_at(buf, pos)
    }

    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, pos)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

impl StorageDir for FsDir {
    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.path)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                if let Some(name) = entry.file_name().to_str() {
                    names.push(name.to_owned());
                }
            }
        }
        Ok(names)
    }

    fn open(&self, name: &str) -> io::Result<Arc<dyn SegmentFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.file_path(name)?)?;
        Ok(Arc::new(FsFile { file }))
    }

    fn create(&self, name: &str) -> io::Result<Arc<dyn SegmentFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(self.file_path(name)?)?;
        Ok(Arc::new(FsFile { file }))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        std::fs::remove_file(self.file_path(name)?)
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        std::fs::rename(self.file_path(from)?, self.file_path(to)?)
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.path)?.sync_all()
    }

    /// `flock(2)` on `LOCK` (via `fs2`): the kernel drops it when the process dies, so a crash
    /// never leaves a stale lock behind, unlike an O_EXCL pid file. The holder's pid is written
    /// into the file only to make the error message useful.
    fn lock(&self) -> io::Result<DirLock> {
        let path = self.file_path(LOCK_FILE_NAME)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        if let Err(e) = fs2::FileExt::try_lock_exclusive(&file) {
            let contended = e.kind() == io::ErrorKind::WouldBlock
                || e.raw_os_error() == fs2::lock_contended_error().raw_os_error();
            if !contended {
                return Err(e);
            }
            let mut holder = String::new();
            // Best effort: the pid is only for the message.
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() {
                "another process".to_owned()
            } else {
                format!("pid {holder}")
            };
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{} is locked by {who}", path.display()),
            ));
        }
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        write!(file, "{}", std::process::id())?;
        Ok(DirLock::new(Box::new(file)))
    }
}
