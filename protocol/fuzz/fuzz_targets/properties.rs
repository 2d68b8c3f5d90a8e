//! `message::decode_properties_bytes` (the `name\u{1}value\u{2}` string).
//!
//! Round trip: what the lenient reader keeps, the strict writer writes and the reader
//! reads back unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use raftmq_protocol::message::properties::properties_encoded_len;
use raftmq_protocol::message::{
    decode_properties, decode_properties_bytes, encode_properties, NAME_VALUE_SEPARATOR,
    PROPERTY_SEPARATOR,
};

fuzz_target!(|data: &[u8]| {
    let Ok(map) = decode_properties_bytes(data) else {
        assert!(std::str::from_utf8(data).is_err());
        return;
    };
    for (k, v) in map.iter() {
        assert!(!k.is_empty() && !v.is_empty());
        assert!(!k.contains(NAME_VALUE_SEPARATOR) && !k.contains(PROPERTY_SEPARATOR));
        assert!(!v.contains(PROPERTY_SEPARATOR));
    }
    let s = encode_properties(&map);
    assert_eq!(s.len(), properties_encoded_len(&map));
    assert!(s.len() <= data.len() + 1);
    let back = decode_properties(&s);
    assert_eq!(back, map, "properties round trip changed the map");
    assert_eq!(encode_properties(&back), s);
});
