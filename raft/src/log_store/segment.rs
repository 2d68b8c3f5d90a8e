//! Segment file names and the per-segment sidecar index.
//!
//! A segment is named by the global byte position of its first byte, 20 digits, zero padded
//! (`00000000000001048576.log`). When a segment is sealed, a sidecar `<base>.idx` records the
//! end offset of every frame, so a restart rebuilds the index of sealed segments without
//! reading them. Sidecar layout, little-endian:
//!
//! ```text
//! b"RMQIDX01" | u64 base | u64 data_len | u64 first_index | u64 count | count x u32 end | u32 crc32
//! ```
//!
//! The CRC covers everything before it. A sidecar that is missing, torn or disagrees with its
//! segment is ignored and the segment is scanned (and the sidecar rewritten).

use std::io;

use super::LogStoreError;
use crate::storage_dir::StorageDir;

const SIDECAR_MAGIC: &[u8; 8] = b"RMQIDX01";
const SIDECAR_HEADER_BYTES: usize = 8 + 8 * 4;
/// Suffix of segment files.
pub const LOG_SUFFIX: &str = ".log";
/// Suffix of sidecar index files.
pub const IDX_SUFFIX: &str = ".idx";
/// Suffix of files being written (removed at open).
pub const TMP_SUFFIX: &str = ".tmp";

/// The file name of the segment starting at global position `base`.
pub fn segment_file_name(base: u64) -> String {
    format!("{base:020}{LOG_SUFFIX}")
}

/// The file name of the sidecar index of the segment starting at `base`.
pub fn sidecar_file_name(base: u64) -> String {
    format!("{base:020}{IDX_SUFFIX}")
}

/// What a file in the log directory is, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFileName {
    /// A segment starting at this base.
    Segment(u64),
    /// A sidecar of the segment starting at this base.
    Sidecar(u64),
    /// A leftover of an interrupted write.
    Temp,
}

/// Classifies a directory entry; `None` for names the store does not own (like `LOCK`).
pub fn parse_file_name(name: &str) -> Option<LogFileName> {
    if name.ends_with(TMP_SUFFIX) {
        return Some(LogFileName::Temp);
    }
    let base_of = |stem: &str| {
        (stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()))
            .then(|| stem.parse().ok())
            .flatten()
    };
    if let Some(stem) = name.strip_suffix(LOG_SUFFIX) {
        return base_of(stem).map(LogFileName::Segment);
    }
    if let Some(stem) = name.strip_suffix(IDX_SUFFIX) {
        return base_of(stem).map(LogFileName::Sidecar);
    }
    None
}

/// The frame layout of one sealed segment, as stored in its sidecar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sidecar {
    /// Global position of the segment's first byte.
    pub base: u64,
    /// Length of the segment file when sealed.
    pub data_len: u64,
    /// Log index of the first frame (frames of one segment have consecutive indexes).
    pub first_index: u64,
    /// End offset (relative to `base`) of each frame.
    pub ends: Vec<u32>,
}

impl Sidecar {
    /// Serialises the sidecar, CRC included.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SIDECAR_HEADER_BYTES + self.ends.len() * 4 + 4);
        out.extend_from_slice(SIDECAR_MAGIC);
        out.extend_from_slice(&self.base.to_le_bytes());
        out.extend_from_slice(&self.data_len.to_le_bytes());
        out.extend_from_slice(&self.first_index.to_le_bytes());
        out.extend_from_slice(&(self.ends.len() as u64).to_le_bytes());
        for end in &self.ends {
            out.extend_from_slice(&end.to_le_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses and checks a sidecar; the reason on failure.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < SIDECAR_HEADER_BYTES + 4 || &bytes[..8] != SIDECAR_MAGIC {
            return Err("not a sidecar (short or bad magic)".into());
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if crc32fast::hash(body) != stored {
            return Err("sidecar crc mismatch".into());
        }
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&body[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let (base, data_len, first_index, count) = (u64_at(8), u64_at(16), u64_at(24), u64_at(32));
        let ends_bytes = &body[SIDECAR_HEADER_BYTES..];
        if ends_bytes.len() as u64 != count.saturating_mul(4) {
            return Err(format!(
                "sidecar says {count} frames but holds {} bytes of ends",
                ends_bytes.len()
            ));
        }
        let ends: Vec<u32> = ends_bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let mut prev = 0u32;
        for &end in &ends {
            if end <= prev {
                return Err("sidecar frame ends are not increasing".into());
            }
            prev = end;
        }
        if u64::from(prev) != data_len {
            return Err(format!(
                "sidecar frames end at {prev}, data length is {data_len}"
            ));
        }
        Ok(Self {
            base,
            data_len,
            first_index,
            ends,
        })
    }
}

/// Writes the sidecar durably under a temporary name and renames it into place; the caller
/// syncs the directory.
pub fn write_sidecar(dir: &dyn StorageDir, sidecar: &Sidecar) -> Result<(), LogStoreError> {
    let name = sidecar_file_name(sidecar.base);
    let tmp = format!("{name}{TMP_SUFFIX}");
    let io_err = |op: &'static str, file: &str| {
        let file = file.to_owned();
        move |source: io::Error| LogStoreError::Io { op, file, source }
    };
    let file = dir.create(&tmp).map_err(io_err("create", &tmp))?;
    file.write_at(&sidecar.encode(), 0)
        .map_err(io_err("write", &tmp))?;
    file.sync_data().map_err(io_err("sync", &tmp))?;
    dir.rename(&tmp, &name).map_err(io_err("rename", &tmp))?;
    Ok(())
}

/// Reads the sidecar of segment `base`; `Err(reason)` if it is missing or unusable.
pub fn read_sidecar(dir: &dyn StorageDir, base: u64) -> Result<Sidecar, String> {
    let name = sidecar_file_name(base);
    let file = dir.open(&name).map_err(|e| format!("{name}: {e}"))?;
    let len = file.len().map_err(|e| format!("{name}: {e}"))?;
    let len = usize::try_from(len).map_err(|_| format!("{name}: too large"))?;
    let mut bytes = vec![0u8; len];
    file.read_at(&mut bytes, 0)
        .map_err(|e| format!("{name}: {e}"))?;
    let sidecar = Sidecar::decode(&bytes).map_err(|e| format!("{name}: {e}"))?;
    if sidecar.base != base {
        return Err(format!(
            "{name}: records base {}, expected {base}",
            sidecar.base
        ));
    }
    Ok(sidecar)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(segment_file_name(1_048_576), "00000000000001048576.log");
        assert_eq!(
            parse_file_name("00000000000001048576.log"),
            Some(LogFileName::Segment(1_048_576))
        );
        assert_eq!(
            parse_file_name(&sidecar_file_name(7)),
            Some(LogFileName::Sidecar(7))
        );
        assert_eq!(
            parse_file_name("00000000000000000007.idx.tmp"),
            Some(LogFileName::Temp)
        );
        assert_eq!(parse_file_name("LOCK"), None);
        assert_eq!(parse_file_name("123.log"), None);
    }

    #[test]
    fn sidecar_round_trip_and_damage() {
        let s = Sidecar {
            base: 4096,
            data_len: 300,
            first_index: 11,
            ends: vec![100, 200, 300],
        };
        let bytes = s.encode();
        assert_eq!(Sidecar::decode(&bytes).unwrap(), s);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(Sidecar::decode(&bad).is_err(), "flip at {i} not detected");
        }
        assert!(Sidecar::decode(&bytes[..bytes.len() - 1]).is_err());
    }
}
