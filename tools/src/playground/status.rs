//! What the playground asks its servers: whether the group has a master
//! (GET_BROKER_CLUSTER_INFO on the NameServer) and each node's raft status
//! (RAFTMQ_GROUP_STATUS, code 9002), and how a node's status is shown.

use std::time::Duration;

use raftmq_client::remoting::ConnectionPool;
use raftmq_protocol::body::{decode_json, ClusterInfo, RaftGroupStatus};
use raftmq_protocol::codes::{RequestCode, ResponseCode};
use raftmq_protocol::{RemotingCommand, StrMap};

/// How long one status or cluster-info request may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// The master address of group `group` in a cluster-info answer.
pub fn master_addr<'a>(info: &'a ClusterInfo, group: &str) -> Option<&'a str> {
    info.broker_addr_table.get(group)?.master_addr()
}

async fn call(
    pool: &ConnectionPool,
    addr: &str,
    code: RequestCode,
) -> Result<RemotingCommand, String> {
    let req = RemotingCommand::request(code.code(), StrMap::new());
    let resp = pool
        .call(addr, req, CALL_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    if resp.code != ResponseCode::Success.code() {
        let name = ResponseCode::from_code(resp.code).map_or("unknown code", |c| c.name());
        return Err(format!(
            "{} answered {} ({name}): {}",
            code.name(),
            resp.code,
            resp.remark.as_deref().unwrap_or("")
        ));
    }
    Ok(resp)
}

/// The master address the NameServer at `namesrv` knows for `group`, if any.
pub async fn cluster_master(
    pool: &ConnectionPool,
    namesrv: &str,
    group: &str,
) -> Result<Option<String>, String> {
    let resp = call(pool, namesrv, RequestCode::GetBrokerClusterInfo).await?;
    let info: ClusterInfo =
        decode_json("ClusterInfo", &resp.body).map_err(|e| format!("cluster info: {e}"))?;
    Ok(master_addr(&info, group).map(str::to_owned))
}

/// The raft status of the node whose client address is `addr`.
pub async fn group_status(pool: &ConnectionPool, addr: &str) -> Result<RaftGroupStatus, String> {
    let resp = call(pool, addr, RequestCode::RaftGroupStatus).await?;
    decode_json("RaftGroupStatus", &resp.body).map_err(|e| format!("group status: {e}"))
}

/// One node's status line: `n0 127.0.0.1:30911 leader    term=2 committed=15`.
pub fn status_line(node: usize, addr: &str, status: &Result<RaftGroupStatus, String>) -> String {
    match status {
        Ok(s) => {
            let committed = s
                .committed_index
                .map_or_else(|| "-".to_owned(), |i| i.to_string());
            format!(
                "n{node} {addr} {:<9} term={} committed={committed}",
                s.role, s.term
            )
        }
        Err(e) => format!("n{node} {addr} unreachable: {e}"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use raftmq_protocol::body::BrokerData;

    use super::*;

    #[test]
    fn master_is_broker_id_zero_of_the_group() {
        let mut info = ClusterInfo::default();
        assert_eq!(master_addr(&info, "RaftNode00"), None);
        let mut group = BrokerData::new("RaftCluster", "RaftNode00");
        group.broker_addrs.insert(2, "127.0.0.1:30921".into());
        info.broker_addr_table
            .insert("RaftNode00".into(), group.clone());
        assert_eq!(master_addr(&info, "RaftNode00"), None, "followers only");
        group.broker_addrs.insert(0, "127.0.0.1:30911".into());
        info.broker_addr_table.insert("RaftNode00".into(), group);
        assert_eq!(master_addr(&info, "RaftNode00"), Some("127.0.0.1:30911"));
        assert_eq!(master_addr(&info, "Other"), None);
    }

    #[test]
    fn status_lines_show_role_term_and_committed_index() {
        let s = RaftGroupStatus {
            role: "leader".into(),
            term: 3,
            committed_index: Some(17),
            ..RaftGroupStatus::default()
        };
        assert_eq!(
            status_line(0, "127.0.0.1:30911", &Ok(s.clone())),
            "n0 127.0.0.1:30911 leader    term=3 committed=17"
        );
        let unknown = RaftGroupStatus {
            committed_index: None,
            role: "candidate".into(),
            ..s
        };
        assert_eq!(
            status_line(2, "127.0.0.1:30931", &Ok(unknown)),
            "n2 127.0.0.1:30931 candidate term=3 committed=-"
        );
        assert_eq!(
            status_line(1, "127.0.0.1:30921", &Err("connection refused".into())),
            "n1 127.0.0.1:30921 unreachable: connection refused"
        );
    }
}
