//! `MessageRecord::decode`, `decode_verified` and `decode_all` (stored records, PULL bodies).
//!
//! Round trip: a decoded record re-encodes (BODYCRC recomputed), decodes verified to the
//! same record, and its offset message id decodes to its STOREHOST and PHYSICALOFFSET.
#![no_main]

use libfuzzer_sys::fuzz_target;
use raftmq_protocol::message::record::{BODY_CRC_POS, RECORD_BYTES_MIN};
use raftmq_protocol::message::{
    body_crc, peek_total_size, set_physical_offset, set_queue_offset, MessageRecord,
};
use raftmq_protocol::msgid::decode_offset_msg_id;
use raftmq_protocol::ProtocolError;

/// Re-encodes `record`; `None` when the encoder refuses it as too long.
fn round_trip(record: &MessageRecord) -> Option<Vec<u8>> {
    let bytes = match record.to_bytes() {
        Ok(bytes) => bytes,
        // Lenient property reading can drop a missing final separator that the strict
        // writer adds back: 32767 bytes in can be 32768 out.
        Err(ProtocolError::TooLong { .. }) => return None,
        Err(e) => panic!("decoded record does not re-encode: {e:?}"),
    };
    assert_eq!(bytes.len(), record.encoded_len());
    let (back, len) = MessageRecord::decode_verified(&bytes).expect("re-encoded record decodes");
    assert_eq!(len, bytes.len());
    assert_eq!(&back, record, "record round trip changed the record");

    let (host, offset) =
        decode_offset_msg_id(&record.offset_msg_id()).expect("offset msg id decodes");
    assert_eq!(host, record.store_host);
    assert_eq!(offset, record.physical_offset);

    let mut patched = bytes.clone();
    set_queue_offset(&mut patched, record.queue_offset.wrapping_add(1)).expect("patch");
    set_physical_offset(&mut patched, !record.physical_offset).expect("patch");
    let (p, _) = MessageRecord::decode_verified(&patched).expect("patched record decodes");
    assert_eq!(p.queue_offset, record.queue_offset.wrapping_add(1));
    assert_eq!(p.physical_offset, !record.physical_offset);
    Some(bytes)
}

fuzz_target!(|data: &[u8]| {
    check(data);
    // The same bytes with TOTALSIZE set to the input length: the fuzzer then only has to
    // keep the inner lengths consistent to reach the later fields.
    if data.len() >= 4 {
        let mut fixed = data.to_vec();
        fixed[..4].copy_from_slice(&(data.len() as u32).to_be_bytes());
        check(&fixed);
    }
});

fn check(data: &[u8]) {
    let single = MessageRecord::decode(data);
    if let Ok((record, len)) = &single {
        assert!(*len >= RECORD_BYTES_MIN && *len <= data.len());
        assert_eq!(peek_total_size(data), Some(*len));
        round_trip(record);
    }

    match MessageRecord::decode_verified(data) {
        Ok((record, len)) => {
            assert_eq!(single.as_ref().ok(), Some(&(record.clone(), len)));
            let stored = u32::from_be_bytes(
                data[BODY_CRC_POS..BODY_CRC_POS + 4]
                    .try_into()
                    .expect("4 bytes"),
            );
            assert_eq!(stored, body_crc(&record.body) as u32);
        }
        Err(ProtocolError::CrcMismatch { .. }) => assert!(single.is_ok()),
        Err(e) => assert_eq!(Err(e), single),
    }

    match MessageRecord::decode_all(data) {
        Ok(records) => {
            if let Some(first) = records.first() {
                assert_eq!(single.as_ref().ok().map(|(r, _)| r), Some(first));
            } else {
                assert!(data.is_empty());
            }
            let mut all = Vec::new();
            for r in &records {
                match round_trip(r) {
                    Some(bytes) => all.extend_from_slice(&bytes),
                    None => return,
                }
            }
            let back = MessageRecord::decode_all(&all).expect("re-encoded PULL body decodes");
            assert_eq!(back, records);
        }
        Err(_) => assert!(!data.is_empty()),
    }
}
