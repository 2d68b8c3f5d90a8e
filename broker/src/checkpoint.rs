//! Checkpoint files: loading at startup and the writer thread (the I/O side of
//! [`crate::state::checkpoint`]).
//!
//! Directory `<storePathRootDir>/checkpoint/`:
//! - `journal.<generation>`: append-only journal blocks ([`crate::state::journal`]) of
//!   consume-queue units and key-index entries;
//! - `dedup.<generation>`: append-only journal blocks of idempotency-window inserts (kept
//!   apart: most of them are soon evicted, and this file is compacted on its own, cheaply);
//! - `checkpoint.meta`: `b"RMQCKPT2" | u64 journal generation | u64 journal length |
//!   u64 dedup generation | u64 dedup length | u32 n | n bytes of metadata snapshot |
//!   u32 crc32 of everything before`, replaced atomically (write `checkpoint.meta.tmp`,
//!   fsync, rename, fsync the directory).
//!
//! A job is durable in this order: the raft log is synced (so the checkpoint never gets
//! ahead of the local log, even under ASYNC_FLUSH), the journal bytes are written and
//! synced, then the meta is replaced. Bytes past the lengths in the meta (a crash between
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

const MAGIC: &[u8; 8] = b"RMQCKPT2";
const META: &str = "checkpoint.meta";
const META_TMP: &str = "checkpoint.meta.tmp";
/// A journal is compacted (rewritten) once it exceeds this and 1.5 times its live content
/// (purged units, evicted idempotency-window entries): a restart reads at most that much.
const COMPACT_MIN_BYTES: u64 = 64 << 20;

const JOURNAL: &str = "journal";
const DEDUP: &str = "dedup";

fn stream_name(prefix: &str, generation: u64) -> String {
    format!("{prefix}.{generation:020}")
}

/// One journal file as the meta records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct StreamPos {
    generation: u64,
    len: u64,
}

/// The decoded meta file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Meta {
    journal: StreamPos,
    dedup: StreamPos,
    snapshot: Vec<u8>,
}

const META_HEADER_BYTES: usize = 8 + 4 * 8 + 4;

fn encode_meta(m: &Meta) -> Vec<u8> {
    let mut out = Vec::with_capacity(m.snapshot.len() + META_HEADER_BYTES + 4);
    out.extend_from_slice(MAGIC);
    for v in [
        m.journal.generation,
        m.journal.len,
        m.dedup.generation,
        m.dedup.len,
    ] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(&(m.snapshot.len() as u32).to_be_bytes());
    out.extend_from_slice(&m.snapshot);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

fn decode_meta(b: &[u8]) -> Result<Meta, String> {
    if b.len() < META_HEADER_BYTES + 4 || &b[..8] != MAGIC {
        return Err("not a RaftMQ checkpoint (bad magic or too short)".into());
    }
    let (body, crc) = b.split_at(b.len() - 4);
    let mut c = [0u8; 4];
    c.copy_from_slice(crc);
    if crc32fast::hash(body) != u32::from_be_bytes(c) {
        return Err("checksum mismatch".into());
    }
    let u64_at = |at: usize| {
        let mut v = [0u8; 8];
        v.copy_from_slice(&body[at..at + 8]);
        u64::from_be_bytes(v)
    };
    let mut n = [0u8; 4];
    n.copy_from_slice(&body[40..44]);
    let n = u32::from_be_bytes(n) as usize;
    if body.len() != META_HEADER_BYTES + n {
        return Err(format!("metadata length {n} does not match the file"));
    }
    Ok(Meta {
        journal: StreamPos {
            generation: u64_at(8),
            len: u64_at(16),
        },
        dedup: StreamPos {
            generation: u64_at(24),
            len: u64_at(32),
        },
        snapshot: body[META_HEADER_BYTES..].to_vec(),
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
    journal: StreamPos,
    dedup: StreamPos,
}

/// Reads the prefix of `prefix.<generation>` the meta vouches for and cuts what follows.
fn read_stream(dir: &Path, prefix: &str, pos: StreamPos) -> Result<Vec<u8>, String> {
    let path = dir.join(stream_name(prefix, pos.generation));
    let file = match OpenOptions::new().read(true).write(true).open(&path) {
        Ok(f) => f,
        // A stream that was never written (nothing of its kind yet) is empty.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && pos.len == 0 => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot open {}: {e}", path.display())),
    };
    let len = file
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    if len < pos.len {
        return Err(format!(
            "{} has {len} bytes, the checkpoint needs {}",
            path.display(),
            pos.len
        ));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(pos.len).unwrap_or(0));
    (&file)
        .take(pos.len)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if len > pos.len {
        file.set_len(pos.len)
            .and_then(|()| file.sync_all())
            .map_err(|e| format!("cannot cut {}: {e}", path.display()))?;
    }
    Ok(bytes)
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
            remove_streams_except(dir, JOURNAL, None);
            remove_streams_except(dir, DEDUP, None);
            return Ok(Loaded {
                state: BrokerStateMachine::new(),
                found: false,
                journal: StreamPos::default(),
                dedup: StreamPos::default(),
            });
        }
        Err(e) => return Err(format!("cannot read {}: {e}", meta_path.display())),
    };
    let meta = decode_meta(&bytes).map_err(|e| format!("{}: {e}", meta_path.display()))?;
    let journal = read_stream(dir, JOURNAL, meta.journal)?;
    let dedup = read_stream(dir, DEDUP, meta.dedup)?;
    let state = BrokerStateMachine::restore(&meta.snapshot, &journal, &dedup).map_err(|e| {
        format!(
            "checkpoint in {} ({}, {}): {e}",
            dir.display(),
            stream_name(JOURNAL, meta.journal.generation),
            stream_name(DEDUP, meta.dedup.generation)
        )
    })?;
    remove_streams_except(dir, JOURNAL, Some(meta.journal.generation));
    remove_streams_except(dir, DEDUP, Some(meta.dedup.generation));
    Ok(Loaded {
        state,
        found: true,
        journal: meta.journal,
        dedup: meta.dedup,
    })
}

fn remove_streams_except(dir: &Path, prefix: &str, keep: Option<u64>) {
    let keep = keep.map(|g| stream_name(prefix, g));
    let start = format!("{prefix}.");
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(&start) && Some(&name) != keep.as_ref() {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

/// One append-only journal file of the writer.
#[derive(Debug)]
struct Stream {
    prefix: &'static str,
    pos: StreamPos,
    file: Option<File>,
}

impl Stream {
    /// Writes `bytes` durably: appended, or as generation + 1 if `rewrite`. Returns the
    /// position the meta must record (the generation is adopted by [`Stream::adopt`]).
    fn write(&mut self, dir: &Path, bytes: &[u8], rewrite: bool) -> Result<StreamPos, String> {
        let io = |what: &str, e: std::io::Error| format!("checkpoint {what} {}: {e}", self.prefix);
        if rewrite {
            let generation = self.pos.generation + 1;
            let mut f = File::create(dir.join(stream_name(self.prefix, generation)))
                .map_err(|e| io("create", e))?;
            f.write_all(bytes)
                .and_then(|()| f.sync_data())
                .map_err(|e| io("write", e))?;
            sync_dir(dir).map_err(|e| io("sync directory for", e))?;
            self.file = Some(f);
            return Ok(StreamPos {
                generation,
                len: bytes.len() as u64,
            });
        }
        if !bytes.is_empty() {
            if self.file.is_none() {
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join(stream_name(self.prefix, self.pos.generation)))
                    .map_err(|e| io("open", e))?;
                self.file = Some(f);
            }
            if let Some(f) = self.file.as_mut() {
                f.write_all(bytes)
                    .and_then(|()| f.sync_data())
                    .map_err(|e| io("append to", e))?;
            }
        }
        Ok(StreamPos {
            generation: self.pos.generation,
            len: self.pos.len + bytes.len() as u64,
        })
    }

    /// The meta now records `pos`: older generations can go.
    fn adopt(&mut self, dir: &Path, pos: StreamPos) {
        if pos.generation != self.pos.generation {
            remove_streams_except(dir, self.prefix, Some(pos.generation));
        }
        self.pos = pos;
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
    journal: Stream,
    dedup: Stream,
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
            journal: Stream {
                prefix: JOURNAL,
                pos: loaded.journal,
                file: None,
            },
            dedup: Stream {
                prefix: DEDUP,
                pos: loaded.dedup,
                file: None,
            },
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
                        state.journal.file = None;
                        state.dedup.file = None;
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
        let journal = self.journal.write(&self.dir, &job.journal, job.rewrite)?;
        let dedup = self
            .dedup
            .write(&self.dir, &job.dedup, job.rewrite || job.dedup_rewrite)?;
        let meta = encode_meta(&Meta {
            journal,
            dedup,
            snapshot: job.meta.clone(),
        });
        let tmp = self.dir.join(META_TMP);
        let mut f = File::create(&tmp).map_err(|e| io("create meta", e))?;
        f.write_all(&meta)
            .and_then(|()| f.sync_all())
            .map_err(|e| io("write meta", e))?;
        fs::rename(&tmp, self.dir.join(META)).map_err(|e| io("rename meta", e))?;
        sync_dir(&self.dir).map_err(|e| io("sync directory", e))?;
        self.journal.adopt(&self.dir, journal);
        self.dedup.adopt(&self.dir, dedup);
        if job.rewrite {
            self.flags.rewrite.store(false, Ordering::Release);
        } else if journal.len > COMPACT_MIN_BYTES
            && journal.len > job.live_bytes.saturating_add(job.live_bytes / 2)
        {
            self.flags.rewrite.store(true, Ordering::Release);
        }
        tracing::debug!(
            journal_generation = journal.generation,
            journal_bytes = journal.len,
            dedup_bytes = dedup.len,
            written = job.journal.len() + job.dedup.len(),
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
            journal: StreamPos {
                generation: 3,
                len: 99,
            },
            dedup: StreamPos {
                generation: 7,
                len: 12,
            },
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
