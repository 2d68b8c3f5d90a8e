//! Malformed frames return typed errors and never panic; valid frames round-trip.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use raftmq_protocol::codes::LanguageCode;
use raftmq_protocol::command::{RemotingCommand, SerializeType};
use raftmq_protocol::frame::{decode_frame_with_limit, parse_frame_payload};
use raftmq_protocol::{
    decode_frame, encode_frame, Decoded, ProtocolError, StrMap, FRAME_BYTES_MAX,
};

fn frame(mark_type: u8, header: &[u8], body: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&((4 + header.len() + body.len()) as i32).to_be_bytes());
    v.extend_from_slice(&(((mark_type as u32) << 24) | header.len() as u32).to_be_bytes());
    v.extend_from_slice(header);
    v.extend_from_slice(body);
    v
}

#[test]
fn negative_and_tiny_lengths_are_errors() {
    for len in [-1i32, i32::MIN, 0, 3] {
        let mut buf = len.to_be_bytes().to_vec();
        buf.extend_from_slice(&[0; 8]);
        assert!(
            matches!(
                decode_frame(&buf),
                Err(ProtocolError::InvalidFrameLength(_))
            ),
            "{len}"
        );
    }
}

#[test]
fn two_gib_length_is_refused_before_buffering() {
    let buf = i32::MAX.to_be_bytes();
    assert!(matches!(
        decode_frame(&buf),
        Err(ProtocolError::FrameTooLarge { .. })
    ));
    // Exactly at the limit is fine (incomplete), one byte over is not.
    let at = ((FRAME_BYTES_MAX - 4) as i32).to_be_bytes();
    assert_eq!(decode_frame(&at).unwrap(), Decoded::Incomplete);
    let over = ((FRAME_BYTES_MAX - 3) as i32).to_be_bytes();
    assert!(decode_frame(&over).is_err());
    assert!(decode_frame_with_limit(&100i32.to_be_bytes(), 64).is_err());
}

#[test]
fn header_longer_than_frame_is_an_error() {
    let mut buf = frame(0, b"{}", b"");
    // Claim a 100-byte header in a 6-byte payload.
    buf[4..8].copy_from_slice(&100u32.to_be_bytes());
    assert!(matches!(
        decode_frame(&buf),
        Err(ProtocolError::HeaderTooLong { .. })
    ));
}

#[test]
fn unknown_serialize_type_is_an_error() {
    let buf = frame(7, b"{\"code\":1}", b"");
    assert_eq!(
        decode_frame(&buf),
        Err(ProtocolError::UnknownSerializeType(7))
    );
}

#[test]
fn invalid_json_and_bad_utf8_are_errors() {
    assert!(matches!(
        decode_frame(&frame(0, b"{\"code\":", b"")),
        Err(ProtocolError::InvalidJson { .. })
    ));
    assert!(matches!(
        decode_frame(&frame(0, b"{\"opaque\":1}", b"")),
        Err(ProtocolError::InvalidJson { .. })
    ));
    assert_eq!(
        decode_frame(&frame(0, b"{\"code\":1,\"remark\":\"\xff\"}", b"")),
        Err(ProtocolError::InvalidUtf8("JSON header"))
    );
    // Binary header whose remark is not UTF-8.
    let mut h = vec![0, 10, 0, 1, 0xdf, 0, 0, 0, 1, 0, 0, 0, 0];
    h.extend_from_slice(&2i32.to_be_bytes());
    h.extend_from_slice(&[0xc3, 0x28]);
    h.extend_from_slice(&0i32.to_be_bytes());
    assert_eq!(
        decode_frame(&frame(1, &h, b"")),
        Err(ProtocolError::InvalidUtf8("remark"))
    );
}

#[test]
fn binary_lengths_beyond_header_are_errors() {
    let mut h = vec![0, 10, 0, 1, 0xdf, 0, 0, 0, 1, 0, 0, 0, 0];
    h.extend_from_slice(&1000i32.to_be_bytes());
    assert!(matches!(
        decode_frame(&frame(1, &h, b"")),
        Err(ProtocolError::Truncated { .. })
    ));
    let mut h = vec![0, 10, 0, 1, 0xdf, 0, 0, 0, 1, 0, 0, 0, 0];
    h.extend_from_slice(&(-5i32).to_be_bytes());
    assert!(matches!(
        decode_frame(&frame(1, &h, b"")),
        Err(ProtocolError::InvalidLength { .. })
    ));
    assert!(matches!(
        parse_frame_payload(&[0, 0]),
        Err(ProtocolError::Truncated { .. })
    ));
}

#[test]
fn lenient_json_header_forms_are_accepted() {
    // The Rust client's member order, explicit nulls, unknown members, whitespace,
    // unknown language, non-string ext values.
    let h = br#"{ "code" : 105, "language":"COBOL","version":474,"opaque":9,"flag":0,"remark":null,
        "extFields":{"topic":"T","n":5,"b":true,"z":null},"serializeTypeCurrentRPC":"JSON","extra":[1]}"#;
    let Decoded::Frame { command, .. } = decode_frame(&frame(0, h, b"xy")).unwrap() else {
        panic!()
    };
    assert_eq!(command.code, 105);
    assert_eq!(command.language, LanguageCode::Other);
    assert_eq!(command.remark, None);
    assert_eq!(command.ext_fields.get("topic"), Some("T"));
    assert_eq!(command.ext_fields.get("n"), Some("5"));
    assert_eq!(command.ext_fields.get("b"), Some("true"));
    assert_eq!(command.ext_fields.get("z"), None);
    assert_eq!(&command.body[..], b"xy");
    let Decoded::Frame { command, .. } = decode_frame(&frame(
        0,
        br#"{"code":34,"extFields":null,"opaque":-7}"#,
        b"",
    ))
    .unwrap() else {
        panic!()
    };
    assert_eq!(command.opaque, -7);
    assert!(command.ext_fields.is_empty());
}

#[test]
fn control_characters_are_escaped_in_json() {
    let mut ext = StrMap::new();
    ext.insert("i", "A\u{1}B\u{2}\u{e9}");
    let bytes = encode_frame(&RemotingCommand::request(10, ext)).unwrap();
    let text = String::from_utf8(bytes[8..].to_vec()).unwrap();
    assert!(text.contains(r#""i":"A\u0001B\u0002é""#), "{text}");
}

#[test]
fn oversized_encode_is_refused() {
    let cmd = RemotingCommand::request(10, StrMap::new()).with_body(vec![0u8; FRAME_BYTES_MAX]);
    assert!(matches!(
        encode_frame(&cmd),
        Err(ProtocolError::FrameTooLarge { .. })
    ));
    let mut big = RemotingCommand::request(200050, StrMap::new());
    big.serialize_type = SerializeType::RocketMq;
    assert!(
        encode_frame(&big).is_err(),
        "POP codes do not fit a binary header"
    );
}

fn arb_command() -> impl Strategy<Value = RemotingCommand> {
    (
        any::<i16>(),
        any::<i32>(),
        0i32..4,
        proptest::option::of("[^\u{0}]{1,30}"),
        proptest::collection::vec(("[a-zA-Z_]{1,10}", ".{1,20}"), 0..8),
        proptest::collection::vec(any::<u8>(), 0..64),
        any::<bool>(),
    )
        .prop_map(|(code, opaque, flag, remark, ext, body, binary)| {
            let mut c = RemotingCommand::request(code.into(), ext.into_iter().collect())
                .with_opaque(opaque)
                .with_body(body);
            c.flag = flag;
            c.remark = remark;
            c.serialize_type = if binary {
                SerializeType::RocketMq
            } else {
                SerializeType::Json
            };
            c
        })
}

proptest! {
    #[test]
    fn frames_round_trip(cmd in arb_command()) {
        let bytes = encode_frame(&cmd).unwrap();
        match decode_frame(&bytes).unwrap() {
            Decoded::Frame { command, consumed } => {
                prop_assert_eq!(consumed, bytes.len());
                prop_assert_eq!(command, cmd);
            }
            Decoded::Incomplete => prop_assert!(false, "incomplete"),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_frame(&bytes);
        let _ = parse_frame_payload(&bytes);
    }

    #[test]
    fn corrupted_frames_never_panic(cmd in arb_command(), pos in any::<usize>(), byte in any::<u8>()) {
        let mut bytes = encode_frame(&cmd).unwrap();
        let i = pos % bytes.len();
        bytes[i] = byte;
        let _ = decode_frame(&bytes);
        bytes.truncate(i);
        let _ = decode_frame(&bytes);
    }
}
