//! `mqadmin`'s command line: RocketMQ's camelCase subcommand names and single-dash
//! short flags (`mqadmin updateTopic -n 127.0.0.1:9876 -c RaftCluster -t T`), plus
//! `--json` on every subcommand and RaftMQ's own `leaderTransfer` and `groupStatus`.

use clap::{ArgAction, ArgGroup, Args, CommandFactory, Parser, Subcommand};

/// RocketMQ admin commands against a RaftMQ cluster.
#[derive(Debug, Parser)]
#[command(
    name = "mqadmin",
    version,
    about = "RocketMQ admin commands against a RaftMQ cluster",
    after_help = "See 'mqadmin help <command>' for more information on a specific command."
)]
pub struct Cli {
    /// Options every subcommand accepts.
    #[command(flatten)]
    pub global: Global,
    /// The subcommand; none prints the command list.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Options every subcommand accepts.
#[derive(Debug, Clone, Default, Args)]
pub struct Global {
    /// NameServer list `host:port[;host:port...]`; else NAMESRV_ADDR, else
    /// -Drocketmq.namesrv.addr=...
    #[arg(
        short = 'n',
        long = "namesrvAddr",
        global = true,
        value_name = "addr",
        display_order = 900
    )]
    pub namesrv_addr: Option<String>,
    /// Java-style property, `-Dkey=value`; only `rocketmq.namesrv.addr` is read.
    #[arg(
        short = 'D',
        global = true,
        value_name = "key=value",
        display_order = 901
    )]
    pub properties: Vec<String>,
    /// Print machine-readable JSON instead of RocketMQ's text.
    #[arg(long = "json", global = true, display_order = 902)]
    pub json: bool,
}

impl Global {
    /// The value of `-Drocketmq.namesrv.addr=...`, if given (the last one wins).
    pub fn namesrv_property(&self) -> Option<&str> {
        self.properties.iter().rev().find_map(|p| {
            p.strip_prefix(raftmq_client::namesrv::NAMESRV_ADDR_PROPERTY)
                .and_then(|rest| rest.strip_prefix('='))
        })
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Update or create topic
    #[command(name = "updateTopic")]
    UpdateTopic(UpdateTopic),
    /// Delete topic from broker and NameServer
    #[command(name = "deleteTopic")]
    DeleteTopic(DeleteTopic),
    /// Fetch all topic list from name server
    #[command(name = "topicList")]
    TopicList(TopicListArgs),
    /// Examine topic route info
    #[command(name = "topicRoute")]
    TopicRoute(TopicRoute),
    /// Examine topic status info
    #[command(name = "topicStatus")]
    TopicStatus(TopicStatus),
    /// List cluster infos
    #[command(name = "clusterList")]
    ClusterList(ClusterList),
    /// Fetch broker runtime status data
    #[command(name = "brokerStatus")]
    BrokerStatus(BrokerStatus),
    /// Query consumers's progress, speed
    #[command(name = "consumerProgress")]
    ConsumerProgress(ConsumerProgress),
    /// Query message by offset message id (or UNIQ_KEY, with -t)
    #[command(name = "queryMsgById")]
    QueryMsgById(QueryMsgById),
    /// Query message by key
    #[command(name = "queryMsgByKey")]
    QueryMsgByKey(QueryMsgByKey),
    /// Query message by offset
    #[command(name = "queryMsgByOffset")]
    QueryMsgByOffset(QueryMsgByOffset),
    /// Send a message
    #[command(name = "sendMessage")]
    SendMessage(SendMessage),
    /// Consume message (pull, nothing committed)
    #[command(name = "consumeMessage")]
    ConsumeMessage(ConsumeMessage),
    /// Reset consumer offset by timestamp
    #[command(name = "resetOffsetByTime")]
    ResetOffsetByTime(ResetOffsetByTime),
    /// RaftMQ: hand a broker group's raft leadership (its master role) to another node
    #[command(name = "leaderTransfer")]
    LeaderTransfer(LeaderTransfer),
    /// RaftMQ: raft status of the nodes of a broker group
    #[command(name = "groupStatus")]
    GroupStatus(GroupStatus),
    /// Run a NameServer and one 3-node broker group on loopback until Ctrl-C
    #[command(name = "playground")]
    Playground(crate::playground::PlaygroundArgs),
}

/// `updateTopic`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("where").required(true).args(["broker_addr", "cluster"])))]
pub struct UpdateTopic {
    /// topic name
    #[arg(short = 't', long = "topic")]
    pub topic: String,
    /// create topic to which broker (its group's master address)
    #[arg(short = 'b', long = "brokerAddr")]
    pub broker_addr: Option<String>,
    /// create topic to which cluster (the master of each group)
    #[arg(short = 'c', long = "clusterName")]
    pub cluster: Option<String>,
    /// set read queue nums
    #[arg(short = 'r', long = "readQueueNums", default_value_t = 8)]
    pub read_queue_nums: i32,
    /// set write queue nums
    #[arg(short = 'w', long = "writeQueueNums", default_value_t = 8)]
    pub write_queue_nums: i32,
    /// set topic's permission (2|4|6), intro[2:W 4:R; 6:RW]
    #[arg(short = 'p', long = "perm", default_value_t = 6)]
    pub perm: i32,
    /// set topic's order (true|false)
    #[arg(short = 'o', long = "order", default_value_t = false, action = ArgAction::Set)]
    pub order: bool,
    /// is unit topic (true|false)
    #[arg(short = 'u', long = "unit", default_value_t = false, action = ArgAction::Set)]
    pub unit: bool,
    /// has unit sub (true|false)
    #[arg(short = 's', long = "hasUnitSub", default_value_t = false, action = ArgAction::Set)]
    pub has_unit_sub: bool,
    /// attributes to add, `+key=value,+key2=value2`
    #[arg(short = 'a', long = "attributes", allow_hyphen_values = true)]
    pub attributes: Option<String>,
}

/// `deleteTopic`.
#[derive(Debug, Args)]
pub struct DeleteTopic {
    /// topic name
    #[arg(short = 't', long = "topic")]
    pub topic: String,
    /// delete topic from which cluster
    #[arg(short = 'c', long = "clusterName")]
    pub cluster: String,
}

/// `topicList`.
#[derive(Debug, Args)]
pub struct TopicListArgs {
    /// print each topic's cluster
    #[arg(short = 'c', long = "clusterModel")]
    pub cluster_model: bool,
}

/// `topicRoute`.
#[derive(Debug, Args)]
pub struct TopicRoute {
    /// topic name
    #[arg(short = 't', long = "topic")]
    pub topic: String,
    /// print as a table
    #[arg(short = 'l', long = "list")]
    pub list: bool,
}

/// `topicStatus`.
#[derive(Debug, Args)]
pub struct TopicStatus {
    /// topic name
    #[arg(short = 't', long = "topic")]
    pub topic: String,
    /// only the groups of this cluster
    #[arg(short = 'c', long = "cluster")]
    pub cluster: Option<String>,
}

/// `clusterList`.
#[derive(Debug, Clone, Args)]
pub struct ClusterList {
    /// Print more stats
    #[arg(short = 'm', long = "moreStats")]
    pub more_stats: bool,
    /// only this cluster
    #[arg(short = 'c', long = "clusterName")]
    pub cluster: Option<String>,
    /// Print again every this many seconds, until interrupted
    #[arg(short = 'i', long = "interval", value_parser = clap::value_parser!(u64).range(1..))]
    pub interval: Option<u64>,
}

/// `brokerStatus`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("where").required(true).args(["broker_addr", "cluster"])))]
pub struct BrokerStatus {
    /// Broker address
    #[arg(short = 'b', long = "brokerAddr")]
    pub broker_addr: Option<String>,
    /// every node of this cluster
    #[arg(short = 'c', long = "clusterName")]
    pub cluster: Option<String>,
}

/// `consumerProgress`.
#[derive(Debug, Args)]
pub struct ConsumerProgress {
    /// consumer group name (omitted: list the groups)
    #[arg(short = 'g', long = "groupName")]
    pub group: Option<String>,
    /// topic name (omitted: every topic the group has offsets for)
    #[arg(short = 't', long = "topicName")]
    pub topic: Option<String>,
    /// show the client owning each queue (predicted with the default allocation)
    #[arg(short = 's', long = "showClientIP")]
    pub show_client_ip: bool,
    /// only the groups of this cluster
    #[arg(short = 'c', long = "cluster")]
    pub cluster: Option<String>,
}

/// `queryMsgById`.
#[derive(Debug, Args)]
pub struct QueryMsgById {
    /// Message Id: an offset message id, or a UNIQ_KEY when -t is given; comma-separated
    #[arg(short = 'i', long = "msgId")]
    pub msg_id: String,
    /// topic name (lets a UNIQ_KEY be looked up)
    #[arg(short = 't', long = "topic")]
    pub topic: Option<String>,
    /// print the message body too, as text (UTF-8)
    #[arg(short = 'f', long = "bodyFormat")]
    pub body_format: Option<String>,
}

/// `queryMsgByKey`.
#[derive(Debug, Args)]
pub struct QueryMsgByKey {
    /// topic name
    #[arg(short = 't', long = "topic")]
    pub topic: String,
    /// Message Key
    #[arg(short = 'k', long = "msgKey")]
    pub key: String,
    /// begin timestamp (ms)
    #[arg(short = 'b', long = "beginTimestamp", default_value_t = 0)]
    pub begin: i64,
    /// end timestamp (ms)
    #[arg(short = 'e', long = "endTimestamp", default_value_t = i64::MAX)]
    pub end: i64,
    /// The maximum number of messages returned by the query
    #[arg(short = 'm', long = "maxNum", default_value_t = 64)]
    pub max_num: i32,
}

/// `queryMsgByOffset`.
#[derive(Debug, Args)]
pub struct QueryMsgByOffset {
    /// topic name
    #[arg(short = 't', long = "topic")]
    pub topic: String,
    /// Broker Name
    #[arg(short = 'b', long = "brokerName")]
    pub broker_name: String,
    /// Queue Id
    #[arg(short = 'i', long = "queueId")]
    pub queue_id: i32,
    /// Queue Offset
    #[arg(short = 'o', long = "offset")]
    pub offset: i64,
    /// print the message body too, as text (UTF-8)
    #[arg(short = 'f', long = "bodyFormat")]
    pub body_format: Option<String>,
}

/// `sendMessage`.
#[derive(Debug, Args)]
pub struct SendMessage {
    /// Topic name
    #[arg(short = 't', long = "topic")]
    pub topic: String,
    /// UTF-8 string format of the message body
    #[arg(short = 'p', long = "body")]
    pub body: String,
    /// Message keys
    #[arg(short = 'k', long = "key")]
    pub keys: Option<String>,
    /// Message tags
    #[arg(short = 'c', long = "tags")]
    pub tags: Option<String>,
    /// Send message to target broker (group name)
    #[arg(short = 'b', long = "broker")]
    pub broker: Option<String>,
    /// Send message to target queue (needs -b)
    #[arg(short = 'i', long = "qid", requires = "broker")]
    pub queue_id: Option<i32>,
}

/// `consumeMessage`.
#[derive(Debug, Args)]
pub struct ConsumeMessage {
    /// Topic name
    #[arg(short = 't', long = "topic")]
    pub topic: String,
    /// Broker name
    #[arg(short = 'b', long = "brokerName")]
    pub broker_name: Option<String>,
    /// Queue Id (needs -b)
    #[arg(short = 'i', long = "queueId", requires = "broker_name")]
    pub queue_id: Option<i32>,
    /// Queue offset (needs -i)
    #[arg(short = 'o', long = "offset", requires = "queue_id")]
    pub offset: Option<i64>,
    /// Consumer group name (accepted for compatibility: nothing is committed)
    #[arg(short = 'g', long = "consumerGroup")]
    pub group: Option<String>,
    /// Begin timestamp [currentTimeMillis|yyyy-MM-dd#HH:mm:ss:SSS]
    #[arg(short = 's', long = "beginTimestamp")]
    pub begin: Option<String>,
    /// End timestamp [currentTimeMillis|yyyy-MM-dd#HH:mm:ss:SSS]
    #[arg(short = 'e', long = "endTimestamp")]
    pub end: Option<String>,
    /// Number of message to be consumed
    #[arg(short = 'c', long = "MessageNumber", default_value_t = 128)]
    pub count: usize,
}

/// `resetOffsetByTime`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("when").required(true).args(["timestamp", "offset"])))]
pub struct ResetOffsetByTime {
    /// set the consumer group
    #[arg(short = 'g', long = "group")]
    pub group: String,
    /// set the topic
    #[arg(short = 't', long = "topic")]
    pub topic: String,
    /// set the timestamp [now|currentTimeMillis|yyyy-MM-dd#HH:mm:ss:SSS]
    #[arg(short = 's', long = "timestamp")]
    pub timestamp: Option<String>,
    /// only this broker group
    #[arg(short = 'b', long = "broker")]
    pub broker: Option<String>,
    /// only this queue (needs -b)
    #[arg(short = 'q', long = "queue", requires = "broker")]
    pub queue: Option<i32>,
    /// set this offset instead of searching by time (needs -b and -q)
    #[arg(short = 'o', long = "offset", requires = "queue")]
    pub offset: Option<i64>,
    /// set offsets that move forward too (false: a queue only rolls back)
    #[arg(short = 'f', long = "force", action = ArgAction::Set, default_value_t = true)]
    pub force: bool,
}

/// `leaderTransfer` (RaftMQ's own).
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("where").required(true).args(["broker_name", "node_addr"])))]
pub struct LeaderTransfer {
    /// the broker group (raft group) whose leadership moves
    #[arg(short = 'b', long = "brokerName")]
    pub broker_name: Option<String>,
    /// a node of the group (client address); a follower passes the request to the leader
    #[arg(short = 'a', long = "nodeAddr")]
    pub node_addr: Option<String>,
    /// the node to lead next: its dLegerSelfId (n1) or number (1); omitted = the most
    /// caught-up follower
    #[arg(short = 'i', long = "targetNodeId")]
    pub target: Option<String>,
    /// seconds to wait for the NameServers to show the new master
    #[arg(short = 'w', long = "waitSeconds", default_value_t = 15)]
    pub wait_seconds: u64,
}

/// `groupStatus` (RaftMQ's own).
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("where").required(true).args(["broker_name", "node_addr"])))]
pub struct GroupStatus {
    /// every node of this broker group
    #[arg(short = 'b', long = "brokerName")]
    pub broker_name: Option<String>,
    /// one node (client address)
    #[arg(short = 'a', long = "nodeAddr")]
    pub node_addr: Option<String>,
}

/// The command list `mqadmin` prints without arguments.
pub fn command_list() -> String {
    let cmd = Cli::command();
    let mut out = String::from("The most commonly used mqadmin commands are:\n");
    for sub in cmd.get_subcommands() {
        let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
        out.push_str(&format!("   {:<24} {about}\n", sub.get_name()));
    }
    out.push_str("\nSee 'mqadmin help <command>' for more information on a specific command.\n");
    out
}
