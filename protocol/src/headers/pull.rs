//! PULL_MESSAGE (11) headers (spec §2.4.4).

use crate::ext_header;

/// PullSysFlag bit 0: store `commitOffset` for the group.
pub const PULL_FLAG_COMMIT_OFFSET: i32 = 1;
/// PullSysFlag bit 1: long polling allowed.
pub const PULL_FLAG_SUSPEND: i32 = 2;
/// PullSysFlag bit 2: the subscription is in the header.
pub const PULL_FLAG_SUBSCRIPTION: i32 = 4;
/// PullSysFlag bit 3: class filter (obsolete).
pub const PULL_FLAG_CLASS_FILTER: i32 = 8;
/// PullSysFlag bit 4: lite pull.
pub const PULL_FLAG_LITE_PULL: i32 = 16;

ext_header! {
    /// PULL_MESSAGE request; fields in Java's fast-encode order (vector V6).
    pub struct PullMessageRequestHeader {
        /// Consumer group.
        consumer_group: String => "consumerGroup",
        /// Topic.
        topic: String => "topic",
        /// Queue id.
        queue_id: i32 => "queueId",
        /// Logical offset to read from.
        queue_offset: i64 => "queueOffset",
        /// Max messages to return.
        max_msg_nums: i32 => "maxMsgNums",
        /// PullSysFlag bits.
        sys_flag: i32 => "sysFlag",
        /// Consumer's committed offset (valid with bit 0).
        commit_offset: i64 => "commitOffset",
        /// Max long-poll hold, ms.
        suspend_timeout_millis: i64 => "suspendTimeoutMillis",
        /// Subscription expression (with bit 2).
        subscription: Option<String> => "subscription",
        /// Subscription version (ms).
        sub_version: i64 => "subVersion",
        /// `TAG` or `SQL92`.
        expression_type: Option<String> => "expressionType",
        /// 5.x byte budget.
        max_msg_bytes: Option<i32> => "maxMsgBytes",
        /// Proxy only.
        request_source: Option<i32> => "requestSource",
        /// Proxy only (sic).
        proxy_froward_client_id: Option<String> => "proxyFrowardClientId",
        /// Logical queue addressing.
        lo: Option<bool> => "lo",
        /// Namespace.
        ns: Option<String> => "ns",
        /// Namespace already applied.
        nsd: Option<bool> => "nsd",
        /// Broker group name.
        bname: Option<String> => "bname",
        /// Oneway marker.
        oway: Option<bool> => "oway",
    }
}

ext_header! {
    /// PULL_MESSAGE response; the four required fields are sent on every outcome.
    pub struct PullMessageResponseHeader {
        /// Broker id to pull from next time; 0 = master.
        suggest_which_broker_id: i64 => "suggestWhichBrokerId",
        /// Offset for the next pull.
        next_begin_offset: i64 => "nextBeginOffset",
        /// Queue min offset.
        min_offset: i64 => "minOffset",
        /// Queue max offset (next to be written).
        max_offset: i64 => "maxOffset",
        /// Static topics only.
        offset_delta: Option<i64> => "offsetDelta",
        /// Topic sysFlag.
        topic_sys_flag: Option<i32> => "topicSysFlag",
        /// Group sysFlag.
        group_sys_flag: Option<i32> => "groupSysFlag",
        /// With NO_PERMISSION: what forbids.
        forbidden_type: Option<i32> => "forbiddenType",
    }
}
