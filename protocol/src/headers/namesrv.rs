//! NameServer request and response headers (spec §2.3).

use crate::ext_header;

ext_header! {
    /// REGISTER_BROKER (103): a broker node announces itself and its role.
    pub struct RegisterBrokerRequestHeader {
        /// Broker group name (the Raft group).
        broker_name: String => "brokerName",
        /// `ip:port` clients connect to.
        broker_addr: String => "brokerAddr",
        /// Cluster the group belongs to.
        cluster_name: String => "clusterName",
        /// Replication endpoint (informational).
        ha_server_addr: String => "haServerAddr",
        /// 0 = master (Raft leader), ≥ 1 = follower.
        broker_id: i64 => "brokerId",
        /// Liveness timeout for this registration (default 120 s).
        heartbeat_timeout_millis: Option<i64> => "heartbeatTimeoutMillis",
        /// 5.x acting-master mode.
        enable_acting_master: Option<bool> => "enableActingMaster",
        /// Body is the zlib-compressed form.
        compressed: Option<bool> => "compressed",
        /// `crc32(body) & 0x7FFFFFFF` when non-zero.
        body_crc32: Option<i32> => "bodyCrc32",
        /// Zone name.
        zone_name: Option<String> => "__ZONE_NAME",
    }
}

ext_header! {
    /// REGISTER_BROKER response: the live master, for follower registrations.
    pub struct RegisterBrokerResponseHeader {
        /// The group's master address.
        master_addr: Option<String> => "masterAddr",
        /// The master's HA address.
        ha_server_addr: Option<String> => "haServerAddr",
    }
}

ext_header! {
    /// UNREGISTER_BROKER (104).
    pub struct UnregisterBrokerRequestHeader {
        /// Broker group name.
        broker_name: String => "brokerName",
        /// Node address being removed.
        broker_addr: String => "brokerAddr",
        /// Cluster name.
        cluster_name: String => "clusterName",
        /// Broker id the node was registered with.
        broker_id: i64 => "brokerId",
    }
}

ext_header! {
    /// GET_ROUTEINFO_BY_TOPIC (105).
    pub struct GetRouteInfoRequestHeader {
        /// Topic whose route is asked for.
        topic: String => "topic",
        /// 5.x: requester accepts only standard JSON (RaftMQ always sends it).
        accept_standard_json_only: Option<bool> => "acceptStandardJsonOnly",
    }
}

ext_header! {
    /// DELETE_TOPIC_IN_NAMESRV (216).
    pub struct DeleteTopicFromNamesrvRequestHeader {
        /// Topic to delete.
        topic: String => "topic",
        /// Only remove this cluster's queue data when set.
        cluster_name: Option<String> => "clusterName",
    }
}

ext_header! {
    /// GET_KV_CONFIG (101) and DELETE_KV_CONFIG (102).
    pub struct GetKvConfigRequestHeader {
        /// KV namespace, e.g. `ORDER_TOPIC_CONFIG`.
        namespace: String => "namespace",
        /// Key inside the namespace.
        key: String => "key",
    }
}

ext_header! {
    /// GET_KV_CONFIG response.
    pub struct GetKvConfigResponseHeader {
        /// The stored value.
        value: Option<String> => "value",
    }
}

ext_header! {
    /// PUT_KV_CONFIG (100).
    pub struct PutKvConfigRequestHeader {
        /// KV namespace.
        namespace: String => "namespace",
        /// Key.
        key: String => "key",
        /// Value.
        value: String => "value",
    }
}
