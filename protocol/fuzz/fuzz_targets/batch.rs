//! `message::decode_batch` (SEND_BATCH_MESSAGE body).
//!
//! Round trip: decoded items re-encode and decode to the same items.
#![no_main]

use libfuzzer_sys::fuzz_target;
use raftmq_protocol::message::{decode_batch, encode_batch};
use raftmq_protocol::ProtocolError;

fuzz_target!(|data: &[u8]| {
    check(data);
    // The same bytes with the first TOTALSIZE set to the input length (one item).
    if data.len() >= 4 {
        let mut fixed = data.to_vec();
        fixed[..4].copy_from_slice(&(data.len() as u32).to_be_bytes());
        check(&fixed);
    }
});

fn check(data: &[u8]) {
    let Ok(items) = decode_batch(data) else {
        return;
    };
    assert_eq!(items.is_empty(), data.is_empty());
    let bytes = match encode_batch(&items) {
        Ok(bytes) => bytes,
        // Lenient properties can grow by one terminating separator on re-encoding.
        Err(ProtocolError::TooLong { .. }) => return,
        Err(e) => panic!("decoded batch does not re-encode: {e:?}"),
    };
    let back = decode_batch(&bytes).expect("re-encoded batch decodes");
    assert_eq!(back, items, "batch round trip changed the items");
    assert_eq!(encode_batch(&back).expect("re-encode"), bytes);
}
