//! Frame codec (spec §1.2–§1.4): `check` then `parse`, as mini-redis does.
//!
//! ```text
//! i32 length = 4 + H + B | i32 mark = type << 24 | H | header (H bytes) | body (B bytes)
//! ```
//! An incomplete frame is [`Decoded::Incomplete`]; anything malformed is a
//! [`ProtocolError`] and the caller closes that connection.

use std::borrow::Cow;
use std::fmt;
use std::io::Write as _;

use bytes::{Buf, Bytes, BytesMut};
use compact_str::CompactString;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use crate::codes::LanguageCode;
use crate::command::{RemotingCommand, SerializeType};
use crate::error::{ProtocolError, Result};
use crate::strmap::StrMap;

/// Largest frame accepted or produced, the 4-byte length field included (16 MiB).
pub const FRAME_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Largest header length the 24-bit header-length field can express.
pub const HEADER_BYTES_MAX: usize = 0x00FF_FFFF;
const BINARY_HEADER_BYTES_MIN: usize = 21;

/// Outcome of [`decode_frame`].
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// A whole frame: the command and the number of bytes it used.
    Frame {
        /// The decoded command.
        command: RemotingCommand,
        /// Bytes consumed from the front of the buffer.
        consumed: usize,
    },
    /// More bytes are needed; nothing was consumed.
    Incomplete,
}

/// Returns the total size of the frame at the front of `buf` once it is all there.
///
/// `Ok(None)`: incomplete. Errors on an impossible or oversized length as soon as the
/// 4-byte prefix is readable, so a peer cannot make us buffer 2 GiB.
pub fn check_frame(buf: &[u8], frame_bytes_max: usize) -> Result<Option<usize>> {
    let Some(prefix) = buf.get(..4) else {
        return Ok(None);
    };
    let length = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    if length < 4 {
        return Err(ProtocolError::InvalidFrameLength(length.into()));
    }
    let total = length as usize + 4;
    if total > frame_bytes_max {
        return Err(ProtocolError::FrameTooLarge {
            len: total as u64,
            max: frame_bytes_max as u64,
        });
    }
    Ok((buf.len() >= total).then_some(total))
}

/// Decodes one frame from the front of `buf` with the 16 MiB limit.
pub fn decode_frame(buf: &[u8]) -> Result<Decoded> {
    decode_frame_with_limit(buf, FRAME_BYTES_MAX)
}

/// Decodes one frame from the front of `buf`, refusing frames above `frame_bytes_max`.
pub fn decode_frame_with_limit(buf: &[u8], frame_bytes_max: usize) -> Result<Decoded> {
    let Some(total) = check_frame(buf, frame_bytes_max)? else {
        return Ok(Decoded::Incomplete);
    };
    let command = parse_frame_payload(&buf[4..total])?;
    Ok(Decoded::Frame {
        command,
        consumed: total,
    })
}

/// Takes the whole frame at the front of `buf` off it and decodes it; `Ok(None)` when the
/// frame is incomplete (nothing is consumed).
///
/// The body is a slice of `buf`'s allocation, not a copy: servers decode every frame of a
/// read this way (the memory is reused once all such bodies are dropped).
pub fn decode_frame_buf(
    buf: &mut BytesMut,
    frame_bytes_max: usize,
) -> Result<Option<RemotingCommand>> {
    let Some(total) = check_frame(buf, frame_bytes_max)? else {
        return Ok(None);
    };
    let mut frame = buf.split_to(total).freeze();
    frame.advance(4);
    parse_frame_bytes(frame).map(Some)
}

/// [`parse_frame_payload`] with the body sliced out of `payload` instead of copied.
pub fn parse_frame_bytes(payload: Bytes) -> Result<RemotingCommand> {
    let (mut command, body_start) = parse_header(&payload)?;
    command.body = payload.slice(body_start..);
    Ok(command)
}

/// Parses a frame without its length prefix: header mark, header, body.
pub fn parse_frame_payload(payload: &[u8]) -> Result<RemotingCommand> {
    let (mut command, body_start) = parse_header(payload)?;
    command.body = Bytes::copy_from_slice(&payload[body_start..]);
    Ok(command)
}

/// Decodes the header mark and header; returns the command (empty body) and where the
/// body starts in `payload`.
fn parse_header(payload: &[u8]) -> Result<(RemotingCommand, usize)> {
    let mark = payload.get(..4).ok_or(ProtocolError::Truncated {
        what: "header mark",
        needed: 4,
        available: payload.len(),
    })?;
    let mark = u32::from_be_bytes([mark[0], mark[1], mark[2], mark[3]]);
    let ty = (mark >> 24) as u8;
    let header_len = (mark & 0x00FF_FFFF) as usize;
    let rest = &payload[4..];
    if header_len > rest.len() {
        return Err(ProtocolError::HeaderTooLong {
            header_len,
            available: rest.len(),
        });
    }
    let header = &rest[..header_len];
    let serialize_type =
        SerializeType::from_byte(ty).ok_or(ProtocolError::UnknownSerializeType(ty))?;
    let mut command = match serialize_type {
        SerializeType::Json => decode_json_header(header)?,
        SerializeType::RocketMq => decode_binary_header(header)?,
    };
    command.serialize_type = serialize_type;
    Ok((command, 4 + header_len))
}

/// Encodes `command` as one frame in its own serialization.
pub fn encode_frame(command: &RemotingCommand) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(64 + command.body.len());
    encode_frame_into(command, &mut out)?;
    Ok(out)
}

/// Appends the frame of `command` to `out`; on error `out` is left as it was.
pub fn encode_frame_into(command: &RemotingCommand, out: &mut Vec<u8>) -> Result<()> {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    let res = match command.serialize_type {
        SerializeType::Json => {
            encode_json_header(command, out);
            Ok(())
        }
        SerializeType::RocketMq => encode_binary_header(command, out),
    };
    if let Err(e) = res {
        out.truncate(start);
        return Err(e);
    }
    let header_len = out.len() - start - 8;
    let total = out.len() - start + command.body.len();
    if header_len > HEADER_BYTES_MAX || total > FRAME_BYTES_MAX {
        out.truncate(start);
        return Err(ProtocolError::FrameTooLarge {
            len: total as u64,
            max: FRAME_BYTES_MAX as u64,
        });
    }
    out.extend_from_slice(&command.body);
    let length = (total - 4) as u32;
    let mark = ((command.serialize_type as u32) << 24) | header_len as u32;
    out[start..start + 4].copy_from_slice(&length.to_be_bytes());
    out[start + 4..start + 8].copy_from_slice(&mark.to_be_bytes());
    Ok(())
}

// ---------------------------------------------------------------- JSON header

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonHeader<'a> {
    code: i32,
    #[serde(default, borrow)]
    language: Option<Cow<'a, str>>,
    #[serde(default)]
    version: Option<i32>,
    #[serde(default)]
    opaque: Option<i32>,
    #[serde(default)]
    flag: Option<i32>,
    #[serde(default)]
    remark: Option<String>,
    #[serde(default)]
    ext_fields: Option<ExtFields>,
}

/// `extFields` read straight into a [`StrMap`] in wire order: no intermediate map, and
/// short keys and values stay inline. `null` values drop the key; other non-string
/// values become their JSON text, as a `serde_json::Value` would print them.
struct ExtFields(StrMap);

/// A JSON string read without an intermediate `String` where possible.
struct Text(CompactString);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Text, E> {
                Ok(Text(CompactString::from(v)))
            }
            fn visit_string<E: de::Error>(self, v: String) -> std::result::Result<Text, E> {
                Ok(Text(CompactString::from(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// One `extFields` value: `None` for null.
struct ExtValue(Option<CompactString>);

impl<'de> Deserialize<'de> for ExtValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        fn text(v: Value) -> ExtValue {
            ExtValue(Some(CompactString::from(v.to_string())))
        }
        impl<'de> Visitor<'de> for V {
            type Value = ExtValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<ExtValue, E> {
                Ok(ExtValue(Some(CompactString::from(v))))
            }
            fn visit_string<E: de::Error>(self, v: String) -> std::result::Result<ExtValue, E> {
                Ok(ExtValue(Some(CompactString::from(v))))
            }
            fn visit_unit<E: de::Error>(self) -> std::result::Result<ExtValue, E> {
                Ok(ExtValue(None))
            }
            fn visit_none<E: de::Error>(self) -> std::result::Result<ExtValue, E> {
                Ok(ExtValue(None))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<ExtValue, E> {
                Ok(text(Value::from(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<ExtValue, E> {
                Ok(text(Value::from(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<ExtValue, E> {
                Ok(text(Value::from(v)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<ExtValue, E> {
                Ok(text(Value::from(v)))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> std::result::Result<ExtValue, A::Error> {
                Value::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(text)
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                map: A,
            ) -> std::result::Result<ExtValue, A::Error> {
                Value::deserialize(de::value::MapAccessDeserializer::new(map)).map(text)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for ExtFields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ExtFields;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of header fields")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<ExtFields, A::Error> {
                let mut fields = StrMap::with_capacity(map.size_hint().unwrap_or(16));
                while let Some((Text(k), ExtValue(v))) = map.next_entry()? {
                    match v {
                        Some(v) => fields.insert(k, v),
                        // A repeated key's later null wins, as in a JSON object.
                        None => {
                            fields.remove(&k);
                        }
                    }
                }
                Ok(ExtFields(fields))
            }
        }
        d.deserialize_map(V)
    }
}

fn decode_json_header(header: &[u8]) -> Result<RemotingCommand> {
    let text =
        std::str::from_utf8(header).map_err(|_| ProtocolError::InvalidUtf8("JSON header"))?;
    let h: JsonHeader = serde_json::from_str(text).map_err(|e| ProtocolError::InvalidJson {
        what: "header",
        detail: e.to_string(),
    })?;
    Ok(RemotingCommand {
        code: h.code,
        language: h
            .language
            .as_deref()
            .map_or(LanguageCode::Other, LanguageCode::from_name),
        version: h.version.unwrap_or(0),
        opaque: h.opaque.unwrap_or(0),
        flag: h.flag.unwrap_or(0),
        remark: h.remark,
        ext_fields: h.ext_fields.map(|f| f.0).unwrap_or_default(),
        body: Bytes::new(),
        serialize_type: SerializeType::Json,
    })
}

/// Writes the Java layout: compact, members alphabetical, `extFields` keys sorted.
fn encode_json_header(c: &RemotingCommand, out: &mut Vec<u8>) {
    fn string(out: &mut Vec<u8>, s: &str) {
        // Serializing a &str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
    fn int(out: &mut Vec<u8>, v: i32) {
        // Writing into a Vec cannot fail.
        let _ = write!(out, "{v}");
    }
    out.extend_from_slice(b"{\"code\":");
    int(out, c.code);
    if !c.ext_fields.is_empty() {
        out.extend_from_slice(b",\"extFields\":{");
        for (i, (k, v)) in c.ext_fields.sorted().into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            string(out, k);
            out.push(b':');
            string(out, v);
        }
        out.push(b'}');
    }
    out.extend_from_slice(b",\"flag\":");
    int(out, c.flag);
    out.extend_from_slice(b",\"language\":");
    string(out, c.language.name());
    out.extend_from_slice(b",\"opaque\":");
    int(out, c.opaque);
    if let Some(remark) = &c.remark {
        out.extend_from_slice(b",\"remark\":");
        string(out, remark);
    }
    out.extend_from_slice(b",\"serializeTypeCurrentRPC\":\"JSON\",\"version\":");
    int(out, c.version);
    out.push(b'}');
}

// ---------------------------------------------------------------- ROCKETMQ header

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        let available = self.buf.len() - self.pos;
        if n > available {
            return Err(ProtocolError::Truncated {
                what,
                needed: n,
                available,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn i16(&mut self, what: &'static str) -> Result<i16> {
        let b = self.take(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self, what: &'static str) -> Result<i32> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn len(&mut self, raw: i64, what: &'static str) -> Result<usize> {
        if raw < 0 {
            return Err(ProtocolError::InvalidLength { what, len: raw });
        }
        Ok(raw as usize)
    }
    fn str(&mut self, n: usize, what: &'static str) -> Result<&'a str> {
        let b = self.take(n, what)?;
        std::str::from_utf8(b).map_err(|_| ProtocolError::InvalidUtf8(what))
    }
}

fn decode_binary_header(header: &[u8]) -> Result<RemotingCommand> {
    let mut r = Reader {
        buf: header,
        pos: 0,
    };
    let code = r.i16("code")?;
    let language = r.take(1, "language")?[0];
    let version = r.i16("version")?;
    let opaque = r.i32("opaque")?;
    let flag = r.i32("flag")?;
    let remark_len = r.i32("remark length")?;
    let remark_len = r.len(remark_len.into(), "remark")?;
    let remark = match remark_len {
        0 => None,
        n => Some(r.str(n, "remark")?.to_owned()),
    };
    let ext_len = r.i32("ext map length")?;
    let ext_len = r.len(ext_len.into(), "ext map")?;
    let ext_bytes = r.take(ext_len, "ext map")?;
    let mut m = Reader {
        buf: ext_bytes,
        pos: 0,
    };
    let mut ext_fields = StrMap::new();
    while m.pos < ext_bytes.len() {
        let klen = m.i16("ext key length")?;
        let klen = m.len(klen.into(), "ext key")?;
        let key = m.str(klen, "ext key")?;
        let vlen = m.i32("ext value length")?;
        let vlen = m.len(vlen.into(), "ext value")?;
        let value = m.str(vlen, "ext value")?;
        // The reference decodes zero-length strings as null: such entries vanish.
        if !key.is_empty() && !value.is_empty() {
            ext_fields.insert(key, value);
        }
    }
    Ok(RemotingCommand {
        code: code.into(),
        language: LanguageCode::from_byte(language),
        version: version.into(),
        opaque,
        flag,
        remark,
        ext_fields,
        body: Bytes::new(),
        serialize_type: SerializeType::RocketMq,
    })
}

fn encode_binary_header(c: &RemotingCommand, out: &mut Vec<u8>) -> Result<()> {
    let code = i16::try_from(c.code).map_err(|_| ProtocolError::InvalidField {
        key: "code".into(),
        value: c.code.to_string(),
        reason: "does not fit the 16-bit code of a ROCKETMQ header".into(),
    })?;
    out.extend_from_slice(&code.to_be_bytes());
    out.push(c.language.byte());
    let version = i16::try_from(c.version).unwrap_or(i16::MAX);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&c.opaque.to_be_bytes());
    out.extend_from_slice(&c.flag.to_be_bytes());
    let remark = c.remark.as_deref().unwrap_or("");
    out.extend_from_slice(&(remark.len() as i32).to_be_bytes());
    out.extend_from_slice(remark.as_bytes());
    let len_pos = out.len();
    out.extend_from_slice(&[0; 4]);
    for (k, v) in c.ext_fields.iter() {
        if k.is_empty() || v.is_empty() {
            continue;
        }
        let klen = i16::try_from(k.len()).map_err(|_| ProtocolError::TooLong {
            what: "ext key",
            len: k.len(),
            max: i16::MAX as usize,
        })?;
        out.extend_from_slice(&klen.to_be_bytes());
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&(v.len() as i32).to_be_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    let ext_len = (out.len() - len_pos - 4) as i32;
    out[len_pos..len_pos + 4].copy_from_slice(&ext_len.to_be_bytes());
    debug_assert!(out.len() - len_pos + 17 + remark.len() >= BINARY_HEADER_BYTES_MIN);
    Ok(())
}
