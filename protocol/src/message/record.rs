//! The stored message record (spec §3.1): one commit-log entry, one element of a
//! PULL / QUERY_MESSAGE / VIEW_MESSAGE_BY_ID body.
//!
//! The encoder computes BODYCRC and the host-family sysFlag bits itself, so a
//! record can never claim a CRC or address width it does not have. The decoder
//! trusts no length: TOTALSIZE is checked against the buffer and every inner
//! length against TOTALSIZE, and a record must end exactly where TOTALSIZE says.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::Bytes;

use super::codec::body_crc;
use super::properties::{
    decode_properties, encode_properties, properties_encoded_len, NAME_VALUE_SEPARATOR,
    PROPERTIES_BYTES_MAX, PROPERTY_SEPARATOR,
};
use super::reader::{non_negative, Reader};
use super::sysflag::{BORNHOST_V6, STOREHOST_V6};
use crate::error::{ProtocolError, Result};
use crate::msgid::encode_offset_msg_id;
use crate::strmap::StrMap;

/// MAGICCODE of records with a 1-byte topic length (all topics ≤ 127 bytes).
pub const MAGIC_V1: i32 = -626_843_481;
/// MAGICCODE of records with a 2-byte topic length (topics > 127 bytes).
pub const MAGIC_V2: i32 = -626_843_477;
/// Java commit-log padding magic at the end of a data file; never a record.
pub const BLANK_MAGIC: i32 = -875_286_124;

/// Byte offset of MAGICCODE.
pub const MAGIC_POS: usize = 4;
/// Byte offset of BODYCRC.
pub const BODY_CRC_POS: usize = 8;
/// Byte offset of QUEUEOFFSET, patched when the queue offset is assigned.
pub const QUEUE_OFFSET_POS: usize = 20;
/// Byte offset of PHYSICALOFFSET, patched when the commit-log position is known.
pub const PHYSICAL_OFFSET_POS: usize = 28;
/// Byte offset of SYSFLAG.
pub const SYS_FLAG_POS: usize = 36;
/// Smallest possible record: IPv4 hosts, empty body, topic and properties.
pub const RECORD_BYTES_MIN: usize = 84 + 4 + 1 + 2;
/// Largest topic the 2-byte (V2) topic length can describe.
pub const TOPIC_BYTES_MAX: usize = 32767;
/// Longest topic written with MAGIC V1 (its length byte is read as signed).
pub const TOPIC_V1_BYTES_MAX: usize = 127;

/// A decoded stored message record (spec §3.1); field order is wire order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    /// Queue id within the topic.
    pub queue_id: i32,
    /// User flag from the producer.
    pub flag: i32,
    /// Logical offset in the queue; the consumer's progress handle.
    pub queue_offset: i64,
    /// Commit-log offset of this record; the handle for send-back, transactions and msg ids.
    pub physical_offset: i64,
    /// sysFlag (§3.2); bits 0x10/0x20 are rewritten from the host families on encode.
    pub sys_flag: i32,
    /// Producer's clock, ms.
    pub born_timestamp: i64,
    /// Producer address as seen by the broker.
    pub born_host: SocketAddr,
    /// Broker's clock when stored, ms.
    pub store_timestamp: i64,
    /// Storing broker's client-facing address; part of the offset message id.
    pub store_host: SocketAddr,
    /// Number of redeliveries (0 on a first delivery).
    pub reconsume_times: i32,
    /// Physical offset of the half message for committed transactions, else 0.
    pub prepared_transaction_offset: i64,
    /// Body as stored (compressed when sysFlag bit 0 is set).
    pub body: Bytes,
    /// Topic name.
    pub topic: String,
    /// Message properties (§3.3).
    pub properties: StrMap,
}

impl MessageRecord {
    /// The sysFlag as [`encode`](Self::encode) writes it: host bits set from the address families.
    pub fn encoded_sys_flag(&self) -> i32 {
        let mut f = self.sys_flag & !(BORNHOST_V6 | STOREHOST_V6);
        if self.born_host.is_ipv6() {
            f |= BORNHOST_V6;
        }
        if self.store_host.is_ipv6() {
            f |= STOREHOST_V6;
        }
        f
    }

    /// TOTALSIZE of the encoded record (not checked against the format's limits).
    pub fn encoded_len(&self) -> usize {
        self.encoded_len_with(properties_encoded_len(&self.properties))
    }

    fn encoded_len_with(&self, props_len: usize) -> usize {
        let topic_len_bytes = if self.topic.len() <= TOPIC_V1_BYTES_MAX {
            1
        } else {
            2
        };
        RECORD_BYTES_MIN - 1
            + host_extra(self.born_host)
            + host_extra(self.store_host)
            + self.body.len()
            + topic_len_bytes
            + self.topic.len()
            + props_len
    }

    /// Appends the encoded record to `out`; on error nothing is written.
    ///
    /// BODYCRC is computed here. Fails with `TooLong` for a topic or properties
    /// string over 32767 bytes or a record over `i32::MAX` bytes.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        let props = encode_properties(&self.properties);
        check_len("message properties", props.len(), PROPERTIES_BYTES_MAX)?;
        check_len("message topic", self.topic.len(), TOPIC_BYTES_MAX)?;
        let total = self.encoded_len_with(props.len());
        let max = i32::MAX as usize;
        check_len("message record", total, max)?;
        // Body and total fit in i32 and topic/properties in i16: checked above.
        let (total_i32, body_len) = (total as i32, self.body.len() as i32);

        out.reserve(total);
        let start = out.len();
        out.extend_from_slice(&total_i32.to_be_bytes());
        let v1 = self.topic.len() <= TOPIC_V1_BYTES_MAX;
        out.extend_from_slice(&(if v1 { MAGIC_V1 } else { MAGIC_V2 }).to_be_bytes());
        out.extend_from_slice(&body_crc(&self.body).to_be_bytes());
        out.extend_from_slice(&self.queue_id.to_be_bytes());
        out.extend_from_slice(&self.flag.to_be_bytes());
        out.extend_from_slice(&self.queue_offset.to_be_bytes());
        out.extend_from_slice(&self.physical_offset.to_be_bytes());
        out.extend_from_slice(&self.encoded_sys_flag().to_be_bytes());
        out.extend_from_slice(&self.born_timestamp.to_be_bytes());
        put_host(out, self.born_host);
        out.extend_from_slice(&self.store_timestamp.to_be_bytes());
        put_host(out, self.store_host);
        out.extend_from_slice(&self.reconsume_times.to_be_bytes());
        out.extend_from_slice(&self.prepared_transaction_offset.to_be_bytes());
        out.extend_from_slice(&body_len.to_be_bytes());
        out.extend_from_slice(&self.body);
        if v1 {
            out.push(self.topic.len() as u8);
        } else {
            out.extend_from_slice(&(self.topic.len() as i16).to_be_bytes());
        }
        out.extend_from_slice(self.topic.as_bytes());
        out.extend_from_slice(&(props.len() as i16).to_be_bytes());
        out.extend_from_slice(props.as_bytes());
        debug_assert_eq!(out.len() - start, total);
        Ok(())
    }

    /// The encoded record as a new vector.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode(&mut out)?;
        Ok(out)
    }

    /// Decodes the record at the start of `buf`; returns it and its TOTALSIZE.
    ///
    /// BODYCRC is not checked (clients do not check it by default); see [`Self::decode_verified`].
    pub fn decode(buf: &[u8]) -> Result<(MessageRecord, usize)> {
        Self::decode_with(buf, Bytes::copy_from_slice)
    }

    /// [`Self::decode`] with the body sliced out of `buf` instead of copied.
    pub fn decode_shared(buf: &Bytes) -> Result<(MessageRecord, usize)> {
        Self::decode_with(buf, |body| buf.slice_ref(body))
    }

    fn decode_with(
        buf: &[u8],
        body_of: impl FnOnce(&[u8]) -> Bytes,
    ) -> Result<(MessageRecord, usize)> {
        let l = layout(buf)?;
        let record = MessageRecord {
            queue_id: l.queue_id,
            flag: l.flag,
            queue_offset: l.queue_offset,
            physical_offset: l.physical_offset,
            sys_flag: l.sys_flag,
            born_timestamp: l.born_timestamp,
            born_host: l.born_host,
            store_timestamp: l.store_timestamp,
            store_host: l.store_host,
            reconsume_times: l.reconsume_times,
            prepared_transaction_offset: l.prepared_transaction_offset,
            body: body_of(l.body),
            topic: l.topic.to_owned(),
            properties: decode_properties(l.properties),
        };
        Ok((record, l.total))
    }

    /// [`Self::decode`], then checks BODYCRC against the body (`CrcMismatch`).
    pub fn decode_verified(buf: &[u8]) -> Result<(MessageRecord, usize)> {
        let (record, len) = Self::decode(buf)?;
        let mut stored = [0u8; 4];
        stored.copy_from_slice(&buf[BODY_CRC_POS..BODY_CRC_POS + 4]);
        let stored = u32::from_be_bytes(stored);
        // body_crc is never negative, so the cast is lossless.
        let computed = body_crc(&record.body) as u32;
        if stored != computed {
            return Err(ProtocolError::CrcMismatch {
                what: "message body",
                stored,
                computed,
            });
        }
        Ok((record, len))
    }

    /// Decodes a PULL body: records back to back until the buffer is exhausted.
    pub fn decode_all(buf: &[u8]) -> Result<Vec<MessageRecord>> {
        let mut records = Vec::new();
        let mut rest = buf;
        while !rest.is_empty() {
            let (record, len) = Self::decode(rest)?;
            records.push(record);
            rest = rest.get(len..).unwrap_or_default();
        }
        Ok(records)
    }

    /// The broker's offset message id of this record (STOREHOST + PHYSICALOFFSET, spec §4.2).
    pub fn offset_msg_id(&self) -> String {
        encode_offset_msg_id(self.store_host, self.physical_offset)
    }
}

/// The declared TOTALSIZE when at least 4 bytes are present and it is not negative.
///
/// A cheap "is a whole record there?" check before [`MessageRecord::decode`].
pub fn peek_total_size(buf: &[u8]) -> Option<usize> {
    let head: [u8; 4] = buf.get(..4)?.try_into().ok()?;
    usize::try_from(i32::from_be_bytes(head)).ok()
}

/// Overwrites QUEUEOFFSET of the encoded record at the start of `buf`.
pub fn set_queue_offset(buf: &mut [u8], v: i64) -> Result<()> {
    patch_i64(buf, QUEUE_OFFSET_POS, v, "QUEUEOFFSET")
}

/// Overwrites PHYSICALOFFSET of the encoded record at the start of `buf`.
pub fn set_physical_offset(buf: &mut [u8], v: i64) -> Result<()> {
    patch_i64(buf, PHYSICAL_OFFSET_POS, v, "PHYSICALOFFSET")
}

/// Writes `v` at `pos` after checking the buffer holds a record's magic and the field.
fn patch_i64(buf: &mut [u8], pos: usize, v: i64, what: &'static str) -> Result<()> {
    let available = buf.len();
    let magic: [u8; 4] = buf
        .get(MAGIC_POS..MAGIC_POS + 4)
        .and_then(|m| m.try_into().ok())
        .ok_or(ProtocolError::Truncated {
            what,
            needed: pos + 8,
            available,
        })?;
    let magic = i32::from_be_bytes(magic);
    if magic != MAGIC_V1 && magic != MAGIC_V2 {
        return Err(ProtocolError::InvalidMagic(magic));
    }
    let field = buf.get_mut(pos..pos + 8).ok_or(ProtocolError::Truncated {
        what,
        needed: pos + 8,
        available,
    })?;
    field.copy_from_slice(&v.to_be_bytes());
    Ok(())
}

/// Validates TOTALSIZE at the start of `buf`: at least the minimum, at most the buffer.
fn check_total_size(buf: &[u8]) -> Result<usize> {
    let head: [u8; 4] =
        buf.get(..4)
            .and_then(|h| h.try_into().ok())
            .ok_or(ProtocolError::Truncated {
                what: "message record",
                needed: 4,
                available: buf.len(),
            })?;
    let declared = i32::from_be_bytes(head);
    let total = usize::try_from(declared)
        .ok()
        .filter(|&t| t >= RECORD_BYTES_MIN)
        .ok_or(ProtocolError::InvalidLength {
            what: "message record TOTALSIZE",
            len: declared.into(),
        })?;
    if total > buf.len() {
        return Err(ProtocolError::Truncated {
            what: "message record",
            needed: total,
            available: buf.len(),
        });
    }
    Ok(total)
}

fn check_len(what: &'static str, len: usize, max: usize) -> Result<()> {
    if len > max {
        return Err(ProtocolError::TooLong { what, len, max });
    }
    Ok(())
}

/// Bytes an address adds over an IPv4 one.
fn host_extra(host: SocketAddr) -> usize {
    if host.is_ipv6() {
        12
    } else {
        0
    }
}

fn put_host(out: &mut Vec<u8>, host: SocketAddr) {
    match host.ip() {
        IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
        IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
    }
    out.extend_from_slice(&i32::from(host.port()).to_be_bytes());
}

/// The fields a broker's apply needs from an encoded record, borrowed from it: no body
/// copy, no topic string, no property map. [`MessageRecord::view`] walks the layout as
/// [`MessageRecord::decode`] does, so both accept exactly the same records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// TOTALSIZE: the record's length in bytes.
    pub total_size: usize,
    /// Queue id.
    pub queue_id: i32,
    /// Topic.
    pub topic: &'a str,
    /// The encoded properties (`k\u{1}v\u{2}...`).
    pub properties: &'a str,
}

impl<'a> RecordView<'a> {
    /// The value of property `key`, as [`decode_properties`] would give it (a non-empty key
    /// and value; the last occurrence wins).
    pub fn property(&self, key: &str) -> Option<&'a str> {
        let mut found = None;
        for segment in self.properties.split(PROPERTY_SEPARATOR) {
            if let Some((k, v)) = segment.split_once(NAME_VALUE_SEPARATOR) {
                if k == key && !k.is_empty() && !v.is_empty() {
                    found = Some(v);
                }
            }
        }
        found
    }
}

impl MessageRecord {
    /// Reads the [`RecordView`] of the record at the start of `buf`.
    pub fn view(buf: &[u8]) -> Result<RecordView<'_>> {
        let l = layout(buf)?;
        Ok(RecordView {
            total_size: l.total,
            queue_id: l.queue_id,
            topic: l.topic,
            properties: l.properties,
        })
    }
}

/// Every field of an encoded record, the variable ones borrowed: the one walk over the
/// layout behind both [`MessageRecord::decode`] and [`MessageRecord::view`], so they accept
/// exactly the same records.
struct Layout<'a> {
    total: usize,
    queue_id: i32,
    flag: i32,
    queue_offset: i64,
    physical_offset: i64,
    sys_flag: i32,
    born_timestamp: i64,
    born_host: SocketAddr,
    store_timestamp: i64,
    store_host: SocketAddr,
    reconsume_times: i32,
    prepared_transaction_offset: i64,
    body: &'a [u8],
    topic: &'a str,
    properties: &'a str,
}

fn layout(buf: &[u8]) -> Result<Layout<'_>> {
    let total = check_total_size(buf)?;
    let mut r = Reader::new(buf.get(..total).unwrap_or_default());
    r.take(4, "TOTALSIZE")?;
    let magic = r.i32("MAGICCODE")?;
    if magic != MAGIC_V1 && magic != MAGIC_V2 {
        return Err(ProtocolError::InvalidMagic(magic));
    }
    r.take(4, "BODYCRC")?;
    let queue_id = r.i32("QUEUEID")?;
    let flag = r.i32("FLAG")?;
    let queue_offset = r.i64("QUEUEOFFSET")?;
    let physical_offset = r.i64("PHYSICALOFFSET")?;
    let sys_flag = r.i32("SYSFLAG")?;
    let born_timestamp = r.i64("BORNTIMESTAMP")?;
    let born_host = read_host(&mut r, sys_flag & BORNHOST_V6 != 0, "BORNHOST")?;
    let store_timestamp = r.i64("STORETIMESTAMP")?;
    let store_host = read_host(&mut r, sys_flag & STOREHOST_V6 != 0, "STOREHOST")?;
    let reconsume_times = r.i32("RECONSUMETIMES")?;
    let prepared_transaction_offset = r.i64("PREPARED TRANSACTION OFFSET")?;
    let body_len = non_negative(r.i32("BODYLEN")?.into(), "message body")?;
    let body = r.take(body_len, "BODY")?;
    let topic_len = if magic == MAGIC_V1 {
        i64::from(r.i8("TOPICLEN")?)
    } else {
        i64::from(r.i16("TOPICLEN")?)
    };
    let topic_len = non_negative(topic_len, "message topic")?;
    let topic = std::str::from_utf8(r.take(topic_len, "TOPIC")?)
        .map_err(|_| ProtocolError::InvalidUtf8("message topic"))?;
    let props_len = non_negative(r.i16("PROPLEN")?.into(), "message properties")?;
    let properties = std::str::from_utf8(r.take(props_len, "PROPERTIES")?)
        .map_err(|_| ProtocolError::InvalidUtf8("message properties"))?;
    if r.remaining() != 0 {
        return Err(ProtocolError::InvalidLength {
            what: "message record TOTALSIZE (content ends earlier)",
            len: total as i64,
        });
    }
    Ok(Layout {
        total: r.position(),
        queue_id,
        flag,
        queue_offset,
        physical_offset,
        sys_flag,
        born_timestamp,
        born_host,
        store_timestamp,
        store_host,
        reconsume_times,
        prepared_transaction_offset,
        body,
        topic,
        properties,
    })
}

fn read_host(r: &mut Reader<'_>, v6: bool, what: &'static str) -> Result<SocketAddr> {
    let ip = if v6 {
        IpAddr::V6(Ipv6Addr::from(r.array::<16>(what)?))
    } else {
        IpAddr::V4(Ipv4Addr::from(r.array::<4>(what)?))
    };
    let port = r.i32(what)?;
    let port = u16::try_from(port).map_err(|_| ProtocolError::InvalidField {
        key: format!("{what} port"),
        value: port.to_string(),
        reason: "port out of range".to_owned(),
    })?;
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests;
