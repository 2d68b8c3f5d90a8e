//! The workload: producers sending unique values through the client crate (some ordered
//! by key to fixed queues), clustering push consumers, and the final per-replica drain.
//! Every operation goes into the history through a [`Recorder`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use raftmq_client::consumer::{pull_once, subscription, PullRequest, PullStatus};
use raftmq_client::remoting::ConnectionPool;
use raftmq_client::route::MessageQueue;
use raftmq_client::{
    ClientError, ConsumeFromWhere, ConsumeResult, Listener, Message, Producer, ProducerConfig,
    PushConsumer, PushConsumerConfig, SelectByKey, SendStatus,
};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::history::{EventType, Op, Position, ReadMsg, HARNESS};
use crate::recorder::Recorder;

/// What the workload does.
#[derive(Debug, Clone)]
pub struct WorkloadSpec {
    /// NameServer list, `;`-separated.
    pub namesrv: String,
    /// The topic (created beforehand with `queues` queues).
    pub topic: String,
    /// Queues of the topic.
    pub queues: u32,
    /// Producers sending unordered values.
    pub producers: u32,
    /// Producers sending ordered values, each owning `keys_per_ordered` keys.
    pub ordered_producers: u32,
    /// Keys per ordered producer; each key is one sequential stream.
    pub keys_per_ordered: u32,
    /// Target sends per second over all producers.
    pub rate: f64,
    /// Unordered sends in flight per producer at most.
    pub inflight: usize,
    /// Clustering consumers (one group).
    pub consumers: u32,
}

/// Process numbers: producers from 1, ordered producers after them, consumers from 1000.
const CONSUMER_BASE: u32 = 1000;

/// A running workload; stop producers with [`Workload::stop_producers`], consumers with
/// [`Workload::stop_consumers`].
#[derive(Debug)]
pub struct Workload {
    producing: Arc<AtomicBool>,
    producer_tasks: JoinSet<()>,
    producers: Vec<Arc<Producer>>,
    consumers: Vec<PushConsumer>,
    consumed: Arc<AtomicU64>,
    acked: Arc<AtomicU64>,
}

/// How a send error goes into the history: only errors raised before anything reached
/// a server are definite failures; everything else may have been stored.
pub fn send_error_kind(e: &ClientError) -> EventType {
    match e {
        ClientError::InvalidArgument(_) | ClientError::Encode(_) | ClientError::NoNamesrv => {
            EventType::Fail
        }
        _ => EventType::Info,
    }
}

/// The value of unordered send `seq` of producer `p`.
pub fn value_of(p: u32, seq: u64) -> String {
    format!("p{p}-{seq}")
}

/// The value of ordered send `seq` of key `key` (owned by producer `p`).
pub fn ordered_value_of(key: &str, p: u32, seq: u64) -> String {
    format!("{key}-p{p}-{seq}")
}

impl Workload {
    /// Starts consumers, then producers.
    pub async fn start(spec: &WorkloadSpec, rec: &Recorder) -> anyhow::Result<Workload> {
        let consumed = Arc::new(AtomicU64::new(0));
        let mut consumers = Vec::new();
        for c in 0..spec.consumers {
            consumers.push(start_consumer(spec, rec, CONSUMER_BASE + c, &consumed).await?);
        }
        let producing = Arc::new(AtomicBool::new(true));
        let acked = Arc::new(AtomicU64::new(0));
        let total = (spec.producers + spec.ordered_producers).max(1);
        let per_producer = spec.rate / f64::from(total);
        let mut producer_tasks = JoinSet::new();
        let mut producers = Vec::new();
        for p in 1..=total {
            let mut cfg = ProducerConfig::new("jepsen-producers", spec.namesrv.clone());
            cfg.instance_name = format!("jepsen-p{p}");
            let producer = Producer::start(cfg)?;
            producers.push(producer.clone());
            let ctx = ProducerCtx {
                producer,
                rec: rec.clone(),
                topic: spec.topic.clone(),
                process: p,
                producing: producing.clone(),
                acked: acked.clone(),
            };
            if p <= spec.producers {
                let interval = interval_of(per_producer);
                let inflight = spec.inflight.max(1);
                producer_tasks.spawn(unordered_loop(ctx, interval, inflight));
            } else {
                // Each key of an ordered producer is its own sequential stream.
                let keys = spec.keys_per_ordered.max(1);
                let interval = interval_of(per_producer / f64::from(keys));
                for k in 0..keys {
                    let key = format!("k{p}x{k}");
                    producer_tasks.spawn(ordered_loop(ctx.clone(), key, interval));
                }
            }
        }
        Ok(Workload {
            producing,
            producer_tasks,
            producers,
            consumers,
            consumed,
            acked,
        })
    }

    /// Sends acknowledged so far.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// Messages consumed so far (with duplicates).
    pub fn consumed(&self) -> u64 {
        self.consumed.load(Ordering::Relaxed)
    }

    /// Stops starting sends and waits (up to `grace`) for the ones in flight to end;
    /// sends still running after that are abandoned (their invokes stay unanswered,
    /// which the checker treats as indeterminate).
    pub async fn stop_producers(&mut self, grace: Duration) {
        self.producing.store(false, Ordering::Relaxed);
        let _ = tokio::time::timeout(grace, async {
            while self.producer_tasks.join_next().await.is_some() {}
        })
        .await;
        self.producer_tasks.abort_all();
        for p in &self.producers {
            p.shutdown();
        }
    }

    /// Waits until the consumers stop receiving (nothing new for `quiet`) or `deadline`
    /// passes, then shuts them down (committing offsets).
    pub async fn stop_consumers(&mut self, quiet: Duration, deadline: Duration) {
        let end = Instant::now() + deadline;
        let mut last = self.consumed();
        let mut last_change = Instant::now();
        while Instant::now() < end && last_change.elapsed() < quiet {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = self.consumed();
            if now != last {
                last = now;
                last_change = Instant::now();
            }
        }
        for c in &self.consumers {
            c.shutdown().await;
        }
    }
}

fn interval_of(rate: f64) -> Duration {
    if rate <= 0.0 || !rate.is_finite() {
        return Duration::from_secs(1);
    }
    Duration::from_secs_f64((1.0 / rate).clamp(0.0001, 10.0))
}

#[derive(Debug, Clone)]
struct ProducerCtx {
    producer: Arc<Producer>,
    rec: Recorder,
    topic: String,
    process: u32,
    producing: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
}

impl ProducerCtx {
    /// One send, recorded as invoke and ok/fail/info.
    async fn send(&self, value: String, key: Option<String>, seq: Option<u64>) {
        let op_id = self.rec.next_op_id();
        let invoke = Op::Send {
            value: value.clone(),
            key: key.clone(),
            seq,
            pos: None,
            error: None,
        };
        self.rec
            .record(self.process, EventType::Invoke, op_id, invoke);
        let msg = Message::new(self.topic.clone(), value.clone().into_bytes());
        let res = match &key {
            Some(k) => {
                let msg = msg.with_keys([k.as_str()]);
                self.producer
                    .send_ordered(msg, &SelectByKey(k.clone()))
                    .await
            }
            None => self.producer.send(msg).await,
        };
        let (kind, pos, error) = match res {
            Ok(r) if r.status == SendStatus::SendOk => {
                self.acked.fetch_add(1, Ordering::Relaxed);
                let pos = Position {
                    broker: r.queue.broker_name.clone(),
                    queue: u32::try_from(r.queue.queue_id).unwrap_or(u32::MAX),
                    offset: u64::try_from(r.queue_offset).unwrap_or(u64::MAX),
                };
                (EventType::Ok, Some(pos), None)
            }
            Ok(r) => (
                EventType::Info,
                None,
                Some(format!("stored with status {:?}", r.status)),
            ),
            Err(e) => (send_error_kind(&e), None, Some(e.to_string())),
        };
        let done = Op::Send {
            value,
            key,
            seq,
            pos,
            error,
        };
        self.rec.record(self.process, kind, op_id, done);
    }
}

async fn unordered_loop(ctx: ProducerCtx, interval: Duration, inflight: usize) {
    let permits = Arc::new(Semaphore::new(inflight));
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tasks = JoinSet::new();
    let mut seq = 0u64;
    while ctx.producing.load(Ordering::Relaxed) {
        tick.tick().await;
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        if !ctx.producing.load(Ordering::Relaxed) {
            break;
        }
        let c = ctx.clone();
        let value = value_of(ctx.process, seq);
        seq += 1;
        tasks.spawn(async move {
            c.send(value, None, None).await;
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

async fn ordered_loop(ctx: ProducerCtx, key: String, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0u64;
    while ctx.producing.load(Ordering::Relaxed) {
        tick.tick().await;
        if !ctx.producing.load(Ordering::Relaxed) {
            break;
        }
        let value = ordered_value_of(&key, ctx.process, seq);
        ctx.send(value, Some(key.clone()), Some(seq)).await;
        seq += 1;
    }
}

async fn start_consumer(
    spec: &WorkloadSpec,
    rec: &Recorder,
    process: u32,
    consumed: &Arc<AtomicU64>,
) -> anyhow::Result<PushConsumer> {
    let mut cfg = PushConsumerConfig::new("jepsen-consumers", spec.namesrv.clone());
    cfg.instance_name = format!("jepsen-c{process}");
    cfg.consume_from_where = ConsumeFromWhere::FirstOffset;
    cfg.consume_batch_max = 32;
    cfg.consume_threads = 4;
    cfg.suspend = Duration::from_secs(5);
    let rec = rec.clone();
    let consumed = consumed.clone();
    let listener = Listener::Concurrent(Arc::new(move |msgs| {
        let Some(first) = msgs.first() else {
            return ConsumeResult::Success;
        };
        let broker = first.queue().broker_name;
        let read = msgs
            .iter()
            .map(|m| ReadMsg {
                queue: u32::try_from(m.queue().queue_id).unwrap_or(u32::MAX),
                offset: u64::try_from(m.queue_offset()).unwrap_or(u64::MAX),
                value: String::from_utf8_lossy(m.body()).into_owned(),
            })
            .collect();
        consumed.fetch_add(msgs.len() as u64, Ordering::Relaxed);
        rec.record(
            process,
            EventType::Ok,
            0,
            Op::Consume { broker, msgs: read },
        );
        ConsumeResult::Success
    }));
    let consumer = PushConsumer::new(cfg, listener)?;
    consumer.subscribe(&spec.topic, "*")?;
    consumer.start().await?;
    Ok(consumer)
}

/// One replica to drain: its name (`n0`) and client address.
#[derive(Debug, Clone)]
pub struct Replica {
    /// Node name.
    pub name: String,
    /// Client address `ip:port`.
    pub addr: String,
}

/// Max offsets of every queue on `replica` (None where the node does not answer).
pub async fn max_offsets(
    pool: &ConnectionPool,
    replica: &Replica,
    broker: &str,
    topic: &str,
    queues: u32,
) -> Option<Vec<u64>> {
    let mut out = Vec::new();
    for q in 0..queues {
        let mq = queue(broker, topic, q);
        let max = raftmq_client::consumer::max_offset(pool, &replica.addr, &mq)
            .await
            .ok()?;
        out.push(u64::try_from(max).unwrap_or(0));
    }
    Some(out)
}

/// Waits until every replica reports the same max offsets for every queue (replicas
/// caught up after healing), or `deadline` passes; returns whether they agreed.
pub async fn wait_replicas_agree(
    pool: &ConnectionPool,
    replicas: &[Replica],
    broker: &str,
    topic: &str,
    queues: u32,
    deadline: Duration,
) -> bool {
    let end = Instant::now() + deadline;
    loop {
        let mut all = Vec::new();
        for r in replicas {
            all.push(max_offsets(pool, r, broker, topic, queues).await);
        }
        if all.iter().all(Option::is_some) && all.windows(2).all(|w| w[0] == w[1]) {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn queue(broker: &str, topic: &str, q: u32) -> MessageQueue {
    MessageQueue {
        broker_name: broker.to_owned(),
        queue_id: i32::try_from(q).unwrap_or(i32::MAX),
        topic: topic.to_owned(),
    }
}

/// Reads every queue of `topic` from every replica, min offset to max offset, and
/// records one Drain event per (replica, queue). A replica that cannot be read within
/// `per_replica` is recorded as an info Drain with what was read so far.
pub async fn drain(
    rec: &Recorder,
    replicas: &[Replica],
    broker: &str,
    topic: &str,
    queues: u32,
    per_replica: Duration,
) {
    let pool = ConnectionPool::new(Duration::from_secs(2), None);
    let sub = subscription(topic, "*", 0);
    for r in replicas {
        let end = Instant::now() + per_replica;
        for q in 0..queues {
            let mq = queue(broker, topic, q);
            let (kind, min, max, msgs) = drain_queue(&pool, r, &mq, &sub, end).await;
            rec.record(
                HARNESS,
                kind,
                0,
                Op::Drain {
                    node: r.name.clone(),
                    broker: broker.to_owned(),
                    queue: q,
                    min_offset: min,
                    max_offset: max,
                    msgs,
                },
            );
        }
    }
}

async fn drain_queue(
    pool: &ConnectionPool,
    r: &Replica,
    mq: &MessageQueue,
    sub: &raftmq_protocol::body::SubscriptionData,
    end: Instant,
) -> (EventType, u64, u64, Vec<ReadMsg>) {
    let mut msgs = Vec::new();
    let bounds = async {
        let min = raftmq_client::consumer::min_offset(pool, &r.addr, mq).await?;
        let max = raftmq_client::consumer::max_offset(pool, &r.addr, mq).await?;
        Ok::<_, ClientError>((min, max))
    };
    let Ok((min, max)) = bounds.await else {
        return (EventType::Info, 0, 0, msgs);
    };
    let (min_u, max_u) = (
        u64::try_from(min).unwrap_or(0),
        u64::try_from(max).unwrap_or(0),
    );
    let mut offset = min;
    while offset < max {
        if Instant::now() >= end {
            return (EventType::Info, min_u, max_u, msgs);
        }
        let req = PullRequest {
            group: "jepsen-drain",
            queue: mq,
            sub,
            offset,
            max_nums: 32,
            commit_offset: None,
            suspend: Duration::ZERO,
        };
        match pull_once(pool, &r.addr, &req).await {
            Ok(res) => {
                let found = res.status == PullStatus::Found && !res.messages.is_empty();
                for m in &res.messages {
                    msgs.push(ReadMsg {
                        queue: u32::try_from(m.queue().queue_id).unwrap_or(u32::MAX),
                        offset: u64::try_from(m.queue_offset()).unwrap_or(u64::MAX),
                        value: String::from_utf8_lossy(m.body()).into_owned(),
                    });
                }
                if res.next_begin_offset > offset {
                    offset = res.next_begin_offset;
                } else if !found {
                    // Nothing readable at this offset yet (follower still applying).
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    (EventType::Ok, min_u, max_u, msgs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_errors_before_sending_are_definite_failures() {
        assert_eq!(
            send_error_kind(&ClientError::InvalidArgument("topic".into())),
            EventType::Fail
        );
        assert_eq!(
            send_error_kind(&ClientError::Timeout {
                addr: "a:1".into(),
                code: 10,
                timeout: Duration::from_secs(3)
            }),
            EventType::Info
        );
        assert_eq!(
            send_error_kind(&ClientError::broker("a:1", 1, Some("x"))),
            EventType::Info
        );
    }

    #[test]
    fn values_are_unique_per_producer_and_key() {
        assert_ne!(value_of(1, 2), value_of(12, 2));
        assert_ne!(value_of(1, 12), value_of(11, 2));
        assert_ne!(
            ordered_value_of("k3x0", 3, 1),
            ordered_value_of("k3x0", 3, 11)
        );
    }

    #[test]
    fn send_interval_follows_the_rate() {
        assert_eq!(interval_of(100.0), Duration::from_millis(10));
        assert_eq!(interval_of(0.0), Duration::from_secs(1));
        assert_eq!(interval_of(f64::NAN), Duration::from_secs(1));
    }
}
