//! Client, transaction, query and topic-admin headers (spec §2.4.9–§2.4.16, §2.6).

use crate::ext_header;

ext_header! {
    /// UNREGISTER_CLIENT (35).
    pub struct UnregisterClientRequestHeader {
        /// Client id.
        client_id: String => "clientID",
        /// Producer group to leave.
        producer_group: Option<String> => "producerGroup",
        /// Consumer group to leave.
        consumer_group: Option<String> => "consumerGroup",
    }
}

ext_header! {
    /// GET_CONSUMER_LIST_BY_GROUP (38) and NOTIFY_CONSUMER_IDS_CHANGED (40).
    pub struct ConsumerGroupRequestHeader {
        /// Consumer group.
        consumer_group: String => "consumerGroup",
    }
}

ext_header! {
    /// CONSUMER_SEND_MSG_BACK (36).
    pub struct ConsumerSendMsgBackRequestHeader {
        /// Physical offset of the returned message.
        offset: i64 => "offset",
        /// Consumer group.
        group: String => "group",
        /// 0 = broker chooses, > 0 explicit, < 0 straight to DLQ.
        delay_level: i32 => "delayLevel",
        /// Message id the consumer saw.
        origin_msg_id: Option<String> => "originMsgId",
        /// Original topic.
        origin_topic: Option<String> => "originTopic",
        /// Unit mode.
        unit_mode: Option<bool> => "unitMode",
        /// Retry budget.
        max_reconsume_times: Option<i32> => "maxReconsumeTimes",
        /// Broker group name.
        bname: Option<String> => "bname",
    }
}

ext_header! {
    /// END_TRANSACTION (37), oneway.
    pub struct EndTransactionRequestHeader {
        /// Real topic.
        topic: Option<String> => "topic",
        /// Must equal the half message's PGROUP.
        producer_group: String => "producerGroup",
        /// Half message's queue offset.
        tran_state_table_offset: i64 => "tranStateTableOffset",
        /// Half message's physical offset.
        commit_log_offset: i64 => "commitLogOffset",
        /// 8 commit, 12 rollback, 0 unknown.
        commit_or_rollback: i32 => "commitOrRollback",
        /// Answer to CHECK_TRANSACTION_STATE.
        from_transaction_check: Option<bool> => "fromTransactionCheck",
        /// The UNIQ_KEY.
        msg_id: String => "msgId",
        /// Transaction id.
        transaction_id: Option<String> => "transactionId",
        /// Broker group name.
        bname: Option<String> => "bname",
    }
}

ext_header! {
    /// CHECK_TRANSACTION_STATE (39), broker → producer, oneway.
    pub struct CheckTransactionStateRequestHeader {
        /// Real topic.
        topic: Option<String> => "topic",
        /// Half message's queue offset.
        tran_state_table_offset: i64 => "tranStateTableOffset",
        /// Half message's physical offset.
        commit_log_offset: i64 => "commitLogOffset",
        /// UNIQ_KEY.
        msg_id: Option<String> => "msgId",
        /// Transaction id.
        transaction_id: Option<String> => "transactionId",
        /// Offset message id.
        offset_msg_id: Option<String> => "offsetMsgId",
        /// Broker group name.
        bname: Option<String> => "bname",
    }
}

ext_header! {
    /// QUERY_MESSAGE (12).
    pub struct QueryMessageRequestHeader {
        /// Topic.
        topic: String => "topic",
        /// Key (or UNIQ_KEY with `_UNIQUE_KEY_QUERY`).
        key: String => "key",
        /// Max hits.
        max_num: i32 => "maxNum",
        /// Store time lower bound, ms.
        begin_timestamp: i64 => "beginTimestamp",
        /// Store time upper bound, ms.
        end_timestamp: i64 => "endTimestamp",
        /// `key` is a UNIQ_KEY.
        unique_key_query: Option<bool> => "_UNIQUE_KEY_QUERY",
    }
}

ext_header! {
    /// QUERY_MESSAGE response.
    pub struct QueryMessageResponseHeader {
        /// Index last update time, ms.
        index_last_update_timestamp: i64 => "indexLastUpdateTimestamp",
        /// Index last update physical offset.
        index_last_update_phyoffset: i64 => "indexLastUpdatePhyoffset",
    }
}

ext_header! {
    /// VIEW_MESSAGE_BY_ID (33).
    pub struct ViewMessageRequestHeader {
        /// Physical offset.
        offset: i64 => "offset",
        /// Topic.
        topic: Option<String> => "topic",
    }
}

ext_header! {
    /// UPDATE_AND_CREATE_TOPIC (17).
    pub struct CreateTopicRequestHeader {
        /// Topic.
        topic: String => "topic",
        /// Ignored (`TBW102`).
        default_topic: String => "defaultTopic",
        /// Read queue count.
        read_queue_nums: i32 => "readQueueNums",
        /// Write queue count.
        write_queue_nums: i32 => "writeQueueNums",
        /// PermName bits.
        perm: i32 => "perm",
        /// `SINGLE_TAG` or `MULTI_TAG`.
        topic_filter_type: String => "topicFilterType",
        /// Topic sysFlag.
        topic_sys_flag: Option<i32> => "topicSysFlag",
        /// Ordered topic marker.
        order: bool => "order",
        /// 5.x attributes `+k=v,-k`.
        attributes: Option<String> => "attributes",
        /// Force.
        force: Option<bool> => "force",
    }
}

ext_header! {
    /// DELETE_TOPIC_IN_BROKER (215).
    pub struct DeleteTopicRequestHeader {
        /// Topic.
        topic: String => "topic",
    }
}

ext_header! {
    /// GET_ALL_TOPIC_CONFIG (21), 5.x paging fields.
    pub struct GetAllTopicConfigRequestHeader {
        /// Page start.
        topic_seq: Option<i32> => "topicSeq",
        /// Data version of the previous page.
        data_version: Option<String> => "dataVersion",
        /// Page size.
        max_topic_num: Option<i32> => "maxTopicNum",
    }
}

ext_header! {
    /// GET_ALL_TOPIC_CONFIG response.
    pub struct GetAllTopicConfigResponseHeader {
        /// Number of topics.
        total_topic_num: Option<i32> => "totalTopicNum",
    }
}

ext_header! {
    /// HEART_BEAT (34) response fields of 5.x brokers.
    pub struct HeartbeatResponseHeader {
        /// `true`: the broker understands fingerprint heartbeats.
        is_support_heart_beat_v2: Option<bool> => "IS_SUPPORT_HEART_BEAT_V2",
        /// Whether the subscription changed.
        is_sub_change: Option<bool> => "IS_SUB_CHANGE",
    }
}
