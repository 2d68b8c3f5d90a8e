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
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// Synced bytes kept cached at the end of each file; `None`: never release.
    page_cache_keep: Option<u64>,
}

impl FsDir {
    /// Opens (creating if needed) the directory at `path`.
    pub fn open(path: impl Into<PathBuf>) -> io::Result<Self> {
        let path = path.into();
        std::fs::create_dir_all(&path)?;
        Ok(Self {
            path,
            page_cache_keep: None,
        })
    }

    /// After each `sync_data`, files of this directory release their synced bytes from the
    /// page cache except the last `keep` (`None`: leave the cache to the kernel).
    pub fn with_page_cache_keep(mut self, keep: Option<u64>) -> Self {
        self.page_cache_keep = keep;
        self
    }

    fn wrap(&self, file: File) -> Arc<dyn SegmentFile> {
        Arc::new(FsFile {
            file,
            cache: self.page_cache_keep.map(|keep| CacheWindow {
                keep,
                written_end: AtomicU64::new(0),
                released_to: AtomicU64::new(0),
            }),
        })
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
    /// Page-cache release after syncs, if the directory asks for it.
    cache: Option<CacheWindow>,
}

/// What an [`FsFile`] has written and released from the page cache.
#[derive(Debug)]
struct CacheWindow {
    /// Synced bytes kept cached at the end of the file.
    keep: u64,
    /// End of the furthest write.
    written_end: AtomicU64,
    /// Bytes before this were released.
    released_to: AtomicU64,
}

/// Released ranges are at least this long, so a sync does not pay one `fadvise` per round.
const RELEASE_STEP: u64 = 4 << 20;

/// The range to release after a sync, if any: everything synced before the kept window,
/// in steps of at least [`RELEASE_STEP`], aligned to it.
fn release_range(written_end: u64, released_to: u64, keep: u64) -> Option<(u64, u64)> {
    let upto = written_end.saturating_sub(keep) / RELEASE_STEP * RELEASE_STEP;
    (upto >= released_to + RELEASE_STEP).then_some((released_to, upto - released_to))
}

impl CacheWindow {
    /// Called after a successful sync: every written byte is durable, so clean pages before
    /// the window can go. Advice only: a failure is logged and the pages just stay cached.
    fn release_synced(&self, file: &File) {
        let written_end = self.written_end.load(Ordering::Acquire);
        let released_to = self.released_to.load(Ordering::Acquire);
        let Some((start, len)) = release_range(written_end, released_to, self.keep) else {
            return;
        };
        match rustix::fs::fadvise(
            file,
            start,
            std::num::NonZeroU64::new(len),
            rustix::fs::Advice::DontNeed,
        ) {
            Ok(()) => self.released_to.store(start + len, Ordering::Release),
            Err(e) => tracing::debug!(error = %e, "page-cache release failed (advice only)"),
        }
    }
}

impl SegmentFile for FsFile {
    fn write_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.file.write_all_at(buf, pos)?;
        if let Some(cache) = &self.cache {
            cache
                .written_end
                .fetch_max(pos + buf.len() as u64, Ordering::AcqRel);
        }
        Ok(())
    }

    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, pos)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        if let Some(cache) = &self.cache {
            cache.written_end.fetch_min(len, Ordering::AcqRel);
            cache.released_to.fetch_min(len, Ordering::AcqRel);
        }
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()?;
        if let Some(cache) = &self.cache {
            cache.release_synced(&self.file);
        }
        Ok(())
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
        Ok(self.wrap(file))
    }

    fn create(&self, name: &str) -> io::Result<Arc<dyn SegmentFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(self.file_path(name)?)?;
        Ok(self.wrap(file))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_range_keeps_the_window_and_steps() {
        let mib = 1 << 20;
        // Nothing before the window yet.
        assert_eq!(release_range(10 * mib, 0, 64 * mib), None);
        // Less than a step past the window: wait.
        assert_eq!(release_range(67 * mib, 0, 64 * mib), None);
        // A step past it: release whole steps only.
        assert_eq!(release_range(70 * mib, 0, 64 * mib), Some((0, 4 * mib)));
        assert_eq!(
            release_range(200 * mib, 4 * mib, 64 * mib),
            Some((4 * mib, 132 * mib))
        );
        // Never backwards (after a truncation the window restarts at the new end).
        assert_eq!(release_range(100 * mib, 136 * mib, 64 * mib), None);
        // keep 0 releases everything synced, in steps.
        assert_eq!(release_range(9 * mib, 0, 0), Some((0, 8 * mib)));
    }

    #[test]
    fn a_file_that_releases_its_cache_still_reads_back_everything() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = FsDir::open(tmp.path())
            .expect("open dir")
            .with_page_cache_keep(Some(0));
        let file = dir.create("seg").expect("create");
        let chunk: Vec<u8> = (0..RELEASE_STEP).map(|i| (i % 251) as u8).collect();
        for i in 0..3 {
            file.write_at(&chunk, i * RELEASE_STEP).expect("write");
            file.sync_data().expect("sync");
        }
        file.set_len(2 * RELEASE_STEP).expect("truncate");
        file.write_at(b"tail", 2 * RELEASE_STEP)
            .expect("write after truncate");
        file.sync_data().expect("sync");
        let mut back = vec![0u8; RELEASE_STEP as usize];
        for i in 0..2 {
            file.read_at(&mut back, i * RELEASE_STEP).expect("read");
            assert!(
                back == chunk,
                "chunk {i} differs after its pages were released"
            );
        }
        let mut tail = [0u8; 4];
        file.read_at(&mut tail, 2 * RELEASE_STEP)
            .expect("read tail");
        assert_eq!(&tail, b"tail");
    }
}
