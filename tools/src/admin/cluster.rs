//! clusterList, brokerStatus, and RaftMQ's leaderTransfer and groupStatus.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use raftmq_client::admin::AdminClient;
use raftmq_protocol::body::{ClusterInfo, RaftGroupStatus};
use serde_json::{json, Value};

use super::cli;
use super::Report;

/// How often `leaderTransfer` asks the NameServers whether the new master shows.
const MASTER_POLL: Duration = Duration::from_millis(100);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Every node of the clusters in `info` (only `cluster`, when given): (cluster, group,
/// broker id, address), in name and id order.
pub fn nodes(info: &ClusterInfo, cluster: Option<&str>) -> Vec<(String, String, i64, String)> {
    let mut out = Vec::new();
    for (c, groups) in &info.cluster_addr_table {
        if cluster.is_some_and(|x| x != c) {
            continue;
        }
        for g in groups {
            if let Some(bd) = info.broker_addr_table.get(g) {
                for (id, addr) in &bd.broker_addrs {
                    out.push((c.clone(), g.clone(), *id, addr.clone()));
                }
            }
        }
    }
    out
}

/// The first number of a `putTps`-style value (`"12.5 10.1 9.0"`), 0 if none.
fn first_number(v: Option<&String>) -> f64 {
    v.and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0)
}

fn counter(kv: &BTreeMap<String, String>, key: &str) -> i64 {
    kv.get(key).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// One `clusterList` line of a node from its runtime table (`None`: it did not answer).
pub fn cluster_line(
    (cluster, group, id, addr): &(String, String, i64, String),
    kv: Option<&BTreeMap<String, String>>,
    now_ms: i64,
) -> String {
    let empty = BTreeMap::new();
    let kv = kv.unwrap_or(&empty);
    let get = |k: &str| kv.get(k).cloned().unwrap_or_default();
    let hours = kv
        .get("earliestMessageTimeStamp")
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|&t| t > 0)
        .map_or(0.0, |t| (now_ms - t) as f64 / 3_600_000.0);
    let space: f64 = kv
        .get("commitLogDiskRatio")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    format!(
        "{:<16}  {:<22}  {:<4}  {:<22} {:<16} {:>19} {:>19} {:>16} {:>11} {:>7} {:>7} {:>10}  {}/{}\n",
        cluster,
        group,
        id,
        addr,
        get("brokerVersionDesc"),
        format!("{:9.2}(0,0ms)", first_number(kv.get("putTps"))),
        format!("{:9.2}(0,0ms)", first_number(kv.get("getTransferedTps"))),
        "-",
        0,
        format!("{hours:.2}"),
        format!("{space:.4}"),
        get("brokerActive"),
        get("raftRole"),
        get("raftTerm"),
    )
}

/// `clusterList`: one line per node with its runtime stats (`-m`: message totals).
pub async fn cluster_list(admin: &AdminClient, a: cli::ClusterList) -> anyhow::Result<Report> {
    let info = admin.cluster_info().await?;
    if let Some(c) = &a.cluster {
        if !info.cluster_addr_table.contains_key(c) {
            bail!("no cluster named {c}");
        }
    }
    let nodes = nodes(&info, a.cluster.as_deref());
    let mut text = if a.more_stats {
        format!(
            "{:<16}  {:<32} {:>14} {:>14} {:>14} {:>14}\n",
            "#Cluster Name",
            "#Broker Name",
            "#InTotalYest",
            "#OutTotalYest",
            "#InTotalToday",
            "#OutTotalToday"
        )
    } else {
        format!(
            "{:<16}  {:<22}  {:<4}  {:<22} {:<16} {:>19} {:>19} {:>16} {:>11} {:>7} {:>7} {:>10}  {}\n",
            "#Cluster Name", "#Broker Name", "#BID", "#Addr", "#Version", "#InTPS(LOAD)",
            "#OutTPS(LOAD)", "#Timer(Progress)", "#PCWait(ms)", "#Hour", "#SPACE", "#ACTIVATED",
            "#Raft(Role/Term)"
        )
    };
    let mut rows = Vec::new();
    let now = now_ms();
    for node in &nodes {
        let kv = match admin.broker_runtime_info(&node.3).await {
            Ok(kv) => Some(kv),
            Err(e) => {
                tracing::warn!(addr = %node.3, error = %e, "no runtime info");
                None
            }
        };
        if a.more_stats {
            let k = kv.clone().unwrap_or_default();
            let c = |key| counter(&k, key);
            text.push_str(&format!(
                "{:<16}  {:<32} {:>14} {:>14} {:>14} {:>14}\n",
                node.0,
                node.1,
                c("msgPutTotalTodayMorning") - c("msgPutTotalYesterdayMorning"),
                c("msgGetTotalTodayMorning") - c("msgGetTotalYesterdayMorning"),
                c("msgPutTotalTodayNow") - c("msgPutTotalTodayMorning"),
                c("msgGetTotalTodayNow") - c("msgGetTotalTodayMorning"),
            ));
        } else {
            text.push_str(&cluster_line(node, kv.as_ref(), now));
        }
        rows.push(json!({
            "cluster": node.0,
            "brokerName": node.1,
            "brokerId": node.2,
            "addr": node.3,
            "runtime": kv,
        }));
    }
    Ok(Report {
        text,
        json: json!({ "brokers": rows }),
    })
}

/// `brokerStatus`: the runtime table of one node, or of every node of a cluster.
pub async fn broker_status(admin: &AdminClient, a: cli::BrokerStatus) -> anyhow::Result<Report> {
    if let Some(addr) = &a.broker_addr {
        let kv = admin.broker_runtime_info(addr).await?;
        let text = kv.iter().map(|(k, v)| format!("{k:<32}: {v}\n")).collect();
        return Ok(Report {
            text,
            json: json!({ addr.clone(): kv }),
        });
    }
    let cluster = a.cluster.as_deref().unwrap_or_default();
    let info = admin.cluster_info().await?;
    if !info.cluster_addr_table.contains_key(cluster) {
        bail!("no cluster named {cluster}");
    }
    let mut text = String::new();
    let mut all = serde_json::Map::new();
    for (_, _, _, addr) in nodes(&info, Some(cluster)) {
        let kv = admin
            .broker_runtime_info(&addr)
            .await
            .with_context(|| format!("runtime info of {addr}"))?;
        for (k, v) in &kv {
            text.push_str(&format!("{addr:<24} {k:<32}: {v}\n"));
        }
        all.insert(addr, json!(kv));
    }
    Ok(Report {
        text,
        json: Value::Object(all),
    })
}

fn status_json(s: &RaftGroupStatus) -> Value {
    serde_json::from_slice(&raftmq_protocol::body::encode_json(s)).unwrap_or(Value::Null)
}

/// `leaderTransfer`: asks the group's leader to hand leadership over, then waits until the
/// NameServers show a new master.
pub async fn leader_transfer(
    admin: &AdminClient,
    a: cli::LeaderTransfer,
) -> anyhow::Result<Report> {
    let (group, asked) = match (&a.broker_name, &a.node_addr) {
        (Some(g), _) => (g.clone(), admin.group_master(g).await?),
        (None, Some(addr)) => {
            let s = admin
                .group_status(addr)
                .await
                .with_context(|| format!("group status of {addr}"))?;
            (s.broker_name, addr.clone())
        }
        (None, None) => bail!("one of -b brokerName and -a nodeAddr is required"),
    };
    let old_master = admin.group_master(&group).await.ok();
    let done = admin.leader_transfer(&asked, a.target.as_deref()).await?;
    // The new leader registers as master at once; wait until the NameServers say so.
    let deadline = Instant::now() + Duration::from_secs(a.wait_seconds);
    let new_master = loop {
        if done.remark.contains("already the leader") {
            break Some(done.addr.clone());
        }
        match admin.group_master(&group).await {
            Ok(m) if Some(&m) != old_master.as_ref() && m != done.addr => break Some(m),
            _ if a.wait_seconds == 0 => break None,
            _ if Instant::now() >= deadline => bail!(
                "{} ({}), but after {} s the NameServers still show {} as master of {group}",
                done.remark,
                done.addr,
                a.wait_seconds,
                old_master.as_deref().unwrap_or("no node")
            ),
            _ => tokio::time::sleep(MASTER_POLL).await,
        }
    };
    let mut text = format!("leaderTransfer [{group}] {}: {}\n", done.addr, done.remark);
    if let Some(m) = &new_master {
        text.push_str(&format!("new master of [{group}]: {m}\n"));
    }
    Ok(Report {
        text,
        json: json!({
            "brokerName": group,
            "askedAddr": done.addr,
            "remark": done.remark,
            "oldMaster": old_master,
            "newMaster": new_master,
        }),
    })
}

/// `groupStatus`: the raft view of one node, or of every node of a group.
pub async fn group_status(admin: &AdminClient, a: cli::GroupStatus) -> anyhow::Result<Report> {
    let addrs: Vec<String> = match (&a.node_addr, &a.broker_name) {
        (Some(addr), _) => vec![addr.clone()],
        (None, Some(g)) => {
            let info = admin.cluster_info().await?;
            let bd = info
                .broker_addr_table
                .get(g)
                .with_context(|| format!("no broker group named {g}"))?;
            bd.broker_addrs.values().cloned().collect()
        }
        (None, None) => bail!("one of -b brokerName and -a nodeAddr is required"),
    };
    let mut text = format!(
        "{:<22} {:<5} {:<10} {:<6} {:<7} {:<12} {:<12} {:<12} {:<22} {}\n",
        "#Broker Name",
        "#Node",
        "#Role",
        "#Term",
        "#Leader",
        "#Commit",
        "#Applied",
        "#LastLog",
        "#Addr",
        "#Raft Addr"
    );
    let mut rows = Vec::new();
    let opt = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    for addr in addrs {
        let s = admin
            .group_status(&addr)
            .await
            .with_context(|| format!("group status of {addr}"))?;
        text.push_str(&format!(
            "{:<22} {:<5} {:<10} {:<6} {:<7} {:<12} {:<12} {:<12} {:<22} {}\n",
            s.broker_name,
            s.node_id,
            s.role,
            s.term,
            opt(s.leader_id),
            opt(s.committed_index),
            opt(s.applied_index),
            opt(s.last_log_index),
            s.client_addr,
            s.raft_addr
        ));
        rows.push(status_json(&s));
    }
    Ok(Report {
        text,
        json: json!({ "nodes": rows }),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeSet;

    use raftmq_protocol::body::BrokerData;

    use super::*;

    #[test]
    fn nodes_are_listed_by_cluster_group_and_id() {
        let mut b = BrokerData::new("C", "g1");
        b.broker_addrs.insert(2, "h:3".into());
        b.broker_addrs.insert(0, "h:1".into());
        let info = ClusterInfo {
            broker_addr_table: BTreeMap::from([("g1".to_owned(), b)]),
            cluster_addr_table: BTreeMap::from([
                (
                    "C".to_owned(),
                    BTreeSet::from(["g1".to_owned(), "gone".to_owned()]),
                ),
                ("D".to_owned(), BTreeSet::new()),
            ]),
        };
        let n = nodes(&info, None);
        assert_eq!(
            n,
            vec![
                ("C".into(), "g1".into(), 0, "h:1".into()),
                ("C".into(), "g1".into(), 2, "h:3".into())
            ]
        );
        assert!(nodes(&info, Some("D")).is_empty());
        let kv = BTreeMap::from([
            ("putTps".to_owned(), "12.5 3 1".to_owned()),
            ("brokerVersionDesc".to_owned(), "V5_3_3".to_owned()),
            ("commitLogDiskRatio".to_owned(), "0.5".to_owned()),
            ("brokerActive".to_owned(), "true".to_owned()),
            ("raftRole".to_owned(), "leader".to_owned()),
            ("raftTerm".to_owned(), "4".to_owned()),
            ("earliestMessageTimeStamp".to_owned(), "0".to_owned()),
        ]);
        let line = cluster_line(&n[0], Some(&kv), 7_200_000);
        for part in [
            "C ",
            "g1",
            "h:1",
            "V5_3_3",
            "12.50(0,0ms)",
            "0.5000",
            "true",
            "leader/4",
        ] {
            assert!(line.contains(part), "{part:?} in {line:?}");
        }
        assert!(cluster_line(&n[1], None, 0).contains("h:3"));
    }
}
