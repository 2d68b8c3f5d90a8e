//! One worker task per NameServer, and the REGISTER/UNREGISTER commands they send.
//!
//! The main loop publishes the latest [`Job`] on a watch channel; each worker sends the
//! newest job it has not sent yet, so a slow or dead NameServer only ever delays itself
//! and jobs that pile up behind it collapse into the latest one.

use std::sync::Arc;
use std::time::Duration;

use raftmq_protocol::body::{RegisterBrokerBody, TopicConfigSerializeWrapper};
use raftmq_protocol::codes::{RequestCode, ResponseCode};
use raftmq_protocol::headers::{
    RegisterBrokerRequestHeader, RegisterBrokerResponseHeader, UnregisterBrokerRequestHeader,
};
use raftmq_protocol::RemotingCommand;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::{RegistrarConfig, Registration};
use crate::remoting_client::RemotingClient;

/// Why a registration round was started (logged; role changes at info, the rest at debug).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reason {
    /// The start-up registration.
    Start,
    /// The decision changed (role, term or broker id).
    Change,
    /// Asked for (topic change).
    Poke,
    /// `registerNameServerPeriod` elapsed.
    Periodic,
}

/// One registration round, sent to every NameServer.
#[derive(Debug)]
pub(super) struct Job {
    pub generation: u64,
    pub registration: Registration,
    pub reason: Reason,
    /// When the cause was observed (status change, poke, tick): latency is measured from here.
    pub since: Instant,
    pub request: RemotingCommand,
}

/// What one NameServer answered to one job.
#[derive(Debug)]
pub(super) struct Report {
    pub ns: usize,
    pub generation: u64,
    pub registration: Registration,
    pub reason: Reason,
    pub since: Instant,
    /// Ok: the live master's address the NameServer returned (follower registrations).
    pub result: Result<Option<String>, String>,
}

/// REGISTER_BROKER with a plain-JSON RegisterBrokerBody whose `stateVersion` is the term.
pub(super) fn register_request(
    cfg: &RegistrarConfig,
    reg: Registration,
    mut topics: TopicConfigSerializeWrapper,
) -> RemotingCommand {
    topics.data_version.state_version = reg.state_version;
    let body = RegisterBrokerBody {
        filter_server_list: Vec::new(),
        topic_config_serialize_wrapper: topics,
    };
    let header = RegisterBrokerRequestHeader {
        broker_name: cfg.broker_name.clone(),
        broker_addr: cfg.broker_addr.clone(),
        cluster_name: cfg.cluster_name.clone(),
        ha_server_addr: cfg.ha_server_addr.clone(),
        broker_id: reg.broker_id,
        heartbeat_timeout_millis: Some(cfg.heartbeat_timeout_ms),
        compressed: Some(false),
        ..Default::default()
    };
    RemotingCommand::request_with(RequestCode::RegisterBroker.code(), &header)
        .with_body(body.encode())
}

/// UNREGISTER_BROKER for this node under `broker_id`.
pub(super) fn unregister_request(cfg: &RegistrarConfig, broker_id: i64) -> RemotingCommand {
    let header = UnregisterBrokerRequestHeader {
        broker_name: cfg.broker_name.clone(),
        broker_addr: cfg.broker_addr.clone(),
        cluster_name: cfg.cluster_name.clone(),
        broker_id,
    };
    RemotingCommand::request_with(RequestCode::UnregisterBroker.code(), &header)
}

/// SUCCESS → Ok, anything else → Err naming the code and remark.
pub(super) fn check_success(resp: &RemotingCommand) -> Result<(), String> {
    if resp.code == ResponseCode::Success.code() {
        return Ok(());
    }
    let name = ResponseCode::from_code(resp.code).map_or("unknown", ResponseCode::name);
    Err(format!(
        "refused with code {} ({name}): {}",
        resp.code,
        resp.remark.as_deref().unwrap_or("no remark")
    ))
}

/// Sends each new job to NameServer `ns` at `addr` until the job channel closes.
pub(super) async fn worker(
    ns: usize,
    addr: String,
    client: RemotingClient,
    mut jobs: watch::Receiver<Option<Arc<Job>>>,
    reports: mpsc::UnboundedSender<Report>,
    call_timeout: Duration,
) {
    while jobs.changed().await.is_ok() {
        let job = jobs.borrow_and_update().clone();
        let Some(job) = job else { continue };
        let result = match client.call(&addr, job.request.clone(), call_timeout).await {
            Ok(resp) => check_success(&resp).map(|()| {
                // A missing or unreadable header just means "no master address".
                resp.header::<RegisterBrokerResponseHeader>()
                    .ok()
                    .and_then(|h| h.master_addr)
            }),
            Err(e) => Err(e.to_string()),
        };
        let report = Report {
            ns,
            generation: job.generation,
            registration: job.registration,
            reason: job.reason,
            since: job.since,
            result,
        };
        if reports.send(report).is_err() {
            return;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use raftmq_protocol::body::TopicConfig;

    use super::*;
    use crate::config::BrokerConfig;

    fn cfg() -> RegistrarConfig {
        let (broker, _) = BrokerConfig::from_properties(
            "enableDLegerCommitLog=true\n\
             dLegerPeers=n0-127.0.0.1:40911;n1-127.0.0.1:40912;n2-127.0.0.1:40913\n\
             dLegerSelfId=n1\nbrokerName=broker-a\nlistenPort=10921\n\
             namesrvAddr=127.0.0.1:9876;127.0.0.1:9877\n",
        )
        .unwrap();
        RegistrarConfig::from_broker(&broker)
    }

    #[test]
    fn config_from_broker() {
        let c = cfg();
        assert_eq!(c.cluster_name, "DefaultCluster");
        assert_eq!(c.broker_name, "broker-a");
        assert_eq!(c.broker_addr, "127.0.0.1:10921");
        assert_eq!(c.ha_server_addr, "127.0.0.1:40912");
        assert_eq!(c.follower_broker_id, 2);
        assert_eq!(c.namesrv_addrs, ["127.0.0.1:9876", "127.0.0.1:9877"]);
        assert_eq!(c.period, Duration::from_secs(30));
        assert_eq!(c.heartbeat_timeout_ms, 120_000);
    }

    #[test]
    fn register_request_carries_identity_and_term_as_state_version() {
        let mut topics = TopicConfigSerializeWrapper::default();
        topics.data_version.counter = 7;
        topics.data_version.state_version = 99;
        topics
            .topic_config_table
            .insert("TopicTest".into(), TopicConfig::new("TopicTest", 4));
        let reg = Registration {
            broker_id: 0,
            state_version: 5,
        };
        let req = register_request(&cfg(), reg, topics);
        assert_eq!(req.code, RequestCode::RegisterBroker.code());
        let h: RegisterBrokerRequestHeader = req.header().unwrap();
        assert_eq!(
            (h.broker_name.as_str(), h.broker_addr.as_str(), h.broker_id),
            ("broker-a", "127.0.0.1:10921", 0)
        );
        assert_eq!(h.ha_server_addr, "127.0.0.1:40912");
        assert_eq!(h.heartbeat_timeout_millis, Some(120_000));
        let body = RegisterBrokerBody::decode(&req.body, false, req.version).unwrap();
        let w = body.topic_config_serialize_wrapper;
        assert_eq!(
            (w.data_version.counter, w.data_version.state_version),
            (7, 5)
        );
        assert!(w.topic_config_table.contains_key("TopicTest"));

        let un = unregister_request(&cfg(), 2);
        let h: UnregisterBrokerRequestHeader = un.header().unwrap();
        assert_eq!(
            (h.broker_id, h.cluster_name.as_str()),
            (2, "DefaultCluster")
        );
    }

    #[test]
    fn non_success_is_an_error_naming_the_code() {
        let req = RemotingCommand::request(103, Default::default());
        let ok = RemotingCommand::response_to(&req, ResponseCode::Success);
        assert!(check_success(&ok).is_ok());
        let bad = RemotingCommand::error_to(&req, ResponseCode::SystemError, "crc32 not match");
        let e = check_success(&bad).unwrap_err();
        assert!(
            e.contains("SYSTEM_ERROR") && e.contains("crc32 not match"),
            "{e}"
        );
    }
}
