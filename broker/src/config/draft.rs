//! From parsed entries to a [`BrokerConfig`]: duplicates, unknown keys, typed values,
//! defaults and the required DLedger keys. Range checks and rules across keys are
//! [`BrokerConfig`]'s own (`check`), so they also cover a config changed in code.

use std::net::IpAddr;
use std::path::PathBuf;

use raftmq_protocol::config_file::ConfigEntry;
use raftmq_protocol::ProtocolError;
use raftmq_raft::log_store::FlushPolicy;

use super::peers::{self, DLedgerPeer, DLedgerPeers};
use super::values::{
    entry_err, parse_addr_list, parse_broker_role, parse_delete_when, parse_flush, KeyLines,
};
use super::{BrokerConfig, UnknownKey, KEYS};

/// RocketMQ keys that have no effect in RaftMQ, with the warning that says why.
const NO_EFFECT: &[(&str, &str)] = &[
    (
        "storePathCommitLog",
        "no effect: the commit log is the raft log under <storePathRootDir>/raft/log",
    ),
    (
        "storePathDLedgerCommitLog",
        "no effect: the commit log is the raft log under <storePathRootDir>/raft/log",
    ),
    (
        "brokerIP2",
        "no effect: master/slave HA is not used; nodes replicate over dLegerPeers",
    ),
    (
        "haListenPort",
        "no effect: master/slave HA is not used; nodes replicate over dLegerPeers",
    ),
    (
        "preferredLeaderIds",
        "not read: RaftMQ's key is preferredLeaderId, one node id such as n1",
    ),
    (
        "sendMessageThreadPoolNums",
        "no effect: requests run on the async runtime, not thread pools",
    ),
    (
        "pullMessageThreadPoolNums",
        "no effect: requests run on the async runtime, not thread pools",
    ),
];

/// Keeps the last entry of each key (as `java.util.Properties`), warning about the others.
pub(super) fn last_of_each_key(
    entries: Vec<ConfigEntry>,
    warnings: &mut Vec<UnknownKey>,
) -> Vec<ConfigEntry> {
    let mut kept: Vec<ConfigEntry> = Vec::with_capacity(entries.len());
    for e in entries {
        if let Some(pos) = kept.iter().position(|k| k.key == e.key) {
            let old = kept.remove(pos);
            warnings.push(UnknownKey {
                line: old.line,
                key: old.key,
                note: format!("ignored: set again on line {}, which wins", e.line),
            });
        }
        kept.push(e);
    }
    kept.sort_by_key(|e| e.line);
    kept
}

/// Values read so far; `finish` fills in defaults and the DLedger keys.
#[derive(Debug, Default)]
pub(super) struct Draft {
    cluster: Option<String>,
    broker_name: Option<String>,
    listen_port: Option<u16>,
    namesrv_addr: Vec<String>,
    broker_ip1: Option<IpAddr>,
    store_path: Option<PathBuf>,
    enable_dledger: bool,
    group: Option<String>,
    peers: Option<Vec<DLedgerPeer>>,
    self_id: Option<String>,
    flush: Option<FlushPolicy>,
    reserved_hours: Option<u32>,
    delete_when: Option<Vec<u8>>,
    disk_ratio: Option<u8>,
    auto_create_topic: Option<bool>,
    duplicate_detection: Option<bool>,
    queue_nums: Option<u16>,
    max_message_size: Option<u32>,
    permission: Option<u8>,
    register_period_ms: Option<u64>,
    segment_bytes: Option<u64>,
    heartbeat_ms: Option<u64>,
    election_min_ms: Option<u64>,
    election_max_ms: Option<u64>,
    preferred_leader: Option<String>,
    worker_threads: Option<u16>,
    pub(super) lines: KeyLines,
}

impl Draft {
    pub(super) fn apply(
        &mut self,
        e: &ConfigEntry,
        warnings: &mut Vec<UnknownKey>,
    ) -> Result<(), ProtocolError> {
        let Some(key) = KEYS.iter().copied().find(|k| *k == e.key) else {
            let note = NO_EFFECT
                .iter()
                .find(|(k, _)| *k == e.key)
                .map_or("unknown key, ignored (misspelled?)", |(_, n)| n);
            warnings.push(UnknownKey {
                line: e.line,
                key: e.key.clone(),
                note: note.into(),
            });
            return Ok(());
        };
        self.lines.set(key, e.line);
        match key {
            "brokerClusterName" => self.cluster = Some(e.value.clone()),
            "brokerName" => self.broker_name = Some(e.value.clone()),
            "listenPort" => self.listen_port = Some(e.parse()?),
            "namesrvAddr" => {
                self.namesrv_addr = parse_addr_list(&e.value).map_err(|r| entry_err(e, r))?
            }
            "brokerIP1" => self.broker_ip1 = Some(e.parse()?),
            "storePathRootDir" => self.store_path = Some(PathBuf::from(&e.value)),
            "enableDLegerCommitLog" => self.enable_dledger = e.parse_bool()?,
            "dLegerGroup" => self.group = Some(e.value.clone()),
            "dLegerPeers" => self.peers = Some(peers::parse_peer_list(&e.value, e.line)?),
            "dLegerSelfId" => self.self_id = Some(e.value.clone()),
            "flushDiskType" => self.flush = Some(parse_flush(e)?),
            "fileReservedTime" => self.reserved_hours = Some(e.parse()?),
            "deleteWhen" => self.delete_when = Some(parse_delete_when(e)?),
            "diskMaxUsedSpaceRatio" => self.disk_ratio = Some(e.parse()?),
            "autoCreateTopicEnable" => self.auto_create_topic = Some(e.parse_bool()?),
            "duplicateDetectionEnable" => self.duplicate_detection = Some(e.parse_bool()?),
            "defaultTopicQueueNums" => self.queue_nums = Some(e.parse()?),
            "maxMessageSize" => self.max_message_size = Some(e.parse()?),
            "brokerPermission" => self.permission = Some(e.parse()?),
            "registerNameServerPeriod" => {
                let asked: u64 = e.parse()?;
                let range = BrokerConfig::REGISTER_NAME_SERVER_PERIOD;
                let used = asked.clamp(*range.start(), *range.end());
                if used != asked {
                    warnings.push(UnknownKey {
                        line: e.line,
                        key: e.key.clone(),
                        note: format!("{asked} ms clamped to {used} ms (RocketMQ's 10000..=60000)"),
                    });
                }
                self.register_period_ms = Some(used);
            }
            "mappedFileSizeCommitLog" => self.segment_bytes = Some(e.parse()?),
            "raftHeartbeatMillis" => self.heartbeat_ms = Some(e.parse()?),
            "serverWorkerThreads" => self.worker_threads = Some(e.parse()?),
            "raftElectionTimeoutMinMillis" => self.election_min_ms = Some(e.parse()?),
            "raftElectionTimeoutMaxMillis" => self.election_max_ms = Some(e.parse()?),
            "preferredLeaderId" => {
                self.preferred_leader = Some(e.value.trim().to_owned()).filter(|v| !v.is_empty())
            }
            "brokerId" => {
                e.parse::<i64>()?;
                warnings.push(UnknownKey {
                    line: e.line,
                    key: e.key.clone(),
                    note: "ignored: raft decides the brokerId (0 while leading, node id + 1 otherwise)".into(),
                });
            }
            "brokerRole" => {
                parse_broker_role(e)?;
                warnings.push(UnknownKey {
                    line: e.line,
                    key: e.key.clone(),
                    note: "ignored: raft elections decide which node is master".into(),
                });
            }
            "enableControllerMode" => {
                let on = e.parse_bool()?;
                if on {
                    return Err(entry_err(
                        e,
                        "controller mode is not supported: RaftMQ replicates every group with raft (DLedger mode)",
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }

    pub(super) fn finish(self, lines: &KeyLines) -> Result<BrokerConfig, ProtocolError> {
        const HOW: &str =
            "RaftMQ only runs replicated broker groups: set enableDLegerCommitLog=true \
                           with dLegerPeers and dLegerSelfId";
        if !self.enable_dledger {
            let reason = match lines.line("enableDLegerCommitLog") {
                Some(_) => format!("is false; {HOW}"),
                None => format!("is not set; {HOW}"),
            };
            return Err(lines.err("enableDLegerCommitLog", reason));
        }
        let peers = self.peers.ok_or_else(|| {
            lines.err(
                "dLegerPeers",
                "is required, as in n0-127.0.0.1:40911;n1-127.0.0.1:40912;n2-127.0.0.1:40913",
            )
        })?;
        let self_id = self.self_id.ok_or_else(|| {
            lines.err(
                "dLegerSelfId",
                "is required: this node's id in dLegerPeers, as in n0",
            )
        })?;
        let dledger_peers =
            DLedgerPeers::with_self(peers, &self_id, lines.line("dLegerSelfId").unwrap_or(0))?;
        let broker_name = self
            .broker_name
            .unwrap_or_else(|| BrokerConfig::BROKER_NAME_DEFAULT.into());
        type C = BrokerConfig;
        Ok(BrokerConfig {
            broker_cluster_name: self
                .cluster
                .unwrap_or_else(|| C::CLUSTER_NAME_DEFAULT.into()),
            dledger_group: self.group.unwrap_or_else(|| broker_name.clone()),
            broker_name,
            listen_port: self.listen_port.unwrap_or(C::LISTEN_PORT_DEFAULT),
            namesrv_addr: self.namesrv_addr,
            broker_ip1: self.broker_ip1.unwrap_or(C::BROKER_IP1_DEFAULT),
            store_path_root_dir: self
                .store_path
                .unwrap_or_else(|| PathBuf::from(C::STORE_PATH_ROOT_DIR_DEFAULT)),
            dledger_peers,
            flush_disk_type: self.flush.unwrap_or(FlushPolicy::Sync),
            file_reserved_time_hours: self
                .reserved_hours
                .unwrap_or(C::FILE_RESERVED_TIME_HOURS_DEFAULT),
            delete_when: self
                .delete_when
                .unwrap_or_else(|| C::DELETE_WHEN_DEFAULT.to_vec()),
            disk_max_used_space_ratio_percent: self
                .disk_ratio
                .unwrap_or(C::DISK_MAX_USED_SPACE_RATIO_DEFAULT),
            auto_create_topic_enable: self.auto_create_topic.unwrap_or(true),
            duplicate_detection_enable: self.duplicate_detection.unwrap_or(true),
            default_topic_queue_nums: self
                .queue_nums
                .unwrap_or(C::DEFAULT_TOPIC_QUEUE_NUMS_DEFAULT),
            max_message_size_bytes: self.max_message_size.unwrap_or(C::MAX_MESSAGE_SIZE_DEFAULT),
            broker_permission: self.permission.unwrap_or(C::BROKER_PERMISSION_DEFAULT),
            register_name_server_period_ms: self
                .register_period_ms
                .unwrap_or(C::REGISTER_NAME_SERVER_PERIOD_DEFAULT),
            commit_log_segment_bytes: self
                .segment_bytes
                .unwrap_or(C::COMMIT_LOG_SEGMENT_BYTES_DEFAULT),
            raft_heartbeat_ms: self.heartbeat_ms.unwrap_or(C::RAFT_HEARTBEAT_MS_DEFAULT),
            raft_election_timeout_min_ms: self
                .election_min_ms
                .unwrap_or(C::RAFT_ELECTION_TIMEOUT_MIN_MS_DEFAULT),
            raft_election_timeout_max_ms: self
                .election_max_ms
                .unwrap_or(C::RAFT_ELECTION_TIMEOUT_MAX_MS_DEFAULT),
            preferred_leader_id: self.preferred_leader,
            server_worker_threads: self.worker_threads.unwrap_or(0),
        })
    }
}
