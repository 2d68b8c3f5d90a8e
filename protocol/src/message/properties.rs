//! The message properties string (spec §3.3): `name U+0001 value U+0002` entries.
//!
//! Writing is strict and reproducible (insertion order, every entry terminated);
//! reading is lenient exactly like the Java reference, because clients of every
//! version produce these strings and the broker must store what they send.

use crate::error::{ProtocolError, Result};
use crate::strmap::StrMap;

/// Separates a property name from its value (U+0001).
pub const NAME_VALUE_SEPARATOR: char = '\u{1}';
/// Terminates every property entry, the last one included (U+0002).
pub const PROPERTY_SEPARATOR: char = '\u{2}';
/// Largest encoded properties string: its length is an `i16` in records and batch items.
pub const PROPERTIES_BYTES_MAX: usize = 32767;

/// Property names of spec §3.3, as the Java `MessageConst` spells them.
pub mod keys {
    /// The message tag (one tag; `||` not allowed).
    pub const TAGS: &str = "TAGS";
    /// User keys separated by single spaces; indexed for QUERY_MESSAGE.
    pub const KEYS: &str = "KEYS";
    /// `true`/`false`: wait for the store before replying.
    pub const WAIT: &str = "WAIT";
    /// Delay level 1…18 (decimal); `-1` on DLQ transfers.
    pub const DELAY: &str = "DELAY";
    /// Client-generated unique id (spec §4.1); also the transaction id.
    pub const UNIQ_KEY: &str = "UNIQ_KEY";
    /// `true` marks a transactional half message.
    pub const TRAN_MSG: &str = "TRAN_MSG";
    /// Producer group of a transactional message.
    pub const PGROUP: &str = "PGROUP";
    /// Transaction id (= UNIQ_KEY) the broker puts on half messages.
    pub const TRANSACTION_ID: &str = "__transactionId__";
    /// Number of checks performed on a half message.
    pub const TRANSACTION_CHECK_TIMES: &str = "TRANSACTION_CHECK_TIMES";
    /// First transaction check not before this many seconds.
    pub const CHECK_IMMUNITY_TIME_IN_SECONDS: &str = "CHECK_IMMUNITY_TIME_IN_SECONDS";
    /// Queue offset of the half message, used while checking.
    pub const TRAN_PREPARED_QUEUE_OFFSET: &str = "TRAN_PREPARED_QUEUE_OFFSET";
    /// Original topic while parked in the schedule or half topic.
    pub const REAL_TOPIC: &str = "REAL_TOPIC";
    /// Original queue id while parked in the schedule or half topic.
    pub const REAL_QID: &str = "REAL_QID";
    /// Original topic of a message in `%RETRY%<group>`.
    pub const RETRY_TOPIC: &str = "RETRY_TOPIC";
    /// Message id of the first delivery of a retried message.
    pub const ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";
    /// Retry count on the send path; moved into header `j` and stripped.
    pub const RECONSUME_TIME: &str = "RECONSUME_TIME";
    /// Retry budget on the send path; moved into header `l` and stripped.
    pub const MAX_RECONSUME_TIMES: &str = "MAX_RECONSUME_TIMES";
    /// Cluster name of the storing broker.
    pub const CLUSTER: &str = "CLUSTER";
    /// Region id of the storing broker (`DefaultRegion`).
    pub const MSG_REGION: &str = "MSG_REGION";
    /// `true`/`false`: message tracing enabled.
    pub const TRACE_ON: &str = "TRACE_ON";
    /// Queue min offset, added by consumers after a pull; never stored.
    pub const MIN_OFFSET: &str = "MIN_OFFSET";
    /// Queue max offset, added by consumers after a pull; never stored.
    pub const MAX_OFFSET: &str = "MAX_OFFSET";
    /// Rarely used; stored verbatim.
    pub const BUYER_ID: &str = "BUYER_ID";
    /// Rarely used; stored verbatim.
    pub const TRANSFER_FLAG: &str = "TRANSFER_FLAG";
    /// Rarely used; stored verbatim.
    pub const CORRECTION_FLAG: &str = "CORRECTION_FLAG";
    /// Rarely used; stored verbatim.
    pub const MQ2_FLAG: &str = "MQ2_FLAG";
    /// Rarely used; stored verbatim.
    pub const EXTEND_UNIQ_INFO: &str = "EXTEND_UNIQ_INFO";
    /// Rarely used; stored verbatim.
    pub const CONSUME_START_TIME: &str = "CONSUME_START_TIME";
    /// Inner-batch message count (5.x); stored verbatim.
    pub const INNER_NUM: &str = "INNER_NUM";
    /// Inner-batch base offset (5.x); stored verbatim.
    pub const INNER_BASE: &str = "INNER_BASE";
    /// Rarely used; stored verbatim.
    pub const DUP_INFO: &str = "DUP_INFO";
    /// Rarely used; stored verbatim.
    pub const INSTANCE_ID: &str = "INSTANCE_ID";
    /// Request-reply: correlation id linking a reply to its request.
    pub const CORRELATION_ID: &str = "CORRELATION_ID";
    /// Request-reply: client id the reply goes to.
    pub const REPLY_TO_CLIENT: &str = "REPLY_TO_CLIENT";
    /// Request-reply: request time-to-live, ms.
    pub const TTL: &str = "TTL";
    /// Request-reply: arrival time of the request.
    pub const ARRIVE_TIME: &str = "ARRIVE_TIME";
    /// Request-reply: time the reply was pushed.
    pub const PUSH_REPLY_TIME: &str = "PUSH_REPLY_TIME";
    /// Request-reply: message type (`reply`).
    pub const MSG_TYPE: &str = "MSG_TYPE";
    /// Sharding key for ordered messages (5.x).
    pub const SHARDING_KEY: &str = "__SHARDINGKEY";
    /// Timer wheel: absolute delivery time, ms.
    pub const TIMER_DELIVER_MS: &str = "TIMER_DELIVER_MS";
    /// Timer wheel: relative delay, seconds.
    pub const TIMER_DELAY_SEC: &str = "TIMER_DELAY_SEC";
    /// Timer wheel: relative delay, ms.
    pub const TIMER_DELAY_MS: &str = "TIMER_DELAY_MS";
    /// Timer wheel: time-out timestamp, ms.
    pub const TIMER_OUT_MS: &str = "TIMER_OUT_MS";
    /// Timer wheel: UNIQ_KEY of a timer message to delete.
    pub const TIMER_DEL_UNIQKEY: &str = "TIMER_DEL_UNIQKEY";
    /// Timer wheel: enqueue time, ms.
    pub const TIMER_ENQUEUE_MS: &str = "TIMER_ENQUEUE_MS";
    /// Timer wheel: dequeue time, ms.
    pub const TIMER_DEQUEUE_MS: &str = "TIMER_DEQUEUE_MS";
    /// Timer wheel: number of rolls through the wheel.
    pub const TIMER_ROLL_TIMES: &str = "TIMER_ROLL_TIMES";
    /// Timer wheel: delay level.
    pub const TIMER_DELAY_LEVEL: &str = "TIMER_DELAY_LEVEL";
    /// Legacy Aliyun-style start delivery time; opaque.
    pub const START_DELIVER_TIME: &str = "__STARTDELIVERTIME";
    /// POP consumption checkpoint; the broker deletes it from incoming sends.
    pub const POP_CK: &str = "POP_CK";
    /// POP consumption checkpoint offset.
    pub const POP_CK_OFFSET: &str = "POP_CK_OFFSET";
    /// POP consumption: time of the first pop.
    pub const FIRST_POP_TIME: &str = "1ST_POP_TIME";
    /// Origin topic of a DLQ message (5.x).
    pub const DLQ_ORIGIN_TOPIC: &str = "DLQ_ORIGIN_TOPIC";
    /// Origin message id of a DLQ message (5.x).
    pub const DLQ_ORIGIN_MESSAGE_ID: &str = "DLQ_ORIGIN_MESSAGE_ID";
    /// Optional record integrity property (§3.4); relayed verbatim.
    pub const CRC32: &str = "__CRC32#";
    /// Born host set by a 5.x proxy.
    pub const BORN_HOST: &str = "__BORNHOST";
    /// Born timestamp set by a 5.x proxy.
    pub const BORN_TIMESTAMP: &str = "BORN_TIMESTAMP";
    /// Prefix of broker-internal properties that are never stored.
    pub const TRANSIENT_PREFIX: &str = "__RMQ.TRANSIENT.";
}

/// Encodes properties as the wire string; every entry ends with U+0002.
///
/// Entries with an empty name or value are skipped (the reader would drop them
/// anyway). Names and values must not contain U+0001/U+0002; this is not checked.
pub fn encode_properties(props: &StrMap) -> String {
    let mut s = String::with_capacity(properties_encoded_len(props));
    for (k, v) in props.iter().filter(|(k, v)| !k.is_empty() && !v.is_empty()) {
        s.push_str(k);
        s.push(NAME_VALUE_SEPARATOR);
        s.push_str(v);
        s.push(PROPERTY_SEPARATOR);
    }
    s
}

/// Byte length [`encode_properties`] would produce, without allocating.
pub fn properties_encoded_len(props: &StrMap) -> usize {
    props
        .iter()
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .map(|(k, v)| k.len() + v.len() + 2)
        .sum()
}

/// Decodes a properties string leniently, as Java's `string2messageProperties`.
///
/// Split on U+0002 (a missing final separator is fine); in each segment the key
/// is the text before the first U+0001 and the value the rest; segments with an
/// empty key or value, or without U+0001, are ignored; later duplicates win.
pub fn decode_properties(s: &str) -> StrMap {
    let mut map = StrMap::new();
    for segment in s.split(PROPERTY_SEPARATOR) {
        // Java also skips segments shorter than 3 chars; a non-empty key, the
        // separator and a non-empty value already imply that.
        if let Some((k, v)) = segment.split_once(NAME_VALUE_SEPARATOR) {
            if !k.is_empty() && !v.is_empty() {
                map.insert(k, v);
            }
        }
    }
    map
}

/// Decodes properties bytes from a record or batch item; they must be UTF-8.
pub fn decode_properties_bytes(bytes: &[u8]) -> Result<StrMap> {
    let s =
        std::str::from_utf8(bytes).map_err(|_| ProtocolError::InvalidUtf8("message properties"))?;
    Ok(decode_properties(s))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::message::test_support::prop_map;
    use proptest::prelude::*;

    fn pairs(m: &StrMap) -> Vec<(&str, &str)> {
        m.iter().collect()
    }

    #[test]
    fn encodes_every_entry_terminated_and_skips_empty() {
        let mut m = StrMap::new();
        m.insert(keys::KEYS, "OrderID001");
        m.insert(keys::TAGS, "TagA");
        m.insert("EMPTY", "");
        m.insert(keys::WAIT, "true");
        let s = encode_properties(&m);
        assert_eq!(
            s,
            "KEYS\u{1}OrderID001\u{2}TAGS\u{1}TagA\u{2}WAIT\u{1}true\u{2}"
        );
        assert_eq!(properties_encoded_len(&m), s.len());
        assert_eq!(encode_properties(&StrMap::new()), "");
    }

    #[test]
    fn lenient_reading_as_reference() {
        // Missing final separator is tolerated.
        assert_eq!(
            pairs(&decode_properties("A\u{1}1\u{2}B\u{1}2")),
            vec![("A", "1"), ("B", "2")]
        );
        // Short segments, empty key, empty value, no name/value separator: ignored.
        let m =
            decode_properties("\u{2}ab\u{2}\u{1}xy\u{2}K\u{1}\u{2}NOSEP\u{2}OK\u{1}v\u{2}\u{2}");
        assert_eq!(pairs(&m), vec![("OK", "v")]);
        // The value is everything after the first U+0001.
        assert_eq!(
            pairs(&decode_properties("K\u{1}a\u{1}b\u{2}")),
            vec![("K", "a\u{1}b")]
        );
        // Later duplicates overwrite earlier ones.
        assert_eq!(
            pairs(&decode_properties("K\u{1}1\u{2}J\u{1}x\u{2}K\u{1}2\u{2}")),
            vec![("K", "2"), ("J", "x")]
        );
        assert!(decode_properties("").is_empty());
        // A separator in a later segment does not make a key of an earlier one.
        assert_eq!(
            pairs(&decode_properties("abc\u{2}d\u{1}e\u{2}")),
            vec![("d", "e")]
        );
    }

    #[test]
    fn bad_utf8_is_an_error() {
        assert_eq!(
            decode_properties_bytes(b"K\x01\xff\xfe\x02"),
            Err(ProtocolError::InvalidUtf8("message properties"))
        );
        assert_eq!(
            pairs(&decode_properties_bytes(b"K\x01v\x02").unwrap()),
            vec![("K", "v")]
        );
    }

    proptest! {
        #[test]
        fn round_trip(m in prop_map()) {
            let s = encode_properties(&m);
            prop_assert_eq!(s.len(), properties_encoded_len(&m));
            prop_assert_eq!(decode_properties_bytes(s.as_bytes()).unwrap(), m);
        }

        #[test]
        fn lenient_reader_keeps_only_well_formed_entries(s in "[\u{1}\u{2}ab]{0,24}") {
            for (k, v) in decode_properties(&s).iter() {
                prop_assert!(!k.is_empty() && !v.is_empty());
                prop_assert!(!k.contains(NAME_VALUE_SEPARATOR) && !k.contains(PROPERTY_SEPARATOR));
                prop_assert!(!v.contains(PROPERTY_SEPARATOR));
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_properties_bytes(&bytes);
        }
    }
}
