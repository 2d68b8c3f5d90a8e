//! Topic configuration bodies (remoting.md A.3–A.5, §2.4.16): permissions, DataVersion,
//! TopicConfig (JSON and the text form of compressed registrations) and its wrapper.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{ProtocolError, Result};

/// PermName bits (A.3): what clients may do with a topic on a broker group.
pub mod perm {
    /// Unused by clients; kept for completeness.
    pub const PRIORITY: i32 = 8;
    /// Consumers may pull.
    pub const READ: i32 = 4;
    /// Producers may send.
    pub const WRITE: i32 = 2;
    /// Template topic for auto-creation (`TBW102` has 7).
    pub const INHERIT: i32 = 1;
    /// The permission of a normal topic: read and write.
    pub const READ_WRITE: i32 = READ | WRITE;

    /// True when consumers may pull from a topic with these bits.
    pub fn is_readable(perm: i32) -> bool {
        perm & READ == READ
    }

    /// True when producers may send to a topic with these bits.
    pub fn is_writable(perm: i32) -> bool {
        perm & WRITE == WRITE
    }

    /// True for a template topic that auto-created topics inherit from.
    pub fn is_inherited(perm: i32) -> bool {
        perm & INHERIT == INHERIT
    }
}

/// Version stamp of a broker's topic table (A.5), compared by the NameServer.
///
/// Two versions are equal when all three members are equal; `state_version` carries the
/// leadership epoch (Raft term) so a deposed leader cannot overwrite a newer one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DataVersion {
    /// Incremented on every topic-config change.
    pub counter: i64,
    /// Monotonic state epoch; RaftMQ uses the Raft term.
    pub state_version: i64,
    /// Wall-clock ms of the last change.
    pub timestamp: i64,
}

impl DataVersion {
    /// Records one more change at `now_ms` (counter + 1, timestamp = now).
    pub fn bump(&mut self, now_ms: i64) {
        self.counter = self.counter.saturating_add(1);
        self.timestamp = now_ms;
    }
}

/// How a topic's tags are filtered; only informational for clients.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TopicFilterType {
    /// One tag per message (the default).
    #[default]
    #[serde(rename = "SINGLE_TAG")]
    SingleTag,
    /// Several tags per message.
    #[serde(rename = "MULTI_TAG")]
    MultiTag,
}

impl TopicFilterType {
    /// The Java enum constant name, as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            TopicFilterType::SingleTag => "SINGLE_TAG",
            TopicFilterType::MultiTag => "MULTI_TAG",
        }
    }

    /// Parses the Java enum constant name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "SINGLE_TAG" => Some(TopicFilterType::SingleTag),
            "MULTI_TAG" => Some(TopicFilterType::MultiTag),
            _ => None,
        }
    }
}

/// Java's default queue count for a topic created without one.
pub const DEFAULT_QUEUE_NUMS: i32 = 16;

/// One topic's configuration on a broker group (A.4).
///
/// Every member is defaulted on input (Java defaults: perm 6, 16 queues, SINGLE_TAG) so
/// 4.x bodies without `attributes` parse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicConfig {
    /// 5.x string attributes such as `message.type` → `NORMAL`; empty on 4.x.
    pub attributes: BTreeMap<String, String>,
    /// Ordered-topic marker.
    pub order: bool,
    /// PermName bits (see [`perm`]).
    pub perm: i32,
    /// Queues consumers read (0..n-1).
    pub read_queue_nums: i32,
    /// Tag filter type (informational).
    pub topic_filter_type: TopicFilterType,
    /// The topic name.
    pub topic_name: String,
    /// TopicSysFlag bits (UNIT 1, UNIT_SUB 2); clients only propagate them.
    pub topic_sys_flag: i32,
    /// Queues producers write (0..n-1).
    pub write_queue_nums: i32,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            attributes: BTreeMap::new(),
            order: false,
            perm: perm::READ_WRITE,
            read_queue_nums: DEFAULT_QUEUE_NUMS,
            topic_filter_type: TopicFilterType::SingleTag,
            topic_name: String::new(),
            topic_sys_flag: 0,
            write_queue_nums: DEFAULT_QUEUE_NUMS,
        }
    }
}

impl TopicConfig {
    /// A normal read-write topic with `queues` read and write queues.
    pub fn new(name: impl Into<String>, queues: i32) -> Self {
        TopicConfig {
            topic_name: name.into(),
            read_queue_nums: queues,
            write_queue_nums: queues,
            ..TopicConfig::default()
        }
    }

    /// The text form used in compressed registrations (§2.3.1, A.4):
    /// `name read write perm filterType attributesJSON`, single spaces.
    ///
    /// Like Java's `TopicConfig.encode`, `order` and `topicSysFlag` are not carried.
    pub fn to_text(&self) -> String {
        let attributes = serde_json::to_string(&self.attributes).unwrap_or_else(|_| "{}".into());
        format!(
            "{} {} {} {} {} {}",
            self.topic_name,
            self.read_queue_nums,
            self.write_queue_nums,
            self.perm,
            self.topic_filter_type.as_str(),
            attributes
        )
    }

    /// Parses the text form written by [`TopicConfig::to_text`] (or Java's `encode`).
    ///
    /// Needs at least the first five fields; the attributes JSON (which may contain spaces)
    /// is everything after the fifth space and may be absent or empty.
    pub fn from_text(text: &str) -> Result<Self> {
        let mut parts = text.splitn(6, ' ');
        let mut next = |key: &'static str| {
            parts.next().ok_or_else(|| ProtocolError::InvalidField {
                key: key.to_owned(),
                value: text.to_owned(),
                reason: "missing field in TopicConfig text".to_owned(),
            })
        };
        let topic_name = next("topicName")?.to_owned();
        let read_queue_nums = parse_int("readQueueNums", next("readQueueNums")?)?;
        let write_queue_nums = parse_int("writeQueueNums", next("writeQueueNums")?)?;
        let perm = parse_int("perm", next("perm")?)?;
        let filter = next("topicFilterType")?;
        let topic_filter_type =
            TopicFilterType::parse(filter).ok_or_else(|| ProtocolError::InvalidField {
                key: "topicFilterType".to_owned(),
                value: filter.to_owned(),
                reason: "expected SINGLE_TAG or MULTI_TAG in TopicConfig text".to_owned(),
            })?;
        let attributes = match parts.next().map(str::trim) {
            None | Some("") | Some("null") => BTreeMap::new(),
            Some(json) => serde_json::from_str(json).map_err(|e| ProtocolError::InvalidJson {
                what: "TopicConfig text attributes",
                detail: e.to_string(),
            })?,
        };
        Ok(TopicConfig {
            attributes,
            order: false,
            perm,
            read_queue_nums,
            topic_filter_type,
            topic_name,
            topic_sys_flag: 0,
            write_queue_nums,
        })
    }
}

/// Parses one decimal `i32` of the TopicConfig text form.
fn parse_int(key: &'static str, value: &str) -> Result<i32> {
    value.parse().map_err(|_| ProtocolError::InvalidField {
        key: key.to_owned(),
        value: value.to_owned(),
        reason: "not an i32 in TopicConfig text".to_owned(),
    })
}

/// A broker's whole topic table: inside RegisterBrokerBody and the GET_ALL_TOPIC_CONFIG
/// body (§2.3.1, §2.4.16). All members are defaulted on input and always emitted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicConfigSerializeWrapper {
    /// Version of `topic_config_table`.
    pub data_version: DataVersion,
    /// Version of the static-topic mappings (unused by RaftMQ; zero).
    pub mapping_data_version: DataVersion,
    /// Topic name → configuration, system topics included.
    pub topic_config_table: BTreeMap<String, TopicConfig>,
    /// Static-topic mapping details (out of scope; kept opaque).
    pub topic_queue_mapping_detail_map: BTreeMap<String, serde_json::Value>,
    /// Static-topic mapping info (out of scope; kept opaque).
    pub topic_queue_mapping_info_map: BTreeMap<String, serde_json::Value>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::body::json::{decode_json, encode_json};

    #[test]
    fn perm_bits() {
        assert!(perm::is_readable(6) && perm::is_writable(6) && !perm::is_inherited(6));
        assert!(perm::is_inherited(7));
        assert!(!perm::is_readable(perm::WRITE));
        assert!(!perm::is_writable(perm::READ | perm::PRIORITY));
    }

    #[test]
    fn data_version_json_and_equality() {
        let v = DataVersion {
            counter: 3,
            state_version: 0,
            timestamp: 1_700_000_000_000,
        };
        assert_eq!(
            encode_json(&v),
            br#"{"counter":3,"stateVersion":0,"timestamp":1700000000000}"#
        );
        let back: DataVersion = decode_json("DataVersion", &encode_json(&v)).unwrap();
        assert_eq!(back, v);
        assert_ne!(
            v,
            DataVersion {
                state_version: 1,
                ..v
            }
        );
        let mut b = v;
        b.bump(5);
        assert_eq!((b.counter, b.timestamp), (4, 5));
    }

    #[test]
    fn topic_config_json_matches_a4() {
        let t = TopicConfig::new("TopicTest", 4);
        assert_eq!(
            String::from_utf8(encode_json(&t)).unwrap(),
            r#"{"attributes":{},"order":false,"perm":6,"readQueueNums":4,"topicFilterType":"SINGLE_TAG","topicName":"TopicTest","topicSysFlag":0,"writeQueueNums":4}"#
        );
    }

    #[test]
    fn topic_config_4x_defaults() {
        let t: TopicConfig =
            decode_json("TopicConfig", br#"{"topicName":"T","perm":7,"x":1}"#).unwrap();
        assert_eq!(t.perm, 7);
        assert_eq!((t.read_queue_nums, t.write_queue_nums), (16, 16));
        assert_eq!(t.topic_filter_type, TopicFilterType::SingleTag);
        let t: TopicConfig =
            decode_json("TopicConfig", br#"{"topicFilterType":"MULTI_TAG"}"#).unwrap();
        assert_eq!(t.topic_filter_type, TopicFilterType::MultiTag);
    }

    #[test]
    fn text_form() {
        let mut t = TopicConfig::new("TopicTest", 4);
        assert_eq!(t.to_text(), "TopicTest 4 4 6 SINGLE_TAG {}");
        assert_eq!(TopicConfig::from_text(&t.to_text()).unwrap(), t);
        t.attributes
            .insert("message.type".into(), "NORMAL with space".into());
        t.topic_filter_type = TopicFilterType::MultiTag;
        t.read_queue_nums = 8;
        assert_eq!(TopicConfig::from_text(&t.to_text()).unwrap(), t);
        // Java's split drops a trailing empty attribute token; both forms parse.
        let bare = TopicConfig::from_text("T 1 2 6 SINGLE_TAG").unwrap();
        assert_eq!((bare.read_queue_nums, bare.write_queue_nums), (1, 2));
        assert!(TopicConfig::from_text("T 1 2 6 SINGLE_TAG ")
            .unwrap()
            .attributes
            .is_empty());
    }

    #[test]
    fn text_form_errors() {
        for bad in [
            "",
            "T",
            "T 1 2 6",
            "T x 2 6 SINGLE_TAG {}",
            "T 1 2 6 NOPE {}",
            "T 1 2 6 SINGLE_TAG {",
        ] {
            assert!(TopicConfig::from_text(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn wrapper_always_emits_members() {
        let w = TopicConfigSerializeWrapper::default();
        assert_eq!(
            String::from_utf8(encode_json(&w)).unwrap(),
            r#"{"dataVersion":{"counter":0,"stateVersion":0,"timestamp":0},"mappingDataVersion":{"counter":0,"stateVersion":0,"timestamp":0},"topicConfigTable":{},"topicQueueMappingDetailMap":{},"topicQueueMappingInfoMap":{}}"#
        );
        let back: TopicConfigSerializeWrapper = decode_json("w", b"{}").unwrap();
        assert_eq!(back, w);
    }
}
