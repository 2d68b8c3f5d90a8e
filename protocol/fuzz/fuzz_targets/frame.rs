//! `decode_frame` (length-prefixed buffer) and `parse_frame_payload` (no prefix).
//!
//! Round trip: a command that decodes re-encodes in its own serialization and decodes
//! to the same command, and re-encoding that is byte-stable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use raftmq_protocol::frame::{check_frame, parse_frame_payload};
use raftmq_protocol::{decode_frame, encode_frame, Decoded, ProtocolError, RemotingCommand};

fn round_trip(command: &RemotingCommand) {
    let bytes = match encode_frame(command) {
        Ok(bytes) => bytes,
        // A JSON header can re-encode longer than it was read (numbers in extFields
        // become strings); only a frame near the 16 MiB limit can be refused for that.
        Err(ProtocolError::FrameTooLarge { .. }) => return,
        Err(e) => panic!("decoded command does not re-encode: {e:?}\n{command:?}"),
    };
    match decode_frame(&bytes) {
        Ok(Decoded::Frame {
            command: back,
            consumed,
        }) => {
            assert_eq!(consumed, bytes.len());
            assert_eq!(&back, command, "frame round trip changed the command");
            let again = encode_frame(&back).expect("re-encoding a round-tripped command");
            assert_eq!(again, bytes, "re-encoding is not byte-stable");
        }
        other => panic!("encoded frame does not decode: {other:?}\n{command:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    // The input as a receive buffer: length prefix, mark, header, body.
    match decode_frame(data) {
        Ok(Decoded::Frame { command, consumed }) => {
            assert!(consumed >= 8 && consumed <= data.len());
            assert_eq!(
                parse_frame_payload(&data[4..consumed]).as_ref(),
                Ok(&command)
            );
            round_trip(&command);
        }
        Ok(Decoded::Incomplete) => {
            let need = check_frame(data, raftmq_protocol::FRAME_BYTES_MAX);
            assert!(
                matches!(need, Ok(None)),
                "Incomplete but check_frame says {need:?}"
            );
        }
        Err(_) => {}
    }
    // The input as a payload without the prefix: reaches header parsing directly.
    if let Ok(command) = parse_frame_payload(data) {
        round_trip(&command);
    }
});
