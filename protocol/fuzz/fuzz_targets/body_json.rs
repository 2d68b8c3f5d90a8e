//! `body::decode_json` for TopicRouteData, ClusterInfo, HeartbeatData, LockBatchRequestBody
//! (and the other float-free body types), plus `body::quote_bare_int_keys`.
//!
//! Round trip: a body that decodes encodes to standard JSON that decodes to the same value
//! and re-encodes to the same bytes. The rewriter leaves valid JSON untouched and is
//! idempotent.
#![no_main]

use std::borrow::Cow;

use libfuzzer_sys::fuzz_target;
use raftmq_protocol::body::{
    decode_json, encode_json, quote_bare_int_keys, ClusterInfo, ConsumerIdList, DataVersion,
    HeartbeatData, KvTable, LockBatchRequestBody, LockBatchResponseBody, TopicList, TopicRouteData,
};

/// A macro rather than a generic fn so the crate needs no direct serde dependency.
macro_rules! check {
    ($t:ty, $data:expr) => {
        if let Ok(value) = decode_json::<$t>("fuzz", $data) {
            let bytes = encode_json(&value);
            let back: $t = decode_json("fuzz", &bytes).expect("encoded body decodes");
            assert_eq!(back, value, "JSON body round trip");
            assert_eq!(
                encode_json(&back),
                bytes,
                "JSON body encoding is not stable"
            );
        }
    };
}

fuzz_target!(|data: &[u8]| {
    let fixed = quote_bare_int_keys(data);
    assert!(fixed.len() >= data.len());
    if serde_json::from_slice::<serde_json::Value>(data).is_ok() {
        assert!(
            matches!(fixed, Cow::Borrowed(_)),
            "valid JSON was rewritten: {:?}",
            String::from_utf8_lossy(&fixed)
        );
    }
    assert_eq!(
        quote_bare_int_keys(&fixed).as_ref(),
        fixed.as_ref(),
        "rewriting is not idempotent"
    );

    check!(TopicRouteData, data);
    check!(ClusterInfo, data);
    check!(HeartbeatData, data);
    check!(LockBatchRequestBody, data);
    check!(LockBatchResponseBody, data);
    check!(KvTable, data);
    check!(TopicList, data);
    check!(ConsumerIdList, data);
    check!(DataVersion, data);
});
