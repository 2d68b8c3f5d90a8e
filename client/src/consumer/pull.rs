//! The pull consumer: the caller names queues and offsets (RocketMQ's
//! `DefaultMQPullConsumer`). Requests go to the group's master; after a not-master or
//! unreachable answer the route is refreshed and the request retried once, on the new
//! master if the NameServer already shows it.

use std::sync::Arc;
use std::time::Duration;

use raftmq_protocol::body::{encode_json, ConsumerData, HeartbeatData};
use raftmq_protocol::codes::RequestCode;
use raftmq_protocol::{RemotingCommand, StrMap};

use super::{
    commit_offset, max_offset, min_offset, pull_once, query_committed_offset, readable_queues,
    search_offset, subscription, PullRequest, PullResult,
};
use crate::instance::{now_ms, ClientCore};
use crate::route::MessageQueue;
use crate::ClientError;

/// A pull consumer of one group.
#[derive(Debug)]
pub struct PullConsumer {
    core: Arc<ClientCore>,
    group: String,
}

impl PullConsumer {
    /// A pull consumer of `group`; `namesrv` as for producers (`None`: `NAMESRV_ADDR`).
    pub fn new(group: impl Into<String>, namesrv: Option<&str>) -> Result<Self, ClientError> {
        let namesrvs = crate::namesrv::resolve_from_env(namesrv, None)?;
        let (core, _) = ClientCore::new(namesrvs, "PULL");
        Ok(PullConsumer {
            core,
            group: group.into(),
        })
    }

    /// The shared client state.
    pub fn core(&self) -> &Arc<ClientCore> {
        &self.core
    }

    /// The readable queues of `topic` (route refreshed).
    pub async fn fetch_queues(&self, topic: &str) -> Result<Vec<MessageQueue>, ClientError> {
        let route = self.core.refresh_route(topic).await?;
        Ok(readable_queues(topic, &route))
    }

    async fn addr(&self, mq: &MessageQueue) -> Result<String, ClientError> {
        if self.core.cached_route(&mq.topic).is_none() {
            self.core.route(&mq.topic).await?;
        }
        self.core
            .any_addr_of(&mq.broker_name)
            .ok_or_else(|| ClientError::NoRoute(mq.topic.clone()))
    }

    /// Runs `op` against the group's master, once more after a route refresh if it failed
    /// in a retryable way.
    async fn with_master<T, F, Fut>(&self, mq: &MessageQueue, op: F) -> Result<T, ClientError>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        let addr = self.addr(mq).await?;
        match op(addr).await {
            Err(e) if e.is_retryable() => {
                let _ = self.core.refresh_route(&mq.topic).await;
                op(self.addr(mq).await?).await
            }
            other => other,
        }
    }

    /// Pulls up to `max_nums` messages of `mq` from `offset` matching `expression`
    /// (`*` or `TagA || TagB`); answers at once when there is nothing.
    pub async fn pull(
        &self,
        mq: &MessageQueue,
        expression: &str,
        offset: i64,
        max_nums: i32,
    ) -> Result<PullResult, ClientError> {
        self.pull_blocking(mq, expression, offset, max_nums, Duration::ZERO)
            .await
    }

    /// Like [`PullConsumer::pull`], but when nothing is there the broker holds the request
    /// up to `wait` for new messages (long polling).
    pub async fn pull_blocking(
        &self,
        mq: &MessageQueue,
        expression: &str,
        offset: i64,
        max_nums: i32,
        wait: Duration,
    ) -> Result<PullResult, ClientError> {
        let sub = subscription(&mq.topic, expression, now_ms());
        self.with_master(mq, |addr| {
            let sub = &sub;
            async move {
                let req = PullRequest {
                    group: &self.group,
                    queue: mq,
                    sub,
                    offset,
                    max_nums,
                    commit_offset: None,
                    suspend: wait,
                };
                pull_once(self.core.pool(), &addr, &req).await
            }
        })
        .await
    }

    /// The group's committed offset of `mq`, `None` if it has none.
    pub async fn committed_offset(&self, mq: &MessageQueue) -> Result<Option<i64>, ClientError> {
        self.with_master(mq, |addr| async move {
            query_committed_offset(self.core.pool(), &addr, &self.group, mq).await
        })
        .await
    }

    /// Commits `offset` (the next one to consume) for the group on `mq`, waiting for the
    /// broker's answer.
    pub async fn commit(&self, mq: &MessageQueue, offset: i64) -> Result<(), ClientError> {
        self.with_master(mq, |addr| async move {
            commit_offset(self.core.pool(), &addr, &self.group, mq, offset, false).await
        })
        .await
    }

    /// The queue's end offset.
    pub async fn max_offset(&self, mq: &MessageQueue) -> Result<i64, ClientError> {
        self.with_master(mq, |addr| async move {
            max_offset(self.core.pool(), &addr, mq).await
        })
        .await
    }

    /// The queue's first retained offset.
    pub async fn min_offset(&self, mq: &MessageQueue) -> Result<i64, ClientError> {
        self.with_master(mq, |addr| async move {
            min_offset(self.core.pool(), &addr, mq).await
        })
        .await
    }

    /// The first offset stored at or after `timestamp_ms`.
    pub async fn search_offset(
        &self,
        mq: &MessageQueue,
        timestamp_ms: i64,
    ) -> Result<i64, ClientError> {
        self.with_master(mq, |addr| async move {
            search_offset(self.core.pool(), &addr, mq, timestamp_ms).await
        })
        .await
    }

    /// Tells the brokers of `topics` about this consumer (`CONSUME_ACTIVELY`), as RocketMQ
    /// pull consumers do so that tools list them.
    pub async fn heartbeat(&self, topics: &[&str]) -> Result<(), ClientError> {
        let subs = topics
            .iter()
            .map(|t| subscription(t, "*", now_ms()))
            .collect();
        let hb = HeartbeatData {
            client_id: self.core.client_id().to_owned(),
            consumer_data_set: vec![ConsumerData {
                group_name: self.group.clone(),
                consume_type: "CONSUME_ACTIVELY".into(),
                message_model: "CLUSTERING".into(),
                consume_from_where: "CONSUME_FROM_LAST_OFFSET".into(),
                subscription_data_set: subs,
                unit_mode: false,
            }],
            ..Default::default()
        };
        let body = encode_json(&hb);
        for t in topics {
            self.core.route(t).await?;
        }
        for addrs in self.core.known_brokers().values() {
            for addr in addrs {
                let req = RemotingCommand::request(RequestCode::HeartBeat.code(), StrMap::new())
                    .with_body(body.clone());
                self.core
                    .pool()
                    .call(addr, req, Duration::from_secs(3))
                    .await?;
            }
        }
        Ok(())
    }
}
