//! The replicated topic table and its DataVersion.

use std::collections::BTreeMap;

use raftmq_protocol::body::topic::{perm, DataVersion, TopicConfig};

/// System topic names (Java `TopicValidator` and friends).
pub mod system {
    /// Auto-creation template (perm 7 = read | write | inherit).
    pub const TBW102: &str = "TBW102";
    /// Broker self test.
    pub const SELF_TEST_TOPIC: &str = "SELF_TEST_TOPIC";
    /// Offset-moved events.
    pub const OFFSET_MOVED_EVENT: &str = "OFFSET_MOVED_EVENT";
    /// Delayed messages, queue = delay level - 1.
    pub const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";
    /// Transactional half messages.
    pub const TRANS_HALF_TOPIC: &str = "RMQ_SYS_TRANS_HALF_TOPIC";
    /// Transaction op records.
    pub const TRANS_OP_HALF_TOPIC: &str = "RMQ_SYS_TRANS_OP_HALF_TOPIC";
    /// Half messages that exhausted their checks.
    pub const TRANS_CHECK_MAX_TIME_TOPIC: &str = "TRANS_CHECK_MAX_TIME_TOPIC";
    /// Message traces.
    pub const TRACE_TOPIC: &str = "RMQ_SYS_TRACE_TOPIC";
    /// Number of delay levels (`messageDelayLevel` default), queues of [`SCHEDULE_TOPIC`].
    pub const DELAY_LEVELS: i32 = 18;
}

/// The topics every state machine starts with: a constant list, so every replica's initial
/// state is identical. Topics named after the cluster or broker (config-dependent in Java)
/// are not seeded: the leader proposes them as `UpsertTopic` when it wants them.
pub fn system_topics() -> Vec<TopicConfig> {
    let mut tbw = TopicConfig::new(system::TBW102, 8);
    tbw.perm = perm::READ | perm::WRITE | perm::INHERIT;
    vec![
        tbw,
        TopicConfig::new(system::SELF_TEST_TOPIC, 1),
        TopicConfig::new(system::OFFSET_MOVED_EVENT, 1),
        TopicConfig::new(system::SCHEDULE_TOPIC, system::DELAY_LEVELS),
        TopicConfig::new(system::TRANS_HALF_TOPIC, 1),
        TopicConfig::new(system::TRANS_OP_HALF_TOPIC, 1),
        TopicConfig::new(system::TRANS_CHECK_MAX_TIME_TOPIC, 1),
        TopicConfig::new(system::TRACE_TOPIC, 1),
    ]
}

/// Topic name → config, with the version the NameServer compares.
///
/// `data_version.counter` counts applied topic changes and `timestamp` is the proposing
/// leader's clock of the last one; `state_version` stays 0 here (the registration code
/// stamps the Raft term on what it sends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTable {
    topics: BTreeMap<String, TopicConfig>,
    data_version: DataVersion,
}

impl Default for TopicTable {
    /// The seeded table ([`system_topics`]) at DataVersion zero.
    fn default() -> Self {
        TopicTable {
            topics: system_topics()
                .into_iter()
                .map(|t| (t.topic_name.clone(), t))
                .collect(),
            data_version: DataVersion::default(),
        }
    }
}

impl TopicTable {
    /// A table with exactly these topics and version (snapshot install).
    pub fn from_parts(topics: Vec<TopicConfig>, data_version: DataVersion) -> Self {
        TopicTable {
            topics: topics
                .into_iter()
                .map(|t| (t.topic_name.clone(), t))
                .collect(),
            data_version,
        }
    }

    /// All topics by name.
    pub fn all(&self) -> &BTreeMap<String, TopicConfig> {
        &self.topics
    }

    /// One topic.
    pub fn get(&self, name: &str) -> Option<&TopicConfig> {
        self.topics.get(name)
    }

    /// The table's version.
    pub fn data_version(&self) -> DataVersion {
        self.data_version
    }

    /// Creates or replaces a topic and bumps the version.
    pub fn upsert(&mut self, config: TopicConfig, timestamp_ms: i64) {
        self.topics.insert(config.topic_name.clone(), config);
        self.data_version.bump(timestamp_ms);
    }

    /// Deletes a topic; bumps the version if it existed. Returns whether it did.
    pub fn delete(&mut self, name: &str, timestamp_ms: i64) -> bool {
        let existed = self.topics.remove(name).is_some();
        if existed {
            self.data_version.bump(timestamp_ms);
        }
        existed
    }
}
