//! Checkpoint files: loading at startup and the writer thread (the I/O side of
//! [`crate::state::checkpoint`]).
//!
//! Directory `<storePathRootDir>/checkpoint/`:
//! - `journal.<generation>`: append-only journal blocks ([`crate::state::journal`]);
//! - `checkpoint.meta`: `b"RMQCKPT1" | u64 generation | u64 journal length | u32 n |
//!   n bytes of metadata snapshot | u32 crc32 of everything before`, replaced atomically
//!   (write `checkpoint.meta.tmp`, fsync, rename, fsync the directory).
//!
//! A job is durable in this order: the raft log is synced (so the checkpoint never gets
//! ahead of the local log, even under ASYNC_FLUSH), the journal bytes are written and
//! synced, then the meta is replaced. Bytes past the meta's journal length (a crash between
//! the two) are cut at the next open. A failed write leaves the previous checkpoint intact
//! and asks the state machine for a full rewrite next time.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use raftmq_raft::log_store::LogSyncer;

use crate::state::{BrokerStateMachine, CheckpointJob, CheckpointSink};

const MAGIC: &[u8; 8] = b"RMQCKPT1";
const META: &str = "checkpoint.meta";
const META_TMP: &str = "checkpoint.meta.tmp";
/// A journal is compacted (rewritten) once it exceeds this and 1.5 times its live content
/// (purged units, evicted idempotency-window entries): a restart reads at most that much.
const COMPACT_MIN_BYTES: u64 = 64 << 20;

fn journal_name(generation: u64) -> String {
    format!("journal.{generation:020}")
}

/// The decoded meta file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Meta {
    generation: u64,
    journal_len: u64,
    snapshot: Vec<u8>,
}

fn encode_meta(m: &Meta) -> Vec<u8> {
    let mut out = Vec::with_capacity(m.snapshot.len() + 32);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&m.generation.to_be_bytes());
    out.extend_from_slice(&m.journal_len.to_be_bytes());
    out.extend_from_slice(&(m.snapshot.len() as u32).to_be_bytes());
    out.extend_from_slice(&m.snapshot);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

fn decode_meta(b: &[u8]) -> Result<Meta, String> {
    if b.len() < 32 || &b[..8] != MAGIC {
        return Err("not a RaftMQ checkpoint (bad magic or too short)".into());
    }
    let (body, crc) = b.split_at(b.len() - 4);
    let mut c = [0u8; 4];
    c.copy_from_slice(crc);
    if crc32fast::hash(body) != u32::from_be_bytes(c) {
        return Err("checksum mismatch".into());
    }
    let mut g = [0u8; 8];
    g.copy_from_slice(&body[8..16]);
    let mut l = [0u8; 8];
    l.copy_from_slice(&body[16..24]);
    let mut n = [0u8; 4];
    n.copy_from_slice(&body[24..28]);
    let n = u32::from_be_bytes(n) as usize;
    if body.len() != 28 + n {
        return Err(format!("metadata length {n} does not match the file"));
    }
    Ok(Meta {
        generation: u64::from_be_bytes(g),
        journal_len: u64::from_be_bytes(l),
        snapshot: body[28..].to_vec(),
    })
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// What [`load`] found.
#[derive(Debug)]
pub struct Loaded {
    /// The restored state machine (fresh if there was no checkpoint).
    pub state: BrokerStateMachine,
    /// True if a checkpoint was found.
    pub found: bool,
    generation: u64,
    journal_len: u64,
}

/// Reads the checkpoint in `dir` (creating the directory), cuts any journal bytes it does
/// not vouch for and removes journals of other generations. `Err` names the corrupt file.
pub fn load(dir: &Path) -> Result<Loaded, String> {
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let _ = fs::remove_file(dir.join(META_TMP));
    let meta_path = dir.join(META);
    let bytes = match fs::read(&meta_path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            remove_journals_except(dir, None);
            return Ok(Loaded {
                state: BrokerStateMachine::new(),
                found: false,
                generation: 0,
                journal_len: 0,
            });
        }
        Err(e) => return Err(format!("cannot read {}: {e}", meta_path.display())),
    };
    let meta = decode_meta(&bytes).map_err(|e| format!("{}: {e}", meta_path.display()))?;
    let jpath = dir.join(journal_name(meta.generation));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&jpath)
        .map_err(|e| format!("cannot open {}: {e}", jpath.display()))?;
    let len = file
        .metadata()
        .map_err(|e| format!("{}: {e}", jpath.display()))?
        .len();
    if len < meta.journal_len {
        return Err(format!(
            "{} has {len} bytes, the checkpoint needs {}",
            jpath.display(),
            meta.journal_len
        ));
    }
    let mut journal = Vec::with_capacity(usize::try_from(meta.journal_len).unwrap_or(0));
    (&file)
        .take(meta.journal_len)
        .read_to_end(&mut journal)
        .map_err(|e| format!("cannot read {}: {e}", jpath.display()))?;
    if len > meta.journal_len {
        file.set_len(meta.journal_len)
            .and_then(|()| file.sync_all())
            .map_err(|e| format!("cannot cut {}: {e}", jpath.display()))?;
    }
    let state = BrokerStateMachine::restore(&meta.snapshot, &journal)
        .map_err(|e| format!("{}: {e}", jpath.display()))?;
    remove_journals_except(dir, Some(meta.generation));
    Ok(Loaded {
        state,
        found: true,
        generation: meta.generation,
        journal_len: meta.journal_len,
    })
}

fn remove_journals_except(dir: &Path, keep: Option<u64>) {
    let keep = keep.map(journal_name);
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("journal.") && Some(&name) != keep.as_ref() {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

type Reply = mpsc::Sender<Result<(), String>>;
/// A job and, for waiting submitters, where to send its outcome.
type Queued = (CheckpointJob, Option<Reply>);

/// Shared between the writer thread and the sink.
#[derive(Debug, Default)]
struct Flags {
    /// The next job must be a rewrite (failure or compaction).
    rewrite: AtomicBool,
}

/// The writer: a thread that makes jobs durable in the order they were submitted.
#[derive(Debug)]
pub struct CheckpointWriter {
    tx: Mutex<Option<mpsc::Sender<Queued>>>,
    flags: Arc<Flags>,
    syncer: Arc<OnceLock<LogSyncer>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

struct WriterState {
    dir: PathBuf,
    generation: u64,
    journal_len: u64,
    journal: Option<File>,
    flags: Arc<Flags>,
    syncer: Arc<OnceLock<LogSyncer>>,
}

impl CheckpointWriter {
    /// Starts the writer for `dir`, continuing what [`load`] found.
    pub fn start(dir: &Path, loaded: &Loaded) -> Result<Arc<Self>, String> {
        let flags = Arc::new(Flags::default());
        let syncer = Arc::new(OnceLock::new());
        let mut state = WriterState {
            dir: dir.to_owned(),
            generation: loaded.generation,
            journal_len: loaded.journal_len,
            journal: None,
            flags: flags.clone(),
            syncer: syncer.clone(),
        };
        let (tx, rx) = mpsc::channel::<Queued>();
        let thread = std::thread::Builder::new()
            .name("raftmq-checkpoint".into())
            .spawn(move || {
                while let Ok((job, reply)) = rx.recv() {
                    let result = state.write(&job);
                    if let Err(e) = &result {
                        state.flags.rewrite.store(true, Ordering::Release);
                        state.journal = None;
                        tracing::warn!(error = %e, "checkpoint failed; the next one rewrites");
                    }
                    if let Some(r) = reply {
                        let _ = r.send(result);
                    }
                }
            })
            .map_err(|e| format!("cannot start the checkpoint thread: {e}"))?;
        Ok(Arc::new(CheckpointWriter {
            tx: Mutex::new(Some(tx)),
            flags,
            syncer,
            thread: Mutex::new(Some(thread)),
        }))
    }

    /// Gives the writer the raft log's syncer (available once the node started); until
    /// then jobs fail (and the next one rewrites).
    pub fn set_log_syncer(&self, syncer: LogSyncer) {
        let _ = self.syncer.set(syncer);
    }

    fn send(&self, job: CheckpointJob, reply: Option<Reply>) -> Result<(), String> {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        tx.as_ref()
            .ok_or("checkpoint writer stopped")?
            .send((job, reply))
            .map_err(|_| "checkpoint writer stopped".to_owned())
    }

    /// Finishes queued jobs and stops the thread.
    pub fn stop(&self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            if t.join().is_err() {
                tracing::error!("checkpoint thread panicked");
            }
        }
    }
}

impl CheckpointSink for CheckpointWriter {
    fn submit(&self, job: CheckpointJob) -> Result<(), String> {
        self.send(job, None)
    }

    fn submit_and_wait(&self, job: CheckpointJob) -> Result<(), String> {
        let (tx, rx) = mpsc::channel();
        self.send(job, Some(tx))?;
        rx.recv()
            .map_err(|_| "checkpoint writer stopped".to_owned())?
    }

    fn rewrite_requested(&self) -> bool {
        self.flags.rewrite.load(Ordering::Acquire)
    }

    fn log_opened(&self, syncer: LogSyncer) {
        self.set_log_syncer(syncer);
    }
}

impl WriterState {
    fn write(&mut self, job: &CheckpointJob) -> Result<(), String> {
        if self.flags.rewrite.load(Ordering::Acquire) && !job.rewrite {
            return Err("skipped: waiting for a full rewrite after an earlier failure".into());
        }
        let started = Instant::now();
        self.syncer
            .get()
            .ok_or("the raft log is not open yet")?
            .sync_and_index_tail()
            .map_err(|e| format!("raft log sync: {e}"))?;
        let io = |what: &str, e: std::io::Error| format!("checkpoint {what}: {e}");
        let generation = if job.rewrite {
            let generation = self.generation + 1;
            let path = self.dir.join(journal_name(generation));
            let mut f = File::create(&path).map_err(|e| io("create journal", e))?;
            f.write_all(&job.journal)
                .and_then(|()| f.sync_data())
                .map_err(|e| io("write journal", e))?;
            sync_dir(&self.dir).map_err(|e| io("sync directory", e))?;
            self.journal = Some(f);
            self.journal_len = job.journal.len() as u64;
            generation
        } else {
            if self.journal.is_none() {
                let path = self.dir.join(journal_name(self.generation));
                let f = OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .map_err(|e| io("open journal", e))?;
                self.journal = Some(f);
            }
            if let Some(f) = self.journal.as_mut() {
                if !job.journal.is_empty() {
                    f.write_all(&job.journal)
                        .and_then(|()| f.sync_data())
                        .map_err(|e| io("append journal", e))?;
                }
            }
            self.journal_len += job.journal.len() as u64;
            self.generation
        };
        let meta = encode_meta(&Meta {
            generation,
            journal_len: self.journal_len,
            snapshot: job.meta.clone(),
        });
        let tmp = self.dir.join(META_TMP);
        let mut f = File::create(&tmp).map_err(|e| io("create meta", e))?;
        f.write_all(&meta)
            .and_then(|()| f.sync_all())
            .map_err(|e| io("write meta", e))?;
        fs::rename(&tmp, self.dir.join(META)).map_err(|e| io("rename meta", e))?;
        sync_dir(&self.dir).map_err(|e| io("sync directory", e))?;
        if job.rewrite {
            if generation > 0 {
                let _ = fs::remove_file(self.dir.join(journal_name(generation - 1)));
            }
            remove_journals_except(&self.dir, Some(generation));
            self.generation = generation;
            self.flags.rewrite.store(false, Ordering::Release);
        } else if self.journal_len > COMPACT_MIN_BYTES
            && self.journal_len > job.live_bytes.saturating_add(job.live_bytes / 2)
        {
            self.flags.rewrite.store(true, Ordering::Release);
        }
        tracing::debug!(
            generation,
            journal_bytes = self.journal_len,
            written = job.journal.len(),
            rewrite = job.rewrite,
            elapsed_us = started.elapsed().as_micros() as u64,
            "checkpoint written"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips_and_rejects_damage() {
        let m = Meta {
            generation: 3,
            journal_len: 99,
            snapshot: b"snap".to_vec(),
        };
        let b = encode_meta(&m);
        assert_eq!(decode_meta(&b), Ok(m));
        for i in 0..b.len() {
            let mut d = b.clone();
            d[i] ^= 0x10;
            assert!(decode_meta(&d).is_err(), "flip at {i} accepted");
        }
        assert!(decode_meta(&b[..b.len() - 1]).is_err());
    }
}
