//! Spec §6 message vectors through the public API: V5 record, V7 PULL body, V9 batch, V3 properties.
#![allow(clippy::unwrap_used)]

use raftmq_protocol::message::{
    decode_batch, decode_properties, encode_batch, keys, sysflag, tag_code, MessageRecord,
};
use raftmq_protocol::msgid::{decode_offset_msg_id, parse_uniq_key};
use raftmq_protocol::{decode_frame, Decoded, RemotingCommand};

fn hex(s: &str) -> Vec<u8> {
    let s = s.trim();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn frame(bytes: &[u8]) -> RemotingCommand {
    match decode_frame(bytes).unwrap() {
        Decoded::Frame { command, consumed } => {
            assert_eq!(consumed, bytes.len());
            command
        }
        Decoded::Incomplete => panic!("incomplete frame"),
    }
}

#[test]
fn v5_record_round_trips_and_names_its_broker() {
    let v5 = hex(include_str!("vectors/V5.hex"));
    let (rec, len) = MessageRecord::decode_verified(&v5).unwrap();
    assert_eq!(len, 254);
    assert_eq!(rec.to_bytes().unwrap(), v5);
    assert_eq!(rec.sys_flag, 0);
    assert_eq!(
        sysflag::transaction_type(rec.sys_flag),
        sysflag::TRANSACTION_NOT_TYPE
    );
    let (host, offset) = decode_offset_msg_id(&rec.offset_msg_id()).unwrap();
    assert_eq!((host, offset), (rec.store_host, 123_456));
    let uniq = parse_uniq_key(rec.properties.get(keys::UNIQ_KEY).unwrap()).unwrap();
    assert_eq!((uniq.pid, uniq.counter), (0x3039, 1));

    // The shared decode gives the same record, its body a view of the input.
    let shared = bytes::Bytes::from(v5.clone());
    let (rec2, len2) = MessageRecord::decode_shared(&shared).unwrap();
    assert_eq!((rec2, len2), (rec, len));
    let (start, end) = (
        shared.as_ptr() as usize,
        shared.as_ptr() as usize + shared.len(),
    );
    let (rec2, _) = MessageRecord::decode_shared(&shared).unwrap();
    assert!((start..end).contains(&(rec2.body.as_ptr() as usize)));
}

#[test]
fn v7_pull_body_is_v5() {
    let v7 = frame(&hex(include_str!("vectors/V7.hex")));
    let records = MessageRecord::decode_all(&v7.body).unwrap();
    let (v5, _) = MessageRecord::decode(&hex(include_str!("vectors/V5.hex"))).unwrap();
    assert_eq!(records, vec![v5]);
}

#[test]
fn v9_batch_round_trips() {
    let v9 = hex(include_str!("vectors/V9.hex"));
    let items = decode_batch(&v9).unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(encode_batch(&items).unwrap(), v9);
    let counters: Vec<u16> = items
        .iter()
        .map(|i| {
            parse_uniq_key(i.properties.get(keys::UNIQ_KEY).unwrap())
                .unwrap()
                .counter
        })
        .collect();
    assert_eq!(counters, vec![2, 3]);
    assert_eq!(&items[1].body[..], b"m2");
}

#[test]
fn v3_send_header_properties() {
    let v3 = frame(&hex(include_str!("vectors/V3.hex")));
    let props = decode_properties(v3.ext_fields.get("i").unwrap());
    assert_eq!(props.len(), 4);
    assert_eq!(props.get(keys::KEYS), Some("OrderID001"));
    assert_eq!(tag_code(props.get(keys::TAGS)), 2_598_919);
}
