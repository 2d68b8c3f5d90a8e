//! `MemDir`: an in-memory [`StorageDir`] that remembers, per file, what was written and what
//! was synced, so a test can "pull the plug" ([`MemDir::crash`]) and recover from what a real
//! disk could hold afterwards. It can also fail writes (ENOSPC) and syncs (EIO) on demand.
//!
//! Crash model: file contents survive up to the last `sync_data`; names survive up to the last
//! `sync_dir`. Of the writes since the last sync, a crash keeps nothing, or (by seed) an
//! in-order prefix of them with the next one torn at a random byte, or a page of garbage or
//! zeros after the synced bytes.
//!
//! To crash *between* two steps of a multi-step operation, [`MemDir::set_op_budget`] makes
//! every mutating operation fail after a given number of them; the test then crashes the
//! directory and recovers, once for every budget.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{DirLock, SegmentFile, StorageDir};

const ENOSPC: i32 = 28;
const EIO: i32 = 5;
const PAGE_BYTES: usize = 4096;

/// An in-memory, crashable, fault-injecting directory; clones share the same contents.
#[derive(Clone, Default)]
pub struct MemDir {
    /// Shared state: every file and name; file handles point back here.
    inner: Arc<Mutex<MemInner>>,
}

impl fmt::Debug for MemDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.lock_inner();
        f.debug_struct("MemDir")
            .field("names", &inner.names.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[derive(Debug, Default)]
struct MemInner {
    /// Set by `crash`: the old view refuses every operation from then on.
    fenced: bool,
    /// File contents by id; ids outlive names so removed-but-open files stay readable.
    files: HashMap<u64, MemFile>,
    /// The directory as the running process sees it.
    names: BTreeMap<String, u64>,
    /// The directory as of the last `sync_dir`: what a crash leaves.
    durable_names: BTreeMap<String, u64>,
    next_id: u64,
    locked: bool,
    /// Bytes that may still be written before writes fail with ENOSPC; `None` = unlimited.
    write_budget: Option<u64>,
    /// When set, every `sync_data`/`sync_dir` fails with EIO and makes nothing durable.
    fail_sync: bool,
    /// Mutating operations that may still succeed before every one fails with EIO.
    op_budget: Option<u64>,
}

impl MemInner {
    /// Counts one mutating operation against the budget; EIO once it is spent.
    fn take_op(&mut self) -> io::Result<()> {
        match &mut self.op_budget {
            Some(0) => Err(io::Error::from_raw_os_error(EIO)),
            Some(left) => {
                *left -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }
}

#[derive(Debug, Default, Clone)]
struct MemFile {
    /// What reads see.
    data: Vec<u8>,
    /// What survives a crash for sure.
    durable: Vec<u8>,
    /// Operations since the last sync, in order; a crash may keep a prefix of them.
    unsynced: Vec<Op>,
    /// Successful syncs so far.
    syncs: u64,
}

#[derive(Debug, Clone)]
enum Op {
    Write { pos: u64, bytes: Vec<u8> },
    SetLen(u64),
}

fn apply(image: &mut Vec<u8>, op: &Op) {
    match op {
        Op::Write { pos, bytes } => write_into(image, *pos, bytes),
        Op::SetLen(len) => image.resize(usize::try_from(*len).unwrap_or(usize::MAX), 0),
    }
}

fn write_into(image: &mut Vec<u8>, pos: u64, bytes: &[u8]) {
    let start = usize::try_from(pos).unwrap_or(usize::MAX);
    let end = start.saturating_add(bytes.len());
    if image.len() < end {
        image.resize(end, 0);
    }
    image[start..end].copy_from_slice(bytes);
}

fn crashed() -> io::Error {
    io::Error::other(
        "MemDir: this view crashed; reopen the store on the MemDir returned by crash()",
    )
}

impl MemDir {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock_inner(&self) -> MutexGuard<'_, MemInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pulls the plug: this view (and every file handle from it) fails from now on, and the
    /// returned directory holds only what survived, chosen reproducibly by `seed`.
    pub fn crash(&self, seed: u64) -> MemDir {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut inner = self.lock_inner();
        inner.fenced = true;
        let mut survived = MemInner::default();
        for (name, id) in &inner.durable_names {
            let Some(file) = inner.files.get(id) else {
                continue;
            };
            let mut image = file.durable.clone();
            if !file.unsynced.is_empty() {
                match rng.gen_range(0..4u8) {
                    0 => {}
                    1 => {
                        let kept = rng.gen_range(0..=file.unsynced.len());
                        for op in &file.unsynced[..kept] {
                            apply(&mut image, op);
                        }
                        if let Some(Op::Write { pos, bytes }) = file.unsynced.get(kept) {
                            if !bytes.is_empty() {
                                let torn = rng.gen_range(0..bytes.len());
                                write_into(&mut image, *pos, &bytes[..torn]);
                            }
                        }
                    }
                    mode => {
                        let len = rng.gen_range(1..=PAGE_BYTES);
                        let page: Vec<u8> = if mode == 2 {
                            (0..len).map(|_| rng.gen()).collect()
                        } else {
                            vec![0; len]
                        };
                        let end = image.len() as u64;
                        write_into(&mut image, end, &page);
                    }
                }
            }
            let id = survived.next_id;
            survived.next_id += 1;
            survived.files.insert(
                id,
                MemFile {
                    data: image.clone(),
                    durable: image,
                    unsynced: Vec::new(),
                    syncs: 0,
                },
            );
            survived.names.insert(name.clone(), id);
            survived.durable_names.insert(name.clone(), id);
        }
        MemDir {
            inner: Arc::new(Mutex::new(survived)),
        }
    }

    /// After `bytes` more bytes, writes fail with ENOSPC (the failing write lands partially,
    /// as on a real disk); `None` removes the limit.
    pub fn set_write_budget(&self, bytes: Option<u64>) {
        self.lock_inner().write_budget = bytes;
    }

    /// After `ops` more mutating operations (file write, `set_len`, `sync_data`; directory
    /// create, remove, rename, `sync_dir`) every further one fails with EIO and changes
    /// nothing, until the budget is lifted with `None`. Reads keep working.
    pub fn set_op_budget(&self, ops: Option<u64>) {
        self.lock_inner().op_budget = ops;
    }

    /// While `fail` is set, every sync fails with EIO and makes nothing durable.
    pub fn set_sync_failure(&self, fail: bool) {
        self.lock_inner().fail_sync = fail;
    }

    /// The names currently in the directory, sorted.
    pub fn names(&self) -> Vec<String> {
        self.lock_inner().names.keys().cloned().collect()
    }

    /// The current contents of a file, as a read would see them.
    pub fn contents(&self, name: &str) -> Option<Vec<u8>> {
        let inner = self.lock_inner();
        let id = inner.names.get(name)?;
        inner.files.get(id).map(|f| f.data.clone())
    }

    /// Successful syncs of a file so far.
    pub fn syncs(&self, name: &str) -> Option<u64> {
        let inner = self.lock_inner();
        let id = inner.names.get(name)?;
        inner.files.get(id).map(|f| f.syncs)
    }

    /// Overwrites bytes of a file both in memory and on "disk" (bit rot, for corruption tests).
    pub fn corrupt(&self, name: &str, pos: u64, bytes: &[u8]) -> io::Result<()> {
        let mut inner = self.lock_inner();
        let id = *inner
            .names
            .get(name)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let file = inner
            .files
            .get_mut(&id)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        write_into(&mut file.data, pos, bytes);
        write_into(&mut file.durable, pos, bytes);
        Ok(())
    }

    fn handle(&self, id: u64) -> Arc<dyn SegmentFile> {
        Arc::new(MemFileHandle {
            dir: self.clone(),
            id,
        })
    }
}

impl StorageDir for MemDir {
    fn list(&self) -> io::Result<Vec<String>> {
        let inner = self.lock_inner();
        if inner.fenced {
            return Err(crashed());
        }
        Ok(inner.names.keys().cloned().collect())
    }

    fn open(&self, name: &str) -> io::Result<Arc<dyn SegmentFile>> {
        let inner = self.lock_inner();
        if inner.fenced {
            return Err(crashed());
        }
        let id = *inner
            .names
            .get(name)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{name} not found")))?;
        drop(inner);
        Ok(self.handle(id))
    }

    fn create(&self, name: &str) -> io::Result<Arc<dyn SegmentFile>> {
        let mut inner = self.lock_inner();
        if inner.fenced {
            return Err(crashed());
        }
        inner.take_op()?;
        let id = if let Some(&id) = inner.names.get(name) {
            if let Some(file) = inner.files.get_mut(&id) {
                file.data.clear();
                file.unsynced.push(Op::SetLen(0));
            }
            id
        } else {
            let id = inner.next_id;
            inner.next_id += 1;
            inner.files.insert(id, MemFile::default());
            inner.names.insert(name.to_owned(), id);
            id
        };
        drop(inner);
        Ok(self.handle(id))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let mut inner = self.lock_inner();
        if inner.fenced {
            return Err(crashed());
        }
        inner.take_op()?;
        inner
            .names
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{name} not found")))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut inner = self.lock_inner();
        if inner.fenced {
            return Err(crashed());
        }
        inner.take_op()?;
        let id = inner
            .names
            .remove(from)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{from} not found")))?;
        inner.names.insert(to.to_owned(), id);
        Ok(())
    }

    fn sync_dir(&self) -> io::Result<()> {
        let mut inner = self.lock_inner();
        if inner.fenced {
            return Err(crashed());
        }
        inner.take_op()?;
        if inner.fail_sync {
            return Err(io::Error::from_raw_os_error(EIO));
        }
        inner.durable_names = inner.names.clone();
        Ok(())
    }

    fn lock(&self) -> io::Result<DirLock> {
        let mut inner = self.lock_inner();
        if inner.fenced {
            return Err(crashed());
        }
        if inner.locked {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "MemDir is locked by another store",
            ));
        }
        inner.locked = true;
        Ok(DirLock::new(Box::new(MemLockHolder { dir: self.clone() })))
    }
}

/// Releases a [`MemDir`]'s lock when dropped.
#[derive(Debug)]
struct MemLockHolder {
    dir: MemDir,
}

impl Drop for MemLockHolder {
    fn drop(&mut self) {
        self.dir.lock_inner().locked = false;
    }
}

/// A handle on one [`MemDir`] file, by id (so it survives a rename or removal of the name).
#[derive(Debug)]
struct MemFileHandle {
    dir: MemDir,
    id: u64,
}

impl MemFileHandle {
    fn with_file<T>(
        &self,
        mutating: bool,
        f: impl FnOnce(&mut MemFile, &mut Option<u64>, bool) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut guard = self.dir.lock_inner();
        let inner = &mut *guard;
        if inner.fenced {
            return Err(crashed());
        }
        if mutating {
            inner.take_op()?;
        }
        let file = inner
            .files
            .get_mut(&self.id)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        f(file, &mut inner.write_budget, inner.fail_sync)
    }
}

impl SegmentFile for MemFileHandle {
    fn write_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.with_file(true, |file, budget, _| {
            let (take, fail) = match budget {
                Some(left) if (buf.len() as u64) > *left => (*left as usize, true),
                Some(left) => {
                    *left -= buf.len() as u64;
                    (buf.len(), false)
                }
                None => (buf.len(), false),
            };
            if take > 0 {
                write_into(&mut file.data, pos, &buf[..take]);
                file.unsynced.push(Op::Write {
                    pos,
                    bytes: buf[..take].to_vec(),
                });
            }
            if fail {
                *budget = Some(0);
                return Err(io::Error::from_raw_os_error(ENOSPC));
            }
            Ok(())
        })
    }

    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        self.with_file(false, |file, _, _| {
            let start = usize::try_from(pos).unwrap_or(usize::MAX);
            let end = start.saturating_add(buf.len());
            if end > file.data.len() {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
            }
            buf.copy_from_slice(&file.data[start..end]);
            Ok(())
        })
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with_file(true, |file, _, _| {
            let op = Op::SetLen(len);
            apply(&mut file.data, &op);
            file.unsynced.push(op);
            Ok(())
        })
    }

    fn len(&self) -> io::Result<u64> {
        self.with_file(false, |file, _, _| Ok(file.data.len() as u64))
    }

    fn sync_data(&self) -> io::Result<()> {
        self.with_file(true, |file, _, fail_sync| {
            if fail_sync {
                return Err(io::Error::from_raw_os_error(EIO));
            }
            file.durable.clone_from(&file.data);
            file.unsynced.clear();
            file.syncs += 1;
            Ok(())
        })
    }
}
