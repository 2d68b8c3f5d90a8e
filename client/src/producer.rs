//! The producer: synchronous, asynchronous, one-way, batch and ordered sends.
//!
//! A send picks a queue round robin, skipping masters that failed lately, and goes to that
//! group's master. On a retryable failure (not the master, busy, unreachable, timeout) the
//! route is refreshed at once and the send retried, on another group if there is one, or
//! on the same group's new master once the NameServer shows it (a RaftMQ group elects one
//! in seconds): [`ProducerConfig::failover_wait`] bounds that wait. Every message gets a
//! `UNIQ_KEY`, so a retry after a lost answer is answered by the broker's duplicate
//! detection with the first result instead of storing the message twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use raftmq_protocol::body::{encode_json, HeartbeatData, ProducerData, TopicRouteData};
use raftmq_protocol::codes::{RequestCode, ResponseCode};
use raftmq_protocol::headers::{CommandHeader, SendMessageRequestHeaderV2};
use raftmq_protocol::message::sysflag::{COMPRESSED, COMPRESSION_TYPE_SHIFT, COMPRESSION_ZLIB};
use raftmq_protocol::message::{compress_zlib, encode_batch, encode_properties, keys, BatchItem};
use raftmq_protocol::{RemotingCommand, StrMap};
use tokio::sync::watch;
use tracing::Instrument;

use crate::instance::{now_ms, ClientCore};
use crate::message::{validate_topic, Message, SendResult, SendStatus, BODY_BYTES_MAX};
use crate::route::{FaultTracker, MessageQueue, TopicPublishInfo};
use crate::ClientError;

/// The template topic a broker auto-creates topics from (RocketMQ's `TBW102`).
pub const AUTO_CREATE_TOPIC_KEY: &str = "TBW102";
/// Queues of an auto-created topic (RocketMQ's `defaultTopicQueueNums`).
pub const DEFAULT_TOPIC_QUEUE_NUMS: i32 = 4;
/// How often producers heartbeat to the brokers they know.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30);
/// Pause between route polls while waiting for a group's new master.
const FAILOVER_POLL: Duration = Duration::from_millis(200);

/// Producer settings (RocketMQ's `DefaultMQProducer` fields).
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Producer group.
    pub group: String,
    /// NameServer list (`host:port;host:port`); `None`: `NAMESRV_ADDR`.
    pub namesrv: Option<String>,
    /// Time limit of one send attempt.
    pub send_timeout: Duration,
    /// Extra attempts after a retryable failure (RocketMQ: 2).
    pub retries: u32,
    /// Longest wait for a failed group's new master before a retry.
    pub failover_wait: Duration,
    /// Bodies of at least this many bytes are zlib-compressed (RocketMQ: 4096).
    pub compress_over: usize,
    /// Largest body accepted (RocketMQ: 4 MiB).
    pub body_bytes_max: usize,
    /// Distinguishes several clients in one process.
    pub instance_name: String,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            group: "DEFAULT_PRODUCER".into(),
            namesrv: None,
            send_timeout: Duration::from_secs(3),
            retries: 2,
            failover_wait: Duration::from_secs(5),
            compress_over: raftmq_protocol::message::COMPRESS_BODY_OVER_BYTES,
            body_bytes_max: BODY_BYTES_MAX,
            instance_name: "DEFAULT".into(),
        }
    }
}

impl ProducerConfig {
    /// Defaults with `group` and `namesrv`.
    pub fn new(group: impl Into<String>, namesrv: impl Into<String>) -> Self {
        ProducerConfig {
            group: group.into(),
            namesrv: Some(namesrv.into()),
            ..Default::default()
        }
    }
}

/// A message ready for the wire: properties encoded, body compressed when large.
#[derive(Debug, Clone)]
struct Prepared {
    topic: String,
    body: Bytes,
    flag: i32,
    sys_flag: i32,
    properties: String,
    uniq_key: String,
    batch: bool,
}

/// Publish info built from one route (rebuilt when the route changes).
#[derive(Debug)]
struct Publish {
    route: Arc<TopicRouteData>,
    info: Arc<TopicPublishInfo>,
}

/// Chooses the queue of an ordered send from the topic's queues.
pub trait QueueSelector: Send + Sync {
    /// Index into `queues` (taken modulo their number).
    fn select(&self, queues: &[MessageQueue], msg: &Message) -> usize;
}

impl<F> QueueSelector for F
where
    F: Fn(&[MessageQueue], &Message) -> usize + Send + Sync,
{
    fn select(&self, queues: &[MessageQueue], msg: &Message) -> usize {
        self(queues, msg)
    }
}

/// Selects by a hash of a sharding key: the same key always lands on the same queue
/// while the topic's queue count is unchanged (RocketMQ's `SelectMessageQueueByHash`).
#[derive(Debug, Clone)]
pub struct SelectByKey(pub String);

impl QueueSelector for SelectByKey {
    fn select(&self, queues: &[MessageQueue], _msg: &Message) -> usize {
        let h = raftmq_protocol::message::java_string_hash(&self.0);
        (h.unsigned_abs() as usize) % queues.len().max(1)
    }
}

/// A producer; cheap to share (`Arc`), stopped by [`Producer::shutdown`] or drop.
#[derive(Debug)]
pub struct Producer {
    core: Arc<ClientCore>,
    cfg: ProducerConfig,
    publish: Mutex<HashMap<String, Publish>>,
    faults: Mutex<FaultTracker>,
    stop: watch::Sender<bool>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Drop for Producer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl Producer {
    /// Starts a producer: resolves the NameServers and starts the route refresh and
    /// heartbeat tasks. Needs a tokio runtime.
    pub fn start(cfg: ProducerConfig) -> Result<Arc<Producer>, ClientError> {
        let namesrvs = crate::namesrv::resolve_from_env(cfg.namesrv.as_deref(), None)?;
        let (core, _server_requests) = ClientCore::new(namesrvs, &cfg.instance_name);
        let (stop, stop_rx) = watch::channel(false);
        core.spawn_route_refresh(stop_rx.clone());
        let producer = Arc::new(Producer {
            core,
            cfg,
            publish: Mutex::default(),
            faults: Mutex::default(),
            stop,
        });
        producer.spawn_heartbeat(stop_rx);
        Ok(producer)
    }

    /// Stops the background tasks; sends already started finish.
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }

    /// The shared client state (routes, connections).
    pub fn core(&self) -> &Arc<ClientCore> {
        &self.core
    }

    /// The settings.
    pub fn config(&self) -> &ProducerConfig {
        &self.cfg
    }

    fn spawn_heartbeat(self: &Arc<Self>, mut stop: watch::Receiver<bool>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => return,
                }
                let Some(p) = weak.upgrade() else { return };
                p.heartbeat().await;
            }
        });
    }

    /// Sends a heartbeat naming this producer group to every broker node it knows.
    pub async fn heartbeat(&self) {
        let hb = HeartbeatData {
            client_id: self.core.client_id().to_owned(),
            producer_data_set: vec![ProducerData {
                group_name: self.cfg.group.clone(),
            }],
            ..Default::default()
        };
        let body = encode_json(&hb);
        for addrs in self.core.known_brokers().values() {
            for addr in addrs {
                let req = RemotingCommand::request(RequestCode::HeartBeat.code(), StrMap::new())
                    .with_body(body.clone());
                if let Err(e) = self
                    .core
                    .pool()
                    .call(addr, req, self.cfg.send_timeout)
                    .await
                {
                    tracing::debug!(%addr, error = %e, "producer heartbeat failed");
                }
            }
        }
    }

    /// The queues `topic` may be sent to (fetching its route if needed).
    pub async fn queues(&self, topic: &str) -> Result<Vec<MessageQueue>, ClientError> {
        Ok(self.publish_info(topic).await?.queues.clone())
    }

    /// Publish info for `topic` from the cached route; an unknown topic is sent through
    /// the brokers that carry the auto-create template `TBW102`.
    async fn publish_info(&self, topic: &str) -> Result<Arc<TopicPublishInfo>, ClientError> {
        let route = match self.core.route(topic).await {
            Ok(r) => r,
            Err(ClientError::Broker { code, .. }) if code == ResponseCode::TopicNotExist.code() => {
                return self.template_publish_info(topic).await;
            }
            Err(e) => return Err(e),
        };
        Ok(self.publish_from(topic, route))
    }

    fn publish_from(&self, topic: &str, route: Arc<TopicRouteData>) -> Arc<TopicPublishInfo> {
        let mut cache = lock(&self.publish);
        if let Some(p) = cache.get(topic) {
            if Arc::ptr_eq(&p.route, &route) {
                return p.info.clone();
            }
        }
        let info = Arc::new(TopicPublishInfo::from_route(topic, &route));
        cache.insert(
            topic.to_owned(),
            Publish {
                route,
                info: info.clone(),
            },
        );
        info
    }

    async fn template_publish_info(
        &self,
        topic: &str,
    ) -> Result<Arc<TopicPublishInfo>, ClientError> {
        let template = match self.core.route(AUTO_CREATE_TOPIC_KEY).await {
            Ok(r) => r,
            Err(_) => {
                return Err(ClientError::NoRoute(topic.to_owned()));
            }
        };
        let mut route = (*template).clone();
        for q in &mut route.queue_datas {
            q.write_queue_nums = q.write_queue_nums.min(DEFAULT_TOPIC_QUEUE_NUMS);
            q.read_queue_nums = q.read_queue_nums.min(DEFAULT_TOPIC_QUEUE_NUMS);
        }
        let info = TopicPublishInfo::from_route(topic, &route);
        if !info.is_ok() {
            return Err(ClientError::NoRoute(topic.to_owned()));
        }
        Ok(Arc::new(info))
    }

    fn prepare(&self, mut msg: Message) -> Result<Prepared, ClientError> {
        msg.validate(self.cfg.body_bytes_max)?;
        let uniq_key = match msg.properties.get(keys::UNIQ_KEY) {
            Some(k) => k.to_owned(),
            None => {
                let k = self.core.new_uniq_key();
                msg.properties.insert(keys::UNIQ_KEY, k.clone());
                k
            }
        };
        let mut sys_flag = 0;
        let mut body = msg.body;
        if body.len() >= self.cfg.compress_over {
            body = Bytes::from(compress_zlib(&body));
            sys_flag |= COMPRESSED | (COMPRESSION_ZLIB << COMPRESSION_TYPE_SHIFT);
        }
        Ok(Prepared {
            topic: msg.topic,
            body,
            flag: msg.flag,
            sys_flag,
            properties: encode_properties(&msg.properties),
            uniq_key,
            batch: false,
        })
    }

    fn request(&self, p: &Prepared, mq: &MessageQueue) -> RemotingCommand {
        let header = SendMessageRequestHeaderV2 {
            a: self.cfg.group.clone(),
            b: p.topic.clone(),
            c: AUTO_CREATE_TOPIC_KEY.to_owned(),
            d: DEFAULT_TOPIC_QUEUE_NUMS,
            e: mq.queue_id,
            f: p.sys_flag,
            g: now_ms(),
            h: p.flag,
            i: Some(p.properties.clone()),
            j: Some(0),
            k: Some(false),
            m: Some(p.batch),
            n: Some(mq.broker_name.clone()),
            ..Default::default()
        };
        let code = if p.batch {
            RequestCode::SendBatchMessage
        } else {
            RequestCode::SendMessageV2
        };
        RemotingCommand::request(code.code(), header.to_ext()).with_body(p.body.clone())
    }

    /// One attempt: the request to `addr`, its answer turned into a result.
    async fn attempt(
        &self,
        addr: &str,
        mq: &MessageQueue,
        p: &Prepared,
    ) -> Result<SendResult, ClientError> {
        let started = Instant::now();
        let resp = self
            .core
            .pool()
            .call(addr, self.request(p, mq), self.cfg.send_timeout)
            .await;
        let result = resp.and_then(|r| send_result(addr, mq, &p.uniq_key, &r));
        let failed = result.is_err();
        lock(&self.faults).record(addr, started.elapsed().as_millis() as i64, failed, now_ms());
        result
    }

    /// Sends `msg` and waits for the broker's answer, retrying retryable failures.
    pub async fn send(&self, msg: Message) -> Result<SendResult, ClientError> {
        let p = self.prepare(msg)?;
        let span = tracing::debug_span!("send", topic = %p.topic, uniq_key = %p.uniq_key);
        self.send_prepared(&p, None).instrument(span).await
    }

    /// Sends `msg` in the background; the returned handle yields the result
    /// (RocketMQ's async send with a callback: `.await` it or drop it).
    pub fn send_async(
        self: &Arc<Self>,
        msg: Message,
    ) -> tokio::task::JoinHandle<Result<SendResult, ClientError>> {
        let p = self.clone();
        tokio::spawn(async move { p.send(msg).await })
    }

    /// Sends `msg` without waiting for an answer and without retries (RocketMQ's oneway):
    /// returns once the request is queued on the connection.
    pub async fn send_oneway(&self, msg: Message) -> Result<(), ClientError> {
        let p = self.prepare(msg)?;
        let info = self.publish_info(&p.topic).await?;
        let now = now_ms();
        let mq = {
            let faults = lock(&self.faults);
            info.select(None, &faults, now).cloned()
        }
        .ok_or_else(|| ClientError::NoRoute(p.topic.clone()))?;
        let addr = info
            .masters
            .get(&mq.broker_name)
            .cloned()
            .ok_or_else(|| ClientError::NoRoute(p.topic.clone()))?;
        self.core.pool().oneway(&addr, self.request(&p, &mq)).await
    }

    /// Sends `msg` to the queue `selector` picks (ordered messages: one key, one queue).
    /// A failed send is retried on the same queue only, at the group's new master after a
    /// failover, so per-queue order holds.
    pub async fn send_ordered(
        &self,
        msg: Message,
        selector: &dyn QueueSelector,
    ) -> Result<SendResult, ClientError> {
        // The choice is made over every writable queue, masters or not, so a key keeps
        // its queue through an election; send_to_queue then waits for the new master.
        let started = Instant::now();
        let mut attempt = 0;
        let info = loop {
            attempt += 1;
            let e = match self.publish_info(&msg.topic).await {
                Ok(info) if !info.all_queues.is_empty() => break info,
                Ok(_) => ClientError::NoRoute(msg.topic.clone()),
                Err(e) => e,
            };
            if !self.may_retry(attempt, &e, started) {
                return Err(e);
            }
            tokio::time::sleep(FAILOVER_POLL).await;
            let _ = self.core.refresh_route(&msg.topic).await;
        };
        let queues = &info.all_queues;
        let mq = queues[selector.select(queues, &msg) % queues.len()].clone();
        self.send_to_queue(msg, &mq).await
    }

    /// Sends `msg` to `mq`, retrying only on that queue.
    pub async fn send_to_queue(
        &self,
        msg: Message,
        mq: &MessageQueue,
    ) -> Result<SendResult, ClientError> {
        if msg.topic != mq.topic {
            return Err(ClientError::InvalidArgument(format!(
                "message topic {} differs from the queue's topic {}",
                msg.topic, mq.topic
            )));
        }
        let p = self.prepare(msg)?;
        let span = tracing::debug_span!("send_to_queue", topic = %p.topic, broker = %mq.broker_name, queue = mq.queue_id);
        self.send_prepared(&p, Some(mq)).instrument(span).await
    }

    /// Sends `msgs` as one batch (one request, one raft entry): same topic, no delay
    /// levels; bodies are never compressed in a batch.
    pub async fn send_batch(&self, msgs: Vec<Message>) -> Result<SendResult, ClientError> {
        let p = self.prepare_batch(msgs)?;
        let span = tracing::debug_span!("send_batch", topic = %p.topic);
        self.send_prepared(&p, None).instrument(span).await
    }

    /// Like [`Producer::send_batch`], to one queue.
    pub async fn send_batch_to_queue(
        &self,
        msgs: Vec<Message>,
        mq: &MessageQueue,
    ) -> Result<SendResult, ClientError> {
        let p = self.prepare_batch(msgs)?;
        self.send_prepared(&p, Some(mq)).await
    }

    fn prepare_batch(&self, msgs: Vec<Message>) -> Result<Prepared, ClientError> {
        let Some(first) = msgs.first() else {
            return Err(ClientError::InvalidArgument(
                "a batch needs at least one message".into(),
            ));
        };
        let topic = first.topic.clone();
        validate_topic(&topic)?;
        if topic.starts_with("%RETRY%") {
            return Err(ClientError::InvalidArgument(
                "batches may not be sent to retry topics".into(),
            ));
        }
        let mut items = Vec::with_capacity(msgs.len());
        let mut ids = Vec::with_capacity(msgs.len());
        for mut m in msgs {
            if m.topic != topic {
                return Err(ClientError::InvalidArgument(format!(
                    "a batch must have one topic: {topic} and {}",
                    m.topic
                )));
            }
            if m.properties.contains_key(keys::DELAY) {
                return Err(ClientError::InvalidArgument(
                    "batched messages may not have a delay level".into(),
                ));
            }
            m.validate(self.cfg.body_bytes_max)?;
            let id = self.core.new_uniq_key();
            m.properties.insert(keys::UNIQ_KEY, id.clone());
            ids.push(id);
            items.push(BatchItem {
                flag: m.flag,
                body: m.body,
                properties: m.properties,
            });
        }
        let body = encode_batch(&items)
            .map_err(|e| ClientError::InvalidArgument(format!("cannot encode the batch: {e}")))?;
        if body.len() > self.cfg.body_bytes_max {
            return Err(ClientError::InvalidArgument(format!(
                "the batch is {} bytes, more than the limit of {}",
                body.len(),
                self.cfg.body_bytes_max
            )));
        }
        let batch_key = self.core.new_uniq_key();
        let mut props = StrMap::new();
        props.insert(keys::UNIQ_KEY, batch_key);
        props.insert(keys::WAIT, "true");
        Ok(Prepared {
            topic,
            body: Bytes::from(body),
            flag: 0,
            sys_flag: 0,
            properties: encode_properties(&props),
            uniq_key: ids.join(","),
            batch: true,
        })
    }

    /// The retry loop shared by every kind of send. `fixed`: the queue of an ordered send.
    async fn send_prepared(
        &self,
        p: &Prepared,
        fixed: Option<&MessageQueue>,
    ) -> Result<SendResult, ClientError> {
        let mut avoid: Option<String> = None;
        let mut last: Option<ClientError> = None;
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let info = match self.publish_info(&p.topic).await {
                Ok(info) => info,
                Err(e) if self.may_retry(attempt, &e, started) => {
                    last = Some(e);
                    tokio::time::sleep(FAILOVER_POLL).await;
                    let _ = self.core.refresh_route(&p.topic).await;
                    continue;
                }
                Err(e) => return Err(last.map_or(e.clone(), |l| pick_error(l, e))),
            };
            let selected = match fixed {
                Some(mq) => Some(mq.clone()),
                None => {
                    let faults = lock(&self.faults);
                    info.select(avoid.as_deref(), &faults, now_ms()).cloned()
                }
            };
            let Some(mq) = selected else {
                // No group has a master in the cached route (an election was under way
                // when it was fetched): wait for one instead of failing at once.
                let e = ClientError::NoRoute(p.topic.clone());
                if !self.may_retry(attempt, &e, started) {
                    return Err(e);
                }
                last = Some(e);
                self.await_failover(&p.topic, "", None, false, false).await;
                continue;
            };
            let Some(addr) = info.masters.get(&mq.broker_name).cloned() else {
                // The fixed queue's group has no master right now: wait for one.
                let e = ClientError::NoRoute(p.topic.clone());
                if !self.may_retry(attempt, &e, started) {
                    return Err(e);
                }
                last = Some(e);
                self.await_failover(&p.topic, &mq.broker_name, None, fixed.is_some(), false)
                    .await;
                continue;
            };
            match self.attempt(&addr, &mq, p).await {
                Ok(r) => return Ok(r),
                Err(e) if self.may_retry(attempt, &e, started) => {
                    tracing::debug!(%addr, attempt, error = %e, "send failed, retrying");
                    avoid = Some(mq.broker_name.clone());
                    // A node that answered is alive: a moment later it may be ready (a
                    // leader just elected); a dead one is waited out for a new master.
                    let alive = matches!(e, ClientError::Broker { .. });
                    self.await_failover(
                        &p.topic,
                        &mq.broker_name,
                        Some(&addr),
                        fixed.is_some(),
                        alive,
                    )
                    .await;
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// True when a send that failed with `e` on its `attempt`-th try (1-based) goes on:
    /// within the configured retries, or, for failures a failover causes (unreachable or
    /// closed connection, busy or not-the-leader answers, no master), until
    /// [`ProducerConfig::failover_wait`] has passed since the send began, however many
    /// tries that takes.
    fn may_retry(&self, attempt: u32, e: &ClientError, started: Instant) -> bool {
        if !e.is_retryable() {
            return false;
        }
        if attempt <= self.cfg.retries {
            return true;
        }
        let failover = match e {
            ClientError::Broker { code, .. } => {
                *code == ResponseCode::SystemBusy.code()
                    || *code == ResponseCode::ServiceNotAvailable.code()
            }
            ClientError::Connect { .. }
            | ClientError::ConnectionClosed { .. }
            | ClientError::NoRoute(_) => true,
            _ => false,
        };
        failover && started.elapsed() < self.cfg.failover_wait
    }

    /// After a failed send to `group`'s master `failed` (None: it had no master): refreshes
    /// the route at once, and when there is nowhere else to send (`same_group`, or no
    /// other group with a master), keeps polling the NameServer until the group shows a
    /// different master or [`ProducerConfig::failover_wait`] passes. `alive`: the node
    /// answered (busy, not the leader yet): one refresh and a short pause suffice.
    async fn await_failover(
        &self,
        topic: &str,
        group: &str,
        failed: Option<&str>,
        same_group: bool,
        alive: bool,
    ) {
        let deadline = Instant::now() + self.cfg.failover_wait;
        if alive {
            // The node answered: refresh the route once and try again after a pause.
            let _ = self.core.refresh_route(topic).await;
            tokio::time::sleep(FAILOVER_POLL).await;
            return;
        }
        loop {
            let route = self.core.refresh_route(topic).await.ok().or_else(|| {
                // An auto-created topic: follow the template's route.
                self.core.cached_route(AUTO_CREATE_TOPIC_KEY)
            });
            if topic_has_no_route(&route) {
                let _ = self.core.refresh_route(AUTO_CREATE_TOPIC_KEY).await;
            }
            if let Some(route) = &route {
                let master = route
                    .broker_datas
                    .iter()
                    .find(|b| b.broker_name == group)
                    .and_then(|b| b.master_addr());
                if master.is_some_and(|m| Some(m) != failed) {
                    return;
                }
                let info = TopicPublishInfo::from_route(topic, route);
                if !same_group && info.queues.iter().any(|q| q.broker_name != group) {
                    return;
                }
            }
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(FAILOVER_POLL).await;
        }
    }
}

fn topic_has_no_route(route: &Option<Arc<TopicRouteData>>) -> bool {
    route.as_ref().is_none_or(|r| r.broker_datas.is_empty())
}

/// The more telling of two errors: a broker's answer over a connection failure.
fn pick_error(last: ClientError, now: ClientError) -> ClientError {
    match (&last, &now) {
        (ClientError::Broker { .. }, _) => last,
        _ => now,
    }
}

/// Turns a send answer into a result: SUCCESS and the stored-but-degraded codes are
/// results, anything else an error carrying the code and remark.
pub fn send_result(
    addr: &str,
    mq: &MessageQueue,
    uniq_key: &str,
    resp: &RemotingCommand,
) -> Result<SendResult, ClientError> {
    let status = match ResponseCode::from_code(resp.code) {
        Some(ResponseCode::Success) => SendStatus::SendOk,
        Some(ResponseCode::FlushDiskTimeout) => SendStatus::FlushDiskTimeout,
        Some(ResponseCode::FlushSlaveTimeout) => SendStatus::FlushSlaveTimeout,
        Some(ResponseCode::SlaveNotAvailable) => SendStatus::SlaveNotAvailable,
        _ => return Err(ClientError::broker(addr, resp.code, resp.remark.as_deref())),
    };
    let field = |k: &str| {
        resp.ext_fields
            .get(k)
            .ok_or_else(|| ClientError::BadAnswer(format!("send answer from {addr} lacks {k}")))
    };
    let num = |k: &str| -> Result<i64, ClientError> {
        field(k)?.trim().parse::<i64>().map_err(|_| {
            ClientError::BadAnswer(format!("send answer from {addr}: {k} is not a number"))
        })
    };
    let queue_id = num("queueId")? as i32;
    Ok(SendResult {
        status,
        msg_id: uniq_key.to_owned(),
        offset_msg_id: field("msgId")?.to_owned(),
        queue: MessageQueue {
            topic: mq.topic.clone(),
            broker_name: mq.broker_name.clone(),
            queue_id,
        },
        queue_offset: num("queueOffset")?,
        broker_addr: addr.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn mq() -> MessageQueue {
        MessageQueue {
            topic: "T".into(),
            broker_name: "b".into(),
            queue_id: 1,
        }
    }

    #[test]
    fn answers_become_results_or_errors_without_panicking() {
        let req = RemotingCommand::request(310, StrMap::new()).with_opaque(7);
        let mut ok = RemotingCommand::response_to(&req, ResponseCode::Success);
        ok.ext_fields.insert("msgId", "ABC");
        ok.ext_fields.insert("queueId", "1");
        ok.ext_fields.insert("queueOffset", "42");
        let r = send_result("a:1", &mq(), "U1", &ok).unwrap();
        assert_eq!(
            (r.status, r.queue_offset, r.queue.queue_id),
            (SendStatus::SendOk, 42, 1)
        );
        assert_eq!((r.msg_id.as_str(), r.offset_msg_id.as_str()), ("U1", "ABC"));

        let mut bad = ok.clone();
        bad.ext_fields.insert("queueOffset", "x");
        assert!(matches!(
            send_result("a:1", &mq(), "U", &bad),
            Err(ClientError::BadAnswer(_))
        ));
        let mut missing = RemotingCommand::response_to(&req, ResponseCode::Success);
        missing.ext_fields.insert("queueId", "1");
        assert!(send_result("a:1", &mq(), "U", &missing)
            .unwrap_err()
            .to_string()
            .contains("msgId"));
        let busy = RemotingCommand::error_to(&req, ResponseCode::SystemBusy, "not the leader");
        let e = send_result("a:1", &mq(), "U", &busy).unwrap_err();
        assert!(e.is_retryable() && e.to_string().contains("not the leader"));
        let illegal = RemotingCommand::error_to(&req, ResponseCode::MessageIllegal, "too big");
        assert!(!send_result("a:1", &mq(), "U", &illegal)
            .unwrap_err()
            .is_retryable());
    }

    #[test]
    fn key_selector_is_stable_and_in_range() {
        let queues: Vec<MessageQueue> = (0..8)
            .map(|i| MessageQueue {
                topic: "T".into(),
                broker_name: "b".into(),
                queue_id: i,
            })
            .collect();
        let m = Message::new("T", "x");
        for k in ["order-1", "order-2", "", "zzzzzzzzzzzzzzzzzzzzzz"] {
            let a = SelectByKey(k.into()).select(&queues, &m);
            assert!(a < 8);
            assert_eq!(a, SelectByKey(k.into()).select(&queues, &m));
        }
        assert_eq!(SelectByKey("k".into()).select(&[], &m), 0);
    }
}

#[cfg(test)]
mod failover_tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use raftmq_protocol::body::{encode_json, BrokerData, QueueData};
    use raftmq_protocol::headers::SendMessageRequestHeaderV2;
    use raftmq_protocol::message::decode_properties;

    use super::*;
    use crate::test_support::fake;

    fn route(master: Option<&str>) -> TopicRouteData {
        TopicRouteData {
            broker_datas: vec![BrokerData {
                broker_name: "g".into(),
                cluster: "C".into(),
                broker_addrs: master
                    .map(|m| BTreeMap::from([(0, m.to_owned())]))
                    .unwrap_or_default(),
                ..Default::default()
            }],
            queue_datas: vec![QueueData {
                broker_name: "g".into(),
                read_queue_nums: 2,
                write_queue_nums: 2,
                perm: 6,
                topic_sys_flag: 0,
            }],
            ..Default::default()
        }
    }

    fn stored(req: &RemotingCommand) -> RemotingCommand {
        let mut r = RemotingCommand::response_to(req, ResponseCode::Success);
        let h: SendMessageRequestHeaderV2 = req.header().unwrap();
        r.ext_fields.insert("msgId", "OFFSETID");
        r.ext_fields.insert("queueId", h.e.to_string());
        r.ext_fields.insert("queueOffset", "7");
        r
    }

    fn uniq_key(req: &RemotingCommand) -> String {
        let h: SendMessageRequestHeaderV2 = req.header().unwrap();
        decode_properties(h.i.as_deref().unwrap())
            .get("UNIQ_KEY")
            .unwrap()
            .to_owned()
    }

    /// A NameServer whose first `masterless` route answers show the group without a
    /// master (an election), then `broker` as master; also returns how often it was asked.
    async fn election_namesrv(broker: &str, masterless: usize) -> (String, Arc<AtomicUsize>) {
        let asked = Arc::new(AtomicUsize::new(0));
        let a = asked.clone();
        let b = broker.to_owned();
        let ns = fake(move |req| {
            let n = a.fetch_add(1, Ordering::SeqCst);
            let r = if n < masterless {
                route(None)
            } else {
                route(Some(&b))
            };
            RemotingCommand::response_to(req, ResponseCode::Success).with_body(encode_json(&r))
        })
        .await;
        (ns, asked)
    }

    #[tokio::test]
    async fn a_route_without_master_is_waited_out_not_spun_on() {
        let broker = fake(stored).await;
        // An election: the first three answers show the group without a master.
        let (ns, asked) = election_namesrv(&broker, 3).await;
        let p = Producer::start(ProducerConfig::new("pg", ns)).unwrap();
        let r = p.send(Message::new("T", "x")).await.unwrap();
        assert_eq!(
            (r.queue_offset, r.broker_addr.as_str()),
            (7, broker.as_str())
        );
        assert!(
            asked.load(Ordering::SeqCst) >= 4,
            "the route was polled until it had a master"
        );
    }

    #[tokio::test]
    async fn a_send_refused_by_an_old_master_reaches_the_new_one_with_the_same_uniq_key() {
        let keys: Arc<Mutex<Vec<(&'static str, String)>>> = Arc::default();
        let k = keys.clone();
        let old = fake(move |req| {
            k.lock().unwrap().push(("old", uniq_key(req)));
            RemotingCommand::error_to(req, ResponseCode::SystemBusy, "not the leader")
        })
        .await;
        let k = keys.clone();
        let new = fake(move |req| {
            k.lock().unwrap().push(("new", uniq_key(req)));
            stored(req)
        })
        .await;
        let asked = Arc::new(AtomicUsize::new(0));
        let a = asked.clone();
        let (o, n) = (old.clone(), new.clone());
        // The NameServer learns the new master after the first two route requests.
        let ns = fake(move |req| {
            let m = if a.fetch_add(1, Ordering::SeqCst) < 2 {
                &o
            } else {
                &n
            };
            RemotingCommand::response_to(req, ResponseCode::Success)
                .with_body(encode_json(&route(Some(m))))
        })
        .await;
        let p = Producer::start(ProducerConfig::new("pg", ns)).unwrap();
        let r = p.send(Message::new("T", "x")).await.unwrap();
        assert_eq!(r.broker_addr, new);
        let keys = keys.lock().unwrap();
        assert_eq!(keys.first().map(|k| k.0), Some("old"));
        assert_eq!(keys.last().map(|k| k.0), Some("new"));
        assert!(
            keys.iter().all(|k| k.1 == keys[0].1),
            "one UNIQ_KEY for every attempt: {keys:?}"
        );
    }

    #[tokio::test]
    async fn an_ordered_send_during_an_election_waits_and_keeps_its_queue() {
        // The route shows no master at the time of the send (found by jepsen-tests:
        // ordered sends failed at once with NoRoute): the key's queue is chosen over every
        // queue anyway, and the send waits for the group's new master.
        let broker = fake(stored).await;
        let (ns, asked) = election_namesrv(&broker, 3).await;
        let p = Producer::start(ProducerConfig::new("pg", ns)).unwrap();
        let sel = SelectByKey("order-7".into());
        let r = p.send_ordered(Message::new("T", "x"), &sel).await.unwrap();
        let r2 = p.send_ordered(Message::new("T", "y"), &sel).await.unwrap();
        assert_eq!(r.queue, r2.queue);
        assert!(asked.load(Ordering::SeqCst) >= 3);
    }

    #[tokio::test]
    async fn an_ordered_send_waits_for_its_group_and_never_switches_queue() {
        let broker = fake(stored).await;
        let asked = Arc::new(AtomicUsize::new(0));
        let a = asked.clone();
        let b = broker.clone();
        let ns = fake(move |req| {
            let n = a.fetch_add(1, Ordering::SeqCst);
            // The first answer has the master (to pick the queue), then an election.
            let r = match n {
                0 => route(Some(&b)),
                1..=3 => route(None),
                _ => route(Some(&b)),
            };
            RemotingCommand::response_to(req, ResponseCode::Success).with_body(encode_json(&r))
        })
        .await;
        let p = Producer::start(ProducerConfig::new("pg", ns)).unwrap();
        let mq = p.queues("T").await.unwrap()[1].clone();
        p.core().refresh_route("T").await.unwrap(); // now without a master
        let r = p.send_to_queue(Message::new("T", "x"), &mq).await.unwrap();
        assert_eq!(r.queue, mq);
    }
}
