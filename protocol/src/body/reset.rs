//! `ResetOffsetBody`: the offsets of a reset (RESET_CONSUMER_CLIENT_OFFSET 220 to
//! consumers, the answer to INVOKE_BROKER_TO_RESET_OFFSET 222), in fastjson's form with
//! queue objects as map keys (see [`super::fastjson`]):
//! `{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:42}}`.

use std::collections::BTreeMap;

use super::fastjson::{push_queue_map, Scanner};
use super::MessageQueue;
use crate::error::Result;

/// Queue → the offset the group's consumers are to continue from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResetOffsetBody {
    /// The new offsets.
    pub offset_table: BTreeMap<MessageQueue, i64>,
}

impl ResetOffsetBody {
    /// fastjson's form, object keys and all.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = b"{\"offsetTable\":".to_vec();
        push_queue_map(&mut out, &self.offset_table, |out, offset| {
            out.extend_from_slice(offset.to_string().as_bytes());
        });
        out.push(b'}');
        out
    }

    /// Reads fastjson's form; keys may also be strings holding the object's JSON. The
    /// table must be there; other members are skipped.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut s = Scanner::new(bytes, "ResetOffsetBody");
        let mut table = None;
        s.members(|s, name| {
            match name {
                "offsetTable" => table = Some(s.queue_map(Scanner::integer)?),
                _ => {
                    s.raw_value()?;
                }
            }
            Ok(())
        })?;
        s.finish()?;
        let offset_table = table.ok_or_else(|| s.bad("no offsetTable"))?;
        Ok(ResetOffsetBody { offset_table })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn mq(b: &str, q: i32, t: &str) -> MessageQueue {
        MessageQueue {
            broker_name: b.into(),
            queue_id: q,
            topic: t.into(),
        }
    }

    #[test]
    fn fastjson_object_keys_round_trip() {
        let mut body = ResetOffsetBody::default();
        body.offset_table.insert(mq("b", 0, "T"), 42);
        body.offset_table.insert(mq("b", 1, "T"), -1);
        let bytes = body.encode();
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            r#"{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:42,{"brokerName":"b","queueId":1,"topic":"T"}:-1}}"#
        );
        assert_eq!(ResetOffsetBody::decode(&bytes).unwrap(), body);
        assert_eq!(
            ResetOffsetBody::decode(b"{\"offsetTable\":{}}").unwrap(),
            ResetOffsetBody::default()
        );
    }

    #[test]
    fn java_spacing_key_order_and_string_keys_are_read() {
        let text = br#" { "offsetTable" : { {"topic":"T","queueId":3,"brokerName":"x}"} : 7 , "{\"brokerName\":\"y\",\"queueId\":0,\"topic\":\"T\"}":8 } } "#;
        let body = ResetOffsetBody::decode(text).unwrap();
        assert_eq!(body.offset_table.get(&mq("x}", 3, "T")), Some(&7));
        assert_eq!(body.offset_table.get(&mq("y", 0, "T")), Some(&8));
    }

    #[test]
    fn malformed_bodies_are_named_errors() {
        for bad in [
            &b""[..],
            b"{",
            b"{\"other\":{}}",
            b"{\"offsetTable\":{{\"brokerName\":\"b\"}:1}}",
            b"{\"offsetTable\":{{\"brokerName\":\"b\",\"queueId\":0,\"topic\":\"T\"}:x}}",
            b"{\"offsetTable\":{}} trailing",
        ] {
            let e = ResetOffsetBody::decode(bad).unwrap_err().to_string();
            assert!(e.contains("ResetOffsetBody"), "{e}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = ResetOffsetBody::decode(&bytes);
        }

        #[test]
        fn any_table_round_trips(entries in proptest::collection::vec(("[a-z{}\"\\\\]{0,6}", 0..8i32, "[A-Za-z%]{1,6}", any::<i64>()), 0..6)) {
            let body = ResetOffsetBody {
                offset_table: entries.into_iter().map(|(b, q, t, o)| (mq(&b, q, &t), o)).collect(),
            };
            prop_assert_eq!(ResetOffsetBody::decode(&body.encode()).unwrap(), body);
        }
    }
}
