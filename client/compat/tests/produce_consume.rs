//! The external client `rocketmq-client-rust` 1.0.0 against a real RaftMQ cluster:
//! 1,000 sends all SEND_OK, a clustering push consumer receiving every one of them with
//! its committed offsets reaching the queues' max offsets, and hash-selected ordered
//! sends read back in per-queue order.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{ClientEnv, Cluster};
#[allow(deprecated)] // DefaultMQPullConsumer: see the ordered part of the test
use rocketmq_client_rust::{
    ClientResult, ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, DefaultMQAdminExt,
    DefaultMQProducer, DefaultMQPullConsumer, DefaultMQPushConsumer, MQAdminMutationExt,
    MQPushConsumer, MessageListenerConcurrently, PullStatus, SendStatus,
};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_queue::MessageQueue;
use rocketmq_model::common::message::message_single::Message;

const TOPIC: &str = "CompatTopic";
const ORDER_TOPIC: &str = "CompatOrderTopic";
const GROUP: &str = "compat_push_group";
const MESSAGES: usize = 1_000;
const ORDER_KEYS: usize = 10;
const ORDER_SEQS: usize = 40;
const QUEUES: i32 = 8;

/// Records what a concurrent listener is handed: (queue, queue offset, body).
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<(i32, i64, String)>>>);

impl Collector {
    fn bodies(&self) -> Vec<String> {
        let seen = self.0.lock().expect("collector lock");
        seen.iter().map(|(_, _, b)| b.clone()).collect()
    }
}

impl MessageListenerConcurrently for Collector {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _context: &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus> {
        let mut seen = self.0.lock().expect("collector lock");
        for m in msgs {
            let body = m
                .body()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            seen.push((m.queue_id(), m.queue_offset(), body));
        }
        Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
    }
}

fn message(topic: &str, body: String, key: &str) -> Message {
    Message::builder()
        .topic(topic)
        .tags("compat")
        .keys(vec![key.to_owned()])
        .body(body.into_bytes())
        .build()
        .expect("valid message")
}

async fn create_topic(producer: &mut DefaultMQProducer, admin: &DefaultMQAdminExt, topic: &str) {
    // The client's own topic creation: UPDATE_AND_CREATE_TOPIC on every master in the
    // route of TBW102 (the key topic).
    producer
        .create_topic("TBW102", topic, QUEUES, HashMap::new())
        .await
        .unwrap_or_else(|e| panic!("create_topic({topic}) failed: {e}"));
    common::wait_for_master(admin, topic, Duration::from_secs(30)).await;
}

#[test]
fn external_client_produces_and_consumes() {
    let cluster = Cluster::start();
    let env = ClientEnv::new();
    let rt = Arc::clone(&env.runtime);
    let ns = cluster.namesrv_addr.clone();
    env.run(async move {
        let admin = common::admin(&rt, &ns, "compat-admin").await;
        let master = common::wait_for_master(&admin, "TBW102", Duration::from_secs(60)).await;
        assert!(
            cluster.broker_addrs.contains(&master),
            "route master {master} is none of the nodes {:?}",
            cluster.broker_addrs
        );

        let mut producer = DefaultMQProducer::builder(Arc::clone(&rt))
            .client_config(common::client_config(&ns, "compat-producer"))
            .producer_group("compat_producer_group")
            .send_msg_timeout(10_000)
            .build();
        producer.start().await.expect("producer start");
        create_topic(&mut producer, &admin, TOPIC).await;
        create_topic(&mut producer, &admin, ORDER_TOPIC).await;

        // 1. 1,000 sends from four concurrent tasks, every one SEND_OK.
        let producer = Arc::new(producer);
        let mut tasks = Vec::new();
        for t in 0..4 {
            let producer = Arc::clone(&producer);
            tasks.push(tokio::spawn(async move {
                let mut sent = Vec::new();
                for i in (t..MESSAGES).step_by(4) {
                    let body = format!("compat-{i:04}");
                    let result = producer
                        .send(message(TOPIC, body.clone(), &format!("k{i}")))
                        .await
                        .unwrap_or_else(|e| panic!("send {i} failed: {e}"))
                        .unwrap_or_else(|| panic!("send {i} returned no result"));
                    assert_eq!(
                        result.send_status,
                        SendStatus::SendOk,
                        "send {i}: {result:?}"
                    );
                    assert!(result.msg_id.is_some(), "send {i} has no msgId: {result:?}");
                    sent.push(body);
                }
                sent
            }));
        }
        let mut sent = HashSet::new();
        for t in tasks {
            sent.extend(t.await.expect("send task"));
        }
        assert_eq!(sent.len(), MESSAGES);
        let mut producer = Arc::into_inner(producer).expect("send tasks released the producer");

        // 2. A clustering push consumer receives every message ...
        let collector = Collector::default();
        let mut consumer = DefaultMQPushConsumer::builder(Arc::clone(&rt))
            .client_config(common::client_config(&ns, "compat-consumer"))
            .consumer_group(GROUP)
            .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
            .build();
        consumer.subscribe(TOPIC, "*").await.expect("subscribe");
        consumer.register_message_listener_concurrently(collector.clone());
        consumer.start().await.expect("consumer start");
        let received = common::wait_for(
            "every sent message consumed",
            Duration::from_secs(120),
            || {
                let got: HashSet<String> = collector.bodies().into_iter().collect();
                let missing = sent.difference(&got).count();
                async move {
                    if missing == 0 {
                        Ok(got)
                    } else {
                        Err(format!("{missing} of {MESSAGES} not yet received"))
                    }
                }
            },
        )
        .await;
        assert_eq!(received, sent, "received bodies differ from the sent ones");
        let deliveries = collector.bodies().len();
        eprintln!(
            "push consumer: {} distinct of {MESSAGES} sent, {deliveries} deliveries",
            received.len()
        );

        // ... and the group's committed offsets reach every queue's max offset
        // (QUERY_CONSUMER_OFFSET and GET_MAX_OFFSET through the client's own APIs).
        let queues = producer
            .fetch_publish_message_queues(TOPIC)
            .await
            .expect("queues");
        assert_eq!(
            queues.len(),
            QUEUES as usize,
            "queues of {TOPIC}: {queues:?}"
        );
        let mut max = BTreeMap::new();
        for mq in &queues {
            max.insert(
                mq.queue_id(),
                producer.max_offset(mq).await.expect("max offset"),
            );
        }
        assert_eq!(
            max.values().sum::<i64>(),
            MESSAGES as i64,
            "max offsets {max:?}"
        );
        eprintln!("max offsets per queue of {TOPIC}: {max:?}");
        common::wait_for(
            "committed offsets at the max offsets",
            Duration::from_secs(60),
            || {
                let (admin, master, max) = (&admin, master.clone(), &max);
                async move {
                    let mut behind = Vec::new();
                    for (&q, &m) in max {
                        let committed = admin
                            .mutation_consumer_offset(
                                master.as_str().into(),
                                GROUP.into(),
                                TOPIC.into(),
                                q,
                            )
                            .await
                            .map_err(|e| format!("query offset of queue {q}: {e}"))?;
                        if committed != m {
                            behind.push(format!("queue {q}: {committed}/{m}"));
                        }
                    }
                    if behind.is_empty() {
                        Ok(())
                    } else {
                        Err(behind.join(", "))
                    }
                }
            },
        )
        .await;
        consumer.shutdown().await;

        // 3. Ordered sends: a selector puts each key on one queue by hash; sequences of
        // the keys interleave.
        let mut key_queue: HashMap<String, i32> = HashMap::new();
        for seq in 0..ORDER_SEQS {
            for k in 0..ORDER_KEYS {
                let key = format!("order-key-{k}");
                let result = producer
                    .send_with_selector(
                        message(ORDER_TOPIC, format!("{key}:{seq}"), &key),
                        |mqs: &[MessageQueue], _msg: &Message, key: &String| {
                            let mut h = DefaultHasher::new();
                            key.hash(&mut h);
                            mqs.get((h.finish() % mqs.len() as u64) as usize).cloned()
                        },
                        key.clone(),
                    )
                    .await
                    .unwrap_or_else(|e| panic!("ordered send {key}:{seq} failed: {e}"))
                    .unwrap_or_else(|| panic!("ordered send {key}:{seq} returned no result"));
                assert_eq!(
                    result.send_status,
                    SendStatus::SendOk,
                    "{key}:{seq}: {result:?}"
                );
                let q = result
                    .message_queue
                    .as_ref()
                    .expect("send result queue")
                    .queue_id();
                let first = *key_queue.entry(key.clone()).or_insert(q);
                assert_eq!(first, q, "{key} changed queue");
            }
        }

        // Read every queue back in order with the client's classic pull consumer (plain
        // PULL_MESSAGE per queue: exactly the order a queue hands out). Deprecated in favour
        // of the lite pull consumer, whose poll() merges queues; the orderly push consumer
        // needs LOCK_BATCH_MQ.
        #[allow(deprecated)]
        let puller = DefaultMQPullConsumer::builder(Arc::clone(&rt))
            .client_options(rocketmq_client_rust::ClientOptions::legacy(
                common::client_config(&ns, "compat-puller"),
            ))
            .consumer_group("compat_pull_group")
            // Client quirk: this classic consumer also rebalances the topic's queues and
            // runs background long polls on them (LITE_PULL_MESSAGE); its shutdown waits
            // for them, so keep the broker-side suspension short.
            .broker_suspend_max_time(Duration::from_secs(1))
            .build()
            .expect("pull consumer");
        puller.start().await.expect("pull consumer start");
        let order_queues = puller
            .fetch_subscribe_message_queues(ORDER_TOPIC)
            .await
            .expect("queues");
        assert_eq!(order_queues.len(), QUEUES as usize);
        let mut per_key: HashMap<String, Vec<usize>> = HashMap::new();
        let mut total = 0;
        for mq in &order_queues {
            let max = puller.max_offset(mq).await.expect("max offset");
            let mut offset = 0;
            while offset < max {
                let result = puller.pull(mq, "*", offset, 32).await.expect("pull");
                assert_eq!(
                    *result.pull_status(),
                    PullStatus::Found,
                    "pull {mq:?} at {offset}"
                );
                for m in result.msg_found_list().unwrap_or_default() {
                    assert_eq!(m.queue_offset(), offset, "gap or reorder in {mq:?}");
                    offset += 1;
                    let body = String::from_utf8_lossy(&m.body().expect("body")).into_owned();
                    let (key, seq) = body.split_once(':').expect("key:seq body");
                    assert_eq!(key_queue[key], mq.queue_id(), "{body} in the wrong queue");
                    per_key
                        .entry(key.to_owned())
                        .or_default()
                        .push(seq.parse().expect("seq"));
                    total += 1;
                }
                assert_eq!(
                    result.next_begin_offset() as i64,
                    offset,
                    "next offset of {mq:?}"
                );
            }
        }
        assert_eq!(total, ORDER_KEYS * ORDER_SEQS);
        let used: HashSet<i32> = key_queue.values().copied().collect();
        eprintln!("ordered: {total} messages, {ORDER_KEYS} keys on queues {used:?}");
        for (key, seqs) in &per_key {
            let expected: Vec<usize> = (0..ORDER_SEQS).collect();
            assert_eq!(seqs, &expected, "sequence of {key} as read from its queue");
        }
        let _ = puller.shutdown().await;
        producer.shutdown().await;
        let mut admin = admin;
        admin.shutdown().await;
    });
}
