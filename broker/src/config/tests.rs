#![allow(clippy::unwrap_used)]

use super::*;

/// The smallest file RaftMQ accepts.
const MINIMAL: &str = "enableDLegerCommitLog=true\n\
                       dLegerPeers=n0-127.0.0.1:40911;n1-127.0.0.1:40912;n2-127.0.0.1:40913\n\
                       dLegerSelfId=n1\n";

fn parse(text: &str) -> BrokerConfig {
    let (cfg, warnings) = BrokerConfig::from_properties(text).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    cfg
}

/// Asserts `text` is refused with an error naming `key`, `line` and containing `needle`.
fn refused(text: &str, key: &str, line: usize, needle: &str) {
    let err = BrokerConfig::from_properties(text).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(&err, ProtocolError::Config { line: l, key: k, .. } if *l == line && k == key),
        "want key {key} line {line}, got: {msg}"
    );
    assert!(
        msg.contains(&format!("line {line}")) && msg.contains(key),
        "{msg}"
    );
    assert!(msg.contains(needle), "want {needle:?} in: {msg}");
}

#[test]
fn defaults() {
    let c = parse(MINIMAL);
    assert_eq!(c.broker_cluster_name, "DefaultCluster");
    assert_eq!(c.broker_name, "DEFAULT_BROKER");
    assert_eq!(c.dledger_group, "DEFAULT_BROKER");
    assert_eq!(c.listen_port, 10911);
    assert!(c.namesrv_addr.is_empty());
    assert_eq!(c.broker_ip1, IpAddr::from([127, 0, 0, 1]));
    assert_eq!(c.store_path_root_dir, PathBuf::from("./store"));
    assert_eq!(c.flush_disk_type, FlushPolicy::Sync);
    assert_eq!(c.file_reserved_time_hours, 72);
    assert_eq!(c.delete_when_hours(), vec![4]);
    assert_eq!(c.disk_max_used_space_ratio_percent, 75);
    assert!(c.auto_create_topic_enable);
    assert!(c.duplicate_detection_enable);
    assert_eq!(c.default_topic_queue_nums, 8);
    assert_eq!(c.max_message_size_bytes, 4_194_304);
    assert_eq!(c.broker_permission, 6);
    assert_eq!(c.register_name_server_period_ms, 30_000);
    assert_eq!(c.commit_log_segment_bytes, 1 << 30);
    assert_eq!(
        (
            c.raft_heartbeat_ms,
            c.raft_election_timeout_min_ms,
            c.raft_election_timeout_max_ms
        ),
        (100, 400, 700)
    );
    assert_eq!(c.server_worker_threads, 0);
    assert_eq!(c.self_index(), 1);
    assert_eq!(c.follower_broker_id(), 2);
    assert_eq!(c.raft_self_addr(), "127.0.0.1:40912");
    assert_eq!(c.client_addr().to_string(), "127.0.0.1:10911");
    assert_eq!(c.raft_data_dir(), PathBuf::from("./store/raft"));
    let peers = c.raft_peers();
    assert_eq!(peers.keys().copied().collect::<Vec<_>>(), vec![0, 1, 2]);
    assert_eq!(peers[&0], "127.0.0.1:40911");
    c.validate().unwrap();
}

#[test]
fn every_key() {
    let text = "\
brokerClusterName = RaftCluster
brokerName=RaftNode00
listenPort=30921
namesrvAddr=127.0.0.1:9876; ns2:9877;
brokerIP1=10.0.0.5
storePathRootDir=/tmp/raftmq/x/n1
enableDLegerCommitLog=TRUE
dLegerGroup=RaftGroup00
dLegerPeers=n0-10.0.0.4:40911;n1-10.0.0.5:40911;n2-host-6.local:40911
dLegerSelfId=n1
flushDiskType=ASYNC_FLUSH
fileReservedTime=48
deleteWhen=04;16
diskMaxUsedSpaceRatio=88
autoCreateTopicEnable=false
duplicateDetectionEnable=false
defaultTopicQueueNums=4
maxMessageSize=1048576
brokerPermission=4
registerNameServerPeriod=15000
mappedFileSizeCommitLog=67108864
raftHeartbeatMillis=50
raftElectionTimeoutMinMillis=300
preferredLeaderId=n2
raftElectionTimeoutMaxMillis=900
serverWorkerThreads=3
enableControllerMode=false
";
    let c = parse(text);
    assert_eq!(c.server_worker_threads, 3);
    assert_eq!(c.broker_cluster_name, "RaftCluster");
    assert_eq!(c.broker_name, "RaftNode00");
    assert_eq!(c.listen_port, 30921);
    assert_eq!(c.namesrv_addr, vec!["127.0.0.1:9876", "ns2:9877"]);
    assert_eq!(c.client_addr().to_string(), "10.0.0.5:30921");
    assert_eq!(c.store_path_root_dir, PathBuf::from("/tmp/raftmq/x/n1"));
    assert_eq!(c.dledger_group, "RaftGroup00");
    assert_eq!(c.dledger_peers.peers()[2].addr, "host-6.local:40911");
    assert_eq!(c.self_index(), 1);
    assert_eq!(c.flush_disk_type, FlushPolicy::Async);
    assert_eq!(c.file_reserved_time_hours, 48);
    assert_eq!(c.delete_when_hours(), vec![4, 16]);
    assert_eq!(c.disk_max_used_space_ratio_percent, 88);
    assert!(!c.auto_create_topic_enable);
    assert!(!c.duplicate_detection_enable);
    assert_eq!(c.default_topic_queue_nums, 4);
    assert_eq!(c.max_message_size_bytes, 1 << 20);
    assert_eq!(c.broker_permission, 4);
    assert_eq!(c.register_name_server_period_ms, 15_000);
    assert_eq!(c.commit_log_segment_bytes, 64 << 20);
    assert_eq!(c.preferred_leader_id.as_deref(), Some("n2"));
    assert_eq!(c.preferred_leader_index(), Some(2));
    let n = c.raft_node_config();
    assert_eq!((n.id, n.peers.len()), (1, 3));
    assert_eq!(n.data_dir, PathBuf::from("/tmp/raftmq/x/n1/raft"));
    assert_eq!(n.flush, FlushPolicy::Async);
    assert_eq!(n.segment_bytes, 64 << 20);
    assert_eq!(n.heartbeat, Duration::from_millis(50));
    assert_eq!(n.election_min, Duration::from_millis(300));
    assert_eq!(n.election_max, Duration::from_millis(900));
    // Every key of KEYS appears in the test file.
    for key in KEYS
        .iter()
        .filter(|k| !["brokerId", "brokerRole"].contains(k))
    {
        assert!(text.contains(key), "{key} untested");
    }
}

#[test]
fn round_trip_of_to_properties() {
    for text in [MINIMAL.to_owned(), format!("{MINIMAL}namesrvAddr=a:1;[::1]:2\nbrokerIP1=::1\ndeleteWhen=16;4\nflushDiskType=async_flush\npreferredLeaderId=n0\n")] {
        let c = parse(&text);
        let printed = c.to_properties();
        let (back, warnings) = BrokerConfig::from_properties(&printed).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(back, c, "{printed}");
        assert_eq!(back.to_properties(), printed);
        for key in KEYS.iter().take(23) {
            assert!(printed.contains(&format!("\n{key}=")) || printed.starts_with(key), "{key}");
        }
    }
}

#[test]
fn unknown_and_ignored_keys_are_warnings() {
    let text = format!(
        "{MINIMAL}listenPort=30911\nbrokerNmae=oops\nstorePathCommitLog=/tmp/x\nbrokerId=0\n\
         brokerRole=SYNC_MASTER\nlistenPort=30912\nregisterNameServerPeriod=5000\n"
    );
    let (c, w) = BrokerConfig::from_properties(&text).unwrap();
    assert_eq!(c.listen_port, 30912);
    assert_eq!(c.register_name_server_period_ms, 10_000);
    let got: Vec<(usize, &str)> = w.iter().map(|w| (w.line, w.key.as_str())).collect();
    assert_eq!(
        got,
        vec![
            (4, "listenPort"),
            (5, "brokerNmae"),
            (6, "storePathCommitLog"),
            (7, "brokerId"),
            (8, "brokerRole"),
            (10, "registerNameServerPeriod"),
        ]
    );
    assert!(w[0].note.contains("line 9"), "{}", w[0]);
    assert!(
        w[1].to_string()
            .starts_with("line 5: key `brokerNmae`: unknown key"),
        "{}",
        w[1]
    );
    assert!(w[2].note.contains("raft log"), "{}", w[2]);
    assert!(w[3].note.contains("raft decides"), "{}", w[3]);
    assert!(w[5].note.contains("clamped to 10000"), "{}", w[5]);
    let (c, w) =
        BrokerConfig::from_properties(&format!("{MINIMAL}registerNameServerPeriod=90000")).unwrap();
    assert_eq!((c.register_name_server_period_ms, w.len()), (60_000, 1));
}

#[test]
fn dledger_must_be_on_and_complete() {
    let peers = "dLegerPeers=n0-127.0.0.1:40911;n1-127.0.0.1:40912\n";
    refused(
        "brokerName=a\n",
        "enableDLegerCommitLog",
        0,
        "only runs replicated broker groups",
    );
    refused(
        "enableDLegerCommitLog=false\n",
        "enableDLegerCommitLog",
        1,
        "is false",
    );
    refused(
        "enableDLegerCommitLog=yes\n",
        "enableDLegerCommitLog",
        1,
        "true or false",
    );
    refused(
        "enableDLegerCommitLog=true\ndLegerSelfId=n0\n",
        "dLegerPeers",
        0,
        "required",
    );
    refused(
        &format!("enableDLegerCommitLog=true\n{peers}"),
        "dLegerSelfId",
        0,
        "required",
    );
    refused(
        &format!("enableDLegerCommitLog=true\n{peers}dLegerSelfId=n2\n"),
        "dLegerSelfId",
        3,
        "n0, n1",
    );
    refused(
        &format!("enableDLegerCommitLog=true\n{peers}dLegerSelfId=zero\n"),
        "dLegerSelfId",
        3,
        "n<digits>",
    );
    refused(
        "\nenableDLegerCommitLog=true\ndLegerPeers=n0-a:1;n0-b:1\n",
        "dLegerPeers",
        3,
        "each id once",
    );
    refused(
        "enableDLegerCommitLog=true\ndLegerPeers=n0-a:1;n1-A:1\n",
        "dLegerPeers",
        2,
        "share the address",
    );
    refused(
        "enableDLegerCommitLog=true\ndLegerPeers=n0-a\n",
        "dLegerPeers",
        2,
        "not host:port",
    );
    refused(
        &format!("{MINIMAL}enableControllerMode=true\n"),
        "enableControllerMode",
        4,
        "not supported",
    );
    refused(
        &format!("{MINIMAL}listenPort=40912\n"),
        "dLegerPeers",
        2,
        "give raft its own port",
    );
}

#[test]
fn bad_values_name_key_and_line() {
    let cases: &[(&str, &str, &str)] = &[
        ("brokerClusterName=a b", "brokerClusterName", "not allowed"),
        ("brokerName=", "brokerName", "must not be empty"),
        ("dLegerGroup=x;y", "dLegerGroup", "not allowed"),
        ("listenPort=70000", "listenPort", "invalid value"),
        ("listenPort=0", "listenPort", "advertised"),
        ("namesrvAddr=127.0.0.1", "namesrvAddr", "not host:port"),
        ("namesrvAddr=a:1;;b:2", "namesrvAddr", "empty item"),
        ("namesrvAddr=a:1;a:1", "namesrvAddr", "listed twice"),
        ("brokerIP1=myhost", "brokerIP1", "invalid value"),
        ("brokerIP1=0.0.0.0", "brokerIP1", "cannot be advertised"),
        ("storePathRootDir=", "storePathRootDir", "must not be empty"),
        (
            "storePathRootDir=~/store",
            "storePathRootDir",
            "not expanded",
        ),
        (
            "flushDiskType=FAST",
            "flushDiskType",
            "SYNC_FLUSH or ASYNC_FLUSH",
        ),
        (
            "fileReservedTime=0",
            "fileReservedTime",
            "outside 1 h..=87600 h",
        ),
        ("fileReservedTime=-1", "fileReservedTime", "invalid value"),
        ("deleteWhen=4am", "deleteWhen", "not an hour"),
        ("deleteWhen=24", "deleteWhen", "outside 00..23"),
        ("deleteWhen=04;4", "deleteWhen", "listed twice"),
        ("deleteWhen=", "deleteWhen", "at least one hour"),
        (
            "diskMaxUsedSpaceRatio=96",
            "diskMaxUsedSpaceRatio",
            "outside 10%..=95%",
        ),
        (
            "diskMaxUsedSpaceRatio=9",
            "diskMaxUsedSpaceRatio",
            "outside",
        ),
        (
            "autoCreateTopicEnable=yes",
            "autoCreateTopicEnable",
            "true or false",
        ),
        (
            "defaultTopicQueueNums=0",
            "defaultTopicQueueNums",
            "outside",
        ),
        ("maxMessageSize=0", "maxMessageSize", "outside"),
        ("maxMessageSize=16777216", "maxMessageSize", "outside"),
        ("brokerPermission=7", "brokerPermission", "not a sum"),
        (
            "registerNameServerPeriod=soon",
            "registerNameServerPeriod",
            "invalid value",
        ),
        (
            "mappedFileSizeCommitLog=8",
            "mappedFileSizeCommitLog",
            "outside",
        ),
        (
            "mappedFileSizeCommitLog=4294967296",
            "mappedFileSizeCommitLog",
            "outside",
        ),
        ("raftHeartbeatMillis=0", "raftHeartbeatMillis", "outside"),
        (
            "raftHeartbeatMillis=400",
            "raftElectionTimeoutMinMillis",
            "must exceed raftHeartbeatMillis",
        ),
        (
            "raftElectionTimeoutMaxMillis=400",
            "raftElectionTimeoutMaxMillis",
            "must exceed",
        ),
        (
            "raftElectionTimeoutMaxMillis=60001",
            "raftElectionTimeoutMaxMillis",
            "outside",
        ),
        ("serverWorkerThreads=1025", "serverWorkerThreads", "outside"),
        (
            "serverWorkerThreads=-1",
            "serverWorkerThreads",
            "invalid value",
        ),
        ("brokerId=x", "brokerId", "invalid value"),
        ("brokerRole=LEADER", "brokerRole", "SLAVE"),
    ];
    for (entry, key, needle) in cases {
        // The entry is on line 5, after a comment and the three required keys.
        let text = format!("# c\n{MINIMAL}{entry}\n");
        let line = if *key == "raftElectionTimeoutMinMillis" {
            0
        } else {
            5
        };
        refused(&text, key, line, needle);
    }
    // A cross-key error names the line of the key it blames, when set.
    let text = format!("{MINIMAL}raftElectionTimeoutMinMillis=100\n");
    refused(&text, "raftElectionTimeoutMinMillis", 4, "must exceed");
}

#[test]
fn namesrv_override() {
    let mut c = parse(&format!("{MINIMAL}namesrvAddr=a:1\n"));
    c.override_namesrv("10.0.0.1:9876;10.0.0.2:9876").unwrap();
    assert_eq!(c.namesrv_addr, vec!["10.0.0.1:9876", "10.0.0.2:9876"]);
    let err = c.override_namesrv("10.0.0.1").unwrap_err().to_string();
    assert!(err.contains("namesrvAddr") && err.contains("-n"), "{err}");
    assert!(c.override_namesrv("").is_err());
    assert_eq!(
        c.namesrv_addr.len(),
        2,
        "a refused override changes nothing"
    );
}

#[test]
fn validate_rechecks_changes_made_in_code() {
    let mut c = parse(MINIMAL);
    c.validate().unwrap();
    c.raft_heartbeat_ms = 1000;
    let err = c.validate().unwrap_err().to_string();
    assert!(
        err.contains("line 0") && err.contains("raftElectionTimeoutMinMillis"),
        "{err}"
    );
    let mut c = parse(MINIMAL);
    c.namesrv_addr.push("nope".into());
    assert!(c.validate().is_err());
}

#[test]
fn preferred_leader_must_be_a_peer() {
    refused(
        &format!("{MINIMAL}preferredLeaderId=n9\n"),
        "preferredLeaderId",
        4,
        "n9 is not a node of dLegerPeers",
    );
    assert_eq!(parse(MINIMAL).preferred_leader_index(), None);
    let (_, w) =
        BrokerConfig::from_properties(&format!("{MINIMAL}preferredLeaderIds=n0\n")).unwrap();
    assert!(w[0].note.contains("preferredLeaderId,"), "{}", w[0]);
}
