//! SEND_MESSAGE (10), SEND_MESSAGE_V2 (310) and SEND_BATCH_MESSAGE (320) headers (spec §2.4.1).

use crate::ext_header;

ext_header! {
    /// SEND_MESSAGE (10): long key names. The canonical form the broker works with.
    pub struct SendMessageRequestHeader {
        /// Producer group.
        producer_group: String => "producerGroup",
        /// Target topic.
        topic: String => "topic",
        /// Template topic for auto-creation (`TBW102`).
        default_topic: String => "defaultTopic",
        /// Queue count for auto-creation.
        default_topic_queue_nums: i32 => "defaultTopicQueueNums",
        /// Target queue; negative = broker picks.
        queue_id: i32 => "queueId",
        /// Message sysFlag (compression, transaction bits).
        sys_flag: i32 => "sysFlag",
        /// Producer clock, ms.
        born_timestamp: i64 => "bornTimestamp",
        /// User flag.
        flag: i32 => "flag",
        /// Properties string (spec §3.3).
        properties: Option<String> => "properties",
        /// Retry count.
        reconsume_times: Option<i32> => "reconsumeTimes",
        /// Unit mode.
        unit_mode: Option<bool> => "unitMode",
        /// Retry budget on `%RETRY%` resends.
        max_reconsume_times: Option<i32> => "maxReconsumeTimes",
        /// Body is a batch (spec §2.4.3).
        batch: Option<bool> => "batch",
        /// Target broker group name (5.x).
        bname: Option<String> => "bname",
    }
}

ext_header! {
    /// SEND_MESSAGE_V2 (310) and SEND_BATCH_MESSAGE (320): one-letter keys.
    pub struct SendMessageRequestHeaderV2 {
        /// producerGroup.
        a: String => "a",
        /// topic.
        b: String => "b",
        /// defaultTopic.
        c: String => "c",
        /// defaultTopicQueueNums.
        d: i32 => "d",
        /// queueId.
        e: i32 => "e",
        /// sysFlag.
        f: i32 => "f",
        /// bornTimestamp.
        g: i64 => "g",
        /// flag.
        h: i32 => "h",
        /// properties.
        i: Option<String> => "i",
        /// reconsumeTimes.
        j: Option<i32> => "j",
        /// unitMode.
        k: Option<bool> => "k",
        /// maxReconsumeTimes.
        l: Option<i32> => "l",
        /// batch.
        m: Option<bool> => "m",
        /// bname.
        n: Option<String> => "n",
    }
}

impl From<SendMessageRequestHeaderV2> for SendMessageRequestHeader {
    fn from(v: SendMessageRequestHeaderV2) -> Self {
        SendMessageRequestHeader {
            producer_group: v.a,
            topic: v.b,
            default_topic: v.c,
            default_topic_queue_nums: v.d,
            queue_id: v.e,
            sys_flag: v.f,
            born_timestamp: v.g,
            flag: v.h,
            properties: v.i,
            reconsume_times: v.j,
            unit_mode: v.k,
            max_reconsume_times: v.l,
            batch: v.m,
            bname: v.n,
        }
    }
}

impl From<SendMessageRequestHeader> for SendMessageRequestHeaderV2 {
    fn from(v: SendMessageRequestHeader) -> Self {
        SendMessageRequestHeaderV2 {
            a: v.producer_group,
            b: v.topic,
            c: v.default_topic,
            d: v.default_topic_queue_nums,
            e: v.queue_id,
            f: v.sys_flag,
            g: v.born_timestamp,
            h: v.flag,
            i: v.properties,
            j: v.reconsume_times,
            k: v.unit_mode,
            l: v.max_reconsume_times,
            m: v.batch,
            n: v.bname,
        }
    }
}

ext_header! {
    /// Send response. `MSG_REGION` and `TRACE_ON` are always sent: Java clients
    /// dereference them unconditionally.
    pub struct SendMessageResponseHeader {
        /// Offset message id (ids joined by `,` for a batch).
        msg_id: String => "msgId",
        /// Queue actually used.
        queue_id: i32 => "queueId",
        /// Queue offset of the (first) message.
        queue_offset: i64 => "queueOffset",
        /// The message's UNIQ_KEY.
        transaction_id: Option<String> => "transactionId",
        /// Inner-batch id (unused).
        batch_uniq_id: Option<String> => "batchUniqId",
        /// Region, `DefaultRegion`.
        msg_region: String => "MSG_REGION",
        /// `true`/`false`.
        trace_on: String => "TRACE_ON",
    }
}
