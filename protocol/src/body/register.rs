//! REGISTER_BROKER body (remoting.md §2.3.1) in its three forms: plain JSON
//! RegisterBrokerBody, the old bare TopicConfigSerializeWrapper, and the zlib-compressed
//! binary form.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use serde::{Deserialize, Serialize};

use super::json::{decode_json, encode_json};
use super::topic::{DataVersion, TopicConfig, TopicConfigSerializeWrapper};
use crate::error::{ProtocolError, Result};

/// First request `version` (V3_0_11) whose REGISTER_BROKER body is a RegisterBrokerBody.
pub const VERSION_V3_0_11: i32 = 37;
/// First request `version` (V5_0_0) whose compressed body carries topic queue mappings.
pub const VERSION_V5_0_0: i32 = 413;
/// Limit on the inflated size of a compressed registration, against zlib bombs.
pub const REGISTER_INFLATED_BYTES_MAX: usize = 64 << 20;

/// What a broker registers: its topic table and (obsolete) filter servers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterBrokerBody {
    /// Obsolete filter server addresses; normally empty.
    #[serde(default)]
    pub filter_server_list: Vec<String>,
    /// The broker's topics and their DataVersion.
    #[serde(default)]
    pub topic_config_serialize_wrapper: TopicConfigSerializeWrapper,
}

/// Input shape covering both JSON forms: the RegisterBrokerBody members and, for senders
/// older than V3_0_11, the bare wrapper's members at the top level.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegisterBodyWire {
    data_version: Option<DataVersion>,
    filter_server_list: Option<Vec<String>>,
    mapping_data_version: Option<DataVersion>,
    topic_config_serialize_wrapper: Option<TopicConfigSerializeWrapper>,
    topic_config_table: Option<BTreeMap<String, TopicConfig>>,
    topic_queue_mapping_detail_map: Option<BTreeMap<String, serde_json::Value>>,
    topic_queue_mapping_info_map: Option<BTreeMap<String, serde_json::Value>>,
}

impl RegisterBrokerBody {
    /// Decodes a REGISTER_BROKER body given the header's `compressed` flag and the
    /// request's `version`.
    ///
    /// An empty body is an empty table with a zero DataVersion. A JSON body without a
    /// `topicConfigSerializeWrapper` member is read as the bare wrapper old brokers send.
    pub fn decode(body: &[u8], compressed: bool, sender_version: i32) -> Result<Self> {
        if body.is_empty() {
            return Ok(RegisterBrokerBody::default());
        }
        if compressed {
            return Self::decode_compressed(body, sender_version);
        }
        let wire: RegisterBodyWire = decode_json("RegisterBrokerBody", body)?;
        let wrapper = match wire.topic_config_serialize_wrapper {
            Some(w) => w,
            None => TopicConfigSerializeWrapper {
                data_version: wire.data_version.unwrap_or_default(),
                mapping_data_version: wire.mapping_data_version.unwrap_or_default(),
                topic_config_table: wire.topic_config_table.unwrap_or_default(),
                topic_queue_mapping_detail_map: wire
                    .topic_queue_mapping_detail_map
                    .unwrap_or_default(),
                topic_queue_mapping_info_map: wire.topic_queue_mapping_info_map.unwrap_or_default(),
            },
        };
        Ok(RegisterBrokerBody {
            filter_server_list: wire.filter_server_list.unwrap_or_default(),
            topic_config_serialize_wrapper: wrapper,
        })
    }

    /// Encodes the plain JSON form (what RaftMQ brokers send).
    pub fn encode(&self) -> Vec<u8> {
        encode_json(self)
    }

    /// Encodes the zlib-compressed form of §2.3.1 for a sender of `sender_version`.
    ///
    /// Like Java, the text form drops `order`, `topicSysFlag`, `mappingDataVersion` and the
    /// mapping details; mapping infos are written only when `sender_version` ≥ V5_0_0.
    pub fn encode_compressed(&self, sender_version: i32) -> Result<Vec<u8>> {
        let wrapper = &self.topic_config_serialize_wrapper;
        let mut raw = Vec::new();
        put_chunk(&mut raw, "DataVersion", &encode_json(&wrapper.data_version))?;
        put_count(&mut raw, "topic count", wrapper.topic_config_table.len())?;
        for config in wrapper.topic_config_table.values() {
            put_chunk(&mut raw, "TopicConfig text", config.to_text().as_bytes())?;
        }
        put_chunk(
            &mut raw,
            "filterServerList",
            &encode_json(&self.filter_server_list),
        )?;
        if sender_version >= VERSION_V5_0_0 {
            let infos = &wrapper.topic_queue_mapping_info_map;
            put_count(&mut raw, "topic queue mapping count", infos.len())?;
            for info in infos.values() {
                put_chunk(&mut raw, "TopicQueueMappingInfo", &encode_json(info))?;
            }
        }
        let mut encoder = ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        encoder
            .write_all(&raw)
            .map_err(|e| ProtocolError::Compression(e.to_string()))?;
        encoder
            .finish()
            .map_err(|e| ProtocolError::Compression(e.to_string()))
    }

    /// Decodes the zlib-compressed binary form (all integers big-endian `i32`).
    fn decode_compressed(body: &[u8], sender_version: i32) -> Result<Self> {
        let inflated = inflate(body)?;
        let mut reader = Reader { buf: &inflated };

        let data_version = decode_json("compressed DataVersion", reader.chunk("DataVersion")?)?;
        let topic_count = reader.count("topic count")?;
        let mut topic_config_table = BTreeMap::new();
        for _ in 0..topic_count {
            let text = reader.chunk("TopicConfig text")?;
            let text = std::str::from_utf8(text)
                .map_err(|_| ProtocolError::InvalidUtf8("TopicConfig text"))?;
            let config = TopicConfig::from_text(text)?;
            topic_config_table.insert(config.topic_name.clone(), config);
        }
        let filter_server_list: Option<Vec<String>> = decode_json(
            "compressed filterServerList",
            reader.chunk("filterServerList")?,
        )?;

        // Java always writes the mapping section but reads it only from V5_0_0 senders;
        // tolerate its absence at the very end of the stream.
        let mut topic_queue_mapping_info_map = BTreeMap::new();
        if sender_version >= VERSION_V5_0_0 && !reader.buf.is_empty() {
            let mapping_count = reader.count("topic queue mapping count")?;
            for _ in 0..mapping_count {
                let info: serde_json::Value = decode_json(
                    "TopicQueueMappingInfo",
                    reader.chunk("TopicQueueMappingInfo")?,
                )?;
                // Java keys the map by the info's own topic; an info without one is dropped.
                let topic = info
                    .get("topic")
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned);
                if let Some(topic) = topic {
                    topic_queue_mapping_info_map.insert(topic, info);
                }
            }
        }

        Ok(RegisterBrokerBody {
            filter_server_list: filter_server_list.unwrap_or_default(),
            topic_config_serialize_wrapper: TopicConfigSerializeWrapper {
                data_version,
                topic_config_table,
                topic_queue_mapping_info_map,
                ..TopicConfigSerializeWrapper::default()
            },
        })
    }
}

/// Inflates a zlib stream, refusing more than [`REGISTER_INFLATED_BYTES_MAX`] bytes.
fn inflate(body: &[u8]) -> Result<Vec<u8>> {
    let limit = REGISTER_INFLATED_BYTES_MAX;
    let mut out = Vec::new();
    ZlibDecoder::new(body)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ProtocolError::Compression(e.to_string()))?;
    if out.len() > limit {
        return Err(ProtocolError::TooLong {
            what: "inflated register body",
            len: out.len(),
            max: limit,
        });
    }
    Ok(out)
}

/// Cursor over the inflated registration; every read is bounds-checked.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads one big-endian `i32`.
    fn i32(&mut self, what: &'static str) -> Result<i32> {
        let Some((head, rest)) = self.buf.split_first_chunk::<4>() else {
            return Err(ProtocolError::Truncated {
                what,
                needed: 4,
                available: self.buf.len(),
            });
        };
        self.buf = rest;
        Ok(i32::from_be_bytes(*head))
    }

    /// Reads a non-negative `i32` length or count.
    fn non_negative(&mut self, what: &'static str) -> Result<usize> {
        let n = self.i32(what)?;
        usize::try_from(n).map_err(|_| ProtocolError::InvalidLength {
            what,
            len: n.into(),
        })
    }

    /// Reads an element count; each element needs at least a 4-byte length, so a count
    /// the remaining bytes cannot hold is rejected before looping.
    fn count(&mut self, what: &'static str) -> Result<usize> {
        let n = self.non_negative(what)?;
        let needed = n.saturating_mul(4);
        if needed > self.buf.len() {
            return Err(ProtocolError::Truncated {
                what,
                needed,
                available: self.buf.len(),
            });
        }
        Ok(n)
    }

    /// Reads an `i32` length and that many bytes.
    fn chunk(&mut self, what: &'static str) -> Result<&'a [u8]> {
        let len = self.non_negative(what)?;
        if len > self.buf.len() {
            return Err(ProtocolError::Truncated {
                what,
                needed: len,
                available: self.buf.len(),
            });
        }
        let (head, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(head)
    }
}

/// Appends a big-endian `i32` count.
fn put_count(out: &mut Vec<u8>, what: &'static str, n: usize) -> Result<()> {
    let n = i32::try_from(n).map_err(|_| ProtocolError::TooLong {
        what,
        len: n,
        max: i32::MAX as usize,
    })?;
    out.extend_from_slice(&n.to_be_bytes());
    Ok(())
}

/// Appends a big-endian `i32` length and the bytes.
fn put_chunk(out: &mut Vec<u8>, what: &'static str, bytes: &[u8]) -> Result<()> {
    put_count(out, what, bytes.len())?;
    out.extend_from_slice(bytes);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::body::topic::TopicFilterType;

    fn sample() -> RegisterBrokerBody {
        let mut body = RegisterBrokerBody::default();
        let w = &mut body.topic_config_serialize_wrapper;
        w.data_version = DataVersion {
            counter: 3,
            state_version: 0,
            timestamp: 1_700_000_000_000,
        };
        w.mapping_data_version.timestamp = 1_700_000_000_000;
        w.topic_config_table
            .insert("TopicTest".into(), TopicConfig::new("TopicTest", 4));
        body
    }

    const SPEC_JSON: &str = r#"{"filterServerList":[],"topicConfigSerializeWrapper":{"dataVersion":{"counter":3,"stateVersion":0,"timestamp":1700000000000},"mappingDataVersion":{"counter":0,"stateVersion":0,"timestamp":1700000000000},"topicConfigTable":{"TopicTest":{"attributes":{},"order":false,"perm":6,"readQueueNums":4,"topicFilterType":"SINGLE_TAG","topicName":"TopicTest","topicSysFlag":0,"writeQueueNums":4}},"topicQueueMappingDetailMap":{},"topicQueueMappingInfoMap":{}}}"#;

    #[test]
    fn plain_form_matches_spec_example() {
        assert_eq!(String::from_utf8(sample().encode()).unwrap(), SPEC_JSON);
        let back = RegisterBrokerBody::decode(SPEC_JSON.as_bytes(), false, 479).unwrap();
        assert_eq!(back, sample());
    }

    #[test]
    fn bare_wrapper_form() {
        let old = br#"{"dataVersion":{"counter":3,"stateVersion":0,"timestamp":1700000000000},"topicConfigTable":{"TopicTest":{"order":false,"perm":6,"readQueueNums":4,"topicFilterType":"SINGLE_TAG","topicName":"TopicTest","topicSysFlag":0,"writeQueueNums":4}}}"#;
        for version in [0, 36, 479] {
            let body = RegisterBrokerBody::decode(old, false, version).unwrap();
            let w = &body.topic_config_serialize_wrapper;
            assert_eq!(w.data_version.counter, 3);
            assert_eq!(
                w.topic_config_table["TopicTest"],
                TopicConfig::new("TopicTest", 4)
            );
            assert!(body.filter_server_list.is_empty());
        }
    }

    #[test]
    fn empty_body_is_default() {
        assert_eq!(
            RegisterBrokerBody::decode(b"", false, 479).unwrap(),
            RegisterBrokerBody::default()
        );
        assert_eq!(
            RegisterBrokerBody::decode(b"", true, 479).unwrap(),
            RegisterBrokerBody::default()
        );
    }

    #[test]
    fn compressed_form() {
        let mut body = sample();
        body.topic_config_serialize_wrapper.mapping_data_version = DataVersion::default();
        let mut multi = TopicConfig::new("%RETRY%g", 1);
        multi.topic_filter_type = TopicFilterType::MultiTag;
        multi
            .attributes
            .insert("message.type".into(), "NORMAL".into());
        body.topic_config_serialize_wrapper
            .topic_config_table
            .insert("%RETRY%g".into(), multi);
        body.filter_server_list.push("10.0.0.9:1".into());
        for version in [VERSION_V3_0_11, 400, VERSION_V5_0_0, 479] {
            let bytes = body.encode_compressed(version).unwrap();
            assert_eq!(&bytes[..1], &[0x78], "zlib header");
            assert_eq!(
                RegisterBrokerBody::decode(&bytes, true, version).unwrap(),
                body
            );
        }
    }

    #[test]
    fn compressed_mapping_infos_keyed_by_topic() {
        let mut body = RegisterBrokerBody::default();
        let info = json!({"topic": "T", "totalQueues": 4, "bname": "b"});
        body.topic_config_serialize_wrapper
            .topic_queue_mapping_info_map
            .insert("T".into(), info);
        let bytes = body.encode_compressed(479).unwrap();
        assert_eq!(RegisterBrokerBody::decode(&bytes, true, 479).unwrap(), body);
        // An old receiver-side version ignores the trailing section.
        let old = RegisterBrokerBody::decode(&bytes, true, 400).unwrap();
        assert!(old
            .topic_config_serialize_wrapper
            .topic_queue_mapping_info_map
            .is_empty());
    }

    fn deflate(raw: &[u8]) -> Vec<u8> {
        let mut e = ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(raw).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn malformed_compressed_inputs_are_errors() {
        let good = sample().encode_compressed(479).unwrap();
        // Truncated zlib stream.
        assert!(RegisterBrokerBody::decode(&good[..good.len() / 2], true, 479).is_err());
        // Not zlib at all.
        assert!(RegisterBrokerBody::decode(b"{\"a\":1}", true, 479).is_err());
        // Negative DataVersion length.
        let err =
            RegisterBrokerBody::decode(&deflate(&(-1i32).to_be_bytes()), true, 479).unwrap_err();
        assert!(matches!(err, ProtocolError::InvalidLength { len: -1, .. }));
        // Length larger than the data.
        let err = RegisterBrokerBody::decode(&deflate(&[0, 0, 0, 9, b'{']), true, 479).unwrap_err();
        assert!(matches!(err, ProtocolError::Truncated { .. }));
        // Topic count larger than the data.
        let mut raw = Vec::new();
        put_chunk(&mut raw, "dv", b"{}").unwrap();
        raw.extend_from_slice(&i32::MAX.to_be_bytes());
        let err = RegisterBrokerBody::decode(&deflate(&raw), true, 479).unwrap_err();
        assert!(matches!(
            err,
            ProtocolError::Truncated {
                what: "topic count",
                ..
            }
        ));
        // Negative topic count.
        let mut raw = Vec::new();
        put_chunk(&mut raw, "dv", b"{}").unwrap();
        raw.extend_from_slice(&(-5i32).to_be_bytes());
        assert!(RegisterBrokerBody::decode(&deflate(&raw), true, 479).is_err());
        // Bad topic text and invalid UTF-8.
        for text in [&b"T 1"[..], b"\xff\xfe"] {
            let mut raw = Vec::new();
            put_chunk(&mut raw, "dv", b"{}").unwrap();
            put_count(&mut raw, "n", 1).unwrap();
            put_chunk(&mut raw, "t", text).unwrap();
            put_chunk(&mut raw, "f", b"[]").unwrap();
            assert!(RegisterBrokerBody::decode(&deflate(&raw), true, 479).is_err());
        }
        // Missing filter server list.
        let mut raw = Vec::new();
        put_chunk(&mut raw, "dv", b"{}").unwrap();
        put_count(&mut raw, "n", 0).unwrap();
        assert!(RegisterBrokerBody::decode(&deflate(&raw), true, 479).is_err());
    }

    #[test]
    fn inflate_limit() {
        let raw = vec![0u8; REGISTER_INFLATED_BYTES_MAX + 1];
        let err = RegisterBrokerBody::decode(&deflate(&raw), true, 479).unwrap_err();
        assert!(matches!(err, ProtocolError::TooLong { .. }));
    }

    #[test]
    fn malformed_json_is_error() {
        assert!(
            RegisterBrokerBody::decode(b"{\"topicConfigSerializeWrapper\":\"x\"}", false, 479)
                .is_err()
        );
        assert!(RegisterBrokerBody::decode(b"not json", false, 479).is_err());
    }

    fn arb_topic_config() -> impl Strategy<Value = TopicConfig> {
        (
            proptest::collection::btree_map("\\PC{0,6}", "\\PC{0,6}", 0..3),
            0..8i32,
            0..64i32,
            any::<bool>(),
            "[%|a-zA-Z0-9_\\-]{1,16}",
            0..64i32,
        )
            .prop_map(
                |(attributes, perm, read, multi, topic_name, write)| TopicConfig {
                    attributes,
                    order: false,
                    perm,
                    read_queue_nums: read,
                    topic_filter_type: if multi {
                        TopicFilterType::MultiTag
                    } else {
                        TopicFilterType::SingleTag
                    },
                    topic_name,
                    topic_sys_flag: 0,
                    write_queue_nums: write,
                },
            )
    }

    fn arb_data_version() -> impl Strategy<Value = DataVersion> {
        (any::<i64>(), any::<i64>(), any::<i64>()).prop_map(
            |(counter, state_version, timestamp)| DataVersion {
                counter,
                state_version,
                timestamp,
            },
        )
    }

    /// Bodies the compressed form carries losslessly (table keyed by topic name).
    fn arb_compressible() -> impl Strategy<Value = RegisterBrokerBody> {
        (
            arb_data_version(),
            proptest::collection::vec(arb_topic_config(), 0..4),
            proptest::collection::vec("\\PC{0,10}", 0..3),
            proptest::collection::btree_set("[a-zA-Z]{1,6}", 0..3),
        )
            .prop_map(|(data_version, topics, filter_server_list, mapped)| {
                let mut body = RegisterBrokerBody {
                    filter_server_list,
                    ..Default::default()
                };
                let w = &mut body.topic_config_serialize_wrapper;
                w.data_version = data_version;
                for t in topics {
                    w.topic_config_table.insert(t.topic_name.clone(), t);
                }
                for topic in mapped {
                    let info = json!({"topic": topic, "totalQueues": 2});
                    w.topic_queue_mapping_info_map.insert(topic, info);
                }
                body
            })
    }

    proptest! {
        #[test]
        fn compressed_round_trip(body in arb_compressible()) {
            let bytes = body.encode_compressed(VERSION_V5_0_0).unwrap();
            prop_assert_eq!(RegisterBrokerBody::decode(&bytes, true, VERSION_V5_0_0).unwrap(), body);
        }

        #[test]
        fn plain_round_trip(
            mut body in arb_compressible(),
            mapping in arb_data_version(),
            order in any::<bool>(),
            sys_flag in 0..4i32,
            detail in proptest::collection::btree_map("\\PC{0,6}", any::<i64>(), 0..3),
        ) {
            let w = &mut body.topic_config_serialize_wrapper;
            w.mapping_data_version = mapping;
            for t in w.topic_config_table.values_mut() {
                t.order = order;
                t.topic_sys_flag = sys_flag;
            }
            w.topic_queue_mapping_detail_map =
                detail.into_iter().map(|(k, v)| (k, json!({ "n": v }))).collect();
            let back = RegisterBrokerBody::decode(&body.encode(), false, 479).unwrap();
            prop_assert_eq!(back, body);
        }

        #[test]
        fn decode_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..256),
            compressed in any::<bool>(),
            version in prop_oneof![Just(0), Just(400), Just(479)],
        ) {
            let _ = RegisterBrokerBody::decode(&bytes, compressed, version);
        }

        #[test]
        fn decode_never_panics_on_deflated_garbage(
            raw in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let _ = RegisterBrokerBody::decode(&deflate(&raw), true, 479);
        }
    }
}
