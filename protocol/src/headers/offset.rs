//! Consumer-offset and queue-offset headers (spec §2.4.5–§2.4.7).

use crate::ext_header;

ext_header! {
    /// QUERY_CONSUMER_OFFSET (14).
    pub struct QueryConsumerOffsetRequestHeader {
        /// Consumer group.
        consumer_group: String => "consumerGroup",
        /// Topic.
        topic: String => "topic",
        /// Queue id.
        queue_id: i32 => "queueId",
        /// Answer 0 for a young queue when no offset is stored.
        set_zero_if_not_found: Option<bool> => "setZeroIfNotFound",
        /// Broker group name.
        bname: Option<String> => "bname",
    }
}

ext_header! {
    /// Response of QUERY_CONSUMER_OFFSET, GET_MAX_OFFSET, GET_MIN_OFFSET and SEARCH_OFFSET_BY_TIMESTAMP.
    pub struct OffsetResponseHeader {
        /// The offset.
        offset: i64 => "offset",
    }
}

ext_header! {
    /// UPDATE_CONSUMER_OFFSET (15), usually oneway.
    pub struct UpdateConsumerOffsetRequestHeader {
        /// Consumer group.
        consumer_group: String => "consumerGroup",
        /// Topic.
        topic: String => "topic",
        /// Queue id.
        queue_id: i32 => "queueId",
        /// Next offset to consume.
        commit_offset: i64 => "commitOffset",
        /// Broker group name.
        bname: Option<String> => "bname",
    }
}

ext_header! {
    /// GET_MAX_OFFSET (30).
    pub struct GetMaxOffsetRequestHeader {
        /// Topic.
        topic: String => "topic",
        /// Queue id.
        queue_id: i32 => "queueId",
        /// Only committed messages (default true).
        committed: Option<bool> => "committed",
        /// Broker group name.
        bname: Option<String> => "bname",
    }
}

ext_header! {
    /// GET_MIN_OFFSET (31) and GET_EARLIEST_MSG_STORETIME (32).
    pub struct QueueRequestHeader {
        /// Topic.
        topic: String => "topic",
        /// Queue id.
        queue_id: i32 => "queueId",
        /// Broker group name.
        bname: Option<String> => "bname",
    }
}

ext_header! {
    /// SEARCH_OFFSET_BY_TIMESTAMP (29).
    pub struct SearchOffsetRequestHeader {
        /// Topic.
        topic: String => "topic",
        /// Queue id.
        queue_id: i32 => "queueId",
        /// Store time to search for, ms.
        timestamp: i64 => "timestamp",
        /// `lower` (default) or `upper`, any case.
        boundary_type: Option<String> => "boundaryType",
        /// Broker group name.
        bname: Option<String> => "bname",
    }
}

ext_header! {
    /// GET_EARLIEST_MSG_STORETIME response.
    pub struct EarliestMsgStoretimeResponseHeader {
        /// Store time of the queue's first message, ms.
        timestamp: i64 => "timestamp",
    }
}

ext_header! {
    /// INVOKE_BROKER_TO_RESET_OFFSET (222, admin → broker) and RESET_CONSUMER_CLIENT_OFFSET
    /// (220, broker → each online consumer of the group, with a [`ResetOffsetBody`]).
    ///
    /// [`ResetOffsetBody`]: crate::body::ResetOffsetBody
    pub struct ResetOffsetRequestHeader {
        /// Topic.
        topic: String => "topic",
        /// Consumer group.
        group: String => "group",
        /// Each queue goes to its first message stored at or after this, ms since the
        /// epoch (-1: to the queue's end).
        timestamp: i64 => "timestamp",
        /// Set the offsets even where they move forward (false: only roll back).
        is_force: bool => "isForce",
        /// Only this queue (absent or -1: every queue of the topic on the broker).
        queue_id: Option<i32> => "queueId",
        /// With `queueId`: this offset instead of one found by `timestamp`.
        offset: Option<i64> => "offset",
    }
}

ext_header! {
    /// GET_CONSUME_STATS (208): a group's progress on one broker.
    pub struct GetConsumeStatsRequestHeader {
        /// Consumer group.
        consumer_group: String => "consumerGroup",
        /// Only this topic (absent or empty: every topic the group has offsets for).
        topic: Option<String> => "topic",
    }
}
