//! `msgid::parse_uniq_key` and `msgid::decode_offset_msg_id` on arbitrary UTF-8.
//!
//! Round trip: a parsed id re-encodes to the same hex (case-insensitively). Also feeds the
//! raw bytes to the UNIQ_KEY generator's clock arithmetic.
#![no_main]

use std::net::{IpAddr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use raftmq_protocol::msgid::{
    decode_offset_msg_id, encode_offset_msg_id, ms_since_month_start, parse_uniq_key,
    UniqKeyGenerator,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(id) = std::str::from_utf8(data) {
        let uniq = parse_uniq_key(id);
        if let Ok(parts) = &uniq {
            let hex = parts.encode();
            assert!(hex.eq_ignore_ascii_case(id), "{hex} != {id}");
            assert_eq!(parse_uniq_key(&hex).as_ref(), Ok(parts));
        }
        if let Ok((host, offset)) = decode_offset_msg_id(id) {
            assert!(uniq.is_ok(), "offset id parsed but not as a UNIQ_KEY");
            let hex = encode_offset_msg_id(host, offset);
            assert!(hex.eq_ignore_ascii_case(id), "{hex} != {id}");
            assert_eq!(decode_offset_msg_id(&hex), Ok((host, offset)));
        }
    }
    if let Some(head) = data.get(..8) {
        let now = i64::from_be_bytes(head.try_into().expect("8 bytes"));
        let ms = ms_since_month_start(now);
        assert!((0..31 * 86_400_000).contains(&ms), "{now} -> {ms}");
        let ip = IpAddr::V6(Ipv6Addr::from(u128::from(now as u64)));
        let key = UniqKeyGenerator::new(ip, now as u32, (now >> 32) as i32).generate(now);
        let parts = parse_uniq_key(&key).expect("generated key parses");
        assert_eq!(parts.ip, ip);
        assert_eq!(parts.counter, 1);
        assert_eq!(parts.ms_in_month, ms as i32);
    }
});
