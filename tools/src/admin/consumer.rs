//! consumerProgress and resetOffsetByTime.

use anyhow::bail;
use raftmq_client::admin::{AdminClient, ConsumerProgress};
use raftmq_client::route::MessageQueue;
use serde_json::{json, Value};

use super::cli;
use super::format::{date_time, parse_timestamp, queue_json};
use super::Report;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The progress table of one group (RocketMQ's columns; `#Client IP` with `-s`).
pub fn progress_text(p: &ConsumerProgress, show_client: bool) -> String {
    let mut text = format!(
        "{:<64}  {:<32}  {:<4}  {:<20}  {:<20}  {}{:<20}  {:<11}  {}\n",
        "#Topic",
        "#Broker Name",
        "#QID",
        "#Broker Offset",
        "#Consumer Offset",
        if show_client {
            format!("{:<40}  ", "#Client IP")
        } else {
            String::new()
        },
        "#Diff",
        "#Inflight",
        "#LastTime"
    );
    for r in &p.rows {
        let client = if show_client {
            format!("{:<40}  ", r.client.as_deref().unwrap_or("NA"))
        } else {
            String::new()
        };
        text.push_str(&format!(
            "{:<64}  {:<32}  {:<4}  {:<20}  {:<20}  {}{:<20}  {:<11}  {}\n",
            r.queue.topic,
            r.queue.broker_name,
            r.queue.queue_id,
            r.broker_offset,
            r.consumer_offset
                .map_or_else(|| "-".to_owned(), |o| o.to_string()),
            client,
            r.diff(),
            0,
            r.last_timestamp.map(date_time).unwrap_or_default()
        ));
    }
    text.push('\n');
    match p.consume_tps {
        Some(tps) => text.push_str(&format!("Consume TPS: {tps:.2}\n")),
        None => text.push_str("Consume TPS: n/a (a master does not answer GET_CONSUME_STATS)\n"),
    }
    text.push_str(&format!("Consume Diff Total: {}\n", p.diff_total()));
    text.push_str("Consume Inflight Total: 0\n");
    text
}

fn progress_json(group: &str, p: &ConsumerProgress) -> Value {
    let rows: Vec<Value> = p
        .rows
        .iter()
        .map(|r| {
            let mut v = queue_json(&r.queue);
            v["brokerOffset"] = json!(r.broker_offset);
            v["consumerOffset"] = json!(r.consumer_offset);
            v["diff"] = json!(r.diff());
            v["client"] = json!(r.client);
            v["lastTimestamp"] = json!(r.last_timestamp);
            v
        })
        .collect();
    json!({
        "group": group,
        "clients": p.clients,
        "queues": rows,
        "diffTotal": p.diff_total(),
        "consumeTps": p.consume_tps,
    })
}

/// `consumerProgress`: one group's queues (`-g`), or every group known by its retry topic.
pub async fn consumer_progress(
    admin: &AdminClient,
    a: cli::ConsumerProgress,
) -> anyhow::Result<Report> {
    let in_cluster: Option<Vec<String>> = match &a.cluster {
        Some(c) => Some(
            admin
                .cluster_masters(c)
                .await?
                .into_iter()
                .map(|g| g.broker_name)
                .collect(),
        ),
        None => None,
    };
    let keep = |p: &mut ConsumerProgress| {
        if let Some(groups) = &in_cluster {
            p.rows.retain(|r| groups.contains(&r.queue.broker_name));
        }
    };
    if let Some(group) = &a.group {
        let mut p = admin.consumer_progress(group, a.topic.as_deref()).await?;
        keep(&mut p);
        if p.rows.is_empty() {
            bail!(
                "consumer group {group} has no offsets{}",
                a.topic
                    .as_deref()
                    .map(|t| format!(" on topic {t}"))
                    .unwrap_or_default()
            );
        }
        return Ok(Report {
            text: progress_text(&p, a.show_client_ip),
            json: progress_json(group, &p),
        });
    }
    let mut text = format!(
        "{:<64}  {:<6}  {:<24} {:<5}  {:<14}  {:<7}  {}\n",
        "#Group", "#Count", "#Version", "#Type", "#Model", "#TPS", "#Diff Total"
    );
    let mut groups = Vec::new();
    for group in admin.consumer_groups().await? {
        let mut p = admin.consumer_progress(&group, a.topic.as_deref()).await?;
        keep(&mut p);
        let count = p.clients.len();
        text.push_str(&format!(
            "{:<64}  {:<6}  {:<24} {:<5}  {:<14}  {:<7}  {}\n",
            group,
            count,
            if count == 0 { "OFFLINE" } else { "" },
            "",
            "",
            "-",
            p.diff_total()
        ));
        groups.push(json!({"group": group, "count": count, "diffTotal": p.diff_total()}));
    }
    Ok(Report {
        text,
        json: json!({ "groups": groups }),
    })
}

/// `resetOffsetByTime`: each queue's offset for the group set to the first message stored
/// at or after `-s`, or (`-b`, `-q`, `-o`) one queue's offset set directly.
pub async fn reset_offset_by_time(
    admin: &AdminClient,
    a: cli::ResetOffsetByTime,
) -> anyhow::Result<Report> {
    let (stamp_text, entries) = match (a.offset, &a.timestamp) {
        (Some(offset), _) => {
            let (Some(broker), Some(queue_id)) = (&a.broker, a.queue) else {
                bail!("-o offset needs -b broker and -q queue");
            };
            let queue = MessageQueue {
                topic: a.topic.clone(),
                broker_name: broker.clone(),
                queue_id,
            };
            let stored = admin.reset_queue_offset(&a.group, &queue, offset).await?;
            (None, vec![(queue, stored)])
        }
        (None, Some(ts)) => {
            let ms = parse_timestamp(ts, now_ms())?;
            let entries = admin
                .reset_offset_by_time(
                    &a.group,
                    &a.topic,
                    ms,
                    a.broker.as_deref(),
                    a.queue,
                    a.force,
                )
                .await?;
            (
                Some((ts.clone(), ms)),
                entries.into_iter().map(|e| (e.queue, e.offset)).collect(),
            )
        }
        (None, None) => bail!("one of -s timestamp and -o offset is required"),
    };
    let mut text = String::new();
    if let Some((s, ms)) = &stamp_text {
        text.push_str(&format!(
            "rollback consumer offset by specified group[{}], topic[{}], force[{}], timestamp(string)[{s}], timestamp(long)[{ms}]\n",
            a.group, a.topic, a.force
        ));
    }
    text.push_str(&format!(
        "{:<40}  {:<40}  {:<40}\n",
        "#brokerName", "#queueId", "#offset"
    ));
    let mut rows = Vec::new();
    for (q, offset) in &entries {
        text.push_str(&format!(
            "{:<40}  {:<40}  {:<40}\n",
            q.broker_name, q.queue_id, offset
        ));
        let mut v = queue_json(q);
        v["offset"] = json!(offset);
        rows.push(v);
    }
    Ok(Report {
        text,
        json: json!({
            "group": a.group,
            "topic": a.topic,
            "timestamp": stamp_text.map(|(_, ms)| ms),
            "queues": rows,
        }),
    })
}

#[cfg(test)]
mod tests {
    use raftmq_client::admin::ProgressRow;

    use super::*;

    #[test]
    fn progress_table_has_rocketmq_columns_and_totals() {
        let p = ConsumerProgress {
            rows: vec![ProgressRow {
                queue: MessageQueue {
                    topic: "T".into(),
                    broker_name: "b".into(),
                    queue_id: 3,
                },
                broker_offset: 10,
                consumer_offset: Some(4),
                client: Some("10.0.0.1@1".into()),
                last_timestamp: None,
            }],
            clients: vec!["10.0.0.1@1".into()],
            consume_tps: Some(12.345),
        };
        let t = progress_text(&p, true);
        assert!(t.contains("Consume TPS: 12.35\n"), "{t}");
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("#Topic") && lines[0].contains("#Client IP"));
        let cols: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(cols, ["T", "b", "3", "10", "4", "10.0.0.1@1", "6", "0"]);
        assert!(t.contains("Consume Diff Total: 6"));
        assert!(!progress_text(&p, false).contains("Client IP"));
        assert_eq!(progress_json("g", &p)["queues"][0]["diff"], 6);
    }
}
