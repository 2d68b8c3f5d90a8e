//! `message::decompress_body` with a small output limit (at most 64 KiB).
//!
//! Input: 2 bytes of sysFlag (compressed bit and compression type bits 8–10 included),
//! 1 byte limit in 256-byte units, 1 mode byte, then the body. Mode bit 0: the target
//! zlib-compresses the body first (so the inflate paths are reached without the fuzzer
//! having to invent valid zlib); bit 1: it then flips one byte of that stream, at an index
//! taken from the mode byte.
//! Round trip: what inflates re-compresses and inflates to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use raftmq_protocol::message::{compress_zlib, decompress_body, sysflag};

fuzz_target!(|data: &[u8]| {
    let [f0, f1, l, mode, body @ ..] = data else {
        return;
    };
    let sys_flag = i32::from(u16::from_be_bytes([*f0, *f1]));
    let limit = usize::from(*l) << 8;
    let mut owned;
    let mut body = body;
    if mode & 1 == 1 {
        owned = compress_zlib(body);
        if mode & 2 == 2 {
            let at = usize::from(mode >> 2) % owned.len();
            owned[at] ^= 0xA5;
        }
        body = &owned;
    }
    let Ok(out) = decompress_body(body, sys_flag, limit) else {
        return;
    };
    assert!(
        out.len() <= limit,
        "{} bytes over the limit {limit}",
        out.len()
    );
    if sys_flag & sysflag::COMPRESSED == 0 {
        assert_eq!(out, body);
        return;
    }
    let ty = sysflag::compression_type(sys_flag);
    assert!(ty == sysflag::COMPRESSION_LEGACY_ZLIB || ty == sysflag::COMPRESSION_ZLIB);
    if mode & 3 == 1 {
        assert_eq!(
            out,
            &data[4..],
            "compressed body does not inflate to itself"
        );
    }
    let again = compress_zlib(&out);
    let back = decompress_body(&again, sys_flag, out.len()).expect("re-compressed body inflates");
    assert_eq!(back, out);
});
