//! The push consumer (RocketMQ's `DefaultMQPushConsumer`): subscribes topics, gets its
//! share of their queues by rebalancing, long-polls each queue and hands messages to a
//! listener.
//!
//! - **Clustering** (default): queues are divided among the group's members
//!   (AllocateMessageQueueAveragely) on start, every 20 s and whenever a broker sends
//!   NOTIFY_CONSUMER_IDS_CHANGED; offsets are committed to the group's master every 5 s
//!   (oneway), along with pulls, and on shutdown. Failed messages go back with
//!   CONSUMER_SEND_MSG_BACK, or, where the broker lacks it, are re-sent to
//!   `%RETRY%<group>`; if that fails too they are retried locally after 5 s.
//! - **Broadcasting**: every member gets every queue; offsets live in a local file.
//! - **Orderly** listeners consume each queue one batch at a time, only while holding the
//!   queue's lock (LOCK_BATCH_MQ, renewed every 20 s, trusted for 30 s); a failed batch is
//!   retried after 1 s.
//!
//! Listeners are called on the runtime's worker threads: they should be quick (hand long
//! work to `spawn_blocking`). Flow control stops pulling a queue while 1000 messages or
//! 100 MiB of it are waiting to be consumed.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raftmq_protocol::body::lock::MessageQueue as WireQueue;
use raftmq_protocol::body::{
    decode_json, encode_json, ConsumerData, ConsumerIdList, HeartbeatData, LockBatchRequestBody,
    LockBatchResponseBody, ResetOffsetBody, SubscriptionData,
};
use raftmq_protocol::codes::{RequestCode, ResponseCode};
use raftmq_protocol::headers::{
    CommandHeader, ConsumerGroupRequestHeader, ConsumerSendMsgBackRequestHeader,
    ResetOffsetRequestHeader, SendMessageRequestHeaderV2, UnregisterClientRequestHeader,
};
use raftmq_protocol::message::{encode_properties, keys};
use raftmq_protocol::{RemotingCommand, StrMap};
use tokio::sync::{watch, Notify, Semaphore};
use tracing::Instrument;

use super::process_queue::ProcessQueue;
use super::{
    allocate_averagely, commit_offset, max_offset, offset_file, pull_once, query_committed_offset,
    readable_queues, search_offset, subscription, ConsumeFromWhere, MessageModel, PullRequest,
    PullStatus,
};
use crate::instance::{now_ms, ClientCore, ServerRequests};
use crate::message::ReceivedMessage;
use crate::route::MessageQueue;
use crate::ClientError;

/// What a concurrent listener says about a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumeResult {
    /// Consumed.
    Success,
    /// Failed: redeliver later (through the retry topic).
    ReconsumeLater,
}

/// What an orderly listener says about a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderlyResult {
    /// Consumed.
    Success,
    /// Failed: retry this batch after a pause, keeping the queue's order.
    SuspendCurrentQueueAMoment,
}

/// A concurrent listener: called with batches of up to `consume_batch_max` messages.
pub type ConcurrentListener = Arc<dyn Fn(&[ReceivedMessage]) -> ConsumeResult + Send + Sync>;
/// An orderly listener: called with one queue's messages in queue order.
pub type OrderlyListener = Arc<dyn Fn(&[ReceivedMessage]) -> OrderlyResult + Send + Sync>;

/// The listener of a push consumer.
#[derive(Clone)]
pub enum Listener {
    /// Messages of a queue may be consumed in parallel.
    Concurrent(ConcurrentListener),
    /// One batch at a time per queue, in order, under the queue's lock.
    Orderly(OrderlyListener),
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Listener::Concurrent(_) => "Listener::Concurrent",
            Listener::Orderly(_) => "Listener::Orderly",
        })
    }
}

/// Push consumer settings (RocketMQ's defaults).
#[derive(Debug, Clone)]
pub struct PushConsumerConfig {
    /// Consumer group.
    pub group: String,
    /// NameServer list; `None`: `NAMESRV_ADDR`.
    pub namesrv: Option<String>,
    /// Clustering or broadcasting.
    pub model: MessageModel,
    /// Where a queue without a committed offset starts.
    pub consume_from_where: ConsumeFromWhere,
    /// Listener calls running at once (RocketMQ's consumeThreadMax: 20).
    pub consume_threads: usize,
    /// Messages per listener call (RocketMQ: 1).
    pub consume_batch_max: usize,
    /// Messages per pull (RocketMQ: 32).
    pub pull_batch: i32,
    /// Stop pulling a queue with this many messages waiting (RocketMQ: 1000).
    pub cached_messages_per_queue: usize,
    /// Stop pulling a queue with this many body bytes waiting (RocketMQ: 100 MiB).
    pub cached_bytes_per_queue: usize,
    /// Deliveries before a message goes to the DLQ (RocketMQ: 16).
    pub max_reconsume_times: i32,
    /// Broadcasting offsets go to `<dir>/<group>/offsets.json`.
    pub offset_store_dir: PathBuf,
    /// Distinguishes several clients in one process.
    pub instance_name: String,
    /// Rebalance period (RocketMQ: 20 s).
    pub rebalance_interval: Duration,
    /// Offset commit period (RocketMQ: 5 s).
    pub persist_interval: Duration,
    /// Heartbeat period (RocketMQ: 30 s).
    pub heartbeat_interval: Duration,
    /// Long-poll time of a pull (RocketMQ: 15 s).
    pub suspend: Duration,
}

impl Default for PushConsumerConfig {
    fn default() -> Self {
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
        PushConsumerConfig {
            group: "DEFAULT_CONSUMER".into(),
            namesrv: None,
            model: MessageModel::Clustering,
            consume_from_where: ConsumeFromWhere::LastOffset,
            consume_threads: 20,
            consume_batch_max: 1,
            pull_batch: 32,
            cached_messages_per_queue: 1000,
            cached_bytes_per_queue: 100 * 1024 * 1024,
            max_reconsume_times: 16,
            offset_store_dir: home.join(".rocketmq_offsets"),
            instance_name: "DEFAULT".into(),
            rebalance_interval: Duration::from_secs(20),
            persist_interval: Duration::from_secs(5),
            heartbeat_interval: Duration::from_secs(30),
            suspend: Duration::from_secs(15),
        }
    }
}

impl PushConsumerConfig {
    /// Defaults with `group` and `namesrv`.
    pub fn new(group: impl Into<String>, namesrv: impl Into<String>) -> Self {
        PushConsumerConfig {
            group: group.into(),
            namesrv: Some(namesrv.into()),
            ..Default::default()
        }
    }
}

/// How long a granted queue lock is trusted without renewal (RocketMQ: 30 s).
const LOCK_TRUST: Duration = Duration::from_secs(30);
/// Lock renewal period (RocketMQ: 20 s).
const LOCK_RENEW: Duration = Duration::from_secs(20);
/// Pause after a failed pull (RocketMQ: 3 s; shorter here, failovers take ~2 s).
const PULL_ERROR_PAUSE: Duration = Duration::from_millis(1000);
/// Pause while a queue is over its flow-control limits.
const FLOW_CONTROL_PAUSE: Duration = Duration::from_millis(50);
/// Pause before a failed orderly batch is retried.
const ORDERLY_RETRY_PAUSE: Duration = Duration::from_secs(1);
/// Pause before a failed message that could not be sent back is consumed again.
const LOCAL_RETRY_PAUSE: Duration = Duration::from_secs(5);
/// Next rebalance after one that could not balance every topic.
const INCOMPLETE_REBALANCE_RETRY: Duration = Duration::from_secs(1);
/// Time limit of lock, offset and send-back requests.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// One assigned queue.
#[derive(Debug)]
struct QueueState {
    mq: MessageQueue,
    pq: Mutex<ProcessQueue>,
    dropped: AtomicBool,
    /// Dropped by an offset reset: what it consumed must never be committed.
    reset: AtomicBool,
    locked_until: Mutex<Option<Instant>>,
    last_committed: Mutex<Option<i64>>,
}

impl QueueState {
    fn is_locked(&self) -> bool {
        lock(&self.locked_until).is_some_and(|t| Instant::now() < t)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug)]
struct Inner {
    core: Arc<ClientCore>,
    cfg: PushConsumerConfig,
    subs: Mutex<BTreeMap<String, SubscriptionData>>,
    listener: Listener,
    queues: Mutex<HashMap<MessageQueue, Arc<QueueState>>>,
    stop: watch::Sender<bool>,
    permits: Arc<Semaphore>,
    rebalance_now: Notify,
    local_offsets: Mutex<BTreeMap<MessageQueue, i64>>,
    started: AtomicBool,
    /// Bumped (under the `queues` lock) by every offset reset, so a rebalance that read
    /// a start offset before one does not add the queue from that stale offset.
    reset_epoch: AtomicU64,
}

/// A push consumer. Build with [`PushConsumer::new`], [`PushConsumer::subscribe`], then
/// [`PushConsumer::start`]; stop with [`PushConsumer::shutdown`].
#[derive(Debug)]
pub struct PushConsumer {
    inner: Arc<Inner>,
    server_requests: Mutex<Option<ServerRequests>>,
}

impl PushConsumer {
    /// A consumer with `cfg` and `listener`; nothing runs until [`PushConsumer::start`].
    pub fn new(cfg: PushConsumerConfig, listener: Listener) -> Result<Self, ClientError> {
        if cfg.group.is_empty() {
            return Err(ClientError::InvalidArgument(
                "the consumer group is empty".into(),
            ));
        }
        let namesrvs = crate::namesrv::resolve_from_env(cfg.namesrv.as_deref(), None)?;
        let (core, server_requests) = ClientCore::new(namesrvs, &cfg.instance_name);
        let (stop, _) = watch::channel(false);
        let permits = Arc::new(Semaphore::new(cfg.consume_threads.max(1)));
        Ok(PushConsumer {
            inner: Arc::new(Inner {
                core,
                cfg,
                subs: Mutex::default(),
                listener,
                queues: Mutex::default(),
                stop,
                permits,
                rebalance_now: Notify::new(),
                local_offsets: Mutex::default(),
                started: AtomicBool::new(false),
                reset_epoch: AtomicU64::new(0),
            }),
            server_requests: Mutex::new(Some(server_requests)),
        })
    }

    /// Subscribes `topic` with `expression` (`*` or `TagA || TagB`).
    pub fn subscribe(&self, topic: &str, expression: &str) -> Result<(), ClientError> {
        crate::message::validate_topic(topic)?;
        lock(&self.inner.subs).insert(topic.to_owned(), subscription(topic, expression, now_ms()));
        if self.inner.started.load(Ordering::Acquire) {
            self.inner.rebalance_now.notify_one();
        }
        Ok(())
    }

    /// This consumer's client id (as brokers list it).
    pub fn client_id(&self) -> &str {
        self.inner.core.client_id()
    }

    /// The shared client state.
    pub fn core(&self) -> &Arc<ClientCore> {
        &self.inner.core
    }

    /// Queues currently assigned to this consumer.
    pub fn assigned(&self) -> Vec<MessageQueue> {
        let mut v: Vec<_> = lock(&self.inner.queues).keys().cloned().collect();
        v.sort();
        v
    }

    /// Starts heartbeats, rebalancing, pulling and offset commits; returns once the first
    /// rebalance ran.
    pub async fn start(&self) -> Result<(), ClientError> {
        let inner = &self.inner;
        if inner.started.swap(true, Ordering::AcqRel) {
            return Err(ClientError::InvalidArgument(
                "the consumer is already started".into(),
            ));
        }
        if inner.cfg.model == MessageModel::Clustering {
            let retry = format!("%RETRY%{}", inner.cfg.group);
            lock(&inner.subs)
                .entry(retry.clone())
                .or_insert_with(|| subscription(&retry, "*", now_ms()));
        } else {
            let path = offset_file::offsets_path(&inner.cfg.offset_store_dir, &inner.cfg.group);
            *lock(&inner.local_offsets) = offset_file::load(&path)?;
        }
        let topics: Vec<String> = lock(&inner.subs).keys().cloned().collect();
        for t in &topics {
            if let Err(e) = inner.core.route(t).await {
                // `%RETRY%<group>` appears after the first heartbeat: not worth a warning.
                if t.starts_with("%RETRY%") {
                    tracing::debug!(topic = %t, error = %e, "retry topic has no route yet");
                } else {
                    tracing::warn!(topic = %t, error = %e, "subscribed topic has no route yet");
                }
            }
        }
        inner.heartbeat().await;
        let stop_rx = inner.stop.subscribe();
        inner.core.spawn_route_refresh(stop_rx.clone());
        let complete = inner.rebalance().await;
        tokio::spawn(Inner::rebalance_loop(
            inner.clone(),
            stop_rx.clone(),
            complete,
        ));
        tokio::spawn(Inner::heartbeat_loop(inner.clone(), stop_rx.clone()));
        tokio::spawn(Inner::persist_loop(inner.clone(), stop_rx.clone()));
        if matches!(inner.listener, Listener::Orderly(_))
            && inner.cfg.model == MessageModel::Clustering
        {
            tokio::spawn(Inner::lock_loop(inner.clone(), stop_rx.clone()));
        }
        if let Some(rx) = lock(&self.server_requests).take() {
            tokio::spawn(Inner::serve_requests(Arc::downgrade(inner), rx, stop_rx));
        }
        tracing::info!(group = %inner.cfg.group, client_id = %inner.core.client_id(), model = inner.cfg.model.as_str(), "push consumer started");
        Ok(())
    }

    /// Triggers a rebalance now (as NOTIFY_CONSUMER_IDS_CHANGED does).
    pub fn rebalance_now(&self) {
        self.inner.rebalance_now.notify_one();
    }

    /// Commits every assigned queue's offset now and waits for the answers.
    pub async fn persist_offsets(&self) {
        self.inner.persist_all(false).await;
    }

    /// Stops pulling, commits offsets (waiting for the answers), releases orderly locks
    /// and unregisters from the brokers.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        if inner.stop.send_replace(true) {
            return;
        }
        let states: Vec<Arc<QueueState>> = lock(&inner.queues).values().cloned().collect();
        for s in &states {
            s.dropped.store(true, Ordering::Release);
        }
        inner.persist_all(false).await;
        if matches!(inner.listener, Listener::Orderly(_)) {
            let mqs: Vec<MessageQueue> = states.iter().map(|s| s.mq.clone()).collect();
            inner.unlock(&mqs).await;
        }
        inner.unregister().await;
        lock(&inner.queues).clear();
        tracing::info!(group = %inner.cfg.group, "push consumer stopped");
    }
}

impl Drop for PushConsumer {
    fn drop(&mut self) {
        let _ = self.inner.stop.send(true);
        for s in lock(&self.inner.queues).values() {
            s.dropped.store(true, Ordering::Release);
        }
    }
}

/// Sleeps `d` unless `stop` fires first; false when stopping.
async fn pause(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    if *stop.borrow() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => !*stop.borrow(),
        _ = stop.changed() => false,
    }
}

impl Inner {
    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    fn heartbeat_body(&self) -> Vec<u8> {
        let subs: Vec<SubscriptionData> = lock(&self.subs).values().cloned().collect();
        let hb = HeartbeatData {
            client_id: self.core.client_id().to_owned(),
            consumer_data_set: vec![ConsumerData {
                group_name: self.cfg.group.clone(),
                consume_type: "CONSUME_PASSIVELY".into(),
                message_model: self.cfg.model.as_str().into(),
                consume_from_where: self.cfg.consume_from_where.as_str().into(),
                subscription_data_set: subs,
                unit_mode: false,
            }],
            ..Default::default()
        };
        encode_json(&hb)
    }

    /// Heartbeats to every node of every group the subscribed topics live on, so that a
    /// new master already knows the group's members.
    async fn heartbeat(&self) {
        let body = self.heartbeat_body();
        for addrs in self.core.known_brokers().values() {
            for addr in addrs {
                let req = RemotingCommand::request(RequestCode::HeartBeat.code(), StrMap::new())
                    .with_body(body.clone());
                if let Err(e) = self.core.pool().call(addr, req, REQUEST_TIMEOUT).await {
                    tracing::debug!(%addr, error = %e, "consumer heartbeat failed");
                }
            }
        }
    }

    async fn unregister(&self) {
        for addrs in self.core.known_brokers().values() {
            for addr in addrs {
                let h = UnregisterClientRequestHeader {
                    client_id: self.core.client_id().to_owned(),
                    producer_group: None,
                    consumer_group: Some(self.cfg.group.clone()),
                };
                let req =
                    RemotingCommand::request(RequestCode::UnregisterClient.code(), h.to_ext());
                let _ = self.core.pool().call(addr, req, REQUEST_TIMEOUT).await;
            }
        }
    }

    async fn heartbeat_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        while pause(&mut stop, self.cfg.heartbeat_interval).await {
            self.heartbeat().await;
        }
    }

    async fn rebalance_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>, mut complete: bool) {
        loop {
            // A topic without a route yet (e.g. `%RETRY%<group>`, created by the first
            // heartbeat) is looked at again within a second, not at the next round.
            let wait = if complete {
                self.cfg.rebalance_interval
            } else {
                INCOMPLETE_REBALANCE_RETRY
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.rebalance_now.notified() => {}
                _ = stop.changed() => return,
            }
            if self.stopping() {
                return;
            }
            complete = self.rebalance().await;
        }
    }

    async fn persist_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        while pause(&mut stop, self.cfg.persist_interval).await {
            self.persist_all(true).await;
        }
    }

    async fn lock_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        while pause(&mut stop, LOCK_RENEW).await {
            let mqs: Vec<MessageQueue> = lock(&self.queues).keys().cloned().collect();
            self.lock_queues(&mqs).await;
        }
    }

    async fn serve_requests(
        weak: std::sync::Weak<Self>,
        mut rx: ServerRequests,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let (from, req) = tokio::select! {
                r = rx.recv() => match r { Some(r) => r, None => return },
                _ = stop.changed() => return,
            };
            let Some(inner) = weak.upgrade() else { return };
            if req.code == RequestCode::NotifyConsumerIdsChanged.code() {
                tracing::debug!(%from, group = %inner.cfg.group, "consumer ids changed, rebalancing");
                inner.rebalance_now.notify_one();
            } else if req.code == RequestCode::ResetConsumerClientOffset.code() {
                inner.reset_offsets(&from, &req).await;
            }
        }
    }

    /// RESET_CONSUMER_CLIENT_OFFSET (an operator's `resetOffsetByTime`). The broker has
    /// already stored the new offsets. This consumer drops the queues of the table it holds,
    /// never committing what it consumed of them (their pull loops stop before their next
    /// pull, the periodic commit skips them), commits the new offsets of those queues again
    /// (a pull in flight may have carried an old one to the broker after the reset), and
    /// rebalances: the queues come back from the new offsets. Queues it does not hold are
    /// left to their owners.
    async fn reset_offsets(&self, from: &str, req: &RemotingCommand) {
        let h = match ResetOffsetRequestHeader::from_ext(&req.ext_fields) {
            Ok(h) if h.group == self.cfg.group => h,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(%from, error = %e, "unreadable offset reset ignored");
                return;
            }
        };
        let table = match ResetOffsetBody::decode(&req.body) {
            Ok(b) => b.offset_table,
            Err(e) => {
                tracing::warn!(%from, error = %e, "unreadable offset reset ignored");
                return;
            }
        };
        let table: Vec<(MessageQueue, i64)> = table
            .into_iter()
            .map(|(wire, offset)| {
                let mq = MessageQueue {
                    topic: wire.topic,
                    broker_name: wire.broker_name,
                    queue_id: wire.queue_id,
                };
                (mq, offset)
            })
            .collect();
        let held: Vec<(MessageQueue, i64)> = {
            let mut queues = lock(&self.queues);
            self.reset_epoch.fetch_add(1, Ordering::AcqRel);
            table
                .iter()
                .filter(|(mq, _)| {
                    let Some(state) = queues.remove(mq) else {
                        return false;
                    };
                    state.reset.store(true, Ordering::Release);
                    state.dropped.store(true, Ordering::Release);
                    true
                })
                .cloned()
                .collect()
        };
        if self.cfg.model == MessageModel::Broadcasting {
            // Every member holds every queue, and its offsets are its own.
            lock(&self.local_offsets).extend(table.iter().cloned());
            self.persist_all(false).await;
        } else {
            for (mq, offset) in &held {
                let Ok(addr) = self.master(mq).await else {
                    continue;
                };
                if let Err(e) =
                    commit_offset(self.core.pool(), &addr, &self.cfg.group, mq, *offset, false)
                        .await
                {
                    tracing::debug!(%addr, queue = ?mq, error = %e, "reset offset commit failed");
                }
            }
        }
        tracing::info!(%from, group = %self.cfg.group, topic = %h.topic, timestamp = h.timestamp,
            queues = held.len(), "consumer offsets reset by the broker");
        self.rebalance_now.notify_one();
    }

    /// The group's members as one node of a group hosting `topic` lists them.
    async fn consumer_ids(&self, topic: &str) -> Result<Vec<String>, ClientError> {
        let route = self.core.route(topic).await?;
        let mut last = ClientError::NoRoute(topic.to_owned());
        for b in &route.broker_datas {
            // The master first (broker id 0 sorts first), then the followers.
            for addr in b.broker_addrs.values() {
                let h = ConsumerGroupRequestHeader {
                    consumer_group: self.cfg.group.clone(),
                };
                let req = RemotingCommand::request(
                    RequestCode::GetConsumerListByGroup.code(),
                    h.to_ext(),
                );
                match self.core.pool().call(addr, req, REQUEST_TIMEOUT).await {
                    Ok(resp) if resp.code == ResponseCode::Success.code() => {
                        let list: ConsumerIdList = decode_json("ConsumerIdList", &resp.body)
                            .map_err(|e| {
                                ClientError::BadAnswer(format!("consumer list from {addr}: {e}"))
                            })?;
                        return Ok(list.consumer_id_list);
                    }
                    Ok(resp) => {
                        last = ClientError::broker(addr.as_str(), resp.code, resp.remark.as_deref())
                    }
                    Err(e) => last = e,
                }
            }
        }
        Err(last)
    }

    /// Recomputes this member's queues for every subscribed topic and starts or stops
    /// pulling accordingly.
    /// True when every topic could be balanced.
    async fn rebalance(self: &Arc<Self>) -> bool {
        let mut complete = true;
        let subs: Vec<(String, SubscriptionData)> = lock(&self.subs)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (topic, sub) in subs {
            let route = match self.core.route(&topic).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(%topic, error = %e, "rebalance: no route");
                    complete = false;
                    let _ = self.core.refresh_route(&topic).await;
                    continue;
                }
            };
            let all = readable_queues(&topic, &route);
            let mine = match self.cfg.model {
                MessageModel::Broadcasting => all,
                MessageModel::Clustering => match self.consumer_ids(&topic).await {
                    Ok(cids) => allocate_averagely(self.core.client_id(), &all, &cids),
                    Err(e) => {
                        tracing::debug!(%topic, error = %e, "rebalance: no consumer list, keeping queues");
                        complete = false;
                        continue;
                    }
                },
            };
            self.apply_assignment(&topic, &sub, mine).await;
        }
        complete
    }

    async fn apply_assignment(
        self: &Arc<Self>,
        topic: &str,
        sub: &SubscriptionData,
        mine: Vec<MessageQueue>,
    ) {
        let removed: Vec<Arc<QueueState>> = {
            let mut queues = lock(&self.queues);
            let gone: Vec<MessageQueue> = queues
                .keys()
                .filter(|q| q.topic == topic && !mine.contains(q))
                .cloned()
                .collect();
            gone.iter().filter_map(|q| queues.remove(q)).collect()
        };
        if !removed.is_empty() {
            for s in &removed {
                s.dropped.store(true, Ordering::Release);
                self.persist_queue(s, false).await;
            }
            if matches!(self.listener, Listener::Orderly(_)) {
                let mqs: Vec<MessageQueue> = removed.iter().map(|s| s.mq.clone()).collect();
                self.unlock(&mqs).await;
            }
            tracing::info!(group = %self.cfg.group, %topic, released = removed.len(), "rebalance released queues");
        }
        let new: Vec<MessageQueue> = {
            let queues = lock(&self.queues);
            mine.into_iter()
                .filter(|q| !queues.contains_key(q))
                .collect()
        };
        if new.is_empty() {
            return;
        }
        let orderly = matches!(self.listener, Listener::Orderly(_))
            && self.cfg.model == MessageModel::Clustering;
        let mut added = 0;
        for mq in new {
            let epoch = self.reset_epoch.load(Ordering::Acquire);
            let start = match self.start_offset(&mq).await {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(queue = ?mq, error = %e, "cannot find where to start; retrying at the next rebalance");
                    continue;
                }
            };
            let state = Arc::new(QueueState {
                mq: mq.clone(),
                pq: Mutex::new(ProcessQueue::new(start)),
                dropped: AtomicBool::new(false),
                reset: AtomicBool::new(false),
                locked_until: Mutex::new(None),
                last_committed: Mutex::new(None),
            });
            {
                let mut queues = lock(&self.queues);
                if self.reset_epoch.load(Ordering::Acquire) != epoch {
                    // An offset reset came in while the start offset was looked up: the
                    // rebalance it asked for adds the queue from the new offset.
                    continue;
                }
                queues.insert(mq.clone(), state.clone());
            }
            if orderly {
                self.lock_queues(std::slice::from_ref(&mq)).await;
            }
            added += 1;
            let span = tracing::debug_span!("pull_queue", topic = %mq.topic, broker = %mq.broker_name, queue = mq.queue_id);
            tokio::spawn(self.clone().pull_loop(state, sub.clone()).instrument(span));
        }
        if added > 0 {
            tracing::info!(group = %self.cfg.group, %topic, added, "rebalance took queues");
        }
    }

    /// Where consumption of a newly assigned queue starts.
    async fn start_offset(&self, mq: &MessageQueue) -> Result<i64, ClientError> {
        if self.cfg.model == MessageModel::Broadcasting {
            if let Some(o) = lock(&self.local_offsets).get(mq) {
                return Ok(*o);
            }
        } else {
            let addr = self.master(mq).await?;
            if let Some(o) =
                query_committed_offset(self.core.pool(), &addr, &self.cfg.group, mq).await?
            {
                return Ok(o);
            }
            if mq.topic.starts_with("%RETRY%") {
                return Ok(0);
            }
        }
        let addr = self.master(mq).await?;
        match self.cfg.consume_from_where {
            ConsumeFromWhere::LastOffset => max_offset(self.core.pool(), &addr, mq).await,
            ConsumeFromWhere::FirstOffset => Ok(0),
            ConsumeFromWhere::Timestamp(t) => search_offset(self.core.pool(), &addr, mq, t).await,
        }
    }

    async fn master(&self, mq: &MessageQueue) -> Result<String, ClientError> {
        if let Some(a) = self.core.master_of(&mq.broker_name) {
            return Ok(a);
        }
        self.core.refresh_route(&mq.topic).await?;
        self.core
            .master_of(&mq.broker_name)
            .ok_or_else(|| ClientError::NoRoute(mq.topic.clone()))
    }

    /// Pulls one queue until it is dropped or the consumer stops.
    async fn pull_loop(self: Arc<Self>, state: Arc<QueueState>, sub: SubscriptionData) {
        let mut stop = self.stop.subscribe();
        let orderly = matches!(self.listener, Listener::Orderly(_));
        let needs_lock = orderly && self.cfg.model == MessageModel::Clustering;
        loop {
            if state.dropped.load(Ordering::Acquire) || *stop.borrow() {
                return;
            }
            let (count, bytes, offset) = {
                let pq = lock(&state.pq);
                (pq.count(), pq.bytes(), pq.pulled_end())
            };
            if count >= self.cfg.cached_messages_per_queue
                || bytes >= self.cfg.cached_bytes_per_queue
            {
                if !pause(&mut stop, FLOW_CONTROL_PAUSE).await {
                    return;
                }
                continue;
            }
            if needs_lock && !state.is_locked() {
                if !pause(&mut stop, ORDERLY_RETRY_PAUSE).await {
                    return;
                }
                self.lock_queues(std::slice::from_ref(&state.mq)).await;
                continue;
            }
            let addr = match self.master(&state.mq).await {
                Ok(a) => a,
                Err(_) => {
                    if !pause(&mut stop, PULL_ERROR_PAUSE).await {
                        return;
                    }
                    continue;
                }
            };
            // The awaits above may have outlived the queue (a rebalance, an offset reset):
            // a dropped queue's next pull must not carry its commit offset.
            if state.dropped.load(Ordering::Acquire) {
                return;
            }
            let commit = (self.cfg.model == MessageModel::Clustering)
                .then(|| lock(&state.pq).commit_offset())
                .filter(|o| *o > 0);
            let req = PullRequest {
                group: &self.cfg.group,
                queue: &state.mq,
                sub: &sub,
                offset,
                max_nums: self.cfg.pull_batch,
                commit_offset: commit,
                suspend: self.cfg.suspend,
            };
            let result = tokio::select! {
                r = pull_once(self.core.pool(), &addr, &req) => r,
                _ = stop.changed() => return,
            };
            let result = match result {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "pull failed; refreshing the route");
                    let _ = self.core.refresh_route(&state.mq.topic).await;
                    if !pause(&mut stop, PULL_ERROR_PAUSE).await {
                        return;
                    }
                    continue;
                }
            };
            if state.dropped.load(Ordering::Acquire) {
                return;
            }
            match result.status {
                PullStatus::OffsetIllegal => {
                    tracing::warn!(queue = ?state.mq, from = offset, to = result.next_begin_offset, "pull offset moved");
                    lock(&state.pq).reset(result.next_begin_offset);
                    self.persist_queue(&state, false).await;
                }
                PullStatus::NoNewMessage | PullStatus::NoMatchedMessage => {
                    lock(&state.pq).add([], result.next_begin_offset);
                }
                PullStatus::Found => {
                    let msgs = result.messages;
                    lock(&state.pq).add(
                        msgs.iter().map(|m| (m.queue_offset(), m.body().len())),
                        result.next_begin_offset,
                    );
                    if msgs.is_empty() {
                        continue;
                    }
                    match &self.listener {
                        Listener::Concurrent(l) => {
                            if !self.dispatch_concurrent(&state, l.clone(), msgs).await {
                                return;
                            }
                        }
                        Listener::Orderly(l) => {
                            if !self.consume_orderly(&state, l, msgs, &mut stop).await {
                                return;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Hands `msgs` to the listener in batches, each on its own task once a consume permit
    /// is free (the wait is the back-pressure on pulling). False when stopping.
    async fn dispatch_concurrent(
        self: &Arc<Self>,
        state: &Arc<QueueState>,
        listener: ConcurrentListener,
        msgs: Vec<ReceivedMessage>,
    ) -> bool {
        for chunk in msgs.chunks(self.cfg.consume_batch_max.max(1)) {
            let permit = match self.permits.clone().acquire_owned().await {
                Ok(p) => p,
                Err(_) => return false,
            };
            if self.stopping() {
                return false;
            }
            let chunk = chunk.to_vec();
            let (inner, state, listener) = (self.clone(), state.clone(), listener.clone());
            tokio::spawn(async move {
                let _permit = permit;
                inner.consume_concurrent(&state, &listener, chunk).await;
            });
        }
        true
    }

    async fn consume_concurrent(
        self: &Arc<Self>,
        state: &Arc<QueueState>,
        listener: &ConcurrentListener,
        mut msgs: Vec<ReceivedMessage>,
    ) {
        loop {
            if state.dropped.load(Ordering::Acquire) {
                return;
            }
            let result = listener(&msgs);
            if result == ConsumeResult::Success || self.cfg.model == MessageModel::Broadcasting {
                if result != ConsumeResult::Success {
                    tracing::warn!(queue = ?state.mq, count = msgs.len(), "broadcast consumption failed; messages are not redelivered");
                }
                lock(&state.pq).remove(msgs.iter().map(|m| m.queue_offset()));
                return;
            }
            let mut failed = Vec::new();
            for m in msgs {
                if self.send_back(&m).await.is_err() {
                    failed.push(m);
                } else {
                    lock(&state.pq).remove([m.queue_offset()]);
                }
            }
            if failed.is_empty() {
                return;
            }
            tracing::warn!(queue = ?state.mq, count = failed.len(), "could not send failed messages back; retrying them locally");
            let mut stop = self.stop.subscribe();
            if !pause(&mut stop, LOCAL_RETRY_PAUSE).await {
                return;
            }
            for m in &mut failed {
                m.record.reconsume_times += 1;
            }
            msgs = failed;
        }
    }

    /// Consumes one pull's messages in order, batch by batch, retrying a failed batch
    /// after a pause; stops (keeping the messages uncommitted) when the queue is dropped
    /// or its lock lapses and is not regained. False when stopping.
    async fn consume_orderly(
        &self,
        state: &Arc<QueueState>,
        listener: &OrderlyListener,
        msgs: Vec<ReceivedMessage>,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let needs_lock = self.cfg.model == MessageModel::Clustering;
        for chunk in msgs.chunks(self.cfg.consume_batch_max.max(1)) {
            let mut chunk = chunk.to_vec();
            loop {
                if state.dropped.load(Ordering::Acquire) || *stop.borrow() {
                    return !*stop.borrow();
                }
                if needs_lock && !state.is_locked() {
                    self.lock_queues(std::slice::from_ref(&state.mq)).await;
                    if !state.is_locked() {
                        if !pause(stop, ORDERLY_RETRY_PAUSE).await {
                            return false;
                        }
                        continue;
                    }
                }
                let Ok(_permit) = self.permits.acquire().await else {
                    return false;
                };
                match listener(&chunk) {
                    OrderlyResult::Success => {
                        lock(&state.pq).remove(chunk.iter().map(|m| m.queue_offset()));
                        break;
                    }
                    OrderlyResult::SuspendCurrentQueueAMoment => {
                        for m in &mut chunk {
                            m.record.reconsume_times += 1;
                        }
                        if !pause(stop, ORDERLY_RETRY_PAUSE).await {
                            return false;
                        }
                    }
                }
            }
        }
        true
    }

    /// Returns a failed message to the broker for redelivery: CONSUMER_SEND_MSG_BACK, or
    /// where that is refused, a copy sent to `%RETRY%<group>` with the retry properties.
    async fn send_back(&self, m: &ReceivedMessage) -> Result<(), ClientError> {
        let mq = m.queue();
        let addr = self.master(&mq).await?;
        let h = ConsumerSendMsgBackRequestHeader {
            offset: m.record.physical_offset,
            group: self.cfg.group.clone(),
            delay_level: 0,
            origin_msg_id: Some(m.msg_id()),
            origin_topic: Some(m.topic().to_owned()),
            unit_mode: Some(false),
            max_reconsume_times: Some(self.cfg.max_reconsume_times),
            bname: Some(m.broker_name.clone()),
        };
        let req = RemotingCommand::request(RequestCode::ConsumerSendMsgBack.code(), h.to_ext());
        match self.core.pool().call(&addr, req, REQUEST_TIMEOUT).await {
            Ok(r) if r.code == ResponseCode::Success.code() => return Ok(()),
            Ok(r) => {
                tracing::debug!(%addr, code = r.code, "send-back refused; re-sending to the retry topic")
            }
            Err(e) => {
                tracing::debug!(%addr, error = %e, "send-back failed; re-sending to the retry topic")
            }
        }
        self.resend_to_retry_topic(&addr, m).await
    }

    async fn resend_to_retry_topic(
        &self,
        addr: &str,
        m: &ReceivedMessage,
    ) -> Result<(), ClientError> {
        let reconsume = m.reconsume_times() + 1;
        let mut props = m.record.properties.clone();
        if props.get(keys::RETRY_TOPIC).is_none() {
            props.insert(keys::RETRY_TOPIC, m.topic().to_owned());
        }
        if props.get(keys::ORIGIN_MESSAGE_ID).is_none() {
            props.insert(keys::ORIGIN_MESSAGE_ID, m.msg_id());
        }
        props.insert(keys::DELAY, (3 + m.reconsume_times()).to_string());
        // The copy keeps the original's UNIQ_KEY, as RocketMQ's does: brokers never apply
        // duplicate detection to retry topics.
        let retry_topic = format!("%RETRY%{}", self.cfg.group);
        let h = SendMessageRequestHeaderV2 {
            a: self.cfg.group.clone(),
            b: retry_topic.clone(),
            c: crate::producer::AUTO_CREATE_TOPIC_KEY.into(),
            d: 1,
            e: 0,
            f: m.record.sys_flag,
            g: m.record.born_timestamp,
            h: m.record.flag,
            i: Some(encode_properties(&props)),
            j: Some(reconsume),
            k: Some(false),
            l: Some(self.cfg.max_reconsume_times),
            n: Some(m.broker_name.clone()),
            ..Default::default()
        };
        let req = RemotingCommand::request(RequestCode::SendMessageV2.code(), h.to_ext())
            .with_body(m.record.body.clone());
        let resp = self.core.pool().call(addr, req, REQUEST_TIMEOUT).await?;
        let mq = MessageQueue {
            topic: retry_topic,
            broker_name: m.broker_name.clone(),
            queue_id: 0,
        };
        crate::producer::send_result(addr, &mq, "", &resp).map(|_| ())
    }

    /// Commits one queue's offset if it moved (clustering: to the master; broadcasting:
    /// into the local table, written by [`Inner::persist_all`]).
    async fn persist_queue(&self, s: &QueueState, oneway: bool) {
        if s.reset.load(Ordering::Acquire) {
            return;
        }
        let offset = lock(&s.pq).commit_offset();
        if self.cfg.model == MessageModel::Broadcasting {
            lock(&self.local_offsets).insert(s.mq.clone(), offset);
            return;
        }
        if *lock(&s.last_committed) == Some(offset) {
            return;
        }
        let Ok(addr) = self.master(&s.mq).await else {
            return;
        };
        match commit_offset(
            self.core.pool(),
            &addr,
            &self.cfg.group,
            &s.mq,
            offset,
            oneway,
        )
        .await
        {
            Ok(()) => *lock(&s.last_committed) = Some(offset),
            Err(e) => tracing::debug!(%addr, queue = ?s.mq, error = %e, "offset commit failed"),
        }
    }

    async fn persist_all(&self, oneway: bool) {
        let states: Vec<Arc<QueueState>> = lock(&self.queues).values().cloned().collect();
        for s in &states {
            self.persist_queue(s, oneway).await;
        }
        if self.cfg.model == MessageModel::Broadcasting {
            let path = offset_file::offsets_path(&self.cfg.offset_store_dir, &self.cfg.group);
            let table = lock(&self.local_offsets).clone();
            if let Err(e) = offset_file::store(&path, &table) {
                tracing::warn!(error = %e, "cannot store broadcast offsets");
            }
        }
    }

    /// One LOCK_BATCH_MQ or UNLOCK_BATCH_MQ request (`code`) per broker group of `mqs`
    /// whose master is known: the master, the group's queues, the request.
    fn lock_requests<'q>(
        &self,
        mqs: &'q [MessageQueue],
        code: RequestCode,
    ) -> Vec<(String, Vec<&'q MessageQueue>, RemotingCommand)> {
        let mut by_group: BTreeMap<&str, Vec<&MessageQueue>> = BTreeMap::new();
        for q in mqs {
            by_group.entry(q.broker_name.as_str()).or_default().push(q);
        }
        by_group
            .into_iter()
            .filter_map(|(group, qs)| {
                let addr = self.core.master_of(group)?;
                // UNLOCK_BATCH_MQ's body has the same shape.
                let body = LockBatchRequestBody {
                    client_id: self.core.client_id().to_owned(),
                    consumer_group: self.cfg.group.clone(),
                    mq_set: qs.iter().map(|q| wire_queue(q)).collect(),
                    only_this_broker: false,
                };
                let req = RemotingCommand::request(code.code(), StrMap::new())
                    .with_body(encode_json(&body));
                Some((addr, qs, req))
            })
            .collect()
    }

    /// LOCK_BATCH_MQ for `mqs`, per broker group; granted queues are trusted for 30 s,
    /// refused ones stop being consumed.
    async fn lock_queues(&self, mqs: &[MessageQueue]) {
        for (addr, qs, req) in self.lock_requests(mqs, RequestCode::LockBatchMq) {
            let asked_at = Instant::now();
            let granted: Vec<WireQueue> =
                match self.core.pool().call(&addr, req, REQUEST_TIMEOUT).await {
                    Ok(r) if r.code == ResponseCode::Success.code() => {
                        match decode_json::<LockBatchResponseBody>("LockBatchResponseBody", &r.body)
                        {
                            Ok(b) => b.lock_ok_mq_set,
                            Err(e) => {
                                tracing::warn!(%addr, error = %e, "bad lock answer");
                                Vec::new()
                            }
                        }
                    }
                    Ok(r) => {
                        tracing::debug!(%addr, code = r.code, remark = ?r.remark, "lock refused");
                        Vec::new()
                    }
                    Err(e) => {
                        tracing::debug!(%addr, error = %e, "lock request failed");
                        continue;
                    }
                };
            let queues = lock(&self.queues);
            for q in qs {
                let Some(s) = queues.get(q) else { continue };
                let ok = granted.iter().any(|g| *g == wire_queue(q));
                *lock(&s.locked_until) = ok.then(|| asked_at + LOCK_TRUST);
            }
        }
    }

    async fn unlock(&self, mqs: &[MessageQueue]) {
        for (addr, _, req) in self.lock_requests(mqs, RequestCode::UnlockBatchMq) {
            let _ = self.core.pool().call(&addr, req, REQUEST_TIMEOUT).await;
        }
    }
}

fn wire_queue(q: &MessageQueue) -> WireQueue {
    WireQueue {
        broker_name: q.broker_name.clone(),
        queue_id: q.queue_id,
        topic: q.topic.clone(),
    }
}
