//! `ResetOffsetBody`: the offsets of a reset (RESET_CONSUMER_CLIENT_OFFSET 220 to
//! consumers, the answer to INVOKE_BROKER_TO_RESET_OFFSET 222).
//!
//! Java writes it with fastjson, whose map keys that are objects come out as JSON objects:
//! `{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:42}}`. That is not JSON,
//! so serde_json cannot read or write it; Java clients expect exactly that form, so it is
//! encoded and decoded here by hand (keys are parsed with serde_json one at a time).

use std::collections::BTreeMap;

use super::MessageQueue;
use crate::error::{ProtocolError, Result};

/// Queue → the offset the group's consumers are to continue from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResetOffsetBody {
    /// The new offsets.
    pub offset_table: BTreeMap<MessageQueue, i64>,
}

pub(super) fn bad_in(what: &'static str, detail: impl Into<String>) -> ProtocolError {
    ProtocolError::InvalidJson {
        what,
        detail: detail.into(),
    }
}

fn bad(detail: impl Into<String>) -> ProtocolError {
    bad_in("ResetOffsetBody", detail)
}

impl ResetOffsetBody {
    /// fastjson's form, object keys and all.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = b"{\"offsetTable\":{".to_vec();
        for (i, (mq, offset)) in self.offset_table.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            // A MessageQueue (two strings and an integer) always serializes.
            out.extend_from_slice(&serde_json::to_vec(mq).unwrap_or_default());
            out.push(b':');
            out.extend_from_slice(offset.to_string().as_bytes());
        }
        out.extend_from_slice(b"}}");
        out
    }

    /// Reads fastjson's form; keys may also be strings holding the object's JSON.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut s = Scanner {
            b: bytes,
            i: 0,
            what: "ResetOffsetBody",
        };
        s.expect(b'{')?;
        let name = s.string()?;
        if name != "offsetTable" {
            return Err(bad(format!("expected member offsetTable, found {name:?}")));
        }
        s.expect(b':')?;
        s.expect(b'{')?;
        let mut table = BTreeMap::new();
        if !s.eat(b'}') {
            loop {
                let key = match s.peek() {
                    Some(b'{') => s.object()?,
                    Some(b'"') => s.string()?.into_bytes(),
                    _ => return Err(bad(format!("expected a queue at byte {}", s.i))),
                };
                let mq: MessageQueue =
                    serde_json::from_slice(&key).map_err(|e| bad(format!("queue key: {e}")))?;
                s.expect(b':')?;
                let offset = s.integer()?;
                table.insert(mq, offset);
                if s.eat(b'}') {
                    break;
                }
                s.expect(b',')?;
            }
        }
        s.expect(b'}')?;
        s.skip_ws();
        if s.i != bytes.len() {
            return Err(bad(format!("trailing bytes at {}", s.i)));
        }
        Ok(ResetOffsetBody {
            offset_table: table,
        })
    }
}

/// A cursor over a fastjson body (shared with [`super::consume_stats`]).
pub(super) struct Scanner<'a> {
    pub(super) b: &'a [u8],
    pub(super) i: usize,
    /// The body's name, for errors.
    pub(super) what: &'static str,
}

impl Scanner<'_> {
    pub(super) fn skip_ws(&mut self) {
        while self.b.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
    }

    pub(super) fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.b.get(self.i).copied()
    }

    pub(super) fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    pub(super) fn expect(&mut self, c: u8) -> Result<()> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(bad_in(
                self.what,
                format!("expected '{}' at byte {}", c as char, self.i),
            ))
        }
    }

    /// The raw bytes of a JSON string at the cursor, quotes included.
    fn raw_string(&mut self) -> Result<&[u8]> {
        let start = self.i;
        if self.b.get(self.i) != Some(&b'"') {
            return Err(bad_in(
                self.what,
                format!("expected a string at byte {start}"),
            ));
        }
        self.i += 1;
        loop {
            match self.b.get(self.i) {
                None => return Err(bad_in(self.what, "unterminated string")),
                Some(b'\\') => self.i += 2,
                Some(b'"') => {
                    self.i += 1;
                    return self
                        .b
                        .get(start..self.i)
                        .ok_or_else(|| bad_in(self.what, "unterminated string"));
                }
                Some(_) => self.i += 1,
            }
        }
    }

    pub(super) fn string(&mut self) -> Result<String> {
        self.skip_ws();
        let raw = self.raw_string()?;
        serde_json::from_slice(raw).map_err(|e| bad_in(self.what, format!("string: {e}")))
    }

    /// The raw bytes of a JSON object at the cursor (nested objects and strings skipped).
    pub(super) fn object(&mut self) -> Result<Vec<u8>> {
        if self.peek() != Some(b'{') {
            return Err(bad_in(
                self.what,
                format!("expected an object at byte {}", self.i),
            ));
        }
        self.raw_value().map(<[u8]>::to_vec)
    }

    /// The raw bytes of the JSON value at the cursor: an object or array (nesting and
    /// strings skipped), a string, or a scalar token.
    pub(super) fn raw_value(&mut self) -> Result<&[u8]> {
        self.skip_ws();
        let start = self.i;
        match self.b.get(self.i) {
            None => return Err(bad_in(self.what, "expected a value at the end")),
            Some(b'"') => {
                self.raw_string()?;
            }
            Some(b'{' | b'[') => {
                let mut depth = 0usize;
                loop {
                    match self.b.get(self.i) {
                        None => return Err(bad_in(self.what, "unterminated object or array")),
                        Some(b'"') => {
                            self.raw_string()?;
                            continue;
                        }
                        Some(b'{' | b'[') => depth += 1,
                        Some(b'}' | b']') => {
                            depth = depth.saturating_sub(1);
                            if depth == 0 {
                                self.i += 1;
                                break;
                            }
                        }
                        Some(_) => {}
                    }
                    self.i += 1;
                }
            }
            Some(_) => {
                while self
                    .b
                    .get(self.i)
                    .is_some_and(|c| !matches!(c, b',' | b'}' | b']') && !c.is_ascii_whitespace())
                {
                    self.i += 1;
                }
                if self.i == start {
                    return Err(bad_in(
                        self.what,
                        format!("expected a value at byte {start}"),
                    ));
                }
            }
        }
        Ok(self.b.get(start..self.i).unwrap_or_default())
    }

    /// A JSON number at the cursor, as a float.
    pub(super) fn number(&mut self) -> Result<f64> {
        self.skip_ws();
        let start = self.i;
        while self
            .b
            .get(self.i)
            .is_some_and(|c| c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E'))
        {
            self.i += 1;
        }
        std::str::from_utf8(self.b.get(start..self.i).unwrap_or_default())
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| bad_in(self.what, format!("expected a number at byte {start}")))
    }

    pub(super) fn integer(&mut self) -> Result<i64> {
        self.skip_ws();
        let start = self.i;
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        std::str::from_utf8(self.b.get(start..self.i).unwrap_or_default())
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| bad_in(self.what, format!("expected an offset at byte {start}")))
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
