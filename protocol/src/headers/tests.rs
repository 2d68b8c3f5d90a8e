#![allow(clippy::unwrap_used)]

use proptest::prelude::*;

use super::*;
use crate::error::ProtocolError;

#[test]
fn missing_required_field_is_named() {
    let mut ext = StrMap::new();
    ext.insert("namespace", "ORDER_TOPIC_CONFIG");
    assert_eq!(
        GetKvConfigRequestHeader::from_ext(&ext),
        Err(ProtocolError::MissingField("key"))
    );
}

#[test]
fn bad_integer_names_key_and_value() {
    let mut ext = StrMap::new();
    ext.insert("topic", "T");
    ext.insert("queueId", "zero");
    match QueueRequestHeader::from_ext(&ext) {
        Err(ProtocolError::InvalidField { key, value, .. }) => {
            assert_eq!(key, "queueId");
            assert_eq!(value, "zero");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_keys_are_ignored_and_booleans_are_lenient() {
    let mut ext = StrMap::new();
    ext.insert("topic", "T");
    ext.insert("queueId", "-3");
    ext.insert("committed", "TRUE");
    ext.insert("AccessKey", "ak");
    let h = GetMaxOffsetRequestHeader::from_ext(&ext).unwrap();
    assert_eq!(h.queue_id, -3);
    assert_eq!(h.committed, Some(true));
    ext.insert("committed", "yes");
    assert_eq!(
        GetMaxOffsetRequestHeader::from_ext(&ext).unwrap().committed,
        Some(false)
    );
}

#[test]
fn optional_fields_absent_are_not_emitted() {
    let h = DeleteTopicFromNamesrvRequestHeader {
        topic: "T".into(),
        cluster_name: None,
    };
    let ext = h.to_ext();
    assert_eq!(ext.len(), 1);
    assert_eq!(
        DeleteTopicFromNamesrvRequestHeader::from_ext(&ext).unwrap(),
        h
    );
}

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_%|-]{1,40}"
}

proptest! {
    #[test]
    fn send_header_round_trips_through_both_key_sets(
        group in text(), topic in text(), qid in any::<i32>(), born in any::<i64>(),
        flag in any::<i32>(), props in proptest::option::of(text()), batch in proptest::option::of(any::<bool>()),
    ) {
        let h = SendMessageRequestHeader {
            producer_group: group, topic, default_topic: "TBW102".into(), default_topic_queue_nums: 4,
            queue_id: qid, sys_flag: 0, born_timestamp: born, flag, properties: props,
            reconsume_times: Some(0), unit_mode: None, max_reconsume_times: None, batch, bname: None,
        };
        prop_assert_eq!(SendMessageRequestHeader::from_ext(&h.to_ext()).unwrap(), h.clone());
        let v2 = SendMessageRequestHeaderV2::from(h.clone());
        let back: SendMessageRequestHeader = SendMessageRequestHeaderV2::from_ext(&v2.to_ext()).unwrap().into();
        prop_assert_eq!(back, h);
    }

    #[test]
    fn pull_header_round_trips(
        group in text(), off in any::<i64>(), max in any::<i32>(), sub in proptest::option::of(text()),
    ) {
        let h = PullMessageRequestHeader {
            consumer_group: group, topic: "T".into(), queue_id: 1, queue_offset: off, max_msg_nums: max,
            sys_flag: 3, commit_offset: off, suspend_timeout_millis: 15000, subscription: sub,
            sub_version: 0, ..Default::default()
        };
        prop_assert_eq!(PullMessageRequestHeader::from_ext(&h.to_ext()).unwrap(), h);
    }

    #[test]
    fn arbitrary_ext_maps_never_panic(entries in proptest::collection::vec((".{0,12}", ".{0,12}"), 0..12)) {
        let ext: StrMap = entries.into_iter().collect();
        let _ = RegisterBrokerRequestHeader::from_ext(&ext);
        let _ = PullMessageRequestHeader::from_ext(&ext);
        let _ = SendMessageRequestHeaderV2::from_ext(&ext);
        let _ = EndTransactionRequestHeader::from_ext(&ext);
    }
}
