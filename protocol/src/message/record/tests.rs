//! Tests of the stored record: vector V5, round trips, malformed input.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::message::sysflag;
use crate::message::test_support::{prop_map, socket_addr, unhex};

const V5_HEX: &str = concat!(
    "000000fedaa320a769c865ed0000000000000000000000000000000700000000",
    "0001e240000000000000018bcfe56800c0a8010a0000d4310000018bcfe56805",
    "c0a8011400002a9f0000000000000000000000000000000e48656c6c6f20526f",
    "636b65744d5109546f70696354657374008c4b455953014f7264657249443030",
    "31025441475301546167410257414954017472756502554e49515f4b45590143",
    "3041383031304133303339314236443335383630353236354330303030303102",
    "4d53475f524547494f4e0144656661756c74526567696f6e0254524143455f4f",
    "4e017472756502434c55535445520144656661756c74436c757374657202",
);

fn v5() -> Vec<u8> {
    unhex(V5_HEX)
}

fn v5_record() -> MessageRecord {
    let properties = [
        ("KEYS", "OrderID001"),
        ("TAGS", "TagA"),
        ("WAIT", "true"),
        ("UNIQ_KEY", "C0A8010A30391B6D358605265C000001"),
        ("MSG_REGION", "DefaultRegion"),
        ("TRACE_ON", "true"),
        ("CLUSTER", "DefaultCluster"),
    ]
    .into_iter()
    .collect();
    MessageRecord {
        queue_id: 0,
        flag: 0,
        queue_offset: 7,
        physical_offset: 123_456,
        sys_flag: 0,
        born_timestamp: 1_700_000_000_000,
        born_host: "192.168.1.10:54321".parse().unwrap(),
        store_timestamp: 1_700_000_000_005,
        store_host: "192.168.1.20:10911".parse().unwrap(),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        body: Bytes::from_static(b"Hello RocketMQ"),
        topic: "TopicTest".to_owned(),
        properties,
    }
}

#[test]
fn vector_v5_encodes_byte_for_byte() {
    let rec = v5_record();
    assert_eq!(rec.encoded_len(), 254);
    let mut out = vec![0xAA]; // encode appends
    rec.encode(&mut out).unwrap();
    assert_eq!(&out[1..], &v5()[..]);
    assert_eq!(rec.to_bytes().unwrap(), v5());
}

#[test]
fn vector_v5_decodes() {
    let bytes = v5();
    assert_eq!(bytes.len(), 254);
    assert_eq!(peek_total_size(&bytes), Some(254));
    let (rec, len) = MessageRecord::decode(&bytes).unwrap();
    assert_eq!(len, 254);
    assert_eq!(rec, v5_record());
    assert_eq!(
        MessageRecord::decode_verified(&bytes).unwrap(),
        (v5_record(), 254)
    );
    assert_eq!(rec.offset_msg_id(), "C0A8011400002A9F000000000001E240");
    assert_eq!(
        crate::message::tag_code(rec.properties.get(keys::TAGS)),
        2_598_919
    );
}

use crate::message::keys;

#[test]
fn decode_all_reads_back_to_back_records() {
    let mut body = v5();
    let mut second = v5_record();
    second.queue_offset = 8;
    second.physical_offset = 123_456 + 254;
    second.topic = "T".repeat(200); // V2 magic
    second.born_host = "[::1]:1".parse().unwrap();
    second.encode(&mut body).unwrap();
    let all = MessageRecord::decode_all(&body).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0], v5_record());
    assert_eq!(all[1].topic.len(), 200);
    assert_eq!(all[1].sys_flag, sysflag::BORNHOST_V6);
    assert_eq!(MessageRecord::decode_all(&[]).unwrap(), vec![]);
    // A trailing partial record is an error, not silently dropped.
    assert!(MessageRecord::decode_all(&body[..body.len() - 1]).is_err());
}

#[test]
fn magic_and_host_bits_follow_content() {
    let mut rec = v5_record();
    rec.sys_flag = sysflag::BORNHOST_V6 | sysflag::STOREHOST_V6 | sysflag::COMPRESSED;
    let bytes = rec.to_bytes().unwrap();
    assert_eq!(bytes, {
        let mut b = v5();
        b[39] = 1; // only COMPRESSED survives: both hosts are IPv4
        b
    });

    rec.store_host = "[2001:db8::20]:10911".parse().unwrap();
    rec.topic = "x".repeat(127);
    let bytes = rec.to_bytes().unwrap();
    assert_eq!(&bytes[4..8], &MAGIC_V1.to_be_bytes());
    let (back, _) = MessageRecord::decode(&bytes).unwrap();
    assert_eq!(back.sys_flag, sysflag::STOREHOST_V6 | sysflag::COMPRESSED);
    assert_eq!(back.store_host, rec.store_host);
    assert_eq!(bytes.len(), 254 + 12 + 127 - 9);

    rec.topic = "x".repeat(128);
    let bytes = rec.to_bytes().unwrap();
    assert_eq!(&bytes[4..8], &MAGIC_V2.to_be_bytes());
    assert_eq!(MessageRecord::decode(&bytes).unwrap().0.topic, rec.topic);
}

#[test]
fn encode_refuses_oversized_fields_and_writes_nothing() {
    let mut rec = v5_record();
    rec.topic = "t".repeat(TOPIC_BYTES_MAX + 1);
    let mut out = vec![1, 2, 3];
    assert!(matches!(
        rec.encode(&mut out),
        Err(ProtocolError::TooLong {
            what: "message topic",
            ..
        })
    ));
    assert_eq!(out, vec![1, 2, 3]);
    rec.topic = "t".repeat(TOPIC_BYTES_MAX);
    assert!(rec.encode(&mut out).is_ok());

    let mut rec = v5_record();
    rec.properties
        .insert("BIG", "p".repeat(PROPERTIES_BYTES_MAX));
    assert!(matches!(
        rec.to_bytes(),
        Err(ProtocolError::TooLong {
            what: "message properties",
            ..
        })
    ));
}

#[test]
fn truncated_record() {
    let bytes = v5();
    for cut in 0..bytes.len() {
        let err = MessageRecord::decode(&bytes[..cut]).unwrap_err();
        assert!(
            matches!(err, ProtocolError::Truncated { .. }),
            "cut {cut}: {err:?}"
        );
    }
    assert_eq!(peek_total_size(&bytes[..3]), None);
}

fn with_total(total: i32) -> Vec<u8> {
    let mut b = v5();
    b[..4].copy_from_slice(&total.to_be_bytes());
    b
}

#[test]
fn bad_total_size() {
    assert_eq!(
        MessageRecord::decode(&with_total(-1)),
        Err(ProtocolError::InvalidLength {
            what: "message record TOTALSIZE",
            len: -1
        })
    );
    assert_eq!(peek_total_size(&with_total(-1)), None);
    assert_eq!(
        MessageRecord::decode(&with_total(90)),
        Err(ProtocolError::InvalidLength {
            what: "message record TOTALSIZE",
            len: 90
        })
    );
    assert_eq!(
        MessageRecord::decode(&with_total(i32::MAX)),
        Err(ProtocolError::Truncated {
            what: "message record",
            needed: i32::MAX as usize,
            available: 254
        })
    );
    // Smaller than the content: an inner field runs past TOTALSIZE.
    assert!(matches!(
        MessageRecord::decode(&with_total(200)),
        Err(ProtocolError::Truncated {
            what: "PROPERTIES",
            ..
        })
    ));
    // Larger than the content: bytes left over inside the record.
    let mut padded = with_total(255);
    padded.push(0);
    assert!(matches!(
        MessageRecord::decode(&padded),
        Err(ProtocolError::InvalidLength { .. })
    ));
}

#[test]
fn bad_magic() {
    for magic in [0, BLANK_MAGIC, MAGIC_V1 + 1] {
        let mut b = v5();
        b[4..8].copy_from_slice(&magic.to_be_bytes());
        assert_eq!(
            MessageRecord::decode(&b),
            Err(ProtocolError::InvalidMagic(magic))
        );
        assert_eq!(
            set_queue_offset(&mut b, 1),
            Err(ProtocolError::InvalidMagic(magic))
        );
    }
}

#[test]
fn crc_mismatch_only_in_verified_decode() {
    let mut b = v5();
    b[0x58] ^= 0x20; // 'H' -> 'h' in the body
    assert!(MessageRecord::decode(&b).is_ok());
    assert_eq!(
        MessageRecord::decode_verified(&b),
        Err(ProtocolError::CrcMismatch {
            what: "message body",
            stored: 1_774_740_973,
            computed: body_crc(b"hello RocketMQ") as u32
        })
    );
}

#[test]
fn bad_utf8_and_negative_lengths() {
    let mut b = v5();
    b[0x72] = 0xFF; // first byte of the properties
    assert_eq!(
        MessageRecord::decode(&b),
        Err(ProtocolError::InvalidUtf8("message properties"))
    );
    let mut b = v5();
    b[0x67] = 0xC3; // inside the topic
    assert_eq!(
        MessageRecord::decode(&b),
        Err(ProtocolError::InvalidUtf8("message topic"))
    );
    let mut b = v5();
    b[0x66] = 0xF7; // V1 topic length is signed
    assert!(matches!(
        MessageRecord::decode(&b),
        Err(ProtocolError::InvalidLength { len: -9, .. })
    ));
    let mut b = v5();
    b[0x54..0x58].copy_from_slice(&(-14i32).to_be_bytes());
    assert!(matches!(
        MessageRecord::decode(&b),
        Err(ProtocolError::InvalidLength { len: -14, .. })
    ));
    let mut b = v5();
    b[0x70..0x72].copy_from_slice(&(-140i16).to_be_bytes());
    assert!(matches!(
        MessageRecord::decode(&b),
        Err(ProtocolError::InvalidLength { len: -140, .. })
    ));
    let mut b = v5();
    b[0x34..0x38].copy_from_slice(&70_000i32.to_be_bytes()); // BORNHOST port
    assert!(matches!(
        MessageRecord::decode(&b),
        Err(ProtocolError::InvalidField { .. })
    ));
    // sysFlag claims an IPv6 born host: everything after shifts by 12 bytes.
    let mut b = v5();
    b[39] = sysflag::BORNHOST_V6 as u8;
    assert!(MessageRecord::decode(&b).is_err());
}

#[test]
fn in_place_patches() {
    let mut b = v5();
    set_queue_offset(&mut b, 42).unwrap();
    set_physical_offset(&mut b, -1).unwrap();
    let (rec, _) = MessageRecord::decode_verified(&b).unwrap();
    assert_eq!((rec.queue_offset, rec.physical_offset), (42, -1));
    assert_eq!(
        &b[QUEUE_OFFSET_POS..QUEUE_OFFSET_POS + 8],
        &42i64.to_be_bytes()
    );
    assert!(matches!(
        set_physical_offset(&mut b[..35], 1),
        Err(ProtocolError::Truncated { .. })
    ));
    assert!(matches!(
        set_queue_offset(&mut b[..3], 1),
        Err(ProtocolError::Truncated { .. })
    ));
}

fn record() -> impl Strategy<Value = MessageRecord> {
    let head = (
        any::<i32>(),
        any::<i32>(),
        any::<i64>(),
        any::<i64>(),
        any::<i32>(),
        any::<i64>(),
    );
    let hosts = (
        socket_addr(),
        any::<i64>(),
        socket_addr(),
        any::<i32>(),
        any::<i64>(),
    );
    let tail = (
        proptest::collection::vec(any::<u8>(), 0..400),
        prop_oneof![
            "[a-zA-Z0-9_%-]{0,127}",
            "[a-zA-Z0-9_%-]{128,300}",
            "\\PC{0,80}"
        ],
        prop_map(),
    );
    (head, hosts, tail).prop_map(|(h, s, t)| MessageRecord {
        queue_id: h.0,
        flag: h.1,
        queue_offset: h.2,
        physical_offset: h.3,
        sys_flag: h.4,
        born_timestamp: h.5,
        born_host: s.0,
        store_timestamp: s.1,
        store_host: s.2,
        reconsume_times: s.3,
        prepared_transaction_offset: s.4,
        body: t.0.into(),
        topic: t.1,
        properties: t.2,
    })
}

proptest! {
    #[test]
    fn round_trip(rec in record()) {
        let bytes = rec.to_bytes().unwrap();
        prop_assert_eq!(bytes.len(), rec.encoded_len());
        prop_assert_eq!(peek_total_size(&bytes), Some(bytes.len()));
        let (back, len) = MessageRecord::decode_verified(&bytes).unwrap();
        prop_assert_eq!(len, bytes.len());
        let expected = MessageRecord { sys_flag: rec.encoded_sys_flag(), ..rec };
        prop_assert_eq!(back, expected);
    }

    #[test]
    fn the_view_matches_the_full_decode(rec in record(), other in "[A-Z_]{1,8}") {
        let bytes = rec.to_bytes().unwrap();
        let (full, len) = MessageRecord::decode(&bytes).unwrap();
        let view = MessageRecord::view(&bytes).unwrap();
        prop_assert_eq!(view.total_size, len);
        prop_assert_eq!(view.queue_id, full.queue_id);
        prop_assert_eq!(view.topic, full.topic.as_str());
        for (k, v) in full.properties.iter() {
            prop_assert_eq!(view.property(k), Some(v));
        }
        prop_assert_eq!(view.property(&other), full.properties.get(&other));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = MessageRecord::view(&bytes);
        let _ = MessageRecord::decode(&bytes);
        let _ = MessageRecord::decode_verified(&bytes);
        let _ = MessageRecord::decode_all(&bytes);
        let _ = peek_total_size(&bytes);
        let mut b = bytes;
        let _ = set_queue_offset(&mut b, 1);
        let _ = set_physical_offset(&mut b, 1);
    }

    #[test]
    fn arbitrary_bytes_behind_a_plausible_header_never_panic(
        total in 0i32..400, v2 in any::<bool>(), sys_flag in any::<i32>(),
        rest in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut b = total.to_be_bytes().to_vec();
        b.extend_from_slice(&(if v2 { MAGIC_V2 } else { MAGIC_V1 }).to_be_bytes());
        b.extend_from_slice(&[0; 28]);
        b.extend_from_slice(&sys_flag.to_be_bytes());
        b.extend_from_slice(&rest);
        let _ = MessageRecord::decode_all(&b);
        let _ = MessageRecord::decode_verified(&b);
    }

    #[test]
    fn damaged_vector_never_panics(
        cut in 0usize..=254,
        flips in proptest::collection::vec((0usize..254, any::<u8>()), 0..4),
    ) {
        let mut b = v5();
        for (at, x) in flips {
            b[at] ^= x;
        }
        b.truncate(cut);
        let _ = MessageRecord::decode_all(&b);
        let _ = MessageRecord::decode_verified(&b);
        // The apply view accepts exactly what the full decode accepts.
        prop_assert_eq!(MessageRecord::view(&b).is_ok(), MessageRecord::decode(&b).is_ok());
    }
}

#[test]
fn socket_addr_type_is_plain() {
    // The wire has no IPv6 flow info or scope id; decoding yields zeros.
    let host: SocketAddr = "[fe80::1]:7".parse().unwrap();
    let mut rec = v5_record();
    rec.born_host = host;
    let (back, _) = MessageRecord::decode(&rec.to_bytes().unwrap()).unwrap();
    assert_eq!(back.born_host, host);
}
