//! queryMsgById, queryMsgByKey, queryMsgByOffset, sendMessage, consumeMessage.

use anyhow::{bail, Context};
use bytes::Bytes;
use raftmq_client::admin::{AdminClient, SendRequest};
use raftmq_client::route::MessageQueue;
use raftmq_protocol::message::{keys, MessageRecord};
use serde_json::{json, Value};

use super::cli;
use super::format::{body_bytes, human_time, message_json, message_text, msg_id, parse_timestamp};
use super::Report;

/// Most hits of a UNIQ_KEY lookup (the broker's own cap).
const UNIQ_KEY_HITS_MAX: i32 = 32;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Text and JSON of one or more messages printed in full.
fn messages_report(found: &[MessageRecord], with_body: bool) -> Report {
    let text = found
        .iter()
        .map(|m| message_text(m, with_body))
        .collect::<Vec<_>>()
        .join("\n");
    Report {
        text,
        json: json!({ "messages": found.iter().map(message_json).collect::<Vec<_>>() }),
    }
}

/// One message id: an offset message id of this cluster, else (with a topic) a UNIQ_KEY.
async fn find_by_id(
    admin: &AdminClient,
    id: &str,
    topic: Option<&str>,
) -> anyhow::Result<MessageRecord> {
    let viewed = admin.view_message(id).await;
    let err = match viewed {
        Ok((_, m)) => return Ok(m),
        Err(e) => e,
    };
    let Some(topic) = topic else {
        return Err(anyhow::Error::new(err).context(format!(
            "message {id} not found by offset message id (give -t topic to look it up as a UNIQ_KEY)"
        )));
    };
    let hits = admin
        .query_messages(topic, id, UNIQ_KEY_HITS_MAX, 0, i64::MAX, true)
        .await
        .with_context(|| format!("looking up {id} as a UNIQ_KEY of topic {topic}"))?;
    // The oldest copy is the original (later ones would be resends of the same message).
    match hits.into_iter().min_by_key(|m| m.store_timestamp) {
        Some(m) => Ok(m),
        None => bail!("message {id} not found in topic {topic} (neither an offset message id of this cluster nor a UNIQ_KEY: {err})"),
    }
}

/// `queryMsgById`.
pub async fn query_by_id(admin: &AdminClient, a: cli::QueryMsgById) -> anyhow::Result<Report> {
    let mut found = Vec::new();
    for id in a.msg_id.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        found.push(find_by_id(admin, id, a.topic.as_deref()).await?);
    }
    if found.is_empty() {
        bail!("no message id given");
    }
    Ok(messages_report(&found, a.body_format.is_some()))
}

/// `queryMsgByKey`: `#Message ID  #QID  #Offset` per hit.
pub async fn query_by_key(admin: &AdminClient, a: cli::QueryMsgByKey) -> anyhow::Result<Report> {
    let found = admin
        .query_messages(&a.topic, &a.key, a.max_num, a.begin, a.end, false)
        .await?;
    if found.is_empty() {
        bail!("no message of topic {} has key {}", a.topic, a.key);
    }
    let mut text = format!("{:<50} {:>4} {:>40}\n", "#Message ID", "#QID", "#Offset");
    for m in &found {
        text.push_str(&format!(
            "{:<50} {:>4} {:>40}\n",
            msg_id(m),
            m.queue_id,
            m.queue_offset
        ));
    }
    Ok(Report {
        text,
        json: json!({ "messages": found.iter().map(message_json).collect::<Vec<_>>() }),
    })
}

/// `queryMsgByOffset`.
pub async fn query_by_offset(
    admin: &AdminClient,
    a: cli::QueryMsgByOffset,
) -> anyhow::Result<Report> {
    let queue = MessageQueue {
        topic: a.topic.clone(),
        broker_name: a.broker_name.clone(),
        queue_id: a.queue_id,
    };
    let m = admin.message_at(&queue, a.offset).await?;
    Ok(messages_report(&[m], a.body_format.is_some()))
}

/// `sendMessage`: `#Broker Name  #QID  #Send Result  #MsgId`.
pub async fn send_message(admin: &AdminClient, a: cli::SendMessage) -> anyhow::Result<Report> {
    let req = SendRequest {
        topic: a.topic.trim().to_owned(),
        body: Bytes::from(a.body.into_bytes()),
        tags: a.tags,
        keys: a.keys,
        broker_name: a.broker,
        queue_id: a.queue_id,
    };
    let out = admin.send_message(&req).await?;
    let mut text = format!(
        "{:<32}  {:<4}  {:<20}    {}\n",
        "#Broker Name", "#QID", "#Send Result", "#MsgId"
    );
    text.push_str(&format!(
        "{:<32}  {:<4}  {:<20}    {}\n",
        out.broker_name, out.queue_id, "SEND_OK", out.msg_id
    ));
    Ok(Report {
        text,
        json: json!({
            "brokerName": out.broker_name,
            "queueId": out.queue_id,
            "queueOffset": out.queue_offset,
            "sendStatus": "SEND_OK",
            "msgId": out.msg_id,
            "offsetMsgId": out.offset_msg_id,
            "brokerAddr": out.addr,
        }),
    })
}

/// One consumed message as a line.
fn consumed_line(m: &MessageRecord, broker_name: &str) -> String {
    format!(
        "MSGID: {} QUEUE: {}/{} OFFSET: {} STORE: {} TAGS: {} KEYS: {} BODY: {}\n",
        msg_id(m),
        broker_name,
        m.queue_id,
        m.queue_offset,
        human_time(m.store_timestamp),
        m.properties.get(keys::TAGS).unwrap_or(""),
        m.properties.get(keys::KEYS).unwrap_or(""),
        String::from_utf8_lossy(&body_bytes(m))
    )
}

/// `consumeMessage`: pulls up to `-c` messages (all queues, one group's, or one queue's,
/// from `-o` or the time `-s` up to `-e`) without committing anything.
pub async fn consume_message(
    admin: &AdminClient,
    a: cli::ConsumeMessage,
) -> anyhow::Result<Report> {
    if a.count == 0 {
        bail!("-c must be a positive number of messages");
    }
    let queues: Vec<MessageQueue> = match (&a.broker_name, a.queue_id) {
        (Some(b), Some(q)) => vec![MessageQueue {
            topic: a.topic.clone(),
            broker_name: b.clone(),
            queue_id: q,
        }],
        (b, _) => {
            let all = admin.topic_queues(&a.topic).await?;
            let picked: Vec<_> = all
                .into_iter()
                .filter(|q| b.as_ref().is_none_or(|b| *b == q.broker_name))
                .collect();
            if picked.is_empty() {
                bail!(
                    "topic {} has no queues{}",
                    a.topic,
                    b.as_ref()
                        .map(|b| format!(" on broker {b}"))
                        .unwrap_or_default()
                );
            }
            picked
        }
    };
    let now = now_ms();
    let begin = a
        .begin
        .as_deref()
        .map(|s| parse_timestamp(s, now))
        .transpose()?;
    let end = a
        .end
        .as_deref()
        .map(|s| parse_timestamp(s, now))
        .transpose()?;
    let mut text = String::new();
    let mut consumed: Vec<Value> = Vec::new();
    let mut left = a.count;
    for q in &queues {
        if left == 0 {
            break;
        }
        let addr = admin.queue_addr(q).await?;
        let from = match (a.offset, begin) {
            (Some(o), _) => o,
            (None, Some(t)) => admin.search_offset(&addr, q, t).await?,
            (None, None) => 0,
        };
        let until = match end {
            Some(t) => Some(admin.search_offset(&addr, q, t).await?),
            None => None,
        };
        let messages = admin.read_queue(q, from, until, left).await?;
        if messages.is_empty() {
            continue;
        }
        text.push_str("Consume ok\n");
        for m in &messages {
            text.push_str(&consumed_line(m, &q.broker_name));
            let mut v = message_json(m);
            v["brokerName"] = json!(q.broker_name);
            consumed.push(v);
        }
        left -= messages.len();
    }
    if consumed.is_empty() {
        text.push_str(&format!(
            "no message of topic {} in the range asked\n",
            a.topic
        ));
    }
    Ok(Report {
        text,
        json: json!({ "messages": consumed }),
    })
}
