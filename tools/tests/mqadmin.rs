//! The real binaries: a `mqnamesrv` and three `mqbroker` nodes (one raft group) started
//! from the sample configurations on free loopback ports, driven by `mqadmin` as an
//! operator would. mqnamesrv and mqbroker must be built in the same target directory as
//! mqadmin (`cargo test --workspace` builds them).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::Cluster;

use serde_json::Value;

const MQADMIN: &str = env!("CARGO_BIN_EXE_mqadmin");
const CLUSTER: &str = "RaftCluster";
const GROUP: &str = "RaftNode00";
const TOPIC: &str = "AdminTopic";
/// Generous: two cores shared with other builds.
const DEADLINE: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(200);

/// The processes (the shared harness) and what mqadmin needs of them.
struct Admin {
    cluster: Cluster,
    namesrv: String,
    brokers: Vec<String>,
}

impl Admin {
    async fn start() -> Admin {
        let cluster = Cluster::start().await;
        Admin {
            namesrv: cluster.namesrv(),
            brokers: (0..3).map(|i| cluster.addr(i)).collect(),
            cluster,
        }
    }

    /// The last lines of every process's log, for failure messages.
    fn logs(&self) -> String {
        let mut out = String::new();
        let mut logs: Vec<PathBuf> = std::fs::read_dir(self.cluster.dir.path())
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        logs.retain(|p| p.extension().is_some_and(|e| e == "log"));
        logs.sort();
        for log in logs {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("---- {} ----\n", log.display()));
            for l in &lines[lines.len().saturating_sub(15)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// `mqadmin <args> -n <namesrv>`, NAMESRV_ADDR unset.
    fn run(&self, args: &[&str]) -> Output {
        Command::new(MQADMIN)
            .args(args)
            .arg("-n")
            .arg(&self.namesrv)
            .env_remove("NAMESRV_ADDR")
            .output()
            .unwrap()
    }

    /// stdout of a run that must succeed.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "mqadmin {args:?} failed ({}): {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The `--json` output of a run that must succeed, parsed.
    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let text = self.ok(&a);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {text}"))
    }

    /// Polls `f` until it returns `Some`, failing with `what` and the logs at the deadline.
    fn wait_for<T>(&self, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n{}",
                self.logs()
            );
            std::thread::sleep(POLL);
        }
    }

    /// The master of the group as clusterList shows it, once there is one.
    fn master(&self) -> Option<String> {
        let out = self.run(&["clusterList", "--json"]);
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        v["brokers"]
            .as_array()?
            .iter()
            .find(|b| b["brokerName"] == GROUP && b["brokerId"] == 0)
            .and_then(|b| b["addr"].as_str().map(str::to_owned))
    }

    /// The master in the topic's route.
    fn route_master(&self, topic: &str) -> Option<String> {
        let out = self.run(&["topicRoute", "-t", topic, "--json"]);
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        v["brokerDatas"][0]["brokerAddrs"]["0"]
            .as_str()
            .map(str::to_owned)
    }
}

/// The error line of a run that must fail.
fn failure(out: &Output) -> String {
    assert!(!out.status.success(), "expected a failure: {out:?}");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.trim().lines().count(), 1, "one line: {err:?}");
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqadmin_drives_a_three_node_group() {
    let c = Admin::start().await;
    // mqadmin runs as child processes: the steps below block, off the runtime's workers.
    tokio::task::block_in_place(|| drive(&c));
}

fn drive(c: &Admin) {
    let master = c.wait_for("a master", || c.master());
    assert!(
        c.brokers.contains(&master),
        "{master} is one of {:?}",
        c.brokers
    );

    // updateTopic, then the route and the topic list show it.
    let out = c.ok(&[
        "updateTopic",
        "-c",
        CLUSTER,
        "-t",
        TOPIC,
        "-r",
        "4",
        "-w",
        "4",
    ]);
    assert!(
        out.contains(&format!("create topic to {master} success.")),
        "{out}"
    );
    assert!(
        out.contains(
            "TopicConfig [topicName=AdminTopic, readQueueNums=4, writeQueueNums=4, perm=RW-"
        ),
        "{out}"
    );
    let route_master = c.wait_for("the topic's route", || c.route_master(TOPIC));
    assert_eq!(route_master, master);
    let route = c.json(&["topicRoute", "-t", TOPIC]);
    assert_eq!(route["queueDatas"][0]["writeQueueNums"], 4);
    assert_eq!(route["queueDatas"][0]["brokerName"], GROUP);
    let table = c.ok(&["topicRoute", "-t", TOPIC, "-l"]);
    assert!(
        table.contains("#ClusterName") && table.contains(GROUP) && table.contains("RW-"),
        "{table}"
    );
    let list = c.ok(&["topicList"]);
    assert!(list.lines().any(|l| l == TOPIC), "{list}");
    let list = c.json(&["topicList", "-c"]);
    assert!(list["topics"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["topic"] == TOPIC && t["cluster"] == CLUSTER));

    // sendMessage several times; topicStatus counts them.
    let mut sent = Vec::new();
    for i in 0..5 {
        let v = c.json(&[
            "sendMessage",
            "-t",
            TOPIC,
            "-p",
            &format!("body-{i}"),
            "-k",
            &format!("key-{i}"),
            "-c",
            "TagA",
        ]);
        assert_eq!(v["sendStatus"], "SEND_OK");
        assert_eq!(v["brokerName"], GROUP);
        sent.push(v);
    }
    let out = c.ok(&[
        "sendMessage",
        "-t",
        TOPIC,
        "-p",
        "body-5",
        "-b",
        GROUP,
        "-i",
        "3",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("#Broker Name") && lines[0].contains("#MsgId"),
        "{out}"
    );
    let cols: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(&cols[..3], [GROUP, "3", "SEND_OK"], "{out}");
    let status = c.json(&["topicStatus", "-t", TOPIC]);
    let queues = status["queues"].as_array().unwrap();
    assert_eq!(queues.len(), 4);
    let stored: i64 = queues
        .iter()
        .map(|q| q["maxOffset"].as_i64().unwrap() - q["minOffset"].as_i64().unwrap())
        .sum();
    assert_eq!(stored, 6, "{status}");
    assert!(queues
        .iter()
        .any(|q| q["queueId"] == 3 && q["maxOffset"].as_i64().unwrap() >= 1));
    let text = c.ok(&["topicStatus", "-t", TOPIC]);
    assert!(
        text.starts_with("#Broker Name") && text.contains("#Last Updated"),
        "{text}"
    );

    // The sent message, by offset id, UNIQ_KEY, key and queue offset.
    let first = &sent[1];
    let offset_id = first["offsetMsgId"].as_str().unwrap();
    let uniq = first["msgId"].as_str().unwrap();
    let out = c.ok(&["queryMsgById", "-i", offset_id, "-f", "UTF-8"]);
    assert!(out.contains(&format!("{:<20} {TOPIC}", "Topic:")), "{out}");
    assert!(
        out.contains(&format!("{:<20} {offset_id}", "OffsetID:")),
        "{out}"
    );
    assert!(
        out.contains("[TagA]") && out.contains("[key-1]") && out.contains("body-1"),
        "{out}"
    );
    let by_uniq = c.json(&["queryMsgById", "-i", uniq, "-t", TOPIC]);
    assert_eq!(by_uniq["messages"][0]["body"], "body-1");
    assert_eq!(by_uniq["messages"][0]["offsetMsgId"], offset_id);
    let out = c.ok(&["queryMsgByKey", "-t", TOPIC, "-k", "key-2"]);
    assert!(out.starts_with("#Message ID"), "{out}");
    assert!(out.contains(sent[2]["msgId"].as_str().unwrap()), "{out}");
    let q = first["queueId"].as_i64().unwrap().to_string();
    let o = first["queueOffset"].as_i64().unwrap().to_string();
    let by_offset = c.json(&[
        "queryMsgByOffset",
        "-t",
        TOPIC,
        "-b",
        GROUP,
        "-i",
        &q,
        "-o",
        &o,
    ]);
    assert_eq!(by_offset["messages"][0]["msgId"], uniq);

    // consumeMessage prints every message (and commits nothing).
    let consumed = c.json(&["consumeMessage", "-t", TOPIC, "-c", "100"]);
    let bodies: BTreeSet<String> = consumed["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_owned())
        .collect();
    let expected: BTreeSet<String> = (0..6).map(|i| format!("body-{i}")).collect();
    assert_eq!(bodies, expected);
    let text = c.ok(&[
        "consumeMessage",
        "-t",
        TOPIC,
        "-b",
        GROUP,
        "-i",
        &q,
        "-o",
        &o,
        "-c",
        "1",
    ]);
    assert!(
        text.contains("Consume ok") && text.contains("BODY: body-1"),
        "{text}"
    );

    // resetOffsetByTime and consumerProgress.
    let group = "AdminGroup";
    let out = c.ok(&["resetOffsetByTime", "-g", group, "-t", TOPIC, "-s", "0"]);
    assert!(
        out.contains("#brokerName") && out.contains("rollback consumer offset"),
        "{out}"
    );
    let p = c.json(&["consumerProgress", "-g", group, "-t", TOPIC]);
    assert_eq!(
        p["diffTotal"], 6,
        "from the start every message is left: {p}"
    );
    let out = c.ok(&["resetOffsetByTime", "-g", group, "-t", TOPIC, "-s", "now"]);
    assert_eq!(out.lines().count(), 2 + 4, "{out}");
    let p = c.json(&["consumerProgress", "-g", group, "-t", TOPIC]);
    assert_eq!(p["diffTotal"], 0, "from now nothing is left: {p}");
    c.ok(&[
        "resetOffsetByTime",
        "-g",
        group,
        "-t",
        TOPIC,
        "-b",
        GROUP,
        "-q",
        &q,
        "-o",
        &o,
    ]);
    let p = c.json(&["consumerProgress", "-g", group]);
    let row = p["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["queueId"].as_i64().unwrap().to_string() == q)
        .unwrap();
    assert_eq!(
        row["consumerOffset"].as_i64().unwrap().to_string(),
        o,
        "{p}"
    );
    assert!(p["diffTotal"].as_i64().unwrap() >= 1, "{p}");
    let text = c.ok(&["consumerProgress", "-g", group, "-t", TOPIC]);
    assert!(
        text.starts_with("#Topic") && text.contains("Consume Diff Total:"),
        "{text}"
    );
    let tps_line = text
        .lines()
        .find(|l| l.starts_with("Consume TPS: "))
        .unwrap();
    assert!(
        tps_line["Consume TPS: ".len()..].parse::<f64>().is_ok(),
        "{tps_line}"
    );
    c.ok(&["consumerProgress"]);

    // clusterList, brokerStatus, groupStatus.
    let text = c.ok(&["clusterList"]);
    let master_line = text
        .lines()
        .find(|l| l.contains(&master))
        .unwrap_or_else(|| panic!("{text}"));
    let cols: Vec<&str> = master_line.split_whitespace().collect();
    assert_eq!(&cols[..4], [CLUSTER, GROUP, "0", master.as_str()], "{text}");
    assert!(master_line.contains("leader/"), "{master_line}");
    // `-i 1`: the table again every second until interrupted.
    let mut repeat = std::process::Command::new(MQADMIN)
        .args(["clusterList", "-i", "1", "-n", &c.namesrv])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = repeat.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + DEADLINE;
    let mut tables = 0;
    while tables < 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("clusterList -i 1 printed {tables} tables"));
        tables += usize::from(line.starts_with("#Cluster Name"));
    }
    // Closing the pipe (`| head`) ends it, successfully, at its next table.
    drop(rx);
    let status = loop {
        if let Some(status) = repeat.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            repeat.kill().unwrap();
            panic!("clusterList -i kept running after its reader went away");
        }
        std::thread::sleep(POLL);
    };
    assert!(status.success(), "{status}");
    let text = c.ok(&["brokerStatus", "-b", &master]);
    for key in [
        "raftRole",
        "msgPutTotalTodayNow",
        "brokerVersionDesc",
        "commitLogMaxOffset",
    ] {
        assert!(text.contains(&format!("{key:<32}: ")), "{key} in {text}");
    }
    assert_eq!(
        c.json(&["brokerStatus", "-b", &master])[&master]["raftRole"],
        "leader"
    );
    let st = c.json(&["groupStatus", "-b", GROUP]);
    let nodes = st["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{st}");
    assert_eq!(
        nodes.iter().filter(|n| n["role"] == "leader").count(),
        1,
        "{st}"
    );
    let old_node = nodes.iter().find(|n| n["clientAddr"] == master).unwrap()["nodeId"]
        .as_u64()
        .unwrap();

    // leaderTransfer moves the master; clusterList and the route follow.
    let t = c.json(&["leaderTransfer", "-b", GROUP]);
    let new_master = t["newMaster"].as_str().unwrap().to_owned();
    assert_ne!(new_master, master, "{t}");
    assert_eq!(
        c.wait_for("clusterList to show the new master", || c
            .master()
            .filter(|m| *m == new_master)),
        new_master
    );
    c.wait_for("the route to show the new master", || {
        c.route_master(TOPIC).filter(|m| *m == new_master)
    });
    let v = c.json(&["sendMessage", "-t", TOPIC, "-p", "after-transfer"]);
    assert_eq!(v["brokerAddr"], new_master.as_str());
    // Back to the first master, asked through a follower (which names the leader).
    let out = c.ok(&[
        "leaderTransfer",
        "-a",
        &master,
        "-i",
        &format!("n{old_node}"),
    ]);
    assert!(
        out.contains(&format!("new master of [{GROUP}]: {master}")),
        "{out}"
    );
    c.wait_for("clusterList to show the first master again", || {
        c.master().filter(|m| *m == master)
    });

    // Errors: one line, non-zero exit.
    let err = failure(&c.run(&["topicRoute", "-t", "NoSuchTopic"]));
    assert!(
        err.contains("TOPIC_NOT_EXIST") && err.starts_with("mqadmin topicRoute:"),
        "{err}"
    );
    let dead = format!(
        "127.0.0.1:{}",
        raftmq_tools::playground::reserve(0).unwrap().0
    );
    let out = Command::new(MQADMIN)
        .args(["clusterList", "-n", &dead])
        .output()
        .unwrap();
    let err = failure(&out);
    assert!(
        err.contains("cannot connect") && err.contains(&dead),
        "{err}"
    );
    let out = Command::new(MQADMIN)
        .args(["topicList", "-n", "nonsense"])
        .output()
        .unwrap();
    assert!(failure(&out).contains("bad NameServer address"));
    let err = failure(&c.run(&[
        "queryMsgByOffset",
        "-t",
        TOPIC,
        "-b",
        GROUP,
        "-i",
        "0",
        "-o",
        "999999",
    ]));
    assert!(err.contains("no message at offset 999999"), "{err}");
    let err = failure(&c.run(&["updateTopic", "-c", "NoCluster", "-t", "X"]));
    assert!(err.contains("no cluster named NoCluster"), "{err}");
    // NAMESRV_ADDR and -Drocketmq.namesrv.addr stand in for -n.
    let out = Command::new(MQADMIN)
        .arg("topicList")
        .env("NAMESRV_ADDR", &c.namesrv)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l == TOPIC));
    let out = Command::new(MQADMIN)
        .args([
            "topicList",
            &format!("-Drocketmq.namesrv.addr={}", c.namesrv),
        ])
        .env_remove("NAMESRV_ADDR")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    // deleteTopic removes it from the broker and the NameServer.
    let out = c.ok(&["deleteTopic", "-t", TOPIC, "-c", CLUSTER]);
    assert!(
        out.contains("delete topic [AdminTopic] from cluster [RaftCluster] success."),
        "{out}"
    );
    c.wait_for("the topic to be gone", || {
        let gone = !c.run(&["topicRoute", "-t", TOPIC]).status.success()
            && !c.ok(&["topicList"]).lines().any(|l| l == TOPIC);
        gone.then_some(())
    });
}

#[test]
fn no_arguments_list_the_commands_and_help_shows_options() {
    let out = Command::new(MQADMIN).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for cmd in [
        "updateTopic",
        "topicStatus",
        "consumerProgress",
        "resetOffsetByTime",
        "leaderTransfer",
    ] {
        assert!(text.contains(cmd), "{cmd} in {text}");
    }
    let out = Command::new(MQADMIN)
        .args(["help", "queryMsgByOffset"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "-t, --topic",
        "-b, --brokerName",
        "-i, --queueId",
        "-o, --offset",
        "-n, --namesrvAddr",
        "--json",
    ] {
        assert!(text.contains(flag), "{flag} in {text}");
    }
    let out = Command::new(MQADMIN)
        .args(["updateTopic", "-t", "T"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "-b or -c is required");
    let out = Command::new(MQADMIN).arg("noSuchCommand").output().unwrap();
    assert!(!out.status.success());
}
