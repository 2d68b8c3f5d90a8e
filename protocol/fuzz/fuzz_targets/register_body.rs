//! `body::RegisterBrokerBody::decode` in its plain JSON and zlib-compressed forms.
//!
//! Input: 1 byte of flags, 4 bytes big-endian request `version`, then the body. Flag bit 0:
//! the header's `compressed`; bit 1 (with bit 0): the target zlib-compresses the body
//! first, so the fuzzer reaches the inflated binary layout without inventing valid zlib.
//! Round trip: a decoded body re-encodes in the same form (`encode` or
//! `encode_compressed(version)`) and decodes to the same body. The opaque mapping maps are
//! compared only when they hold no float: serde_json's default float parsing is not
//! guaranteed to round-trip the last bit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use raftmq_protocol::body::RegisterBrokerBody;
use raftmq_protocol::message::compress_zlib;
use serde_json::Value;

fn has_float(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_f64(),
        Value::Array(a) => a.iter().any(has_float),
        Value::Object(o) => o.values().any(has_float),
        _ => false,
    }
}

fn assert_same(back: &RegisterBrokerBody, body: &RegisterBrokerBody) {
    let w = &body.topic_config_serialize_wrapper;
    let floats = w
        .topic_queue_mapping_detail_map
        .values()
        .chain(w.topic_queue_mapping_info_map.values())
        .any(has_float);
    if !floats {
        assert_eq!(back, body, "register body round trip");
        return;
    }
    let (bw, w) = (&back.topic_config_serialize_wrapper, w);
    assert_eq!(back.filter_server_list, body.filter_server_list);
    assert_eq!(bw.data_version, w.data_version);
    assert_eq!(bw.mapping_data_version, w.mapping_data_version);
    assert_eq!(bw.topic_config_table, w.topic_config_table);
    let keys =
        |m: &std::collections::BTreeMap<String, Value>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        keys(&bw.topic_queue_mapping_info_map),
        keys(&w.topic_queue_mapping_info_map)
    );
    assert_eq!(
        keys(&bw.topic_queue_mapping_detail_map),
        keys(&w.topic_queue_mapping_detail_map)
    );
}

fuzz_target!(|data: &[u8]| {
    let [flags, v0, v1, v2, v3, body @ ..] = data else {
        return;
    };
    let compressed = flags & 1 == 1;
    let version = i32::from_be_bytes([*v0, *v1, *v2, *v3]);
    let zipped;
    let body = if compressed && flags & 2 == 2 {
        zipped = compress_zlib(body);
        &zipped[..]
    } else {
        body
    };
    let Ok(decoded) = RegisterBrokerBody::decode(body, compressed, version) else {
        return;
    };
    let bytes = if compressed {
        decoded
            .encode_compressed(version)
            .expect("decoded body re-encodes compressed")
    } else {
        decoded.encode()
    };
    let back = RegisterBrokerBody::decode(&bytes, compressed, version)
        .expect("re-encoded register body decodes");
    assert_same(&back, &decoded);
});
