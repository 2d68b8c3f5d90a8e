//! The write side of the store: append (frame, copy into the write-behind buffer, publish,
//! queue the completion), segment roll, truncate and purge.
//!
//! Ordering rules that keep a crash from leaving a hole:
//! - only the flusher (or a writer holding the `io` lock) writes buffered frames, in order,
//!   and a partial write is cut off again (`set_len`);
//! - a segment is written out, cut to its last frame (the flusher writes zeros ahead of
//!   the end) and `fdatasync`ed before the next one is created, so no byte of a later
//!   segment can be durable while an earlier one is incomplete, and a sealed segment is
//!   frames only;
//! - truncate removes later segments back to front, then cuts the file, and syncs before it
//!   returns: every intermediate state is a prefix of the old log;
//! - purge syncs, then saves the purge point (flushed), then deletes segments;
//! - rebase (an emptied log moved to the replicated position after a snapshot install) runs
//!   only once the purge point and the rebase point are saved (flushed), creates and syncs
//!   the new empty segment and the directory, and only then deletes the old segments and
//!   syncs the directory again: see [`SegmentedLogStore::rebase`].

use std::io;

use super::frame::encode_entry;
use super::index::Segment;
use super::rebase::RebasePoint;
use super::segment::{segment_file_name, sidecar_file_name, write_sidecar, Sidecar};
use super::{Active, Completion, LogStoreError, SegmentedLogStore};
use crate::types::{Entry, LogId};

/// Most bytes buffered before an append writes them itself (backpressure on a slow disk).
const TAIL_BYTES_MAX: u64 = 32 << 20;

fn remove_if_exists(
    dir: &dyn crate::storage_dir::StorageDir,
    name: &str,
) -> Result<(), LogStoreError> {
    match dir.remove(name) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(LogStoreError::Io {
            op: "remove",
            file: name.into(),
            source: e,
        }),
        _ => Ok(()),
    }
}

impl SegmentedLogStore {
    /// Appends entries (their indexes must continue the log) and returns once they are
    /// written and readable; `done` fires once they are durable per the flush policy (or with
    /// the error). Used by openraft's `append`, and directly by tests.
    pub fn append_entries<I>(&mut self, entries: I, done: Completion) -> Result<(), LogStoreError>
    where
        I: IntoIterator<Item = Entry>,
    {
        if let Some(e) = self.flusher.failure() {
            done(Err(e.to_io()));
            return Err(e);
        }
        // The first append after a snapshot install is where a rebase point recorded after
        // the purge is seen (see `rebase.rs` for why the purge may come first).
        if let Err(e) = self.rebase_if_hinted() {
            done(Err(e.to_io()));
            return Err(e);
        }
        match self.append_inner(entries) {
            Ok(()) => {
                self.flusher.enqueue(done);
                if self.buffered > TAIL_BYTES_MAX {
                    // The disk is not keeping up: write from here, which waits for the flusher.
                    let log = self.shared.clone();
                    let io = log.lock_io();
                    self.flusher.write_out_now(&io)?;
                    self.buffered = log.read().tail.len() as u64;
                }
                Ok(())
            }
            Err(e) => {
                // Frames published before the error are still written and synced first.
                let io_err = e.to_io();
                self.flusher.enqueue(Box::new(move |_| done(Err(io_err))));
                Err(e)
            }
        }
    }

    fn append_inner<I>(&mut self, entries: I) -> Result<(), LogStoreError>
    where
        I: IntoIterator<Item = Entry>,
    {
        let cap = self.config.segment_bytes;
        self.buf.clear();
        self.new_ends.clear();
        let (mut next, purged) = {
            let st = self.shared.read();
            (st.next_index(), st.purged.map(|p| p.index))
        };
        let mut chunk: Option<(u64, LogId)> = None;
        for entry in entries {
            let index = entry.log_id.index;
            if purged.is_some_and(|p| index <= p) {
                // Already covered by the purge point (a snapshot): nothing to keep. openraft's
                // suite does this after purging to a state machine's applied id.
                tracing::debug!(
                    index,
                    "skipping append of an entry at or below the purge point"
                );
                continue;
            }
            if let Some(expected) = next.filter(|&n| n != index) {
                return Err(LogStoreError::NotContiguous {
                    expected,
                    got: index,
                });
            }
            let start = self.buf.len();
            let frame_len = u64::from(
                encode_entry(&mut self.buf, &entry)
                    .map_err(|source| LogStoreError::Frame { index, source })?,
            );
            let used = self.active.len + start as u64;
            // After a purge past the end the next index jumps; frames of one segment stay consecutive.
            let jump = start == 0 && self.active.last_index.is_some_and(|l| l + 1 != index);
            if (used > 0 && used + frame_len > cap) || jump {
                if let Some((first, last)) = chunk.take() {
                    self.publish_chunk(start, first, last);
                }
                self.roll()?;
                self.buf.drain(..start);
                self.new_ends.clear();
            }
            let end = self.active.len + self.buf.len() as u64;
            let end = u32::try_from(end).map_err(|_| LogStoreError::Frame {
                index,
                source: super::frame::FrameError::TooLarge(end),
            })?;
            self.new_ends.push(end);
            chunk = Some((chunk.map_or(index, |(first, _)| first), entry.log_id));
            next = Some(index + 1);
        }
        if let Some((first, last)) = chunk {
            self.publish_chunk(self.buf.len(), first, last);
        }
        Ok(())
    }

    /// Copies `buf[..n]` (frames `first..=last`, ends in `new_ends`) into the write-behind
    /// buffer and publishes them: from here on they are readable.
    fn publish_chunk(&mut self, n: usize, first: u64, last: LogId) {
        let mut st = self.shared.write();
        st.tail.extend_from_slice(&self.buf[..n]);
        if let Some(seg) = st.segments.back_mut() {
            if seg.ends.is_empty() {
                seg.first_index = first;
            }
            seg.ends.extend_from_slice(&self.new_ends);
        }
        st.last = Some(last);
        debug_assert_eq!(st.tail_start + st.tail.len() as u64, st.end_position());
        self.buffered = st.tail.len() as u64;
        self.active.len += n as u64;
        self.active.last_index = Some(last.index);
    }

    /// Cuts the active segment to its frames (dropping the zeros the flusher wrote ahead)
    /// and syncs it, before it becomes a sealed segment: sealed segments are frames only.
    /// The caller holds `io`, so the flusher writes no zeros after this.
    fn cut_active_to_frames(
        &self,
        _io: &std::sync::MutexGuard<'_, ()>,
    ) -> Result<(), LogStoreError> {
        let file = &self.active.file;
        file.set_len(self.active.len)
            .and_then(|()| file.sync_data())
            .map_err(|source| {
                self.flusher
                    .fail(format!("seal {}: {source}", self.active.name))
            })
    }

    /// Seals the active segment (sync, sidecar) and starts a new one at the end position.
    fn roll(&mut self) -> Result<(), LogStoreError> {
        let log = self.shared.clone();
        let io = log.lock_io();
        self.flusher.write_out_now(&io)?;
        self.cut_active_to_frames(&io)?;
        let (sidecar, next_index) = {
            let st = self.shared.read();
            let seg = st.segments.back();
            let sidecar = seg.map(|s| Sidecar {
                base: s.base,
                data_len: s.data_len(),
                first_index: s.first_index,
                ends: s.ends.clone(),
            });
            (sidecar, st.next_index().unwrap_or(0))
        };
        if let Some(sidecar) = sidecar {
            // Only an optimisation for restart: without it the segment is scanned once.
            if let Err(e) = write_sidecar(self.dir.as_ref(), &sidecar) {
                tracing::warn!(error = %e, "cannot write segment sidecar");
            }
        }
        let base = self.active.base + self.active.len;
        let name = segment_file_name(base);
        let file = self
            .dir
            .create(&name)
            .map_err(LogStoreError::io("create", name.clone()))?;
        if let Err(source) = self.dir.sync_dir() {
            return Err(self
                .flusher
                .fail(format!("sync directory after creating {name}: {source}")));
        }
        tracing::debug!(segment = %name, "log segment rolled");
        {
            let mut st = self.shared.write();
            debug_assert!(st.tail.is_empty() && st.tail_start == base);
            st.segments.push_back(Segment {
                base,
                first_index: next_index,
                ends: Vec::new(),
                file: file.clone(),
                name: name.clone(),
            });
        }
        drop(io);
        self.active = Active {
            base,
            len: 0,
            last_index: None,
            file,
            name,
        };
        Ok(())
    }

    /// Removes the entries from `index` on (inclusive), durably, before returning.
    pub fn truncate_from(&mut self, index: u64) -> Result<(), LogStoreError> {
        if let Some(e) = self.flusher.failure() {
            return Err(e);
        }
        let (index, seg_no, k, new_last) = {
            let st = self.shared.read();
            let (Some(first), Some(last)) = (st.first_index(), st.last) else {
                return Ok(());
            };
            if index > last.index {
                return Ok(());
            }
            // Purged entries cannot be truncated; openraft never asks to.
            let index = index.max(first);
            let Some((seg_no, k)) = st.locate(index) else {
                return Ok(());
            };
            (
                index,
                seg_no,
                k,
                index.checked_sub(1).filter(|&prev| prev >= first),
            )
        };
        let new_last = match new_last {
            Some(i) => Some(self.read_log_id(i)?),
            None => None,
        };
        // Everything buffered goes to the file first, so the cut below is a plain set_len.
        let log = self.shared.clone();
        let io = log.lock_io();
        self.flusher.write_out_now(&io)?;
        let (removed, cut) = {
            let mut st = self.shared.write();
            let removed: Vec<Segment> = st.segments.drain(seg_no + 1..).collect();
            let Some(seg) = st.segments.back_mut() else {
                return Ok(());
            };
            let cut = seg.frame_range(k).0;
            seg.ends.truncate(k);
            if k == 0 {
                seg.first_index = index;
            }
            self.active = Active {
                base: seg.base,
                len: cut,
                last_index: seg.last_index(),
                file: seg.file.clone(),
                name: seg.name.clone(),
            };
            st.last = new_last;
            st.tail_start = self.active.base + cut;
            st.forget_written();
            (removed, cut)
        };
        self.buffered = 0;
        let result = self.truncate_files(removed, cut);
        drop(io);
        result.map_err(|e| self.flusher.fail(format!("truncate failed half way: {e}")))
    }

    fn truncate_files(&self, removed: Vec<Segment>, cut: u64) -> Result<(), LogStoreError> {
        let dir = self.dir.as_ref();
        for seg in removed.iter().rev() {
            remove_if_exists(dir, &sidecar_file_name(seg.base))?;
            remove_if_exists(dir, &seg.name)?;
        }
        remove_if_exists(dir, &sidecar_file_name(self.active.base))?;
        dir.sync_dir().map_err(LogStoreError::io(
            "sync directory of",
            self.active.name.clone(),
        ))?;
        let file = &self.active.file;
        file.set_len(cut)
            .map_err(LogStoreError::io("truncate", self.active.name.clone()))?;
        file.sync_data()
            .map_err(LogStoreError::io("sync", self.active.name.clone()))?;
        Ok(())
    }

    /// Purges entries up to `log_id` (inclusive): saves the purge point, then deletes every
    /// segment that ends at or before it (the last segment always stays: it holds the end
    /// position). If that empties the log and the rebase hint gives the position of entry
    /// `log_id.index + 1` (a snapshot install), the log is rebased there.
    pub fn purge_upto(&mut self, log_id: LogId) -> Result<(), LogStoreError> {
        if self
            .shared
            .read()
            .purged
            .is_some_and(|p| p.index >= log_id.index)
        {
            return Ok(());
        }
        // Entries are purged only once durable: otherwise a crash could lose bytes below the
        // purge point and move the end position (and every later position) backwards.
        self.sync()?;
        self.meta.save_purged(&log_id)?;
        let removed: Vec<Segment> = {
            let mut st = self.shared.write();
            st.purged = Some(log_id);
            if st.last.is_some_and(|l| l.index <= log_id.index) {
                st.last = None;
            }
            let mut removed = Vec::new();
            while st.segments.len() > 1
                && st
                    .segments
                    .front()
                    .is_some_and(|s| s.last_index().is_none_or(|l| l <= log_id.index))
            {
                removed.extend(st.segments.pop_front());
            }
            removed
        };
        if !removed.is_empty() {
            let dir = self.dir.as_ref();
            for seg in &removed {
                remove_if_exists(dir, &seg.name)?;
                remove_if_exists(dir, &sidecar_file_name(seg.base))?;
                tracing::debug!(segment = %seg.name, "purged log segment");
            }
            dir.sync_dir().map_err(LogStoreError::io(
                "sync directory after purging",
                removed[0].name.clone(),
            ))?;
        }
        self.rebase_if_hinted()
    }

    /// Rebases the log if it is empty (every entry purged) and the rebase hint says where the
    /// entry after the purge point begins, and that is not where the log ends now.
    fn rebase_if_hinted(&mut self) -> Result<(), LogStoreError> {
        let (purged, end) = {
            let st = self.shared.read();
            if st.last.is_some() {
                return Ok(());
            }
            let Some(purged) = st.purged else {
                return Ok(());
            };
            (purged, st.end_position())
        };
        match self.hint.get() {
            Some(point) if point.first_index == purged.index + 1 && point.position != end => {
                self.rebase(point)
            }
            _ => Ok(()),
        }
    }

    /// Replaces every segment of an empty log with one empty segment starting at
    /// `point.position`, so entry `point.first_index` goes exactly there.
    ///
    /// Crash safety: the purge point (`point.first_index - 1`) and `point` itself are already
    /// saved and flushed in the metadata (by `purge_upto` and [`super::RebaseHint::record`]).
    /// Then: create the new segment, sync it and the directory; delete the old segments and
    /// their sidecars; sync the directory. Appends only follow once this returns. A crash at
    /// any step leaves only segments wholly at or below the purge point, with or without the
    /// new empty one; recovery drops the former and, from the saved rebase point, (re)creates
    /// the latter, so it ends in the same state as a completed rebase.
    fn rebase(&mut self, point: RebasePoint) -> Result<(), LogStoreError> {
        if let Some(e) = self.flusher.failure() {
            return Err(e);
        }
        let log = self.shared.clone();
        let io = log.lock_io();
        // Nothing can be buffered in an empty log, but keep the invariant that the buffer
        // belongs to the last segment.
        self.flusher.write_out_now(&io)?;
        // If a crash leaves the old last segment behind, it is a sealed one.
        self.cut_active_to_frames(&io)?;
        let name = segment_file_name(point.position);
        // The name may be an old (wholly purged) segment's: `create` empties it.
        let file = self
            .dir
            .create(&name)
            .map_err(LogStoreError::io("create", name.clone()))?;
        if let Err(source) = file.sync_data() {
            return Err(self.flusher.fail(format!("sync {name}: {source}")));
        }
        if let Err(source) = self.dir.sync_dir() {
            return Err(self
                .flusher
                .fail(format!("sync directory after creating {name}: {source}")));
        }
        let old: Vec<Segment> = {
            let mut st = self.shared.write();
            let old = st.segments.drain(..).collect();
            st.segments.push_back(Segment {
                base: point.position,
                first_index: point.first_index,
                ends: Vec::new(),
                file: file.clone(),
                name: name.clone(),
            });
            st.tail.clear();
            st.tail_start = point.position;
            st.forget_written();
            old
        };
        let from = self.active.base + self.active.len;
        self.active = Active {
            base: point.position,
            len: 0,
            last_index: None,
            file,
            name: name.clone(),
        };
        self.buffered = 0;
        let result = self.remove_rebased(&old, &name);
        drop(io);
        result.map_err(|e| {
            self.flusher
                .fail(format!("log rebase failed half way: {e}"))
        })?;
        tracing::info!(
            first_index = point.first_index,
            from,
            to = point.position,
            "log rebased onto the snapshot's position"
        );
        Ok(())
    }

    /// Deletes the segments replaced by a rebase (but not the new one, `keep`) and syncs the
    /// directory.
    fn remove_rebased(&self, old: &[Segment], keep: &str) -> Result<(), LogStoreError> {
        let dir = self.dir.as_ref();
        for seg in old {
            remove_if_exists(dir, &sidecar_file_name(seg.base))?;
            if seg.name != keep {
                remove_if_exists(dir, &seg.name)?;
            }
        }
        dir.sync_dir().map_err(LogStoreError::io(
            "sync directory after rebasing onto",
            keep,
        ))
    }

    /// Reads (CRC-checked) the log id of the present entry `index`.
    fn read_log_id(&self, index: u64) -> Result<LogId, LogStoreError> {
        let entries = self.read_handle().read_entries(index..=index)?;
        entries
            .first()
            .map(|e| e.log_id)
            .ok_or_else(|| LogStoreError::Corrupt {
                file: self.active.name.clone(),
                offset: 0,
                reason: format!("entry {index} is indexed but cannot be read"),
            })
    }
}
