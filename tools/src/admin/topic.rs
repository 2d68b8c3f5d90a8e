//! updateTopic, deleteTopic, topicList, topicRoute, topicStatus.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use raftmq_client::admin::AdminClient;
use raftmq_protocol::body::topic::perm;
use raftmq_protocol::body::{TopicConfig, TopicRouteData};
use serde_json::{json, Value};

use super::cli;
use super::format::{human_time, perm_string, queue_json, topic_config_line};
use super::Report;

/// TopicSysFlag bit of a unit topic.
const FLAG_UNIT: i32 = 0x1;
/// TopicSysFlag bit of a topic with unit subscriptions.
const FLAG_UNIT_SUB: i32 = 0x2;

/// `+key=value,+key2=value2` into a map (removals make no sense on creation and are
/// refused here).
pub fn parse_attributes(text: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item.strip_prefix('+').and_then(|kv| kv.split_once('=')) {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k.to_owned(), v.to_owned());
            }
            _ => bail!("attribute {item:?} is not +key=value (only additions are supported)"),
        }
    }
    Ok(out)
}

/// The config `updateTopic` asks for.
pub fn topic_config(a: &cli::UpdateTopic) -> anyhow::Result<TopicConfig> {
    if a.perm & !(perm::READ | perm::WRITE | perm::INHERIT | perm::PRIORITY) != 0 || a.perm < 0 {
        bail!("-p {} is not a permission (2 = W, 4 = R, 6 = RW)", a.perm);
    }
    let mut c = TopicConfig::new(a.topic.trim(), a.read_queue_nums);
    c.write_queue_nums = a.write_queue_nums;
    c.perm = a.perm;
    c.order = a.order;
    c.topic_sys_flag =
        if a.unit { FLAG_UNIT } else { 0 } | if a.has_unit_sub { FLAG_UNIT_SUB } else { 0 };
    if let Some(attrs) = &a.attributes {
        c.attributes = parse_attributes(attrs)?;
    }
    Ok(c)
}

fn config_json(c: &TopicConfig) -> Value {
    json!({
        "topicName": c.topic_name,
        "readQueueNums": c.read_queue_nums,
        "writeQueueNums": c.write_queue_nums,
        "perm": c.perm,
        "topicFilterType": c.topic_filter_type.as_str(),
        "topicSysFlag": c.topic_sys_flag,
        "order": c.order,
        "attributes": c.attributes,
    })
}

/// `updateTopic`: on one broker (`-b`) or on the master of every group of `-c`.
pub async fn update_topic(admin: &AdminClient, a: cli::UpdateTopic) -> anyhow::Result<Report> {
    let config = topic_config(&a)?;
    let brokers = match (&a.broker_addr, &a.cluster) {
        (Some(addr), _) => {
            admin.create_topic_on(addr, &config).await?;
            vec![addr.clone()]
        }
        (None, Some(cluster)) => admin.create_topic_in_cluster(cluster, &config).await?,
        (None, None) => bail!("one of -b brokerAddr and -c clusterName is required"),
    };
    let mut text: String = brokers
        .iter()
        .map(|b| format!("create topic to {b} success.\n"))
        .collect();
    text.push_str(&topic_config_line(&config));
    text.push('\n');
    Ok(Report {
        text,
        json: json!({"brokers": brokers, "topicConfig": config_json(&config)}),
    })
}

/// `deleteTopic`: from every master of the cluster, then from every NameServer.
pub async fn delete_topic(admin: &AdminClient, a: cli::DeleteTopic) -> anyhow::Result<Report> {
    let done = admin.delete_topic(&a.cluster, a.topic.trim()).await?;
    let text = format!(
        "delete topic [{t}] from cluster [{c}] success.\ndelete topic [{t}] from NameServer success.\n",
        t = a.topic.trim(),
        c = a.cluster
    );
    Ok(Report {
        text,
        json: json!({
            "topic": a.topic.trim(),
            "cluster": a.cluster,
            "brokers": done.brokers,
            "namesrvs": done.namesrvs,
        }),
    })
}

/// `topicList`: one topic per line; with `-c` each topic's clusters.
pub async fn topic_list(admin: &AdminClient, a: cli::TopicListArgs) -> anyhow::Result<Report> {
    let topics = admin.topic_list().await?;
    if !a.cluster_model {
        let text = topics.iter().map(|t| format!("{t}\n")).collect();
        return Ok(Report {
            text,
            json: json!({ "topics": topics }),
        });
    }
    let mut text = format!(
        "{:<20}  {:<48}  {:<48}\n",
        "#Cluster Name", "#Topic", "#Consumer Group"
    );
    let mut rows = Vec::new();
    for t in &topics {
        // A topic deleted since the list was read has no route: left out.
        let Ok(route) = admin.topic_route(t).await else {
            continue;
        };
        let clusters: std::collections::BTreeSet<&str> = route
            .broker_datas
            .iter()
            .map(|b| b.cluster.as_str())
            .collect();
        for c in clusters {
            text.push_str(&format!("{c:<20}  {t:<48}  {:<48}\n", ""));
            rows.push(json!({"cluster": c, "topic": t}));
        }
    }
    Ok(Report {
        text,
        json: json!({ "topics": rows }),
    })
}

/// The route as JSON with members in Java's order.
fn route_json(route: &TopicRouteData) -> Value {
    serde_json::from_slice(&raftmq_protocol::body::encode_json(route)).unwrap_or(Value::Null)
}

/// `topicRoute`: the route as pretty JSON, or with `-l` as a table.
pub async fn topic_route(admin: &AdminClient, a: cli::TopicRoute) -> anyhow::Result<Report> {
    let route = admin.topic_route(a.topic.trim()).await?;
    let json = route_json(&route);
    let text = if a.list {
        let mut text = format!(
            "{:<45} {:<32} {:<50} {:<10} {:<11} {:<5}\n",
            "#ClusterName", "#BrokerName", "#BrokerAddrs", "#ReadQueue", "#WriteQueue", "#Perm"
        );
        let mut queues = route.queue_datas.clone();
        queues.sort_by(|x, y| x.broker_name.cmp(&y.broker_name));
        for q in &queues {
            let bd = route
                .broker_datas
                .iter()
                .find(|b| b.broker_name == q.broker_name);
            let addrs = bd.map_or_else(String::new, |b| {
                let parts: Vec<String> = b
                    .broker_addrs
                    .iter()
                    .map(|(id, addr)| format!("{id}:{addr}"))
                    .collect();
                format!("{{{}}}", parts.join(", "))
            });
            text.push_str(&format!(
                "{:<45} {:<32} {:<50} {:<10} {:<11} {:<5}\n",
                bd.map_or("", |b| b.cluster.as_str()),
                q.broker_name,
                addrs,
                q.read_queue_nums,
                q.write_queue_nums,
                perm_string(q.perm)
            ));
        }
        text
    } else {
        let mut s = serde_json::to_string_pretty(&json).context("route as JSON")?;
        s.push('\n');
        s
    };
    Ok(Report { text, json })
}

/// `topicStatus`: min/max offset and last store time of every queue.
pub async fn topic_status(admin: &AdminClient, a: cli::TopicStatus) -> anyhow::Result<Report> {
    let status = admin
        .topic_status(a.topic.trim(), a.cluster.as_deref())
        .await?;
    let mut text = format!(
        "{:<32}  {:<4}  {:<20}  {:<20}    {}\n",
        "#Broker Name", "#QID", "#Min Offset", "#Max Offset", "#Last Updated"
    );
    let mut rows = Vec::new();
    for s in &status {
        let last = s.last_update_ms.map(human_time).unwrap_or_default();
        text.push_str(&format!(
            "{:<32}  {:<4}  {:<20}  {:<20}    {}\n",
            s.queue.broker_name, s.queue.queue_id, s.min_offset, s.max_offset, last
        ));
        let mut row = queue_json(&s.queue);
        row["minOffset"] = json!(s.min_offset);
        row["maxOffset"] = json!(s.max_offset);
        row["lastUpdateTimestamp"] = json!(s.last_update_ms);
        rows.push(row);
    }
    Ok(Report {
        text,
        json: json!({ "topic": a.topic.trim(), "queues": rows }),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn args(extra: &[&str]) -> cli::UpdateTopic {
        use clap::Parser;
        let mut argv = vec!["mqadmin", "updateTopic", "-t", "T", "-c", "C"];
        argv.extend_from_slice(extra);
        match cli::Cli::try_parse_from(argv).unwrap().command {
            Some(cli::Command::UpdateTopic(a)) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn update_topic_flags_make_the_config() {
        let c = topic_config(&args(&[])).unwrap();
        assert_eq!(c, TopicConfig::new("T", 8));
        let c = topic_config(&args(&[
            "-r",
            "2",
            "-w",
            "3",
            "-p",
            "4",
            "-o",
            "true",
            "-u",
            "true",
            "-a",
            "+a=1,+b=2",
        ]))
        .unwrap();
        assert_eq!((c.read_queue_nums, c.write_queue_nums, c.perm), (2, 3, 4));
        assert!(c.order);
        assert_eq!(c.topic_sys_flag, FLAG_UNIT);
        assert_eq!(c.attributes.len(), 2);
        assert!(topic_config(&args(&["-p", "32"])).is_err());
        assert!(topic_config(&args(&["-a", "-a"])).is_err());
        assert!(parse_attributes("+=1").is_err());
    }
}
