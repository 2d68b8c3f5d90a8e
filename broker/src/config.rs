//! `mqbroker -c <broker.conf> [-n namesrvAddr]`: broker configuration with RocketMQ's key
//! names, as users write them for a DLedger group.
//!
//! Parse, validate, type — loud on mistakes (RocketMQ silently ignores bad values and
//! misspelled keys; we do not):
//! - a value that does not parse, or is out of range, is an error naming key and line
//!   (line 0 when the key was not in the file: a required key is missing, or the value
//!   came from the command line);
//! - an unknown key, a RocketMQ key that has no effect here, a key set twice (the last
//!   wins, as in `java.util.Properties`) or a clamped value is a warning ([`UnknownKey`])
//!   returned to the caller to log.
//!
//! RaftMQ only runs replicated groups, so `enableDLegerCommitLog=true`, `dLegerPeers` and
//! `dLegerSelfId` are required. Every other key has a default (the `*_DEFAULT` constants).
//!
//! Submodules: `peers` (`dLegerPeers`/`dLegerSelfId`), `draft` (entries → config, with
//! defaults and warnings), `values` (single-value parsers and checks).

mod draft;
mod peers;
#[cfg(test)]
mod tests;
mod values;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use raftmq_protocol::config_file::parse_properties;
use raftmq_protocol::{ProtocolError, FRAME_BYTES_MAX};
use raftmq_raft::log_store::{FlushPolicy, LogStoreConfig};
use raftmq_raft::node::NodeConfig;

pub use peers::{DLedgerPeer, DLedgerPeers, DLEDGER_PEERS_MAX};
pub use values::{parse_host_port, NAME_BYTES_MAX};

use values::{
    check_delete_when, check_name, check_permission, check_range, check_store_path, config_err,
    flush_name, format_delete_when, parse_addr_list, KeyLines,
};

/// Every key [`BrokerConfig::from_properties`] acts on, in the order
/// [`BrokerConfig::to_properties`] writes them (`preferredLeaderId` only when set); the last
/// three are accepted for compatibility, checked, and otherwise ignored.
pub const KEYS: &[&str] = &[
    "brokerClusterName",
    "brokerName",
    "listenPort",
    "namesrvAddr",
    "brokerIP1",
    "storePathRootDir",
    "enableDLegerCommitLog",
    "dLegerGroup",
    "dLegerPeers",
    "dLegerSelfId",
    "flushDiskType",
    "fileReservedTime",
    "deleteWhen",
    "diskMaxUsedSpaceRatio",
    "autoCreateTopicEnable",
    "duplicateDetectionEnable",
    "defaultTopicQueueNums",
    "maxMessageSize",
    "brokerPermission",
    "registerNameServerPeriod",
    "mappedFileSizeCommitLog",
    "raftHeartbeatMillis",
    "raftElectionTimeoutMinMillis",
    "raftElectionTimeoutMaxMillis",
    "preferredLeaderId",
    "serverWorkerThreads",
    "brokerId",
    "brokerRole",
    "enableControllerMode",
];

/// Effective configuration of one broker node (one voter of a raft group).
///
/// Built by [`BrokerConfig::from_properties`]; fields are public for reading and for
/// tests, and [`BrokerConfig::validate`] re-checks a config changed in code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerConfig {
    /// `brokerClusterName`: the cluster the group registers under (default `DefaultCluster`).
    pub broker_cluster_name: String,
    /// `brokerName`: the broker group = the raft group; the same on all its nodes. Default
    /// `DEFAULT_BROKER` (RocketMQ's fallback; its first choice, the host name, would differ
    /// between the nodes of one group).
    pub broker_name: String,
    /// `listenPort`: client remoting port (default 10911; 0 is refused since it is advertised).
    pub listen_port: u16,
    /// `namesrvAddr`: NameServers to register with, normalized `host:port`s (`;`-separated
    /// in the file). Empty (the default) registers nowhere; `-n` replaces it
    /// ([`BrokerConfig::override_namesrv`]).
    pub namesrv_addr: Vec<String>,
    /// `brokerIP1`: the address advertised to NameServers and clients, and the store host
    /// inside offset message ids. Default 127.0.0.1, so a default setup works on one machine
    /// and never advertises a surprising interface (RocketMQ picks the first local address):
    /// set it on multi-host deployments.
    pub broker_ip1: IpAddr,
    /// `storePathRootDir`: this node's data directory (default `./store`, relative to the
    /// working directory; RocketMQ uses `~/store`). Raft data goes to `<root>/raft`.
    pub store_path_root_dir: PathBuf,
    /// `dLegerGroup`: the raft group's name (default: `brokerName`, as the samples set it).
    pub dledger_group: String,
    /// `dLegerPeers` + `dLegerSelfId`: the voters and which one this node is.
    pub dledger_peers: DLedgerPeers,
    /// `flushDiskType`: when an append counts as durable. Default `SYNC_FLUSH` (RocketMQ's is
    /// `ASYNC_FLUSH`): a replicated write is only as durable as the fsyncs behind it.
    pub flush_disk_type: FlushPolicy,
    /// `fileReservedTime`: hours a log segment is kept before it may be purged (default 72).
    pub file_reserved_time_hours: u32,
    /// `deleteWhen`: hours of the day (0..=23) when expired segments are purged (default `04`).
    pub delete_when: Vec<u8>,
    /// `diskMaxUsedSpaceRatio`: disk use (percent, 10..=95) above which expired segments are
    /// purged regardless of `deleteWhen` (default 75).
    pub disk_max_used_space_ratio_percent: u8,
    /// `autoCreateTopicEnable`: create a topic on its first send (default true).
    pub auto_create_topic_enable: bool,
    /// `duplicateDetectionEnable` (RaftMQ): a send whose `(topic, UNIQ_KEY)` was stored
    /// recently is answered with the first result instead of being stored again, so client
    /// retries after a timeout or failover do not duplicate (default true). Turn off for
    /// applications that send one Message object several times on purpose (the Java client
    /// keeps its UNIQ_KEY), which RocketMQ stores as separate messages.
    pub duplicate_detection_enable: bool,
    /// `defaultTopicQueueNums`: queues of an auto-created topic (default 8).
    pub default_topic_queue_nums: u16,
    /// `maxMessageSize`: largest message body accepted, bytes (default 4 MiB).
    pub max_message_size_bytes: u32,
    /// `brokerPermission`: 6 = read and write (default), 4 = read only, 2 = write only.
    pub broker_permission: u8,
    /// `registerNameServerPeriod`: ms between registrations (default 30000; clamped to
    /// 10000..=60000 as RocketMQ does). Role changes also register at once.
    pub register_name_server_period_ms: u64,
    /// `mappedFileSizeCommitLog`: raft log segment size, bytes (default 1 GiB, as RocketMQ).
    pub commit_log_segment_bytes: u64,
    /// `raftHeartbeatMillis`: leader heartbeat interval, ms (default 100).
    pub raft_heartbeat_ms: u64,
    /// `raftElectionTimeoutMinMillis`: election timeout lower bound, ms (default 400).
    pub raft_election_timeout_min_ms: u64,
    /// `raftElectionTimeoutMaxMillis`: election timeout upper bound and leader lease, ms
    /// (default 700). A dead leader is replaced in roughly max + a draw in [min, max).
    pub raft_election_timeout_max_ms: u64,
    /// `preferredLeaderId`: the node (a `dLegerPeers` id such as `n1`) that should lead the
    /// group whenever it is a healthy, caught-up follower; the leader hands leadership to it
    /// (DLedger's `preferredLeaderIds`, one node). Default: none.
    pub preferred_leader_id: Option<String>,
    /// `serverWorkerThreads`: threads that run the broker's requests, replication and
    /// apply (RocketMQ's Netty worker pool); 0 (default) = one per core. Nodes that share a
    /// machine (the playground) do better with a share each: every extra thread costs
    /// cross-thread wake-ups.
    pub server_worker_threads: u16,
}

/// A warning about one line of the file: an unknown key, a RocketMQ key with no effect
/// here, an entry overridden by a later one, or a clamped value. To be logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKey {
    /// 1-based line of the entry.
    pub line: usize,
    /// The key as written.
    pub key: String,
    /// What happened to it.
    pub note: String,
}

impl fmt::Display for UnknownKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: key `{}`: {}", self.line, self.key, self.note)
    }
}

impl BrokerConfig {
    /// Default `brokerClusterName`.
    pub const CLUSTER_NAME_DEFAULT: &'static str = "DefaultCluster";
    /// Default `brokerName`.
    pub const BROKER_NAME_DEFAULT: &'static str = "DEFAULT_BROKER";
    /// Default `listenPort`.
    pub const LISTEN_PORT_DEFAULT: u16 = 10911;
    /// Default `brokerIP1`.
    pub const BROKER_IP1_DEFAULT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    /// Default `storePathRootDir`.
    pub const STORE_PATH_ROOT_DIR_DEFAULT: &'static str = "./store";
    /// Default `fileReservedTime`, hours.
    pub const FILE_RESERVED_TIME_HOURS_DEFAULT: u32 = 72;
    /// `fileReservedTime` accepted, hours (up to ten years).
    pub const FILE_RESERVED_TIME_HOURS: RangeInclusive<u32> = 1..=87_600;
    /// Default `deleteWhen`.
    pub const DELETE_WHEN_DEFAULT: &'static [u8] = &[4];
    /// Default `diskMaxUsedSpaceRatio`, percent.
    pub const DISK_MAX_USED_SPACE_RATIO_DEFAULT: u8 = 75;
    /// `diskMaxUsedSpaceRatio` accepted, percent.
    pub const DISK_MAX_USED_SPACE_RATIO: RangeInclusive<u8> = 10..=95;
    /// Default `defaultTopicQueueNums`.
    pub const DEFAULT_TOPIC_QUEUE_NUMS_DEFAULT: u16 = 8;
    /// `defaultTopicQueueNums` accepted.
    pub const DEFAULT_TOPIC_QUEUE_NUMS: RangeInclusive<u16> = 1..=1024;
    /// Default `maxMessageSize`, bytes (4 MiB).
    pub const MAX_MESSAGE_SIZE_DEFAULT: u32 = 4 * 1024 * 1024;
    /// `maxMessageSize` accepted, bytes: a message must fit one frame with 1 MiB to spare
    /// for the request header.
    pub const MAX_MESSAGE_SIZE: RangeInclusive<u32> = 1..=(FRAME_BYTES_MAX as u32 - (1 << 20));
    /// Default `brokerPermission` (read and write).
    pub const BROKER_PERMISSION_DEFAULT: u8 = 6;
    /// Default `registerNameServerPeriod`, ms.
    pub const REGISTER_NAME_SERVER_PERIOD_DEFAULT: u64 = 30_000;
    /// `registerNameServerPeriod` used, ms; values outside are clamped (as RocketMQ does).
    pub const REGISTER_NAME_SERVER_PERIOD: RangeInclusive<u64> = 10_000..=60_000;
    /// Default `mappedFileSizeCommitLog`, bytes.
    pub const COMMIT_LOG_SEGMENT_BYTES_DEFAULT: u64 = LogStoreConfig::SEGMENT_BYTES_DEFAULT;
    /// `mappedFileSizeCommitLog` accepted, bytes (what the log store accepts).
    pub const COMMIT_LOG_SEGMENT_BYTES: RangeInclusive<u64> =
        LogStoreConfig::SEGMENT_BYTES_MIN..=u32::MAX as u64;
    /// Default `raftHeartbeatMillis`.
    pub const RAFT_HEARTBEAT_MS_DEFAULT: u64 = 100;
    /// Default `raftElectionTimeoutMinMillis`.
    pub const RAFT_ELECTION_TIMEOUT_MIN_MS_DEFAULT: u64 = 400;
    /// Default `raftElectionTimeoutMaxMillis`.
    pub const RAFT_ELECTION_TIMEOUT_MAX_MS_DEFAULT: u64 = 700;
    /// `serverWorkerThreads` accepted (0 = one per core).
    pub const SERVER_WORKER_THREADS: RangeInclusive<u16> = 0..=1024;
    /// Each raft timing key accepted, ms (heartbeat < election min < election max too).
    pub const RAFT_TIMING_MS: RangeInclusive<u64> = 1..=60_000;

    /// Parses broker.conf text; returns the config and the warnings to log.
    pub fn from_properties(text: &str) -> Result<(Self, Vec<UnknownKey>), ProtocolError> {
        let mut warnings = Vec::new();
        let mut draft = draft::Draft::default();
        for e in draft::last_of_each_key(parse_properties(text)?, &mut warnings) {
            draft.apply(&e, &mut warnings)?;
        }
        let lines = std::mem::take(&mut draft.lines);
        let cfg = draft.finish(&lines)?;
        cfg.check(&lines)?;
        warnings.sort_by_key(|w| w.line);
        Ok((cfg, warnings))
    }

    /// Re-checks every value and the rules across keys (errors carry line 0).
    pub fn validate(&self) -> Result<(), ProtocolError> {
        self.check(&KeyLines::default())
    }

    /// `-n/--namesrvAddr`: replaces `namesrvAddr` with a `host:port;host:port` list.
    pub fn override_namesrv(&mut self, addr: &str) -> Result<(), ProtocolError> {
        let list = parse_addr_list(addr)
            .map_err(|r| config_err(0, "namesrvAddr", format!("from -n/--namesrvAddr: {r}")))?;
        if list.is_empty() {
            return Err(config_err(
                0,
                "namesrvAddr",
                "from -n/--namesrvAddr: empty list",
            ));
        }
        self.namesrv_addr = list;
        Ok(())
    }

    /// This node's raft node id (the number in `dLegerSelfId`: `n0` → 0).
    pub fn self_index(&self) -> u64 {
        self.dledger_peers.self_peer().index
    }

    /// Every voter of the group: raft node id → raft RPC address `host:port`.
    pub fn raft_peers(&self) -> std::collections::BTreeMap<u64, String> {
        self.dledger_peers.raft_peers()
    }

    /// The raft node id of `preferredLeaderId`, if set.
    pub fn preferred_leader_index(&self) -> Option<u64> {
        let id = self.preferred_leader_id.as_deref()?;
        self.dledger_peers
            .peers()
            .iter()
            .find(|p| p.id == id)
            .map(|p| p.index)
    }

    /// This node's raft RPC address (its `dLegerPeers` entry): where to listen for peers.
    pub fn raft_self_addr(&self) -> &str {
        &self.dledger_peers.self_peer().addr
    }

    /// The address clients and NameServers reach this node at: `brokerIP1:listenPort`.
    pub fn client_addr(&self) -> SocketAddr {
        SocketAddr::new(self.broker_ip1, self.listen_port)
    }

    /// The brokerId this node registers with while it is a follower: node id + 1 (as
    /// DLedger; spec Appendix B). While it leads it registers as 0. The file's `brokerId`
    /// and `brokerRole` are ignored: raft decides the role.
    pub fn follower_broker_id(&self) -> u64 {
        self.self_index() + 1
    }

    /// `deleteWhen` as hours of the day.
    pub fn delete_when_hours(&self) -> Vec<u8> {
        self.delete_when.clone()
    }

    /// State-machine checkpoints: `<storePathRootDir>/checkpoint`.
    pub fn checkpoint_dir(&self) -> PathBuf {
        self.store_path_root_dir.join("checkpoint")
    }

    /// Root of this node's raft data: `<storePathRootDir>/raft` (`log/` and `meta/` below).
    pub fn raft_data_dir(&self) -> PathBuf {
        self.store_path_root_dir.join("raft")
    }

    /// The raft node configuration these keys describe (other fields keep their defaults).
    pub fn raft_node_config(&self) -> NodeConfig {
        let mut c = NodeConfig::new(self.self_index(), self.raft_peers(), self.raft_data_dir());
        c.group = self.dledger_group.clone();
        c.flush = self.flush_disk_type;
        c.segment_bytes = self.commit_log_segment_bytes;
        c.heartbeat = Duration::from_millis(self.raft_heartbeat_ms);
        c.election_min = Duration::from_millis(self.raft_election_timeout_min_ms);
        c.election_max = Duration::from_millis(self.raft_election_timeout_max_ms);
        c
    }

    /// The effective configuration as broker.conf text (what `-p` prints); parsing it
    /// gives this config back.
    pub fn to_properties(&self) -> String {
        let kv: [(&str, String); 25] = [
            ("brokerClusterName", self.broker_cluster_name.clone()),
            ("brokerName", self.broker_name.clone()),
            ("listenPort", self.listen_port.to_string()),
            ("namesrvAddr", self.namesrv_addr.join(";")),
            ("brokerIP1", self.broker_ip1.to_string()),
            (
                "storePathRootDir",
                self.store_path_root_dir.display().to_string(),
            ),
            ("enableDLegerCommitLog", "true".into()),
            ("dLegerGroup", self.dledger_group.clone()),
            ("dLegerPeers", self.dledger_peers.to_string()),
            ("dLegerSelfId", self.dledger_peers.self_peer().id.clone()),
            ("flushDiskType", flush_name(self.flush_disk_type).into()),
            (
                "fileReservedTime",
                self.file_reserved_time_hours.to_string(),
            ),
            ("deleteWhen", format_delete_when(&self.delete_when)),
            (
                "diskMaxUsedSpaceRatio",
                self.disk_max_used_space_ratio_percent.to_string(),
            ),
            (
                "autoCreateTopicEnable",
                self.auto_create_topic_enable.to_string(),
            ),
            (
                "duplicateDetectionEnable",
                self.duplicate_detection_enable.to_string(),
            ),
            (
                "defaultTopicQueueNums",
                self.default_topic_queue_nums.to_string(),
            ),
            ("maxMessageSize", self.max_message_size_bytes.to_string()),
            ("brokerPermission", self.broker_permission.to_string()),
            (
                "registerNameServerPeriod",
                self.register_name_server_period_ms.to_string(),
            ),
            (
                "mappedFileSizeCommitLog",
                self.commit_log_segment_bytes.to_string(),
            ),
            ("raftHeartbeatMillis", self.raft_heartbeat_ms.to_string()),
            (
                "raftElectionTimeoutMinMillis",
                self.raft_election_timeout_min_ms.to_string(),
            ),
            (
                "raftElectionTimeoutMaxMillis",
                self.raft_election_timeout_max_ms.to_string(),
            ),
            (
                "serverWorkerThreads",
                self.server_worker_threads.to_string(),
            ),
        ];
        let mut out = String::new();
        for (k, v) in kv {
            out.push_str(k);
            out.push('=');
            out.push_str(&v);
            out.push('\n');
        }
        if let Some(p) = &self.preferred_leader_id {
            out.push_str(&format!("preferredLeaderId={p}\n"));
        }
        out.push_str(&format!(
            "# brokerId: decided by raft: 0 while leading, {} as follower\n",
            self.follower_broker_id()
        ));
        out
    }

    /// Every check on values and across keys; `lines` says where each key was set.
    fn check(&self, lines: &KeyLines) -> Result<(), ProtocolError> {
        let at = |key| lines.at(key);
        check_name(&self.broker_cluster_name).map_err(at("brokerClusterName"))?;
        check_name(&self.broker_name).map_err(at("brokerName"))?;
        check_name(&self.dledger_group).map_err(at("dLegerGroup"))?;
        if self.listen_port == 0 {
            return Err(lines.err(
                "listenPort",
                "0 is not allowed: the port is advertised to clients",
            ));
        }
        for addr in &self.namesrv_addr {
            parse_host_port(addr).map_err(at("namesrvAddr"))?;
        }
        if self.broker_ip1.is_unspecified() {
            return Err(lines.err(
                "brokerIP1",
                format!(
                    "{} cannot be advertised: set the address clients reach",
                    self.broker_ip1
                ),
            ));
        }
        check_store_path(&self.store_path_root_dir).map_err(at("storePathRootDir"))?;
        let self_peer = self.dledger_peers.self_peer();
        if self_peer.addr.rsplit_once(':').map(|(_, p)| p) == Some(&self.listen_port.to_string()) {
            return Err(lines.err(
                "dLegerPeers",
                format!(
                    "this node's raft address {} uses listenPort {}: give raft its own port",
                    self_peer.addr, self.listen_port
                ),
            ));
        }
        check_range(
            self.file_reserved_time_hours,
            Self::FILE_RESERVED_TIME_HOURS,
            " h",
        )
        .map_err(at("fileReservedTime"))?;
        check_delete_when(&self.delete_when).map_err(at("deleteWhen"))?;
        check_range(
            self.disk_max_used_space_ratio_percent,
            Self::DISK_MAX_USED_SPACE_RATIO,
            "%",
        )
        .map_err(at("diskMaxUsedSpaceRatio"))?;
        check_range(
            self.default_topic_queue_nums,
            Self::DEFAULT_TOPIC_QUEUE_NUMS,
            "",
        )
        .map_err(at("defaultTopicQueueNums"))?;
        check_range(
            self.max_message_size_bytes,
            Self::MAX_MESSAGE_SIZE,
            " bytes",
        )
        .map_err(at("maxMessageSize"))?;
        check_permission(self.broker_permission).map_err(at("brokerPermission"))?;
        check_range(
            self.register_name_server_period_ms,
            Self::REGISTER_NAME_SERVER_PERIOD,
            " ms",
        )
        .map_err(at("registerNameServerPeriod"))?;
        check_range(
            self.commit_log_segment_bytes,
            Self::COMMIT_LOG_SEGMENT_BYTES,
            " bytes",
        )
        .map_err(at("mappedFileSizeCommitLog"))?;
        check_range(self.raft_heartbeat_ms, Self::RAFT_TIMING_MS, " ms")
            .map_err(at("raftHeartbeatMillis"))?;
        check_range(self.server_worker_threads, Self::SERVER_WORKER_THREADS, "")
            .map_err(at("serverWorkerThreads"))?;
        check_range(
            self.raft_election_timeout_min_ms,
            Self::RAFT_TIMING_MS,
            " ms",
        )
        .map_err(at("raftElectionTimeoutMinMillis"))?;
        check_range(
            self.raft_election_timeout_max_ms,
            Self::RAFT_TIMING_MS,
            " ms",
        )
        .map_err(at("raftElectionTimeoutMaxMillis"))?;
        if let Some(p) = &self.preferred_leader_id {
            if self.preferred_leader_index().is_none() {
                return Err(lines.err(
                    "preferredLeaderId",
                    format!("{p} is not a node of dLegerPeers ({})", self.dledger_peers),
                ));
            }
        }
        if self.raft_election_timeout_min_ms <= self.raft_heartbeat_ms {
            return Err(lines.err(
                "raftElectionTimeoutMinMillis",
                format!(
                    "{} ms must exceed raftHeartbeatMillis ({} ms), or followers time out between heartbeats",
                    self.raft_election_timeout_min_ms, self.raft_heartbeat_ms
                ),
            ));
        }
        if self.raft_election_timeout_max_ms <= self.raft_election_timeout_min_ms {
            return Err(lines.err(
                "raftElectionTimeoutMaxMillis",
                format!(
                    "{} ms must exceed raftElectionTimeoutMinMillis ({} ms)",
                    self.raft_election_timeout_max_ms, self.raft_election_timeout_min_ms
                ),
            ));
        }
        Ok(())
    }
}
