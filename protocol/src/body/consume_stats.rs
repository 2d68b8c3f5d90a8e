//! `ConsumeStats`: the answer to GET_CONSUME_STATS (208), a group's progress on one broker.
//!
//! fastjson writes it with `MessageQueue` objects as map keys (see [`super::fastjson`]):
//! `{"consumeTps":1.5,"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:
//! {"brokerOffset":9,"consumerOffset":4,"lastTimestamp":0,"pullOffset":4}}}`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::fastjson::{push_json, push_queue_map, Scanner};
use super::MessageQueue;
use crate::error::Result;

/// One queue's offsets for the group (Java's `OffsetWrapper`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OffsetWrapper {
    /// The queue's max offset.
    pub broker_offset: i64,
    /// The group's committed offset (0 when it has none).
    pub consumer_offset: i64,
    /// Where the group's pulls are (RaftMQ: the committed offset).
    #[serde(default)]
    pub pull_offset: i64,
    /// Store time of the last consumed message, ms (0: none).
    #[serde(default)]
    pub last_timestamp: i64,
}

/// A group's progress on one broker.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConsumeStats {
    /// Per queue.
    pub offset_table: BTreeMap<MessageQueue, OffsetWrapper>,
    /// Messages per second the group pulled from this broker lately.
    pub consume_tps: f64,
}

impl ConsumeStats {
    /// fastjson's form, object keys and all.
    pub fn encode(&self) -> Vec<u8> {
        let tps = if self.consume_tps.is_finite() {
            self.consume_tps
        } else {
            0.0
        };
        let mut out = format!("{{\"consumeTps\":{tps:?},\"offsetTable\":").into_bytes();
        push_queue_map(&mut out, &self.offset_table, push_json);
        out.push(b'}');
        out
    }

    /// Reads fastjson's form (members in any order, ones this version does not know
    /// skipped as Java's parser would; keys may be strings holding JSON).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut s = Scanner::new(bytes, "ConsumeStats");
        let mut stats = ConsumeStats::default();
        s.members(|s, name| {
            match name {
                "consumeTps" => stats.consume_tps = s.number()?,
                "offsetTable" => {
                    stats.offset_table = s.queue_map(|s| {
                        let value = s.object()?;
                        serde_json::from_slice(&value).map_err(|e| s.bad(format!("offsets: {e}")))
                    })?;
                }
                _ => {
                    s.raw_value()?;
                }
            }
            Ok(())
        })?;
        s.finish()?;
        Ok(stats)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn mq(q: i32) -> MessageQueue {
        MessageQueue {
            broker_name: "b".into(),
            queue_id: q,
            topic: "T".into(),
        }
    }

    #[test]
    fn fastjson_form_round_trips() {
        let mut st = ConsumeStats {
            consume_tps: 1.5,
            ..ConsumeStats::default()
        };
        st.offset_table.insert(
            mq(0),
            OffsetWrapper {
                broker_offset: 9,
                consumer_offset: 4,
                pull_offset: 4,
                last_timestamp: 77,
            },
        );
        let bytes = st.encode();
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            r#"{"consumeTps":1.5,"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:{"brokerOffset":9,"consumerOffset":4,"pullOffset":4,"lastTimestamp":77}}}"#
        );
        assert_eq!(ConsumeStats::decode(&bytes).unwrap(), st);
        // Java's member order, an integer TPS and a missing lastTimestamp.
        let java = br#"{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:{"brokerOffset":9,"consumerOffset":4,"pullOffset":4}},"consumeTps":3}"#;
        let d = ConsumeStats::decode(java).unwrap();
        assert_eq!(d.consume_tps, 3.0);
        assert_eq!(d.offset_table[&mq(0)].last_timestamp, 0);
        // Members this version does not know are skipped, whatever their shape.
        let newer =
            br#"{"future":[1,{"a":"}"}],"consumeTps":2.5,"x":"y","offsetTable":{},"n":null}"#;
        assert_eq!(ConsumeStats::decode(newer).unwrap().consume_tps, 2.5);
    }

    #[test]
    fn malformed_bodies_are_named_errors() {
        for bad in [
            &b"{\"consumeTps\":x}"[..],
            b"{\"offsetTable\":{{\"brokerName\":\"b\",\"queueId\":0,\"topic\":\"T\"}:5}}",
            b"{\"offsetTable\":{{\"brokerName\":\"b\",\"queueId\":0,\"topic\":\"T\"}:5}}x",
            b"[",
        ] {
            let e = ConsumeStats::decode(bad).unwrap_err().to_string();
            assert!(e.contains("ConsumeStats"), "{e}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = ConsumeStats::decode(&bytes);
        }
    }
}
