//! Typed headers: `CommandHeader::from_ext` over an `extFields` map built from the input.
//!
//! First byte even: the rest is a frame payload (mark, JSON or ROCKETMQ header, body) and
//! its `extFields` are used, as a server does. Odd: the rest is text, one `key=value` per
//! line, which lets the fuzzer reach the field parsers without framing.
//! Round trip: a header that parses writes `to_ext` fields that parse to the same header,
//! also through a JSON frame.
#![no_main]

use std::fmt::Debug;

use libfuzzer_sys::fuzz_target;
use raftmq_protocol::frame::parse_frame_payload;
use raftmq_protocol::headers::*;
use raftmq_protocol::{decode_frame, encode_frame, Decoded, RemotingCommand, StrMap};

fn ext_from(data: &[u8]) -> Option<StrMap> {
    let (mode, rest) = data.split_first()?;
    if mode % 2 == 0 {
        return parse_frame_payload(rest).ok().map(|c| c.ext_fields);
    }
    let text = std::str::from_utf8(rest).ok()?;
    Some(
        text.lines()
            .filter_map(|line| line.split_once('='))
            .collect(),
    )
}

fn check<H: CommandHeader + PartialEq + Debug>(ext: &StrMap) -> Option<H> {
    let header = H::from_ext(ext).ok()?;
    let fields = header.to_ext();
    let back = H::from_ext(&fields).expect("to_ext output parses");
    assert_eq!(back, header, "header round trip through extFields");
    // Through a JSON frame, as a client would send it.
    let frame = encode_frame(&RemotingCommand::request_with(10, &header)).expect("encode");
    match decode_frame(&frame) {
        Ok(Decoded::Frame { command, .. }) => {
            assert_eq!(command.ext_fields, fields);
            assert_eq!(command.header::<H>().expect("header from frame"), header);
        }
        other => panic!("request frame does not decode: {other:?}"),
    }
    Some(header)
}

macro_rules! check_all {
    ($ext:expr; $($h:ty),* $(,)?) => {
        $(let _ = check::<$h>($ext);)*
    };
}

fuzz_target!(|data: &[u8]| {
    let Some(ext) = ext_from(data) else {
        return;
    };
    check_all!(&ext;
        RegisterBrokerRequestHeader, RegisterBrokerResponseHeader, UnregisterBrokerRequestHeader,
        GetRouteInfoRequestHeader, DeleteTopicFromNamesrvRequestHeader, GetKvConfigRequestHeader,
        GetKvConfigResponseHeader, PutKvConfigRequestHeader, QueryConsumerOffsetRequestHeader,
        OffsetResponseHeader, UpdateConsumerOffsetRequestHeader, GetMaxOffsetRequestHeader,
        QueueRequestHeader, SearchOffsetRequestHeader, EarliestMsgStoretimeResponseHeader,
        UnregisterClientRequestHeader, ConsumerGroupRequestHeader,
        ConsumerSendMsgBackRequestHeader, EndTransactionRequestHeader,
        CheckTransactionStateRequestHeader, QueryMessageRequestHeader, QueryMessageResponseHeader,
        ViewMessageRequestHeader, CreateTopicRequestHeader, DeleteTopicRequestHeader,
        GetAllTopicConfigRequestHeader, GetAllTopicConfigResponseHeader, HeartbeatResponseHeader,
        PullMessageRequestHeader, PullMessageResponseHeader, SendMessageRequestHeader,
        SendMessageResponseHeader,
    );
    // SEND_MESSAGE_V2's one-letter header converts to the long one and back losslessly.
    if let Some(v2) = check::<SendMessageRequestHeaderV2>(&ext) {
        let long = SendMessageRequestHeader::from(v2.clone());
        assert_eq!(SendMessageRequestHeaderV2::from(long), v2);
    }
});
