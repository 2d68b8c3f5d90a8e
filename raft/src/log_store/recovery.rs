//! Open-time recovery: rebuild the index from the segment files.
//!
//! 1. Remove leftovers (`*.tmp`, sidecars without a segment).
//! 2. Sealed segments (all but the last by base): load the sidecar index (4 bytes per entry)
//!    and spot-check the first and last frame headers against it; the data is not read.
//!    Without a usable sidecar, scan the segment with full CRC checks (any bad frame is
//!    corruption, a sealed segment was synced whole) and write the sidecar. An empty one is
//!    set aside (see 4).
//! 3. The last segment: scan every frame with its CRC, except the prefix its tail sidecar
//!    covers, if it has a usable one (written by [`super::LogSyncer::sync_and_index_tail`]
//!    over synced frames only, spot-checked like a sealed sidecar). At the first bad frame (short, zero
//!    length, bad CRC, unknown kind): if only zeros follow, they are the flusher's zeros
//!    written ahead of the end, and are cut quietly; else look for any valid frame further
//!    on: if there is one, the damage is not a torn write but corruption, and opening fails
//!    naming file and offset; otherwise cut the file there (a torn tail).
//! 4. Reconcile with the purge point from the metadata. Segments wholly at or below it are
//!    deleted *before* the chain is checked (an interrupted purge or rebase leaves them
//!    behind, possibly not adjacent to what follows). If entries above it remain: empty
//!    sealed segments are deleted, each remaining segment must end exactly where the next one
//!    begins, indexes must be consecutive, and the first entry above the purge point must be
//!    purged + 1 (else a hole: corruption). If none remain, only the end position matters: it
//!    is the saved rebase point for this purge point if there is one (an interrupted rebase is
//!    completed: its empty segment is created if missing, every other one deleted), else the
//!    end of the last segment, which alone is kept.
//!
//! Cost: O(number of entries in sealed segments) for reading sidecars, plus a read and CRC of
//! the last segment past its tail sidecar (at most `segment_bytes` without one; with the
//! broker's checkpoints, about [`super::TAIL_INDEX_EVERY_BYTES`] plus a second of writes).

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use super::frame::{check_frame, parse_header, FrameHeader, HEADER_BYTES};
use super::index::{LogState, Segment};
use super::segment::{
    parse_file_name, read_sidecar, segment_file_name, sidecar_file_name, write_sidecar,
    LogFileName, Sidecar,
};
use super::{LogStoreError, RebasePoint};
use crate::meta::Meta;
use crate::storage_dir::{SegmentFile, StorageDir};

/// Bytes read at a time while scanning a segment.
const SCAN_CHUNK_BYTES: usize = 8 << 20;
/// Bytes examined at a time while looking for valid frames after a bad one.
const SUSPECT_WINDOW_BYTES: usize = 1 << 20;

/// The frames found in one segment by a scan.
struct Scan {
    first_index: Option<u64>,
    ends: Vec<u32>,
    last: Option<FrameHeader>,
    /// Offset and reason of the first bad frame, if the scan stopped early.
    bad: Option<(u64, String)>,
}

fn corrupt(file: &str, offset: u64, reason: impl Into<String>) -> LogStoreError {
    LogStoreError::Corrupt {
        file: file.to_owned(),
        offset,
        reason: reason.into(),
    }
}

/// Reads frames from offset 0 to `len`, checking every CRC and that indexes are consecutive.
fn scan_frames(file: &dyn SegmentFile, name: &str, len: u64) -> Result<Scan, LogStoreError> {
    let scan = Scan {
        first_index: None,
        ends: Vec::new(),
        last: None,
        bad: None,
    };
    scan_frames_from(file, name, len, 0, scan)
}

/// Continues `scan` (whose frames end at `start`) from `start` to `len`.
fn scan_frames_from(
    file: &dyn SegmentFile,
    name: &str,
    len: u64,
    start: u64,
    mut scan: Scan,
) -> Result<Scan, LogStoreError> {
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_pos = start;
    let mut pos = start;
    while pos < len {
        let off = (pos - buf_pos) as usize;
        match check_frame(buf.get(off..).unwrap_or_default()) {
            Ok(Some(h)) => {
                let expected = scan
                    .first_index
                    .map_or(h.index, |f| f + scan.ends.len() as u64);
                if h.index != expected {
                    return Err(corrupt(
                        name,
                        pos,
                        format!("intact frame holds entry {}, expected {expected}", h.index),
                    ));
                }
                scan.first_index.get_or_insert(h.index);
                pos += u64::from(h.frame_len);
                let end = u32::try_from(pos)
                    .map_err(|_| corrupt(name, pos, "segment larger than 4 GiB"))?;
                scan.ends.push(end);
                scan.last = Some(h);
            }
            Ok(None) => {
                if buf_pos + buf.len() as u64 == len {
                    scan.bad = Some((pos, "frame cut short by the end of the file".into()));
                    break;
                }
                let declared = buf
                    .get(off..)
                    .and_then(super::frame::peek_len)
                    .map_or(0, |l| l as usize);
                let want = (SCAN_CHUNK_BYTES.max(declared) as u64).min(len - pos) as usize;
                buf.resize(want, 0);
                file.read_at(&mut buf, pos)
                    .map_err(LogStoreError::io("read", name))?;
                buf_pos = pos;
            }
            Err(e) => {
                scan.bad = Some((pos, e.to_string()));
                break;
            }
        }
    }
    Ok(scan)
}

/// Looks for an intact frame with index `>= min_index` anywhere after `bad`.
fn valid_frame_after(
    file: &dyn SegmentFile,
    name: &str,
    len: u64,
    bad: u64,
    min_index: Option<u64>,
) -> Result<Option<(u64, u64)>, LogStoreError> {
    let mut win_start = bad + 1;
    let mut buf = Vec::new();
    while win_start + HEADER_BYTES as u64 <= len {
        let win_end = len.min(win_start + (SUSPECT_WINDOW_BYTES + HEADER_BYTES) as u64);
        buf.resize((win_end - win_start) as usize, 0);
        file.read_at(&mut buf, win_start)
            .map_err(LogStoreError::io("read", name))?;
        let candidates = SUSPECT_WINDOW_BYTES.min(buf.len() + 1 - HEADER_BYTES);
        for off in 0..candidates {
            let p = win_start + off as u64;
            let Ok(h) = parse_header(&buf[off..]) else {
                continue;
            };
            if p + u64::from(h.frame_len) > len || min_index.is_some_and(|m| h.index < m) {
                continue;
            }
            let frame_len = h.frame_len as usize;
            let whole = if off + frame_len <= buf.len() {
                check_frame(&buf[off..off + frame_len])
            } else {
                let mut frame = vec![0u8; frame_len];
                file.read_at(&mut frame, p)
                    .map_err(LogStoreError::io("read", name))?;
                check_frame(&frame)
            };
            if let Ok(Some(h)) = whole {
                return Ok(Some((p, h.index)));
            }
        }
        win_start += SUSPECT_WINDOW_BYTES as u64;
    }
    Ok(None)
}

/// Whether every byte from `from` to `len` is zero (reads until the first non-zero one).
fn zeros_from(
    file: &dyn SegmentFile,
    name: &str,
    from: u64,
    len: u64,
) -> Result<bool, LogStoreError> {
    let mut buf = vec![0u8; SUSPECT_WINDOW_BYTES];
    let mut pos = from;
    while pos < len {
        let n = (len - pos).min(buf.len() as u64) as usize;
        let chunk = &mut buf[..n];
        file.read_at(chunk, pos)
            .map_err(LogStoreError::io("read", name))?;
        if chunk.iter().any(|&b| b != 0) {
            return Ok(false);
        }
        pos += n as u64;
    }
    Ok(true)
}

/// Checks a sidecar against its segment cheaply: lengths and indexes of the first and last
/// frame headers.
fn sidecar_matches(file: &dyn SegmentFile, sc: &Sidecar, len: u64) -> bool {
    if sc.data_len != len {
        return false;
    }
    let n = sc.ends.len();
    if n == 0 {
        return true;
    }
    let probe = |k: usize| -> bool {
        let start = if k == 0 { 0 } else { u64::from(sc.ends[k - 1]) };
        let mut header = [0u8; HEADER_BYTES];
        file.read_at(&mut header, start).is_ok()
            && parse_header(&header).is_ok_and(|h| {
                u64::from(h.frame_len) == u64::from(sc.ends[k]) - start
                    && h.index == sc.first_index + k as u64
            })
    };
    probe(0) && probe(n - 1)
}

/// Loads a sealed segment's frame ends: sidecar if usable, else a full scan.
fn load_sealed(
    dir: &dyn StorageDir,
    file: &dyn SegmentFile,
    name: &str,
    base: u64,
    len: u64,
    wrote_sidecar: &mut bool,
) -> Result<(u64, Vec<u32>), LogStoreError> {
    match read_sidecar(dir, base) {
        Ok(sc) if sidecar_matches(file, &sc, len) => return Ok((sc.first_index, sc.ends)),
        Ok(_) => tracing::warn!(
            segment = name,
            "sidecar does not match its segment; scanning"
        ),
        Err(reason) => tracing::info!(segment = name, %reason, "no usable sidecar; scanning"),
    }
    let scan = scan_frames(file, name, len)?;
    if let Some((offset, reason)) = scan.bad {
        return Err(corrupt(
            name,
            offset,
            format!("{reason} (in a sealed segment)"),
        ));
    }
    let first_index = scan.first_index.unwrap_or(0);
    let sidecar = Sidecar {
        base,
        data_len: len,
        first_index,
        ends: scan.ends,
    };
    match write_sidecar(dir, &sidecar) {
        Ok(()) => *wrote_sidecar = true,
        Err(e) => tracing::warn!(error = %e, "cannot write sidecar"),
    }
    Ok((first_index, sidecar.ends))
}

/// The prefix of the last segment its tail sidecar vouches for (frames spot-checked as for
/// sealed sidecars), as a scan that ends there; `None` if there is no usable one.
fn tail_prefix(dir: &dyn StorageDir, file: &dyn SegmentFile, base: u64, len: u64) -> Option<Scan> {
    let sc = read_sidecar(dir, base).ok()?;
    let n = sc.ends.len();
    if n == 0 || sc.data_len > len || u64::from(sc.ends[n - 1]) != sc.data_len {
        return None;
    }
    let header = |k: usize| -> Option<FrameHeader> {
        let start = if k == 0 { 0 } else { u64::from(sc.ends[k - 1]) };
        let mut header = [0u8; HEADER_BYTES];
        file.read_at(&mut header, start).ok()?;
        parse_header(&header).ok().filter(|h| {
            u64::from(h.frame_len) == u64::from(sc.ends[k]) - start
                && h.index == sc.first_index + k as u64
        })
    };
    header(0)?;
    let last = header(n - 1)?;
    Some(Scan {
        first_index: Some(sc.first_index),
        ends: sc.ends,
        last: Some(last),
        bad: None,
    })
}

/// Scans the last segment (after the prefix its tail sidecar covers, if it has a usable
/// one) and cuts a torn tail; corruption before the tail is an error.
fn load_tail(
    dir: &dyn StorageDir,
    file: &dyn SegmentFile,
    name: &str,
    base: u64,
    len: u64,
    prev_last: Option<u64>,
) -> Result<Scan, LogStoreError> {
    let scan = match tail_prefix(dir, file, base, len) {
        Some(prefix) => {
            let start = prefix.ends.last().map_or(0, |&e| u64::from(e));
            tracing::debug!(
                segment = name,
                start,
                "tail sidecar used; scanning the rest"
            );
            scan_frames_from(file, name, len, start, prefix)?
        }
        None => {
            remove_quietly(dir, &sidecar_file_name(base));
            scan_frames(file, name, len)?
        }
    };
    let Some((offset, reason)) = &scan.bad else {
        return Ok(scan);
    };
    if zeros_from(file, name, *offset, len)? {
        // The flusher's zeros ahead of the end (see `flusher::Prefill`): not damage.
        tracing::debug!(
            segment = name,
            offset,
            bytes = len - offset,
            "cutting zeros after the last frame"
        );
        file.set_len(*offset)
            .map_err(LogStoreError::io("cut zeros after the last frame of", name))?;
        file.sync_data().map_err(LogStoreError::io("sync", name))?;
        return Ok(scan);
    }
    let min_index = scan.last.map(|h| h.index + 1).or(prev_last.map(|l| l + 1));
    if let Some((at, index)) = valid_frame_after(file, name, len, *offset, min_index)? {
        return Err(corrupt(
            name,
            *offset,
            format!("{reason}; an intact frame (entry {index}) follows at offset {at}, so this is not a torn tail"),
        ));
    }
    tracing::warn!(segment = name, offset, bytes = len - offset, %reason, "cutting torn tail of the log");
    file.set_len(*offset)
        .map_err(LogStoreError::io("truncate torn tail of", name))?;
    file.sync_data().map_err(LogStoreError::io("sync", name))?;
    Ok(scan)
}

fn remove_quietly(dir: &dyn StorageDir, name: &str) -> bool {
    match dir.remove(name) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(file = name, error = %e, "cannot remove leftover file");
            false
        }
    }
}

/// Rebuilds the log state from the directory and the metadata; `rebase` is the saved
/// [`RebasePoint`], if any.
pub(crate) fn recover(
    dir: &dyn StorageDir,
    meta: &Meta,
    rebase: Option<RebasePoint>,
) -> Result<LogState, LogStoreError> {
    let started = Instant::now();
    let purged = meta.read_purged()?;
    // A rebase point only speaks for a log purged up to the entry just before it.
    let rebase = rebase.filter(|r| purged.is_some_and(|p| r.first_index == p.index + 1));
    let mut dir_changed = false;
    let mut bases = BTreeSet::new();
    let mut sidecars = BTreeSet::new();
    for name in dir
        .list()
        .map_err(LogStoreError::io("list", "log directory"))?
    {
        match parse_file_name(&name) {
            Some(LogFileName::Temp) => dir_changed |= remove_quietly(dir, &name),
            Some(LogFileName::Segment(base)) => {
                bases.insert(base);
            }
            Some(LogFileName::Sidecar(base)) => {
                sidecars.insert(base);
            }
            None => {}
        }
    }
    for base in sidecars.iter().filter(|b| !bases.contains(b)) {
        dir_changed |= remove_quietly(dir, &sidecar_file_name(*base));
    }
    if bases.is_empty() {
        if let Some(p) = purged {
            return Err(corrupt(
                "log directory",
                0,
                format!(
                    "no segment files, but entries up to {} were purged",
                    p.index
                ),
            ));
        }
        let name = segment_file_name(0);
        let file = dir
            .create(&name)
            .map_err(LogStoreError::io("create", name.clone()))?;
        dir.sync_dir()
            .map_err(LogStoreError::io("sync directory of", name.clone()))?;
        let segments = VecDeque::from([Segment {
            base: 0,
            first_index: 0,
            ends: Vec::new(),
            file,
            name,
        }]);
        return Ok(LogState::new(segments, None, None));
    }

    // Load every segment. The one with the highest base is the tail: scanned, torn tail cut.
    // An empty one before others is kept for now: it may be an interrupted rebase's target.
    let bases: Vec<u64> = bases.into_iter().collect();
    let mut loaded: Vec<Segment> = Vec::with_capacity(bases.len());
    let mut tail_last: Option<FrameHeader> = None;
    for (i, &base) in bases.iter().enumerate() {
        let name = segment_file_name(base);
        let file: Arc<dyn SegmentFile> = dir
            .open(&name)
            .map_err(LogStoreError::io("open", name.clone()))?;
        let len = file
            .len()
            .map_err(LogStoreError::io("stat", name.clone()))?;
        let (first_index, ends) = if i + 1 == bases.len() {
            let prev_last = loaded.iter().rev().find_map(Segment::last_index);
            let scan = load_tail(dir, file.as_ref(), &name, base, len, prev_last)?;
            tail_last = scan.last;
            (scan.first_index.unwrap_or(0), scan.ends)
        } else if len == 0 {
            (0, Vec::new())
        } else {
            load_sealed(dir, file.as_ref(), &name, base, len, &mut dir_changed)?
        };
        loaded.push(Segment {
            base,
            first_index,
            ends,
            file,
            name,
        });
    }

    // Segments lying wholly at or below the purge point hold nothing still needed: drop them
    // before checking the chain (a purge or a rebase may have been interrupted before it
    // deleted them).
    let purged_index = purged.map(|p| p.index);
    let is_live = |s: &Segment| {
        s.last_index()
            .is_some_and(|l| purged_index.is_none_or(|p| l > p))
    };
    let (mut segments, last) = match loaded.iter().position(is_live) {
        Some(first_live) => {
            let n = loaded.len();
            let mut kept = VecDeque::with_capacity(n - first_live);
            for (i, seg) in loaded.into_iter().enumerate() {
                // An empty sealed segment holds nothing and would break index ordering.
                if i < first_live || (seg.ends.is_empty() && i + 1 < n) {
                    dir_changed |= remove_segment_files(dir, &seg);
                } else {
                    kept.push_back(seg);
                }
            }
            check_chain(&kept)?;
            check_continuity(&kept, purged)?;
            // The highest segment is always kept here, so `tail_last` is still its last frame.
            let last = last_log_id(&kept, tail_last)?;
            (kept, last)
        }
        None => (
            settle_empty_log(dir, loaded, rebase, &mut dir_changed)?,
            None,
        ),
    };
    // An empty tail takes the index after everything before it.
    let before_tail = segments
        .iter()
        .rev()
        .skip(1)
        .find_map(Segment::last_index)
        .map(|l| l + 1);
    if let Some(tail) = segments.back_mut().filter(|s| s.ends.is_empty()) {
        tail.first_index = before_tail.max(purged_index.map(|p| p + 1)).unwrap_or(0);
    }
    if dir_changed {
        dir.sync_dir()
            .map_err(LogStoreError::io("sync", "log directory"))?;
    }

    let last = last.filter(|l| purged_index.is_none_or(|p| l.index > p));
    let entries: usize = segments.iter().map(|s| s.ends.len()).sum();
    tracing::info!(
        segments = segments.len(),
        entries,
        purged = ?purged_index,
        last = ?last.map(|l| l.index),
        end = segments.back().map_or(0, Segment::end_position),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "log store recovered"
    );
    Ok(LogState::new(segments, purged, last))
}

/// Removes a file if it exists (best effort); whether it was removed.
fn remove_if_present(dir: &dyn StorageDir, name: &str) -> bool {
    match dir.remove(name) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => {
            tracing::warn!(file = name, error = %e, "cannot remove leftover file");
            false
        }
    }
}

/// Removes a segment file and its sidecar (best effort); whether anything was removed.
fn remove_segment_files(dir: &dyn StorageDir, seg: &Segment) -> bool {
    let idx = remove_if_present(dir, &sidecar_file_name(seg.base));
    remove_quietly(dir, &seg.name) || idx
}

/// Each segment must begin exactly where the previous one ends.
fn check_chain<'a, I>(segments: I) -> Result<(), LogStoreError>
where
    I: IntoIterator<Item = &'a Segment>,
    I::IntoIter: Clone,
{
    let segments = segments.into_iter();
    for (prev, next) in segments.clone().zip(segments.skip(1)) {
        let prev_end = prev.end_position();
        if prev_end != next.base {
            return Err(corrupt(
                &prev.name,
                prev.data_len(),
                format!(
                    "segment ends at position {prev_end}, the next one starts at {}",
                    next.base
                ),
            ));
        }
    }
    Ok(())
}

/// No entry is left above the purge point: only the end position matters. It is the saved
/// rebase point if there is one for this purge point (completing a rebase interrupted by a
/// crash: the empty segment there is created if missing, every other segment deleted), else
/// the end of the last segment, which alone is kept.
fn settle_empty_log(
    dir: &dyn StorageDir,
    mut loaded: Vec<Segment>,
    rebase: Option<RebasePoint>,
    dir_changed: &mut bool,
) -> Result<VecDeque<Segment>, LogStoreError> {
    let natural_end = loaded.last().map_or(0, Segment::end_position);
    let keep = match rebase.filter(|r| r.position != natural_end) {
        None => {
            if check_chain(&loaded).is_err() {
                tracing::warn!(
                    "wholly purged segments are not contiguous; the last one holds the end"
                );
            }
            loaded
                .pop()
                .ok_or_else(|| corrupt("log directory", 0, "no segment files"))?
        }
        Some(r) => {
            tracing::warn!(
                first_index = r.first_index,
                position = r.position,
                end = natural_end,
                "completing an interrupted log rebase"
            );
            let name = segment_file_name(r.position);
            let file = dir
                .create(&name)
                .map_err(LogStoreError::io("create", name.clone()))?;
            file.sync_data()
                .map_err(LogStoreError::io("sync", name.clone()))?;
            // A segment of that name may have existed (an old one, now emptied): its sidecar
            // no longer applies.
            remove_if_present(dir, &sidecar_file_name(r.position));
            dir.sync_dir()
                .map_err(LogStoreError::io("sync directory of", name.clone()))?;
            Segment {
                base: r.position,
                first_index: r.first_index,
                ends: Vec::new(),
                file,
                name,
            }
        }
    };
    for seg in loaded.iter().filter(|s| s.name != keep.name) {
        *dir_changed |= remove_segment_files(dir, seg);
    }
    Ok(VecDeque::from([keep]))
}

/// Frames of consecutive segments must have consecutive indexes, except for a jump over
/// entries that are all purged; and the first entry above the purge point must directly
/// follow it.
fn check_continuity(
    segments: &VecDeque<Segment>,
    purged: Option<crate::types::LogId>,
) -> Result<(), LogStoreError> {
    let mut expect: Option<u64> = None;
    for seg in segments.iter().filter(|s| !s.ends.is_empty()) {
        if let Some(e) = expect {
            let jump_over_purged = seg.first_index > e && purged.is_some_and(|p| e - 1 <= p.index);
            if seg.first_index != e && !jump_over_purged {
                return Err(corrupt(
                    &seg.name,
                    0,
                    format!("first entry is {}, expected {e}", seg.first_index),
                ));
            }
        }
        expect = seg.last_index().map(|l| l + 1);
    }
    if let Some(p) = purged {
        let above = segments
            .iter()
            .find(|s| s.last_index().is_some_and(|l| l > p.index));
        if let Some(seg) = above {
            if seg.first_index > p.index + 1 {
                return Err(corrupt(
                    &seg.name,
                    0,
                    format!(
                        "entries {}..{} are missing (purged up to {}, segment starts at {})",
                        p.index + 1,
                        seg.first_index,
                        p.index,
                        seg.first_index
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Log id of the last frame of the log (read and CRC-checked if it is in a sealed segment).
fn last_log_id(
    segments: &VecDeque<Segment>,
    tail_last: Option<FrameHeader>,
) -> Result<Option<crate::types::LogId>, LogStoreError> {
    if let Some(h) = tail_last {
        return Ok(Some(h.log_id()));
    }
    let Some(seg) = segments.iter().rev().find(|s| !s.ends.is_empty()) else {
        return Ok(None);
    };
    let (start, end) = seg.frame_range(seg.ends.len() - 1);
    let mut frame = vec![0u8; (end - start) as usize];
    seg.file
        .read_at(&mut frame, start)
        .map_err(LogStoreError::io("read", seg.name.clone()))?;
    match check_frame(&frame) {
        Ok(Some(h)) => Ok(Some(h.log_id())),
        Ok(None) => Err(corrupt(&seg.name, start, "last frame is cut short")),
        Err(e) => Err(corrupt(&seg.name, start, e.to_string())),
    }
}
