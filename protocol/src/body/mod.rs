//! JSON bodies of remoting commands (remoting.md Appendix A and §2.3–2.4).
//!
//! Every struct declares its members in alphabetical order of their JSON names: serde
//! writes declaration order and Java writes sorted members, which the golden vectors
//! require. On input, optional members are defaulted and unknown members ignored; on
//! output, absent optionals are omitted. Parse with [`decode_json`] (which also accepts
//! fastjson's unquoted integer map keys), write with [`encode_json`].
//!
//! - [`json`]: the codec and the bare-integer-key rewriter.
//! - [`route`]: TopicRouteData, BrokerData, QueueData.
//! - [`cluster`]: ClusterInfo, TopicList, KvTable, ConsumerIdList.
//! - [`topic`]: permission bits, DataVersion, TopicConfig, TopicConfigSerializeWrapper.
//! - [`register`]: RegisterBrokerBody in its plain, bare-wrapper and compressed forms.
//! - [`heartbeat`]: HeartbeatData and its consumer, subscription and producer data.
//! - [`lock`]: MessageQueue and the LOCK/UNLOCK_BATCH_MQ bodies.
//! - [`raftmq`]: bodies of RaftMQ's own admin requests (RAFTMQ_GROUP_STATUS).

pub mod cluster;
pub mod consume_stats;
mod fastjson;
pub mod heartbeat;
pub mod json;
pub mod lock;
pub mod raftmq;
pub mod register;
pub mod reset;
pub mod route;
pub mod topic;

pub use cluster::{ClusterInfo, ConsumerIdList, KvTable, TopicList};
pub use consume_stats::{ConsumeStats, OffsetWrapper};
pub use heartbeat::{ConsumerData, HeartbeatData, ProducerData, SubscriptionData};
pub use json::{decode_json, encode_json, quote_bare_int_keys, try_encode_json};
pub use lock::{LockBatchRequestBody, LockBatchResponseBody, MessageQueue, UnlockBatchRequestBody};
pub use raftmq::RaftGroupStatus;
pub use register::{
    RegisterBrokerBody, REGISTER_INFLATED_BYTES_MAX, VERSION_V3_0_11, VERSION_V5_0_0,
};
pub use reset::ResetOffsetBody;
pub use route::{BrokerData, QueueData, TopicRouteData, MASTER_ID};
pub use topic::{
    perm, DataVersion, TopicConfig, TopicConfigSerializeWrapper, TopicFilterType,
    DEFAULT_QUEUE_NUMS,
};
