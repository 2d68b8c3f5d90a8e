//! Body CRC and compression (spec §2.4.2, §3.4).
//!
//! The broker stores bodies as received and only computes the CRC; clients
//! compress and decompress. Decompression is bounded so that a small "zip
//! bomb" body cannot exhaust memory.

use std::io::{Read, Write};

use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use flate2::Compression;

use super::sysflag;
use crate::error::{ProtocolError, Result};

/// Producers compress bodies of at least this many bytes (`compressMsgBodyOverHowmuch`).
pub const COMPRESS_BODY_OVER_BYTES: usize = 4096;

/// zlib level Java producers use (`compressMsgBodyLevel`).
pub const COMPRESS_LEVEL: u32 = 5;

/// BODYCRC: CRC-32 (IEEE) of the stored body bytes with the sign bit cleared.
pub fn body_crc(body: &[u8]) -> i32 {
    // The mask makes the value fit in a non-negative i32, so the cast is lossless.
    (crc32fast::hash(body) & 0x7FFF_FFFF) as i32
}

/// zlib stream (header + deflate + Adler-32) at level 5, as Java producers write it.
pub fn compress_zlib(data: &[u8]) -> Vec<u8> {
    let mut enc = ZlibEncoder::new(
        Vec::with_capacity(data.len() / 2 + 64),
        Compression::new(COMPRESS_LEVEL),
    );
    // Invariant, not input: writing into a Vec never fails.
    #[allow(clippy::expect_used)]
    {
        enc.write_all(data).expect("zlib into Vec cannot fail");
        enc.finish().expect("zlib into Vec cannot fail")
    }
}

/// Decompresses a body per `sys_flag`, refusing output longer than `out_bytes_max`.
///
/// Bit 0 clear: the body is returned as is (still subject to the limit).
/// Types 0 and 3 are zlib; LZ4 (1), ZSTD (2) and 4–7 are `UnsupportedCompression`.
pub fn decompress_body(data: &[u8], sys_flag: i32, out_bytes_max: usize) -> Result<Vec<u8>> {
    let too_long = |len| ProtocolError::TooLong {
        what: "decompressed message body",
        len,
        max: out_bytes_max,
    };
    if sys_flag & sysflag::COMPRESSED == 0 {
        if data.len() > out_bytes_max {
            return Err(too_long(data.len()));
        }
        return Ok(data.to_vec());
    }
    match sysflag::compression_type(sys_flag) {
        sysflag::COMPRESSION_LEGACY_ZLIB | sysflag::COMPRESSION_ZLIB => {}
        other => return Err(ProtocolError::UnsupportedCompression(other)),
    }
    // Read at most one byte past the limit: enough to know it was exceeded.
    let limit = u64::try_from(out_bytes_max)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(out_bytes_max));
    ZlibDecoder::new(data)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| ProtocolError::Compression(e.to_string()))?;
    if out.len() > out_bytes_max {
        return Err(too_long(out.len()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn crc_of_vector_body() {
        assert_eq!(body_crc(b"Hello RocketMQ"), 1774740973);
        assert_eq!(body_crc(b""), 0);
        // 0xFFFFFFFF-ish CRCs lose the sign bit.
        assert!((0..1000u32).all(|i| body_crc(&i.to_be_bytes()) >= 0));
    }

    #[test]
    fn zlib_round_trip_for_both_type_encodings() {
        let data: Vec<u8> = (0..20_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let z = compress_zlib(&data);
        assert!(z.len() < data.len());
        assert_eq!(&z[..1], &[0x78]); // zlib header, deflate with 32 KiB window
        for flag in [0x1, 0x301, 0x301 | sysflag::TRANSACTION_COMMIT] {
            assert_eq!(decompress_body(&z, flag, data.len()).unwrap(), data);
        }
        // Uncompressed bodies pass through.
        assert_eq!(decompress_body(b"abc", 0, 3).unwrap(), b"abc");
        assert!(matches!(
            decompress_body(b"abc", 0, 2),
            Err(ProtocolError::TooLong { .. })
        ));
    }

    #[test]
    fn bomb_is_stopped_at_the_limit() {
        let bomb = compress_zlib(&vec![0u8; 16 << 20]);
        assert!(bomb.len() < 64 << 10);
        let err = decompress_body(&bomb, 0x301, 1 << 20).unwrap_err();
        assert_eq!(
            err,
            ProtocolError::TooLong {
                what: "decompressed message body",
                len: (1 << 20) + 1,
                max: 1 << 20
            }
        );
    }

    #[test]
    fn unsupported_and_corrupt() {
        let z = compress_zlib(b"hello hello hello");
        assert_eq!(
            decompress_body(&z, 0x101, 100),
            Err(ProtocolError::UnsupportedCompression(1))
        );
        assert_eq!(
            decompress_body(&z, 0x201, 100),
            Err(ProtocolError::UnsupportedCompression(2))
        );
        assert_eq!(
            decompress_body(&z, 0x701, 100),
            Err(ProtocolError::UnsupportedCompression(7))
        );
        assert!(matches!(
            decompress_body(b"not zlib", 1, 100),
            Err(ProtocolError::Compression(_))
        ));
        assert!(matches!(
            decompress_body(&z[..z.len() - 6], 1, 100),
            Err(ProtocolError::Compression(_))
        ));
        assert!(matches!(
            decompress_body(&[], 1, 100),
            Err(ProtocolError::Compression(_))
        ));
    }

    proptest! {
        #[test]
        fn round_trip(data in proptest::collection::vec(any::<u8>(), 0..5000)) {
            let z = compress_zlib(&data);
            prop_assert_eq!(decompress_body(&z, 0x301, data.len()).unwrap(), data);
        }

        #[test]
        fn arbitrary_input_never_panics(data in proptest::collection::vec(any::<u8>(), 0..256), flag in any::<i32>()) {
            let _ = decompress_body(&data, flag, 4096);
        }
    }
}
