//! Text and JSON shapes shared by the subcommands: timestamps as RocketMQ prints them
//! (local time), permissions, topic configs and message dumps.

use anyhow::{bail, Context};
use chrono::{Local, LocalResult, NaiveDateTime, TimeZone};
use raftmq_client::route::MessageQueue;
use raftmq_protocol::body::topic::perm;
use raftmq_protocol::body::TopicConfig;
use raftmq_protocol::message::{decompress_body, keys, sysflag, MessageRecord};
use serde_json::{json, Value};

/// Largest body decompressed for display.
const BODY_BYTES_MAX: usize = 64 << 20;

/// `yyyy-MM-dd HH:mm:ss,SSS` in local time (RocketMQ's `timeMillisToHumanString2`).
pub fn human_time(ms: i64) -> String {
    match Local.timestamp_millis_opt(ms) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => {
            t.format("%Y-%m-%d %H:%M:%S,%3f").to_string()
        }
        LocalResult::None => ms.to_string(),
    }
}

/// `yyyy-MM-dd HH:mm:ss` in local time.
pub fn date_time(ms: i64) -> String {
    match Local.timestamp_millis_opt(ms) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => {
            t.format("%Y-%m-%d %H:%M:%S").to_string()
        }
        LocalResult::None => ms.to_string(),
    }
}

/// A timestamp option as RocketMQ's tools take it: `now`, milliseconds since the epoch,
/// or `yyyy-MM-dd#HH:mm:ss:SSS` in local time.
pub fn parse_timestamp(text: &str, now_ms: i64) -> anyhow::Result<i64> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("now") {
        return Ok(now_ms);
    }
    if let Ok(ms) = t.parse::<i64>() {
        return Ok(ms);
    }
    let naive = NaiveDateTime::parse_from_str(t, "%Y-%m-%d#%H:%M:%S:%3f").with_context(|| {
        format!("bad timestamp {t:?}: expected now, milliseconds or yyyy-MM-dd#HH:mm:ss:SSS")
    })?;
    match Local.from_local_datetime(&naive) {
        LocalResult::Single(d) | LocalResult::Ambiguous(d, _) => Ok(d.timestamp_millis()),
        LocalResult::None => bail!("timestamp {t} does not exist in the local time zone"),
    }
}

/// Java's `PermName.perm2String`: `R`, `W`, `X` (inherit) or `-` each.
pub fn perm_string(p: i32) -> String {
    let bit = |on: bool, c: char| if on { c } else { '-' };
    [
        bit(perm::is_readable(p), 'R'),
        bit(perm::is_writable(p), 'W'),
        bit(perm::is_inherited(p), 'X'),
    ]
    .iter()
    .collect()
}

/// A topic config the way RocketMQ prints it after `updateTopic`.
pub fn topic_config_line(c: &TopicConfig) -> String {
    let attrs: Vec<String> = c
        .attributes
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!(
        "TopicConfig [topicName={}, readQueueNums={}, writeQueueNums={}, perm={}, topicFilterType={}, topicSysFlag={}, order={}, attributes={{{}}}]",
        c.topic_name,
        c.read_queue_nums,
        c.write_queue_nums,
        perm_string(c.perm),
        c.topic_filter_type.as_str(),
        c.topic_sys_flag,
        c.order,
        attrs.join(", ")
    )
}

/// A queue as JSON.
pub fn queue_json(q: &MessageQueue) -> Value {
    json!({"topic": q.topic, "brokerName": q.broker_name, "queueId": q.queue_id})
}

/// The body as stored, decompressed if the record says so.
pub fn body_bytes(m: &MessageRecord) -> Vec<u8> {
    if m.sys_flag & sysflag::COMPRESSED != 0 {
        decompress_body(&m.body, m.sys_flag, BODY_BYTES_MAX).unwrap_or_else(|_| m.body.to_vec())
    } else {
        m.body.to_vec()
    }
}

/// The client message id (UNIQ_KEY), else the offset message id.
pub fn msg_id(m: &MessageRecord) -> String {
    m.properties
        .get(keys::UNIQ_KEY)
        .map_or_else(|| m.offset_msg_id(), str::to_owned)
}

/// A message as JSON (body as UTF-8 text, lossy).
pub fn message_json(m: &MessageRecord) -> Value {
    let props: serde_json::Map<String, Value> = m
        .properties
        .sorted()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
        .collect();
    json!({
        "msgId": msg_id(m),
        "offsetMsgId": m.offset_msg_id(),
        "topic": m.topic,
        "tags": m.properties.get(keys::TAGS),
        "keys": m.properties.get(keys::KEYS),
        "queueId": m.queue_id,
        "queueOffset": m.queue_offset,
        "commitLogOffset": m.physical_offset,
        "reconsumeTimes": m.reconsume_times,
        "bornTimestamp": m.born_timestamp,
        "storeTimestamp": m.store_timestamp,
        "bornHost": m.born_host.to_string(),
        "storeHost": m.store_host.to_string(),
        "sysFlag": m.sys_flag,
        "properties": props,
        "body": String::from_utf8_lossy(&body_bytes(m)),
    })
}

/// Writes the body where RocketMQ's tools put it (`<tmp>/rocketmq/msgbodys/<msgId>`);
/// the path, or `None` if it cannot be written.
fn write_body_file(m: &MessageRecord) -> Option<String> {
    let dir = std::env::temp_dir().join("rocketmq").join("msgbodys");
    std::fs::create_dir_all(&dir).ok()?;
    let path = dir.join(msg_id(m));
    std::fs::write(&path, body_bytes(m)).ok()?;
    Some(path.display().to_string())
}

/// A message as `queryMsgById` prints it (`%-20s %s` lines).
pub fn message_text(m: &MessageRecord, with_body: bool) -> String {
    let props: Vec<String> = m
        .properties
        .sorted()
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut lines = vec![
        ("OffsetID:", m.offset_msg_id()),
        ("Topic:", m.topic.clone()),
        (
            "Tags:",
            format!("[{}]", m.properties.get(keys::TAGS).unwrap_or("null")),
        ),
        (
            "Keys:",
            format!("[{}]", m.properties.get(keys::KEYS).unwrap_or("null")),
        ),
        ("Queue ID:", m.queue_id.to_string()),
        ("Queue Offset:", m.queue_offset.to_string()),
        ("CommitLog Offset:", m.physical_offset.to_string()),
        ("Reconsume Times:", m.reconsume_times.to_string()),
        ("Born Timestamp:", human_time(m.born_timestamp)),
        ("Store Timestamp:", human_time(m.store_timestamp)),
        ("Born Host:", m.born_host.to_string()),
        ("Store Host:", m.store_host.to_string()),
        ("System Flag:", m.sys_flag.to_string()),
        ("Properties:", format!("{{{}}}", props.join(", "))),
    ];
    if let Some(path) = write_body_file(m) {
        lines.push(("Message Body Path:", path));
    }
    if with_body {
        lines.push((
            "Message Body:",
            String::from_utf8_lossy(&body_bytes(m)).into_owned(),
        ));
    }
    lines
        .into_iter()
        .map(|(k, v)| format!("{k:<20} {v}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn timestamps_parse_as_rocketmq_tools_take_them() {
        assert_eq!(parse_timestamp("now", 42).unwrap(), 42);
        assert_eq!(
            parse_timestamp(" 1700000000000 ", 0).unwrap(),
            1_700_000_000_000
        );
        let local = parse_timestamp("2024-03-05#10:20:30:123", 0).unwrap();
        assert_eq!(human_time(local), "2024-03-05 10:20:30,123");
        assert_eq!(date_time(local), "2024-03-05 10:20:30");
        let e = parse_timestamp("yesterday", 0).unwrap_err().to_string();
        assert!(e.contains("yyyy-MM-dd#HH:mm:ss:SSS"), "{e}");
    }

    #[test]
    fn perms_and_topic_configs_print_like_java() {
        assert_eq!(perm_string(6), "RW-");
        assert_eq!(perm_string(7), "RWX");
        assert_eq!(perm_string(4), "R--");
        let mut c = TopicConfig::new("T", 4);
        c.attributes.insert("message.type".into(), "NORMAL".into());
        assert_eq!(
            topic_config_line(&c),
            "TopicConfig [topicName=T, readQueueNums=4, writeQueueNums=4, perm=RW-, topicFilterType=SINGLE_TAG, topicSysFlag=0, order=false, attributes={message.type=NORMAL}]"
        );
    }
}
