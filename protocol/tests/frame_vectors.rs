//! Spec §6 frame vectors (V1–V4, V6–V8) reproduced byte for byte, both directions.
#![allow(clippy::unwrap_used)]

use raftmq_protocol::codes::{version, LanguageCode, RequestCode, ResponseCode};
use raftmq_protocol::command::{RemotingCommand, SerializeType, FLAG_RESPONSE};
use raftmq_protocol::headers::*;
use raftmq_protocol::{decode_frame, encode_frame, Decoded, StrMap};

fn hex(s: &str) -> Vec<u8> {
    let s = s.trim();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn vector(name: &str) -> Vec<u8> {
    let text = match name {
        "V1" => include_str!("vectors/V1.hex"),
        "V2" => include_str!("vectors/V2.hex"),
        "V3" => include_str!("vectors/V3.hex"),
        "V4" => include_str!("vectors/V4.hex"),
        "V5" => include_str!("vectors/V5.hex"),
        "V6" => include_str!("vectors/V6.hex"),
        "V7" => include_str!("vectors/V7.hex"),
        "V8" => include_str!("vectors/V8.hex"),
        _ => unreachable!(),
    };
    hex(text)
}

fn decode_whole(bytes: &[u8]) -> RemotingCommand {
    match decode_frame(bytes).unwrap() {
        Decoded::Frame { command, consumed } => {
            assert_eq!(consumed, bytes.len());
            command
        }
        Decoded::Incomplete => panic!("incomplete"),
    }
}

fn java_request(code: RequestCode, opaque: i32, ext: StrMap) -> RemotingCommand {
    let mut c = RemotingCommand::request(code.code(), ext).with_opaque(opaque);
    c.language = LanguageCode::Java;
    c.version = version::CURRENT;
    c
}

fn java_response(code: ResponseCode, opaque: i32, ser: SerializeType) -> RemotingCommand {
    let mut req = RemotingCommand::request(0, StrMap::new()).with_opaque(opaque);
    req.serialize_type = ser;
    RemotingCommand::response_to(&req, code)
}

const UNIQ: &str = "C0A8010A30391B6D358605265C000001";

#[test]
fn v1_route_request_json() {
    let header = GetRouteInfoRequestHeader {
        topic: "TopicTest".into(),
        ..Default::default()
    };
    let cmd = java_request(RequestCode::GetRouteinfoByTopic, 1, header.to_ext());
    assert_eq!(encode_frame(&cmd).unwrap(), vector("V1"));
    let back = decode_whole(&vector("V1"));
    assert_eq!(back, cmd);
    assert_eq!(back.header::<GetRouteInfoRequestHeader>().unwrap(), header);
}

#[test]
fn v2_route_response_json_with_body() {
    let bytes = vector("V2");
    let body = bytes[8 + 95..].to_vec();
    let cmd = java_response(ResponseCode::Success, 1, SerializeType::Json).with_body(body);
    assert_eq!(encode_frame(&cmd).unwrap(), bytes);
    let back = decode_whole(&bytes);
    assert_eq!(back, cmd);
    assert!(back.is_response());
    assert_eq!(back.flag, FLAG_RESPONSE);
}

fn v3_header() -> SendMessageRequestHeaderV2 {
    SendMessageRequestHeaderV2 {
        a: "ProducerGroupA".into(),
        b: "TopicTest".into(),
        c: "TBW102".into(),
        d: 4,
        e: 0,
        f: 0,
        g: 1_700_000_000_000,
        h: 0,
        i: Some(format!(
            "KEYS\u{1}OrderID001\u{2}TAGS\u{1}TagA\u{2}WAIT\u{1}true\u{2}UNIQ_KEY\u{1}{UNIQ}\u{2}"
        )),
        j: Some(0),
        k: Some(false),
        l: None,
        m: Some(false),
        n: Some("broker-a".into()),
    }
}

#[test]
fn v3_send_v2_request_json() {
    let cmd = java_request(RequestCode::SendMessageV2, 2, v3_header().to_ext())
        .with_body(&b"Hello RocketMQ"[..]);
    assert_eq!(encode_frame(&cmd).unwrap(), vector("V3"));
    let back = decode_whole(&vector("V3"));
    assert_eq!(back, cmd);
    let v1: SendMessageRequestHeader = back.header::<SendMessageRequestHeaderV2>().unwrap().into();
    assert_eq!(v1.topic, "TopicTest");
    assert_eq!(v1.born_timestamp, 1_700_000_000_000);
    assert_eq!(SendMessageRequestHeaderV2::from(v1), v3_header());
}

#[test]
fn v4_send_response_json() {
    let header = SendMessageResponseHeader {
        msg_id: "C0A8011400002A9F000000000001E240".into(),
        queue_id: 0,
        queue_offset: 7,
        transaction_id: Some(UNIQ.into()),
        batch_uniq_id: None,
        msg_region: "DefaultRegion".into(),
        trace_on: "true".into(),
    };
    let cmd = java_response(ResponseCode::Success, 2, SerializeType::Json).with_header(&header);
    assert_eq!(encode_frame(&cmd).unwrap(), vector("V4"));
    let back = decode_whole(&vector("V4"));
    assert_eq!(back.header::<SendMessageResponseHeader>().unwrap(), header);
}

fn v6_header() -> PullMessageRequestHeader {
    PullMessageRequestHeader {
        consumer_group: "ConsumerGroupA".into(),
        topic: "TopicTest".into(),
        queue_id: 0,
        queue_offset: 7,
        max_msg_nums: 32,
        sys_flag: 3,
        commit_offset: 7,
        suspend_timeout_millis: 15000,
        sub_version: 1_700_000_000_000,
        expression_type: Some("TAG".into()),
        max_msg_bytes: Some(262_144),
        bname: Some("broker-a".into()),
        ..Default::default()
    }
}

#[test]
fn v6_pull_request_rocketmq_binary() {
    let mut cmd = java_request(RequestCode::PullMessage, 3, v6_header().to_ext());
    cmd.serialize_type = SerializeType::RocketMq;
    assert_eq!(encode_frame(&cmd).unwrap(), vector("V6"));
    let back = decode_whole(&vector("V6"));
    assert_eq!(back, cmd);
    assert_eq!(
        back.header::<PullMessageRequestHeader>().unwrap(),
        v6_header()
    );
}

#[test]
fn v7_pull_response_json_with_record() {
    let header = PullMessageResponseHeader {
        suggest_which_broker_id: 0,
        next_begin_offset: 8,
        min_offset: 0,
        max_offset: 8,
        topic_sys_flag: Some(0),
        group_sys_flag: Some(0),
        ..Default::default()
    };
    let cmd = java_response(ResponseCode::Success, 3, SerializeType::Json)
        .with_header(&header)
        .with_remark("FOUND")
        .with_body(vector("V5"));
    assert_eq!(encode_frame(&cmd).unwrap(), vector("V7"));
    let back = decode_whole(&vector("V7"));
    assert_eq!(back, cmd);
    assert_eq!(back.header::<PullMessageResponseHeader>().unwrap(), header);
}

#[test]
fn v8_route_request_rocketmq_binary() {
    let header = GetRouteInfoRequestHeader {
        topic: "TopicTest".into(),
        ..Default::default()
    };
    let mut cmd = java_request(RequestCode::GetRouteinfoByTopic, 1, header.to_ext());
    cmd.serialize_type = SerializeType::RocketMq;
    assert_eq!(encode_frame(&cmd).unwrap(), vector("V8"));
    assert_eq!(decode_whole(&vector("V8")), cmd);
}

#[test]
fn binary_header_sizes_match_reference() {
    // Reference unit tests: 21 bytes bare, 34 with a 13-byte remark, 35 with one field.
    let mut cmd = RemotingCommand::request(10, StrMap::new());
    cmd.serialize_type = SerializeType::RocketMq;
    assert_eq!(encode_frame(&cmd).unwrap().len(), 8 + 21);
    let with_remark = cmd.clone().with_remark("1234567890abc");
    assert_eq!(encode_frame(&with_remark).unwrap().len(), 8 + 34);
    let mut one = cmd.clone();
    one.ext_fields.insert("key", "value");
    assert_eq!(encode_frame(&one).unwrap().len(), 8 + 35);
}

#[test]
fn every_prefix_of_a_vector_is_incomplete() {
    for name in ["V1", "V3", "V6", "V7"] {
        let bytes = vector(name);
        for cut in 0..bytes.len() {
            assert_eq!(
                decode_frame(&bytes[..cut]).unwrap(),
                Decoded::Incomplete,
                "{name} cut {cut}"
            );
        }
    }
}

#[test]
fn two_frames_back_to_back() {
    let mut buf = vector("V1");
    buf.extend(vector("V8"));
    let Decoded::Frame { consumed, .. } = decode_frame(&buf).unwrap() else {
        panic!()
    };
    assert_eq!(consumed, vector("V1").len());
    let Decoded::Frame { command, .. } = decode_frame(&buf[consumed..]).unwrap() else {
        panic!()
    };
    assert_eq!(command.serialize_type, SerializeType::RocketMq);
}

#[test]
fn buffer_decoding_matches_slice_decoding_and_shares_the_body() {
    use bytes::BytesMut;
    use raftmq_protocol::frame::decode_frame_buf;
    use raftmq_protocol::FRAME_BYTES_MAX;
    for name in ["V1", "V2", "V3", "V4", "V6", "V7", "V8"] {
        let bytes = vector(name);
        let expected = decode_whole(&bytes);
        // Two frames back to back, and a cut-off third.
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&bytes);
        buf.extend_from_slice(&bytes);
        buf.extend_from_slice(&bytes[..bytes.len() - 1]);
        for _ in 0..2 {
            let start = buf.as_ptr() as usize;
            let got = decode_frame_buf(&mut buf, FRAME_BYTES_MAX)
                .unwrap()
                .unwrap();
            assert_eq!(got, expected, "{name}");
            if !got.body.is_empty() {
                let body_at = got.body.as_ptr() as usize;
                assert!(
                    body_at > start && body_at < start + bytes.len(),
                    "{name}: body copied"
                );
            }
        }
        assert_eq!(decode_frame_buf(&mut buf, FRAME_BYTES_MAX).unwrap(), None);
        assert_eq!(
            buf.len(),
            bytes.len() - 1,
            "{name}: an incomplete frame is left alone"
        );
    }
}

#[test]
fn json_ext_fields_of_other_types_read_as_their_json_text() {
    let header = br#"{"code":10,"extFields":{"s":"x\"y","n":-12,"b":true,"f":1.5,"nul":null,"o":{"k":[1,"2"]},"dup":"1","dup":null,"e":""},"flag":0,"language":"JAVA","opaque":3,"version":1}"#;
    let mut frame = Vec::new();
    frame.extend_from_slice(&((4 + header.len()) as u32).to_be_bytes());
    frame.extend_from_slice(&(header.len() as u32).to_be_bytes());
    frame.extend_from_slice(header);
    let c = decode_whole(&frame);
    let ext = &c.ext_fields;
    assert_eq!(ext.get("s"), Some("x\"y"));
    assert_eq!(ext.get("n"), Some("-12"));
    assert_eq!(ext.get("b"), Some("true"));
    assert_eq!(ext.get("f"), Some("1.5"));
    assert_eq!(ext.get("o"), Some(r#"{"k":[1,"2"]}"#));
    assert_eq!(ext.get("e"), Some(""));
    assert!(!ext.contains_key("nul"));
    assert!(
        !ext.contains_key("dup"),
        "a later null wins over an earlier value"
    );
    assert_eq!(ext.len(), 6);
    assert_eq!((c.code, c.opaque, c.language), (10, 3, LanguageCode::Java));
}
