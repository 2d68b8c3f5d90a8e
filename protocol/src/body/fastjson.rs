//! fastjson's non-JSON maps: Java writes a `Map<MessageQueue, V>` with each key as a JSON
//! object (`{{"brokerName":"b","queueId":0,"topic":"T"}:42}`), which serde_json can neither
//! read nor write. The bodies holding such maps (`ResetOffsetBody`, `ConsumeStats`) are
//! written and read with the pieces here; keys and values are parsed with serde_json one at
//! a time. Never panics on any input.

use std::collections::BTreeMap;

use serde::Serialize;

use super::MessageQueue;
use crate::error::{ProtocolError, Result};

/// Appends `{key:value,...}`, each key a queue object, each value written by `value`.
pub(super) fn push_queue_map<V>(
    out: &mut Vec<u8>,
    map: &BTreeMap<MessageQueue, V>,
    mut value: impl FnMut(&mut Vec<u8>, &V),
) {
    out.push(b'{');
    for (i, (mq, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_json(out, mq);
        out.push(b':');
        value(out, v);
    }
    out.push(b'}');
}

/// Appends `value` as JSON (the bodies' types hold strings and numbers only, so this
/// cannot fail).
pub(super) fn push_json(out: &mut Vec<u8>, value: &impl Serialize) {
    let _ = serde_json::to_writer(&mut *out, value);
}

/// A cursor over a fastjson body.
pub(super) struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
    /// The body's name, for errors.
    what: &'static str,
}

impl<'a> Scanner<'a> {
    fn skip_ws(&mut self) {
        while self.b.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Result<()> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.bad(format!("expected '{}' at byte {}", c as char, self.i)))
        }
    }

    /// The raw bytes of a JSON string at the cursor, quotes included.
    fn raw_string(&mut self) -> Result<&[u8]> {
        let start = self.i;
        if self.b.get(self.i) != Some(&b'"') {
            return Err(self.bad(format!("expected a string at byte {start}")));
        }
        self.i += 1;
        loop {
            match self.b.get(self.i) {
                None => return Err(self.bad("unterminated string")),
                Some(b'\\') => self.i += 2,
                Some(b'"') => {
                    self.i += 1;
                    return self
                        .b
                        .get(start..self.i)
                        .ok_or_else(|| self.bad("unterminated string"));
                }
                Some(_) => self.i += 1,
            }
        }
    }

    fn string(&mut self) -> Result<String> {
        self.skip_ws();
        let raw = self.raw_string()?;
        serde_json::from_slice(raw).map_err(|e| self.bad(format!("string: {e}")))
    }

    /// The raw bytes of a JSON object at the cursor (nested objects and strings skipped).
    pub(super) fn object(&mut self) -> Result<Vec<u8>> {
        if self.peek() != Some(b'{') {
            return Err(self.bad(format!("expected an object at byte {}", self.i)));
        }
        self.raw_value().map(<[u8]>::to_vec)
    }

    /// The raw bytes of the JSON value at the cursor: an object or array (nesting and
    /// strings skipped), a string, or a scalar token.
    pub(super) fn raw_value(&mut self) -> Result<&[u8]> {
        self.skip_ws();
        let start = self.i;
        match self.b.get(self.i) {
            None => return Err(self.bad("expected a value at the end")),
            Some(b'"') => {
                self.raw_string()?;
            }
            Some(b'{' | b'[') => {
                let mut depth = 0usize;
                loop {
                    match self.b.get(self.i) {
                        None => return Err(self.bad("unterminated object or array")),
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
                    return Err(self.bad(format!("expected a value at byte {start}")));
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
            .ok_or_else(|| self.bad(format!("expected a number at byte {start}")))
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
            .ok_or_else(|| self.bad(format!("expected an offset at byte {start}")))
    }
    /// A cursor at the start of `b`, naming `what` in its errors.
    pub(super) fn new(b: &'a [u8], what: &'static str) -> Self {
        Scanner { b, i: 0, what }
    }

    pub(super) fn bad(&self, detail: impl Into<String>) -> ProtocolError {
        ProtocolError::InvalidJson {
            what: self.what,
            detail: detail.into(),
        }
    }

    /// An object's members: `member` gets each name with the cursor at its value and must
    /// consume that value.
    pub(super) fn members(
        &mut self,
        mut member: impl FnMut(&mut Self, &str) -> Result<()>,
    ) -> Result<()> {
        self.expect(b'{')?;
        if self.eat(b'}') {
            return Ok(());
        }
        loop {
            let name = self.string()?;
            self.expect(b':')?;
            member(self, &name)?;
            if self.eat(b'}') {
                return Ok(());
            }
            self.expect(b',')?;
        }
    }

    /// A map with queue keys (objects, or strings holding an object's JSON); `value` reads
    /// each value.
    pub(super) fn queue_map<V>(
        &mut self,
        mut value: impl FnMut(&mut Self) -> Result<V>,
    ) -> Result<BTreeMap<MessageQueue, V>> {
        let mut map = BTreeMap::new();
        self.expect(b'{')?;
        if self.eat(b'}') {
            return Ok(map);
        }
        loop {
            let key = match self.peek() {
                Some(b'{') => self.object()?,
                Some(b'"') => self.string()?.into_bytes(),
                _ => return Err(self.bad(format!("expected a queue at byte {}", self.i))),
            };
            let mq: MessageQueue =
                serde_json::from_slice(&key).map_err(|e| self.bad(format!("queue key: {e}")))?;
            self.expect(b':')?;
            map.insert(mq, value(self)?);
            if self.eat(b'}') {
                return Ok(map);
            }
            self.expect(b',')?;
        }
    }

    /// Nothing but whitespace may follow the body.
    pub(super) fn finish(&mut self) -> Result<()> {
        self.skip_ws();
        if self.i == self.b.len() {
            Ok(())
        } else {
            Err(self.bad(format!("trailing bytes at {}", self.i)))
        }
    }
}
