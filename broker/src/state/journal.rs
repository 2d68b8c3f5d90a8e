//! Checkpoint journal: consume-queue units and key-index entries as append-only blocks.
//!
//! A checkpoint is the metadata snapshot ([`super::snapshot`]) plus this journal. Each
//! checkpoint appends the units and key entries applied since the previous one, so its cost
//! is proportional to what changed, and a restart reads the journal back instead of
//! re-applying the whole log. A full rewrite (after a snapshot install, a topic deletion,
//! or when purged data makes up most of the journal) starts a new journal generation.
//!
//! Block: `u8 kind | u32 body length | u32 crc32(body) | body`, big-endian.
//! - units: `u16 topic length | topic | i32 queue id | i64 first offset | u32 n |
//!   n × (20-byte unit | i64 store time)`;
//! - keys: `u16 topic length | topic | u32 n | n × (u64 key hash | i64 physical offset |
//!   i64 store time)`;
//! - dedup: `u32 n | n × (u16 topic length | topic | u16 UNIQ_KEY length | UNIQ_KEY |
//!   i32 queue id | i64 queue offset | i64 physical offset)`: idempotency-window inserts in
//!   apply order (the window is FIFO, so replaying them rebuilds it exactly).
//!
//! Pure: bytes in, bytes out. Only the prefix the checkpoint's metadata vouches for is ever
//! parsed, so a torn tail from a crash mid-checkpoint is never read; a bad block inside it is
//! corruption and an error naming its byte offset.

use super::consume_queue::CqUnit;

/// Block kind: consume-queue units.
pub const BLOCK_UNITS: u8 = 1;
/// Block kind: key-index entries.
pub const BLOCK_KEYS: u8 = 2;
/// Block kind: idempotency-window inserts.
pub const BLOCK_DEDUP: u8 = 3;
/// Bytes of a block header.
pub const BLOCK_HEADER_BYTES: usize = 9;
/// Bytes per unit in a units block.
pub const UNIT_BYTES: usize = CqUnit::BYTES + 8;
/// Bytes per entry in a keys block.
pub const KEY_BYTES: usize = 24;
/// Most items per block (keeps blocks a few MiB).
const BLOCK_ITEMS_MAX: usize = 65_536;

/// A key-index entry as journaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRec {
    /// [`super::key_index::key_hash`] of the key.
    pub hash: u64,
    /// Physical offset of the record.
    pub physical_offset: i64,
    /// Its store time.
    pub store_time: i64,
}

/// An idempotency-window insert as journaled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupRec {
    /// Topic.
    pub topic: String,
    /// UNIQ_KEY.
    pub uniq_key: String,
    /// Queue id of the first copy.
    pub queue_id: i32,
    /// Its queue offset.
    pub queue_offset: i64,
    /// Its physical offset.
    pub physical_offset: i64,
}

/// One parsed block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block {
    /// Units of one queue from `first_offset` on.
    Units {
        /// Topic.
        topic: String,
        /// Queue id.
        queue_id: i32,
        /// Logical offset of the first unit.
        first_offset: i64,
        /// (unit, store time) pairs.
        units: Vec<(CqUnit, i64)>,
    },
    /// Key entries of one topic.
    Keys {
        /// Topic.
        topic: String,
        /// Entries in index order.
        keys: Vec<KeyRec>,
    },
    /// Idempotency-window inserts, oldest first. `skip` leading ones were not decoded
    /// (see [`parse_skipping_dedup`]).
    Dedup(Vec<DedupRec>),
}

fn put_topic(out: &mut Vec<u8>, topic: &str) {
    let bytes = topic.as_bytes();
    // Topic names are at most 127 bytes (validated at send); clamp defensively.
    let n = bytes.len().min(u16::MAX as usize);
    out.extend_from_slice(&(n as u16).to_be_bytes());
    out.extend_from_slice(&bytes[..n]);
}

fn finish_block(out: &mut [u8], start: usize) {
    let body_len = out.len() - start - BLOCK_HEADER_BYTES;
    let crc = crc32fast::hash(&out[start + BLOCK_HEADER_BYTES..]);
    out[start + 1..start + 5].copy_from_slice(&(body_len as u32).to_be_bytes());
    out[start + 5..start + 9].copy_from_slice(&crc.to_be_bytes());
}

/// Appends units blocks for one queue (split every [`BLOCK_ITEMS_MAX`] units).
pub fn put_units(
    out: &mut Vec<u8>,
    topic: &str,
    queue_id: i32,
    first_offset: i64,
    units: &[CqUnit],
    store_times: &[i64],
) {
    let mut offset = first_offset;
    for (chunk, times) in units
        .chunks(BLOCK_ITEMS_MAX)
        .zip(store_times.chunks(BLOCK_ITEMS_MAX))
    {
        let start = out.len();
        out.push(BLOCK_UNITS);
        out.extend_from_slice(&[0; 8]);
        put_topic(out, topic);
        out.extend_from_slice(&queue_id.to_be_bytes());
        out.extend_from_slice(&offset.to_be_bytes());
        out.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
        out.reserve(chunk.len() * UNIT_BYTES);
        for (u, t) in chunk.iter().zip(times) {
            out.extend_from_slice(&u.to_bytes());
            out.extend_from_slice(&t.to_be_bytes());
        }
        finish_block(out, start);
        offset += chunk.len() as i64;
    }
}

/// Appends keys blocks for one topic.
pub fn put_keys(out: &mut Vec<u8>, topic: &str, keys: &[KeyRec]) {
    for chunk in keys.chunks(BLOCK_ITEMS_MAX) {
        let start = out.len();
        out.push(BLOCK_KEYS);
        out.extend_from_slice(&[0; 8]);
        put_topic(out, topic);
        out.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
        out.reserve(chunk.len() * KEY_BYTES);
        for k in chunk {
            out.extend_from_slice(&k.hash.to_be_bytes());
            out.extend_from_slice(&k.physical_offset.to_be_bytes());
            out.extend_from_slice(&k.store_time.to_be_bytes());
        }
        finish_block(out, start);
    }
}

/// Appends dedup blocks (insert order kept).
pub fn put_dedup<'a>(
    out: &mut Vec<u8>,
    recs: impl ExactSizeIterator<Item = (&'a str, &'a str, i32, i64, i64)>,
) {
    let total = recs.len();
    let mut recs = recs.peekable();
    let mut written = 0usize;
    while written < total {
        let n = (total - written).min(BLOCK_ITEMS_MAX);
        let start = out.len();
        out.push(BLOCK_DEDUP);
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&(n as u32).to_be_bytes());
        for _ in 0..n {
            let Some((topic, uniq, queue_id, queue_offset, physical_offset)) = recs.next() else {
                break;
            };
            put_topic(out, topic);
            put_topic(out, uniq);
            out.extend_from_slice(&queue_id.to_be_bytes());
            out.extend_from_slice(&queue_offset.to_be_bytes());
            out.extend_from_slice(&physical_offset.to_be_bytes());
        }
        finish_block(out, start);
        written += n;
    }
}

/// A cursor over a block body.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let s = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(s)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }
    fn i32(&mut self) -> Option<i32> {
        self.array().map(i32::from_be_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.array().map(i64::from_be_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_be_bytes)
    }
    fn topic(&mut self) -> Option<String> {
        let n = self.u16()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
    fn done(&self) -> bool {
        self.at == self.bytes.len()
    }
}

fn parse_body(kind: u8, body: &[u8]) -> Option<Block> {
    let mut r = Reader { bytes: body, at: 0 };
    let block = match kind {
        BLOCK_UNITS => {
            let topic = r.topic()?;
            let queue_id = r.i32()?;
            let first_offset = r.i64()?;
            let n = r.u32()? as usize;
            if n.checked_mul(UNIT_BYTES)? != body.len() - r.at {
                return None;
            }
            let mut units = Vec::with_capacity(n);
            for _ in 0..n {
                let unit = CqUnit::from_bytes(&r.array()?);
                units.push((unit, r.i64()?));
            }
            Block::Units {
                topic,
                queue_id,
                first_offset,
                units,
            }
        }
        BLOCK_KEYS => {
            let topic = r.topic()?;
            let n = r.u32()? as usize;
            if n.checked_mul(KEY_BYTES)? != body.len() - r.at {
                return None;
            }
            let mut keys = Vec::with_capacity(n);
            for _ in 0..n {
                keys.push(KeyRec {
                    hash: r.u64()?,
                    physical_offset: r.i64()?,
                    store_time: r.i64()?,
                });
            }
            Block::Keys { topic, keys }
        }
        BLOCK_DEDUP => {
            let n = r.u32()? as usize;
            let mut recs = Vec::with_capacity(n.min(BLOCK_ITEMS_MAX));
            for _ in 0..n {
                recs.push(DedupRec {
                    topic: r.topic()?,
                    uniq_key: r.topic()?,
                    queue_id: r.i32()?,
                    queue_offset: r.i64()?,
                    physical_offset: r.i64()?,
                });
            }
            Block::Dedup(recs)
        }
        _ => return None,
    };
    r.done().then_some(block)
}

/// Item counts per block, from the block headers only (no checksums): sizes collections
/// before [`parse`] fills them. Stops quietly at the first block it cannot read.
pub fn counts(bytes: &[u8]) -> Vec<(u8, String, i32, usize)> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while let Some(header) = bytes.get(at..at + BLOCK_HEADER_BYTES) {
        let kind = header[0];
        let mut len = [0u8; 4];
        len.copy_from_slice(&header[1..5]);
        let len = u32::from_be_bytes(len) as usize;
        let body_start = at + BLOCK_HEADER_BYTES;
        let Some(body) = bytes.get(body_start..body_start.saturating_add(len)) else {
            break;
        };
        let mut r = Reader { bytes: body, at: 0 };
        let item = match kind {
            BLOCK_UNITS => (|| {
                let topic = r.topic()?;
                let queue_id = r.i32()?;
                r.i64()?;
                Some((kind, topic, queue_id, r.u32()? as usize))
            })(),
            BLOCK_KEYS => (|| Some((kind, r.topic()?, 0, r.u32()? as usize)))(),
            BLOCK_DEDUP => (|| Some((kind, String::new(), 0, r.u32()? as usize)))(),
            _ => None,
        };
        match item {
            Some(i) => out.push(i),
            None => break,
        }
        at = body_start + len;
    }
    out
}

/// Parses every block of `bytes` (exactly; a partial block is an error) and hands each to
/// `visit` in order. Errors name the byte offset of the bad block.
pub fn parse(bytes: &[u8], visit: impl FnMut(Block) -> Result<(), String>) -> Result<(), String> {
    parse_skipping_dedup(bytes, 0, visit)
}

/// [`parse`], but whole dedup blocks among the first `skip_dedup` dedup entries are only
/// checksummed, not decoded (a restore needs just the newest window's worth).
pub fn parse_skipping_dedup(
    bytes: &[u8],
    skip_dedup: usize,
    mut visit: impl FnMut(Block) -> Result<(), String>,
) -> Result<(), String> {
    let mut dedup_seen = 0usize;
    let mut at = 0usize;
    while at < bytes.len() {
        let header = bytes
            .get(at..at + BLOCK_HEADER_BYTES)
            .ok_or_else(|| format!("journal truncated inside the block header at byte {at}"))?;
        let kind = header[0];
        let mut len = [0u8; 4];
        len.copy_from_slice(&header[1..5]);
        let len = u32::from_be_bytes(len) as usize;
        let mut crc = [0u8; 4];
        crc.copy_from_slice(&header[5..9]);
        let crc = u32::from_be_bytes(crc);
        let body_start = at + BLOCK_HEADER_BYTES;
        let body = body_start
            .checked_add(len)
            .and_then(|end| bytes.get(body_start..end))
            .ok_or_else(|| format!("journal block at byte {at} runs past the end ({len} bytes)"))?;
        if crc32fast::hash(body) != crc {
            return Err(format!("journal block at byte {at}: checksum mismatch"));
        }
        if kind == BLOCK_DEDUP {
            let n = body
                .get(..4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map_or(0, u32::from_be_bytes) as usize;
            dedup_seen += n;
            if dedup_seen <= skip_dedup {
                at = body_start + len;
                continue;
            }
        }
        let block = parse_body(kind, body)
            .ok_or_else(|| format!("journal block at byte {at}: malformed (kind {kind})"))?;
        visit(block).map_err(|e| format!("journal block at byte {at}: {e}"))?;
        at = body_start + len;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(p: i64) -> CqUnit {
        CqUnit {
            physical_offset: p,
            size: 100,
            tag_code: -7,
        }
    }

    #[test]
    fn blocks_round_trip() {
        let mut out = Vec::new();
        put_units(&mut out, "T", 3, 10, &[unit(1), unit(2)], &[5, 6]);
        let keys = [KeyRec {
            hash: 42,
            physical_offset: 1,
            store_time: 5,
        }];
        put_keys(&mut out, "T", &keys);
        let mut seen = Vec::new();
        parse(&out, |b| {
            seen.push(b);
            Ok(())
        })
        .expect("parses");
        assert_eq!(
            seen,
            vec![
                Block::Units {
                    topic: "T".into(),
                    queue_id: 3,
                    first_offset: 10,
                    units: vec![(unit(1), 5), (unit(2), 6)],
                },
                Block::Keys {
                    topic: "T".into(),
                    keys: keys.to_vec(),
                },
            ]
        );
    }

    #[test]
    fn large_queues_split_into_blocks_with_running_offsets() {
        let n = BLOCK_ITEMS_MAX + 3;
        let units: Vec<CqUnit> = (0..n as i64).map(unit).collect();
        let times: Vec<i64> = (0..n as i64).collect();
        let mut out = Vec::new();
        put_units(&mut out, "T", 0, 7, &units, &times);
        let mut firsts = Vec::new();
        parse(&out, |b| {
            if let Block::Units {
                first_offset,
                units,
                ..
            } = b
            {
                firsts.push((first_offset, units.len()));
            }
            Ok(())
        })
        .expect("parses");
        assert_eq!(
            firsts,
            vec![(7, BLOCK_ITEMS_MAX), (7 + BLOCK_ITEMS_MAX as i64, 3)]
        );
    }

    #[test]
    fn corruption_and_truncation_name_the_offset() {
        let mut out = Vec::new();
        put_units(&mut out, "T", 0, 0, &[unit(1)], &[1]);
        let first_len = out.len();
        put_units(&mut out, "T", 0, 1, &[unit(2)], &[2]);
        let mut flipped = out.clone();
        flipped[first_len + BLOCK_HEADER_BYTES + 3] ^= 0xFF;
        let e = parse(&flipped, |_| Ok(())).expect_err("corrupt");
        assert!(e.contains(&format!("byte {first_len}")), "{e}");
        assert!(e.contains("checksum"), "{e}");
        let e = parse(&out[..out.len() - 1], |_| Ok(())).expect_err("truncated");
        assert!(e.contains(&format!("byte {first_len}")), "{e}");
        let e = parse(&out[..first_len + 4], |_| Ok(())).expect_err("truncated header");
        assert!(e.contains("header"), "{e}");
        // A visitor's refusal is reported with the block's offset too.
        let e = parse(&out, |_| Err("gap".into())).expect_err("refused");
        assert!(e.contains("byte 0: gap"), "{e}");
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut out = Vec::new();
        put_units(&mut out, "T", 0, 0, &[unit(1)], &[1]);
        for i in 0..out.len() {
            for bit in 0..8 {
                let mut b = out.clone();
                b[i] ^= 1 << bit;
                let _ = parse(&b, |_| Ok(()));
            }
            let _ = parse(&out[..i], |_| Ok(()));
        }
    }
}
