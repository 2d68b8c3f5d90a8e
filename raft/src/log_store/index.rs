//! The in-memory index (log index -> global byte position and frame length) and the cheap,
//! cloneable read handle built on it.
//!
//! Per segment the index keeps one `u32` per frame, the frame's end offset inside the segment
//! (4 bytes per entry; positions and lengths are differences of neighbours). Frames of one
//! segment have consecutive indexes. The whole state sits behind one `RwLock`; the writer
//! holds it only to publish already-written frames, and readers only to find positions: the
//! actual `pread`s happen outside the lock.

use std::collections::VecDeque;
use std::fmt;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::{Bytes, BytesMut};

use super::frame::{self, HEADER_BYTES};
use super::LogStoreError;
use crate::storage_dir::SegmentFile;
use crate::types::{Entry, LogId};

/// A segment file as [`LogReadHandle::segments`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentSummary {
    /// File name (in the store's directory).
    pub name: String,
    /// Global position of its first byte.
    pub base: u64,
    /// Global position just past its last frame.
    pub end: u64,
    /// Index of its first frame (or of the next frame, if empty).
    pub first_index: u64,
    /// Index of its last frame, if any.
    pub last_index: Option<u64>,
}

/// One segment file as the index sees it.
pub(crate) struct Segment {
    /// Global position of the file's first byte (also its name).
    pub base: u64,
    /// Log index of frame 0; for an empty segment, the index its first frame will have.
    pub first_index: u64,
    /// End offset, relative to `base`, of each frame in the file.
    pub ends: Vec<u32>,
    /// The open file.
    pub file: Arc<dyn SegmentFile>,
    /// The file name, for error messages.
    pub name: String,
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("name", &self.name)
            .field("first_index", &self.first_index)
            .field("frames", &self.ends.len())
            .finish()
    }
}

impl Segment {
    /// Bytes of frames in the file.
    pub fn data_len(&self) -> u64 {
        self.ends.last().map_or(0, |&e| u64::from(e))
    }

    /// Global position just past the last frame.
    pub fn end_position(&self) -> u64 {
        self.base + self.data_len()
    }

    /// Index of the last frame, if any.
    pub fn last_index(&self) -> Option<u64> {
        (!self.ends.is_empty()).then(|| self.first_index + self.ends.len() as u64 - 1)
    }

    /// Relative start and end offsets of frame `k`.
    pub fn frame_range(&self, k: usize) -> (u64, u64) {
        let start = if k == 0 {
            0
        } else {
            u64::from(self.ends[k - 1])
        };
        (start, u64::from(self.ends[k]))
    }
}

/// Everything readers need to find an entry.
#[derive(Debug)]
pub(crate) struct LogState {
    /// Segments in position order; never empty once open. The last one takes appends.
    pub segments: VecDeque<Segment>,
    /// Log id of the last purged entry.
    pub purged: Option<LogId>,
    /// Log id of the last entry still present (`None` if every entry is purged or none exist).
    pub last: Option<LogId>,
    /// The last committed log id openraft reported (may lag; never ahead of a majority).
    pub committed: Option<LogId>,
    /// Write-behind buffer: frames of the last segment not yet handed to the kernel. Readers
    /// copy from it; the flusher moves it to `in_write` and `pwrite`s it in one call.
    pub tail: BytesMut,
    /// Global position of `tail[0]` (so `tail_start + tail.len()` is the end position).
    pub tail_start: u64,
    /// Frames the flusher is writing right now, readable from here until the write returns.
    pub in_write: Option<(u64, Bytes)>,
    /// The last chunks written out, oldest first, contiguous and ending where `in_write`
    /// (or `tail`) begins; at most [`RECENT_BYTES_MAX`] bytes. Reads of the newest entries
    /// (replication to followers, apply on every node) come from here as zero-copy slices
    /// instead of a `pread` into a fresh buffer.
    pub recent: VecDeque<(u64, Bytes)>,
    /// Bytes held in `recent`.
    pub recent_bytes: usize,
    /// Times the last segment's file may have been cut or replaced (truncate, rebase, a
    /// failed write): the flusher's zeros ahead of the end are gone after each.
    pub cuts: u64,
}

/// Most bytes of written chunks kept readable in memory (see [`LogState::recent`]).
pub const RECENT_BYTES_MAX: usize = 16 << 20;

/// Where the bytes of a range live: in a file, or still in memory.
pub(crate) enum Piece {
    /// `n` bytes at offset `rel` of a segment file.
    File {
        file: Arc<dyn SegmentFile>,
        name: String,
        rel: u64,
        n: usize,
    },
    /// Bytes not yet (fully) written to the file.
    Mem(Bytes),
}

impl LogState {
    /// State of a just-opened store: everything on disk, nothing buffered.
    pub fn new(segments: VecDeque<Segment>, purged: Option<LogId>, last: Option<LogId>) -> Self {
        let tail_start = segments.back().map_or(0, Segment::end_position);
        Self {
            segments,
            purged,
            last,
            committed: None,
            tail: BytesMut::new(),
            tail_start,
            in_write: None,
            recent: VecDeque::new(),
            recent_bytes: 0,
            cuts: 0,
        }
    }

    /// Records a chunk just written at `pos` (it ends where the buffered frames begin).
    pub fn remember_written(&mut self, pos: u64, bytes: Bytes) {
        // `pieces` walks chunks until one does not continue the range: no empty ones.
        if bytes.is_empty() {
            return;
        }
        let contiguous = self
            .recent
            .back()
            .is_none_or(|(p, b)| p + b.len() as u64 == pos);
        if !contiguous {
            self.forget_written();
        }
        self.recent_bytes += bytes.len();
        self.recent.push_back((pos, bytes));
        while self.recent_bytes > RECENT_BYTES_MAX {
            let Some((_, old)) = self.recent.pop_front() else {
                break;
            };
            self.recent_bytes -= old.len();
        }
    }

    /// Whether the written chunks end exactly where the in-memory frames begin (the
    /// invariant `pieces` relies on to read them instead of the file).
    fn recent_reaches(&self, mem_start: u64) -> bool {
        self.recent
            .back()
            .is_some_and(|(p, b)| p + b.len() as u64 == mem_start)
    }

    /// Drops the written chunks (the log was cut or moved, or a write failed).
    pub fn forget_written(&mut self) {
        self.recent.clear();
        self.recent_bytes = 0;
        self.cuts += 1;
    }

    /// Index of the first entry still present.
    pub fn first_index(&self) -> Option<u64> {
        self.last?;
        match &self.purged {
            Some(p) => Some(p.index + 1),
            None => self.segments.front().map(|s| s.first_index),
        }
    }

    /// The index the next append must have, if the log constrains it.
    pub fn next_index(&self) -> Option<u64> {
        self.last
            .as_ref()
            .or(self.purged.as_ref())
            .map(|l| l.index + 1)
    }

    /// Segment number and frame number of a present entry.
    pub fn locate(&self, index: u64) -> Option<(usize, usize)> {
        let first = self.first_index()?;
        let last = self.last.as_ref()?.index;
        if index < first || index > last {
            return None;
        }
        let i = self
            .segments
            .partition_point(|s| s.first_index + s.ends.len() as u64 <= index);
        let seg = self.segments.get(i)?;
        (seg.first_index <= index).then(|| (i, (index - seg.first_index) as usize))
    }

    /// Global position and frame length of a present entry.
    pub fn entry_position(&self, index: u64) -> Option<(u64, u32)> {
        let (i, k) = self.locate(index)?;
        let seg = &self.segments[i];
        let (start, end) = seg.frame_range(k);
        Some((seg.base + start, (end - start) as u32))
    }

    /// Global position just past the last frame.
    pub fn end_position(&self) -> u64 {
        self.segments.back().map_or(0, Segment::end_position)
    }

    /// Global position just past entry `index` (where entry `index + 1` begins), if known:
    /// the entry is present, or it is the last purged one.
    pub fn end_of(&self, index: u64) -> Option<u64> {
        if let Some((pos, len)) = self.entry_position(index) {
            return Some(pos + u64::from(len));
        }
        self.purged
            .is_some_and(|p| p.index == index)
            .then(|| self.start_position())
    }

    /// The pieces holding `[pos, pos + len)`; the range must lie inside the segments.
    pub fn pieces(&self, pos: u64, len: u64) -> Vec<Piece> {
        let mut out = Vec::new();
        let stop = pos + len;
        let mut at = pos;
        let last = self.segments.len().saturating_sub(1);
        let mut i = self
            .segments
            .partition_point(|s| s.base <= pos)
            .saturating_sub(1);
        while at < stop && i <= last {
            let seg = &self.segments[i];
            let seg_stop = stop.min(seg.end_position());
            // Of the last segment only bytes before the in-memory part are read from the file.
            let disk_end = if i == last {
                let mem_start = self.in_write.as_ref().map_or(self.tail_start, |(p, _)| *p);
                if self.recent_reaches(mem_start) {
                    // Chunks are sorted and contiguous: binary search, never a scan (at
                    // 1 KiB per entry the list holds thousands of chunks).
                    let k = self.recent.partition_point(|(p, _)| *p < seg.base);
                    self.recent.get(k).map_or(mem_start, |(p, _)| *p)
                } else {
                    mem_start
                }
            } else {
                seg_stop
            };
            let file_stop = seg_stop.min(disk_end);
            if at < file_stop {
                let n = (file_stop - at) as usize;
                out.push(Piece::File {
                    file: seg.file.clone(),
                    name: seg.name.clone(),
                    rel: at - seg.base,
                    n,
                });
                at = file_stop;
            }
            if i == last {
                // The first chunk of this segment that ends after `at` (both conditions
                // hold for a prefix of the sorted list); then chunk after chunk.
                let first = self
                    .recent
                    .partition_point(|(p, b)| *p < seg.base || p + b.len() as u64 <= at);
                for (p, bytes) in self.recent.range(first..) {
                    let c_stop = seg_stop.min(p + bytes.len() as u64);
                    if at < *p || at >= c_stop {
                        break;
                    }
                    out.push(Piece::Mem(
                        bytes.slice((at - p) as usize..(c_stop - p) as usize),
                    ));
                    at = c_stop;
                }
                if let Some((p, bytes)) = &self.in_write {
                    let w_stop = seg_stop.min(p + bytes.len() as u64);
                    if at < w_stop {
                        out.push(Piece::Mem(
                            bytes.slice((at - p) as usize..(w_stop - p) as usize),
                        ));
                        at = w_stop;
                    }
                }
                if at < seg_stop {
                    let from = (at - self.tail_start) as usize;
                    let to = (seg_stop - self.tail_start) as usize;
                    out.push(Piece::Mem(Bytes::copy_from_slice(&self.tail[from..to])));
                    at = seg_stop;
                }
            }
            i += 1;
        }
        debug_assert_eq!(
            at, stop,
            "range [{pos}, {stop}) is not covered by the segments"
        );
        out
    }

    /// Global position of the first present entry (the end if none).
    pub fn start_position(&self) -> u64 {
        match self.first_index().and_then(|i| self.entry_position(i)) {
            Some((pos, _)) => pos,
            None => self.end_position(),
        }
    }
}

/// Reads `pieces` into one buffer (zero-copy when a single in-memory piece covers it).
pub(crate) fn read_pieces(pieces: Vec<Piece>, len: u64) -> Result<Bytes, LogStoreError> {
    if let [Piece::Mem(bytes)] = pieces.as_slice() {
        return Ok(bytes.clone());
    }
    let mut out = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
    let mut filled = 0;
    for piece in pieces {
        match piece {
            Piece::File { file, name, rel, n } => {
                file.read_at(&mut out[filled..filled + n], rel)
                    .map_err(LogStoreError::io("read", name))?;
                filled += n;
            }
            Piece::Mem(bytes) => {
                out[filled..filled + bytes.len()].copy_from_slice(&bytes);
                filled += bytes.len();
            }
        }
    }
    Ok(Bytes::from(out))
}

/// The state shared by the store, its flusher and every read handle.
#[derive(Debug)]
pub(crate) struct Shared {
    state: RwLock<LogState>,
    /// Serialises file writes and syncs of the last segment (flusher vs. roll, truncate,
    /// explicit sync). Lock order: `io` before `state`.
    io: Mutex<()>,
}

impl Shared {
    pub fn new(state: LogState) -> Arc<Self> {
        Arc::new(Self {
            state: RwLock::new(state),
            io: Mutex::new(()),
        })
    }

    /// Exclusive access to the files' write side.
    pub fn lock_io(&self) -> MutexGuard<'_, ()> {
        self.io.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// [`Shared::lock_io`] if no one holds it now (a sync may hold it for milliseconds).
    pub fn try_lock_io(&self) -> Option<MutexGuard<'_, ()>> {
        match self.io.try_lock() {
            Ok(g) => Some(g),
            Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Read access; a poisoned lock is still usable because every update is a few
    /// non-panicking assignments.
    pub fn read(&self) -> RwLockReadGuard<'_, LogState> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, LogState> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// One contiguous run of frames of one segment, and where its bytes are.
struct ReadPlan {
    pieces: Vec<Piece>,
    name: String,
    rel_start: u64,
    first_index: u64,
    count: usize,
}

/// A cheap, cloneable handle for reading the log by index or by byte position, safe to use
/// while the store appends (the broker and openraft's replication tasks hold one each).
#[derive(Debug, Clone)]
pub struct LogReadHandle {
    shared: Arc<Shared>,
}

impl LogReadHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Global byte position and frame length of the entry at `index`, if present.
    pub fn entry_position(&self, index: u64) -> Option<(u64, u32)> {
        self.shared.read().entry_position(index)
    }

    /// Index of the first present entry.
    pub fn first_index(&self) -> Option<u64> {
        self.shared.read().first_index()
    }

    /// Index of the last present entry.
    pub fn last_index(&self) -> Option<u64> {
        self.shared.read().last.map(|l| l.index)
    }

    /// The last committed log id reported by openraft (`save_committed`); it may lag the
    /// real commit point but never leads it, so reads below it see only committed entries.
    pub fn committed(&self) -> Option<LogId> {
        self.shared.read().committed
    }

    /// Index of [`Self::committed`].
    pub fn committed_index(&self) -> Option<u64> {
        self.committed().map(|l| l.index)
    }

    /// Global byte position just past the last entry (where the next one will go, unless it
    /// starts a new segment).
    pub fn end_position(&self) -> u64 {
        self.shared.read().end_position()
    }

    /// Global byte position of the first present entry.
    pub fn start_position(&self) -> u64 {
        self.shared.read().start_position()
    }

    /// The segment files, oldest first (retention decides on whole segments).
    pub fn segments(&self) -> Vec<SegmentSummary> {
        self.shared
            .read()
            .segments
            .iter()
            .map(|s| SegmentSummary {
                name: s.name.clone(),
                base: s.base,
                end: s.end_position(),
                first_index: s.first_index,
                last_index: s.last_index(),
            })
            .collect()
    }

    /// The largest present index whose entry ends at or before `pos`: purging up to it
    /// removes nothing at or after `pos`.
    pub fn last_index_ending_by(&self, pos: u64) -> Option<u64> {
        let st = self.shared.read();
        let seg = st
            .segments
            .iter()
            .rev()
            .find(|s| !s.ends.is_empty() && s.base + u64::from(s.ends[0]) <= pos)?;
        let fits = seg
            .ends
            .partition_point(|&e| seg.base + u64::from(e) <= pos);
        (fits > 0).then(|| seg.first_index + fits as u64 - 1)
    }

    /// Global byte position just past entry `index`, where entry `index + 1` begins, if the
    /// log knows it: `index` is present, or it is the last purged entry (then the position is
    /// that of the first present entry, or the end of an empty log).
    pub fn end_of(&self, index: u64) -> Option<u64> {
        self.shared.read().end_of(index)
    }

    /// The `len` raw bytes at global position `pos`. Not CRC-checked (the caller reads part of
    /// an entry; RocketMQ message records carry their own body CRC): use
    /// [`Self::read_payload`] for a checked read. Errors if any byte is purged or beyond the end.
    pub fn read_at(&self, pos: u64, len: u64) -> Result<Bytes, LogStoreError> {
        let pieces = {
            let st = self.shared.read();
            let (start, end) = (st.start_position(), st.end_position());
            if pos < start || pos.checked_add(len).is_none_or(|e| e > end) {
                return Err(LogStoreError::OutOfRange {
                    pos,
                    len,
                    start,
                    end,
                });
            }
            st.pieces(pos, len)
        };
        read_pieces(pieces, len)
    }

    /// The body of the entry at `index` (the raw command bytes of a normal entry), with the
    /// frame's CRC checked; `None` if the entry is not present.
    pub fn read_payload(&self, index: u64) -> Result<Option<Bytes>, LogStoreError> {
        let Some((pos, len)) = self.entry_position(index) else {
            return Ok(None);
        };
        let frame = self.read_at(pos, u64::from(len))?;
        match frame::check_frame(&frame) {
            Ok(Some(h)) if h.index == index => {
                Ok(Some(frame.slice(HEADER_BYTES..h.frame_len as usize)))
            }
            Ok(_) => {
                Err(self.corrupt_at(pos, format!("frame at this position is not entry {index}")))
            }
            Err(e) => Err(self.corrupt_at(pos, e.to_string())),
        }
    }

    fn corrupt_at(&self, pos: u64, reason: String) -> LogStoreError {
        let st = self.shared.read();
        let i = st
            .segments
            .partition_point(|s| s.base <= pos)
            .saturating_sub(1);
        let (file, offset) = st
            .segments
            .get(i)
            .map_or((String::from("?"), pos), |s| (s.name.clone(), pos - s.base));
        LogStoreError::Corrupt {
            file,
            offset,
            reason,
        }
    }

    /// The present entries with indexes in `range`, CRC-checked and decoded; entries outside
    /// the present range are skipped.
    pub fn read_entries<RB: RangeBounds<u64>>(
        &self,
        range: RB,
    ) -> Result<Vec<Entry>, LogStoreError> {
        let plans = {
            let st = self.shared.read();
            let (Some(first), Some(last)) = (st.first_index(), st.last.map(|l| l.index)) else {
                return Ok(Vec::new());
            };
            let lo = match range.start_bound() {
                Bound::Included(&s) => s.max(first),
                Bound::Excluded(&s) => s.saturating_add(1).max(first),
                Bound::Unbounded => first,
            };
            let hi = match range.end_bound() {
                Bound::Included(&e) => e.min(last),
                Bound::Excluded(&0) => return Ok(Vec::new()),
                Bound::Excluded(&e) => (e - 1).min(last),
                Bound::Unbounded => last,
            };
            if lo > hi {
                return Ok(Vec::new());
            }
            let mut plans = Vec::new();
            let mut index = lo;
            while index <= hi {
                let Some((i, k)) = st.locate(index) else {
                    break;
                };
                let seg = &st.segments[i];
                let k_last = ((hi - seg.first_index) as usize).min(seg.ends.len() - 1);
                let (rel_start, rel_end) = (seg.frame_range(k).0, seg.frame_range(k_last).1);
                plans.push(ReadPlan {
                    pieces: st.pieces(seg.base + rel_start, rel_end - rel_start),
                    name: seg.name.clone(),
                    rel_start,
                    first_index: index,
                    count: k_last - k + 1,
                });
                index = seg.first_index + k_last as u64 + 1;
            }
            plans
        };
        let mut entries = Vec::with_capacity(plans.iter().map(|p| p.count).sum());
        for plan in plans {
            read_plan(plan, &mut entries)?;
        }
        Ok(entries)
    }
}

fn read_plan(mut plan: ReadPlan, out: &mut Vec<Entry>) -> Result<(), LogStoreError> {
    // Piece by piece: an in-memory piece (a recent write-out) is decoded in place, without
    // a copy. Pieces end on frame boundaries; a frame that did not would be joined.
    let mut decoded = 0usize;
    // Offset (in the plan) of `buf[0]`, and bytes left over from the previous piece.
    let mut buf_start = 0u64;
    let mut carry: Option<Bytes> = None;
    for piece in std::mem::take(&mut plan.pieces) {
        let bytes = match piece {
            Piece::Mem(bytes) => bytes,
            file @ Piece::File { .. } => {
                let n = match &file {
                    Piece::File { n, .. } => *n as u64,
                    Piece::Mem(_) => 0,
                };
                read_pieces(vec![file], n)?
            }
        };
        let buf = match carry.take() {
            Some(head) => {
                let mut joined = Vec::with_capacity(head.len() + bytes.len());
                joined.extend_from_slice(&head);
                joined.extend_from_slice(&bytes);
                Bytes::from(joined)
            }
            None => bytes,
        };
        let mut off = 0usize;
        while decoded < plan.count && off < buf.len() {
            let expected = plan.first_index + decoded as u64;
            let corrupt = |reason: String| LogStoreError::Corrupt {
                file: plan.name.clone(),
                offset: plan.rel_start + buf_start + off as u64,
                reason,
            };
            match frame::decode_entry(&buf.slice(off..)) {
                Ok(Some((entry, len))) if entry.log_id.index == expected => {
                    out.push(entry);
                    off += len as usize;
                    decoded += 1;
                }
                Ok(Some((entry, _))) => {
                    return Err(corrupt(format!(
                        "expected entry {expected}, found {}",
                        entry.log_id.index
                    )))
                }
                // The rest of this frame is in the next piece.
                Ok(None) => break,
                Err(e) => return Err(corrupt(format!("entry {expected}: {e}"))),
            }
        }
        if off < buf.len() {
            carry = Some(buf.slice(off..));
        }
        buf_start += off as u64;
    }
    let offset = plan.rel_start + buf_start;
    if decoded < plan.count {
        let expected = plan.first_index + decoded as u64;
        return Err(LogStoreError::Corrupt {
            file: plan.name.clone(),
            offset,
            reason: format!("entry {expected} is cut short"),
        });
    }
    if carry.is_some() {
        return Err(LogStoreError::Corrupt {
            file: plan.name.clone(),
            offset,
            reason: "frames do not match the index".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use openraft::{EntryPayload, LeaderId};
    use proptest::prelude::*;

    use super::*;

    fn entries(n: u64) -> Vec<Entry> {
        (1..=n)
            .map(|i| Entry {
                log_id: LogId::new(LeaderId::new(1, 1), i),
                payload: EntryPayload::Normal(Bytes::from(vec![i as u8; 10 + i as usize * 7])),
            })
            .collect()
    }

    fn plan(pieces: Vec<Piece>, count: usize) -> ReadPlan {
        ReadPlan {
            pieces,
            name: "seg".into(),
            rel_start: 0,
            first_index: 1,
            count,
        }
    }

    proptest! {
        /// Pieces cut anywhere (not only at frame boundaries) decode to the same entries.
        #[test]
        fn a_plan_decodes_across_any_piece_cuts(n in 1u64..6, cuts in proptest::collection::vec(any::<u16>(), 0..6)) {
            let want = entries(n);
            let mut bytes = Vec::new();
            for e in &want {
                frame::encode_entry(&mut bytes, e).unwrap();
            }
            let mut at: Vec<usize> = cuts.iter().map(|c| *c as usize % (bytes.len() + 1)).collect();
            at.push(0);
            at.push(bytes.len());
            at.sort_unstable();
            let all = Bytes::from(bytes);
            let pieces = at.windows(2).map(|w| Piece::Mem(all.slice(w[0]..w[1]))).collect();
            let mut got = Vec::new();
            read_plan(plan(pieces, want.len()), &mut got).unwrap();
            prop_assert!(got == want);
            // One byte short, or one frame too many in the plan: errors, not panics.
            let short = vec![Piece::Mem(all.slice(..all.len() - 1))];
            prop_assert!(read_plan(plan(short, want.len()), &mut Vec::new()).is_err());
            let fewer = vec![Piece::Mem(all.clone())];
            if want.len() > 1 {
                prop_assert!(read_plan(plan(fewer, want.len() - 1), &mut Vec::new()).is_err());
            }
        }
    }

    proptest! {
        /// Reads of the last segment take the written chunks from memory (the file behind
        /// them holds zeros here, so a read from it would show), everything else from the
        /// files, for any chunk cuts and any range.
        #[test]
        fn pieces_serve_recent_chunks_and_files(
            l0 in 1u64..200, l1 in 1u64..400, back in 0u64..600,
            cuts in proptest::collection::vec(any::<u16>(), 0..8),
            from in any::<u16>(), len in any::<u16>(),
        ) {
            use crate::storage_dir::{MemDir, StorageDir};
            let end = l0 + l1;
            let all: Vec<u8> = (0..end).map(|i| (i % 251) as u8).collect();
            // Written chunks start `back` bytes before the end (possibly in segment 0).
            let r = end.saturating_sub(back);
            let dir = MemDir::new();
            let f0 = dir.create("0").unwrap();
            f0.write_at(&all[..l0 as usize], 0).unwrap();
            let f1 = dir.create("1").unwrap();
            let mut on_disk = all[l0 as usize..].to_vec();
            for b in on_disk.iter_mut().skip(r.saturating_sub(l0) as usize) {
                *b = 0;
            }
            f1.write_at(&on_disk, 0).unwrap();
            let seg = |base: u64, n: u64, file, name: &str| Segment {
                base,
                first_index: 1,
                ends: vec![n as u32],
                file,
                name: name.into(),
            };
            let segments = VecDeque::from([seg(0, l0, f0, "0"), seg(l0, l1, f1, "1")]);
            let mut st = LogState::new(segments, None, None);
            let mut at: Vec<u64> = cuts.iter().map(|c| r + u64::from(*c) % (end - r + 1)).collect();
            at.extend([r, end]);
            if (r..end).contains(&l0) {
                at.push(l0);
            }
            at.sort_unstable();
            at.dedup();
            for w in at.windows(2) {
                st.remember_written(w[0], Bytes::copy_from_slice(&all[w[0] as usize..w[1] as usize]));
            }
            let pos = u64::from(from) % end;
            let n = u64::from(len) % (end - pos + 1);
            let got = read_pieces(st.pieces(pos, n), n).unwrap();
            prop_assert_eq!(&got[..], &all[pos as usize..(pos + n) as usize]);
        }
    }

    #[test]
    fn written_chunks_stay_contiguous_and_bounded() {
        let mut st = LogState::new(VecDeque::new(), None, None);
        st.remember_written(0, Bytes::from(vec![0u8; 100]));
        st.remember_written(100, Bytes::from(vec![0u8; 50]));
        assert_eq!(st.recent.len(), 2);
        assert_eq!(st.recent_bytes, 150);
        // A gap (the log was cut and written again elsewhere) starts over.
        st.remember_written(500, Bytes::from(vec![0u8; 10]));
        assert_eq!(st.recent.iter().map(|(p, _)| *p).collect::<Vec<_>>(), [500]);
        // Never more than the bound, oldest dropped first.
        let big = RECENT_BYTES_MAX / 2 + 1;
        st.remember_written(510, Bytes::from(vec![0u8; big]));
        st.remember_written(510 + big as u64, Bytes::from(vec![0u8; big]));
        assert!(st.recent_bytes <= RECENT_BYTES_MAX);
        assert_eq!(st.recent.front().map(|(p, _)| *p), Some(510 + big as u64));
        st.forget_written();
        assert!(st.recent.is_empty() && st.recent_bytes == 0);
    }
}
