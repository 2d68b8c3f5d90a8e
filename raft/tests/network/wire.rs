//! The wire format: round trips, partial input, limits, and fuzzed garbage.

use bytes::{BufMut, Bytes, BytesMut};
use openraft::error::{Fatal, RaftError};
use openraft::raft::{AppendEntriesResponse, InstallSnapshotResponse, VoteResponse};
use openraft::Vote;
use proptest::prelude::*;
use raftmq_raft::network::wire::{
    decode_frame, encode_frame, Decoded, Frame, Hello, Kind, RpcRequest, RpcResponse, WireError,
    FRAME_BYTES_MAX, PROTOCOL_VERSION,
};

use crate::support::*;

#[test]
fn every_request_and_response_round_trips() {
    let requests = vec![
        RpcRequest::AppendEntries(append(41)),
        RpcRequest::Vote(vote(3)),
        RpcRequest::InstallSnapshot(chunk(1024, b"snapshot bytes", true)),
        RpcRequest::Custom(Bytes::from_static(b"\x00custom")),
    ];
    for (i, req) in requests.into_iter().enumerate() {
        let frame = frame_of(req.encode(100 + i as u64).unwrap());
        assert_eq!(frame.request_id, 100 + i as u64);
        assert_eq!(frame.kind, req.kind().code());
        let back = RpcRequest::decode(&frame).unwrap();
        assert_eq!(format!("{back:?}"), format!("{req:?}"));
    }
    let responses = vec![
        RpcResponse::AppendEntries(Ok(AppendEntriesResponse::Conflict)),
        RpcResponse::AppendEntries(Err(RaftError::Fatal(Fatal::Stopped))),
        RpcResponse::Vote(Ok(VoteResponse::new(
            Vote::new(4, 2),
            Some(log_id(3, 9)),
            false,
        ))),
        RpcResponse::InstallSnapshot(Ok(InstallSnapshotResponse {
            vote: Vote::new_committed(2, 1),
        })),
        RpcResponse::Custom(Ok(Bytes::from_static(b"ok"))),
        RpcResponse::Custom(Err("nope".into())),
        RpcResponse::Error("bad request".into()),
    ];
    for resp in responses {
        let frame = frame_of(resp.encode(7).unwrap());
        assert_eq!(Kind::from_code(frame.kind), Some(resp.kind()));
        let back = RpcResponse::decode(&frame).unwrap();
        assert_eq!(format!("{back:?}"), format!("{resp:?}"));
    }
    let hello = Hello {
        version: PROTOCOL_VERSION,
        from: 3,
        to: 1,
        group: "RaftNode00".to_owned(),
    };
    assert_eq!(
        Hello::decode(&frame_of(hello.encode().unwrap())).unwrap(),
        hello
    );
}

#[test]
fn partial_frames_are_incomplete_until_whole() {
    let bytes = RpcRequest::Vote(vote(2)).encode(5).unwrap();
    let mut buf = BytesMut::new();
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            let expect = if i < 4 { None } else { Some(bytes.len()) };
            assert_eq!(
                decode_frame(&mut buf).unwrap(),
                Decoded::Incomplete {
                    frame_bytes: expect
                }
            );
        }
        buf.put_u8(*b);
    }
    assert!(matches!(decode_frame(&mut buf).unwrap(), Decoded::Frame(f) if f.request_id == 5));
}

#[test]
fn oversized_and_short_length_prefixes_are_rejected_before_allocating() {
    let mut buf = BytesMut::with_capacity(16);
    buf.put_u32(FRAME_BYTES_MAX as u32 + 1);
    buf.put_u64(1);
    let cap = buf.capacity();
    assert!(matches!(
        decode_frame(&mut buf),
        Err(WireError::FrameTooLarge { .. })
    ));
    assert_eq!(
        buf.capacity(),
        cap,
        "no buffer growth for a rejected prefix"
    );

    let mut buf = BytesMut::from(&u32::MAX.to_be_bytes()[..]);
    assert!(matches!(
        decode_frame(&mut buf),
        Err(WireError::FrameTooLarge { .. })
    ));

    let mut buf = BytesMut::from(&[0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8][..]);
    assert_eq!(
        decode_frame(&mut buf),
        Err(WireError::FrameTooShort { len: 8 })
    );
}

#[test]
fn a_huge_length_claim_inside_a_body_is_an_error_not_an_allocation() {
    // Custom body = bincode Bytes: varint length (0xFD = u64 follows) claiming ~2^63 bytes.
    let mut body = vec![0xFD];
    body.extend_from_slice(&(u64::MAX / 2).to_le_bytes());
    let frame = Frame {
        request_id: 1,
        kind: Kind::Custom.code(),
        body: Bytes::from(body),
    };
    assert!(matches!(
        RpcRequest::decode(&frame),
        Err(WireError::Body { .. })
    ));
    // The same for a Vec of entries in an AppendEntries body.
    let mut body = bincode_prefix_of_append();
    body.push(0xFD);
    body.extend_from_slice(&(u64::MAX / 2).to_le_bytes());
    let frame = Frame {
        request_id: 1,
        kind: Kind::AppendEntries.code(),
        body: Bytes::from(body),
    };
    assert!(RpcRequest::decode(&frame).is_err());
}

/// The bytes of an AppendEntries body up to (not including) its entries' length.
fn bincode_prefix_of_append() -> Vec<u8> {
    let mut req = append(1);
    req.entries.clear();
    let frame = frame_of(RpcRequest::AppendEntries(req).encode(1).unwrap());
    // The body is vote, prev_log_id, entries(len 0 = one byte), leader_commit: keep vote+prev.
    let leader_commit_len = frame_of(encode_frame(0, Kind::Custom, &Some(log_id(1, 1))).unwrap())
        .body
        .len();
    frame.body[..frame.body.len() - leader_commit_len - 1].to_vec()
}

#[test]
fn bodies_larger_than_a_frame_are_refused_when_encoding() {
    let big = Bytes::from(vec![0u8; FRAME_BYTES_MAX]);
    assert!(matches!(
        RpcRequest::Custom(big).encode(1),
        Err(WireError::BodyTooLarge { .. })
    ));
}

/// Decodes everything `bytes` holds as frames of every interpretation; must never panic.
fn decode_everything(bytes: &[u8]) {
    let mut buf = BytesMut::from(bytes);
    loop {
        match decode_frame(&mut buf) {
            Ok(Decoded::Frame(f)) => {
                let _ = RpcRequest::decode(&f);
                let _ = RpcResponse::decode(&f);
                let _ = Hello::decode(&f);
                for kind in [0x01u8, 0x02, 0x03, 0x04, 0x05, 0x82, 0x83, 0x84, 0x85, 0xFF] {
                    let f = Frame { kind, ..f.clone() };
                    let _ = RpcRequest::decode(&f);
                    let _ = RpcResponse::decode(&f);
                }
            }
            Ok(Decoded::Incomplete { frame_bytes }) => {
                assert!(frame_bytes.is_none_or(|n| n <= FRAME_BYTES_MAX + 4));
                return;
            }
            Err(_) => return,
        }
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        decode_everything(&bytes);
    }

    #[test]
    fn arbitrary_bodies_behind_valid_headers_never_panic(
        kind in any::<u8>(),
        id in any::<u64>(),
        body in proptest::collection::vec(any::<u8>(), 0..1024),
    ) {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&((9 + body.len()) as u32).to_be_bytes());
        bytes.extend_from_slice(&id.to_be_bytes());
        bytes.push(kind);
        bytes.extend_from_slice(&body);
        decode_everything(&bytes);
    }

    #[test]
    fn mutated_valid_frames_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut bytes = RpcRequest::AppendEntries(append(3)).encode(9).unwrap();
        for (at, v) in flips {
            let n = bytes.len();
            bytes[at % n] = v;
        }
        decode_everything(&bytes);
    }
}
