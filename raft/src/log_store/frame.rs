//! The on-disk frame of one log entry, little-endian:
//!
//! ```text
//! offset  0  u32 frame_len        whole frame, these 4 bytes included
//! offset  4  u32 crc32            of bytes [8, frame_len)
//! offset  8  u64 term
//! offset 16  u64 index
//! offset 24  u8  kind             0 blank, 1 normal, 2 membership
//! offset 25  u64 leader_node_id
//! offset 33  body                 normal: the raw command bytes; membership: bincode
//! ```
//!
//! A normal entry's body is stored raw (not bincode) so the broker can point into it:
//! the body of the entry at byte position `p` starts at [`payload_position`]`(p)`.
//! Decoding is `check` (is a whole, intact frame there?) then `decode`; an incomplete
//! frame is a normal answer, not an error.

use bytes::Bytes;
use openraft::{EntryPayload, LeaderId};

use crate::types::{Entry, LogId};

/// Bytes of the `frame_len` field.
pub const FRAME_LEN_BYTES: usize = 4;
/// Offset where the CRC-covered bytes start (after `frame_len` and `crc32`).
pub const CRC_START: usize = 8;
/// Bytes of the frame header; the body starts here.
pub const HEADER_BYTES: usize = 33;
/// The largest frame: its length must fit the u32 `frame_len` field.
pub const FRAME_BYTES_MAX: u64 = u32::MAX as u64;

/// Byte position of a normal entry's body, given the entry's (frame's) global byte position.
pub const fn payload_position(entry_pos: u64) -> u64 {
    entry_pos + HEADER_BYTES as u64
}

/// What an entry carries, as stored in the `kind` byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum EntryKind {
    /// No payload (a leader's first entry of its term).
    Blank = 0,
    /// An application command; the body is its raw bytes.
    Normal = 1,
    /// A membership change; the body is bincode of `openraft::Membership`.
    Membership = 2,
}

impl EntryKind {
    /// The kind for a stored byte, if it is one we know.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::Blank),
            1 => Some(Self::Normal),
            2 => Some(Self::Membership),
            _ => None,
        }
    }
}

/// The parsed, CRC-checked header of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Whole frame length in bytes.
    pub frame_len: u32,
    /// Raft term of the entry.
    pub term: u64,
    /// Raft log index of the entry.
    pub index: u64,
    /// What the body holds.
    pub kind: EntryKind,
    /// Node id of the leader that created the entry (part of openraft's log id).
    pub leader_node_id: u64,
}

impl FrameHeader {
    /// The entry's openraft log id.
    pub fn log_id(&self) -> LogId {
        LogId::new(LeaderId::new(self.term, self.leader_node_id), self.index)
    }
}

/// Why bytes are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// `frame_len` is smaller than a header (zeros after a torn write look like this).
    #[error("frame length {0} is shorter than the {HEADER_BYTES}-byte header")]
    BadLength(u32),
    /// Stored and computed CRC differ.
    #[error("crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// CRC in the frame.
        stored: u32,
        /// CRC of the bytes read.
        computed: u32,
    },
    /// The kind byte is not one we write.
    #[error("unknown entry kind {0}")]
    UnknownKind(u8),
    /// The body of a membership entry does not decode.
    #[error("membership body does not decode: {0}")]
    BadMembership(String),
    /// An entry too large for one frame.
    #[error("entry of {0} bytes exceeds the frame limit of {FRAME_BYTES_MAX} bytes")]
    TooLarge(u64),
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Appends the frame of `entry` to `buf` and returns the frame's length. On error `buf` is
/// left as it was.
pub fn encode_entry(buf: &mut Vec<u8>, entry: &Entry) -> Result<u32, FrameError> {
    let start = buf.len();
    let (kind, body_len) = match &entry.payload {
        EntryPayload::Blank => (EntryKind::Blank, 0),
        EntryPayload::Normal(data) => (EntryKind::Normal, data.len()),
        EntryPayload::Membership(_) => (EntryKind::Membership, 0),
    };
    buf.reserve(HEADER_BYTES + body_len);
    buf.extend_from_slice(&[0u8; CRC_START]);
    buf.extend_from_slice(&entry.log_id.leader_id.term.to_le_bytes());
    buf.extend_from_slice(&entry.log_id.index.to_le_bytes());
    buf.push(kind as u8);
    buf.extend_from_slice(&entry.log_id.leader_id.node_id.to_le_bytes());
    match &entry.payload {
        EntryPayload::Blank => {}
        EntryPayload::Normal(data) => buf.extend_from_slice(data),
        EntryPayload::Membership(m) => {
            if let Err(e) = bincode::serialize_into(&mut *buf, m) {
                buf.truncate(start);
                return Err(FrameError::BadMembership(e.to_string()));
            }
        }
    }
    let len = (buf.len() - start) as u64;
    let Ok(frame_len) = u32::try_from(len) else {
        buf.truncate(start);
        return Err(FrameError::TooLarge(len));
    };
    buf[start..start + FRAME_LEN_BYTES].copy_from_slice(&frame_len.to_le_bytes());
    let crc = crc32fast::hash(&buf[start + CRC_START..]);
    buf[start + FRAME_LEN_BYTES..start + CRC_START].copy_from_slice(&crc.to_le_bytes());
    debug_assert!(matches!(check_frame(&buf[start..]), Ok(Some(h)) if h.frame_len == frame_len));
    Ok(frame_len)
}

/// The declared length of the frame starting at `buf`, if at least 4 bytes are there.
pub fn peek_len(buf: &[u8]) -> Option<u32> {
    (buf.len() >= FRAME_LEN_BYTES).then(|| u32_at(buf, 0))
}

/// Checks the frame at the start of `buf`: `Ok(None)` if the buffer ends before the frame
/// does, `Ok(Some(header))` for a whole frame whose CRC matches, an error otherwise.
pub fn check_frame(buf: &[u8]) -> Result<Option<FrameHeader>, FrameError> {
    let Some(frame_len) = peek_len(buf) else {
        return Ok(None);
    };
    if (frame_len as usize) < HEADER_BYTES {
        return Err(FrameError::BadLength(frame_len));
    }
    if buf.len() < frame_len as usize {
        return Ok(None);
    }
    let frame = &buf[..frame_len as usize];
    let stored = u32_at(frame, FRAME_LEN_BYTES);
    let computed = crc32fast::hash(&frame[CRC_START..]);
    if stored != computed {
        return Err(FrameError::CrcMismatch { stored, computed });
    }
    let header = parse_header(frame)?;
    Ok(Some(header))
}

/// Parses a header without checking the CRC (for plausibility scans only; never to serve
/// data). Needs at least [`HEADER_BYTES`] bytes.
pub fn parse_header(buf: &[u8]) -> Result<FrameHeader, FrameError> {
    let frame_len = u32_at(buf, 0);
    if (frame_len as usize) < HEADER_BYTES {
        return Err(FrameError::BadLength(frame_len));
    }
    let kind = EntryKind::from_byte(buf[24]).ok_or(FrameError::UnknownKind(buf[24]))?;
    Ok(FrameHeader {
        frame_len,
        term: u64_at(buf, 8),
        index: u64_at(buf, 16),
        kind,
        leader_node_id: u64_at(buf, 25),
    })
}

/// Decodes the whole frame at the start of `frame` (CRC checked) into an entry; a normal
/// entry's data is a zero-copy slice of `frame`. Returns the entry and the frame length.
pub fn decode_entry(frame: &Bytes) -> Result<Option<(Entry, u32)>, FrameError> {
    let Some(header) = check_frame(frame)? else {
        return Ok(None);
    };
    let body = frame.slice(HEADER_BYTES..header.frame_len as usize);
    let payload = match header.kind {
        EntryKind::Blank => EntryPayload::Blank,
        EntryKind::Normal => EntryPayload::Normal(body),
        EntryKind::Membership => EntryPayload::Membership(
            bincode::deserialize(&body).map_err(|e| FrameError::BadMembership(e.to_string()))?,
        ),
    };
    Ok(Some((
        Entry {
            log_id: header.log_id(),
            payload,
        },
        header.frame_len,
    )))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeSet;

    use openraft::Membership;

    use super::*;

    fn log_id(term: u64, index: u64) -> LogId {
        LogId::new(LeaderId::new(term, 7), index)
    }

    fn round_trip(entry: Entry) {
        let mut buf = vec![0xAA];
        let len = encode_entry(&mut buf, &entry).unwrap();
        assert_eq!(len as usize, buf.len() - 1);
        let frame = Bytes::from(buf).slice(1..);
        let (back, back_len) = decode_entry(&frame).unwrap().unwrap();
        assert_eq!(back_len, len);
        assert_eq!(back.log_id, entry.log_id);
        assert_eq!(
            format!("{:?}", back.payload),
            format!("{:?}", entry.payload)
        );
    }

    #[test]
    fn frames_round_trip() {
        round_trip(Entry {
            log_id: log_id(1, 2),
            payload: EntryPayload::Blank,
        });
        round_trip(Entry {
            log_id: log_id(3, 4),
            payload: EntryPayload::Normal(Bytes::from_static(b"hello")),
        });
        let members: BTreeSet<u64> = [1, 2, 3].into_iter().collect();
        round_trip(Entry {
            log_id: log_id(5, 6),
            payload: EntryPayload::Membership(Membership::new(vec![members], None)),
        });
    }

    #[test]
    fn normal_body_is_raw_at_payload_position() {
        let mut buf = Vec::new();
        let entry = Entry {
            log_id: log_id(1, 1),
            payload: EntryPayload::Normal(Bytes::from_static(b"raw body")),
        };
        encode_entry(&mut buf, &entry).unwrap();
        let at = payload_position(0) as usize;
        assert_eq!(&buf[at..], b"raw body");
        assert_eq!(payload_position(1000), 1000 + HEADER_BYTES as u64);
    }

    #[test]
    fn crc_mismatch_and_bad_frames_are_detected() {
        let mut buf = Vec::new();
        let entry = Entry {
            log_id: log_id(1, 9),
            payload: EntryPayload::Normal(Bytes::from_static(b"abcdef")),
        };
        encode_entry(&mut buf, &entry).unwrap();
        for i in FRAME_LEN_BYTES..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x01;
            assert!(check_frame(&bad).is_err(), "flip at byte {i} not detected");
        }
        assert_eq!(check_frame(&buf[..buf.len() - 1]), Ok(None));
        assert_eq!(check_frame(&buf[..3]), Ok(None));
        assert_eq!(check_frame(&[0u8; 64]), Err(FrameError::BadLength(0)));
    }
}
