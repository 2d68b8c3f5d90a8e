//! The external client `rocketmq-client-rust` 1.0.0 across a master crash: the master node
//! is SIGKILLed while the client's producer keeps sending; the NameServer shows a new
//! master, the producer carries on, and every acknowledged message is consumed.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ClientEnv, Cluster};
use rocketmq_client_rust::{
    ClientResult, ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, DefaultMQProducer,
    DefaultMQPushConsumer, MQPushConsumer, MessageListenerConcurrently, SendStatus,
};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message;

const TOPIC: &str = "CompatFailoverTopic";
const GROUP: &str = "compat_failover_group";
/// Acknowledged sends wanted before the kill, and again after the new master is known.
const BATCH: usize = 200;
/// Upper bound of send attempts per sender task, so the loop always ends.
const MAX_ATTEMPTS: usize = 20_000;

/// What the senders saw: acknowledged bodies (with the time of the ack) and failures.
#[derive(Default)]
struct Outcome {
    acked: Mutex<Vec<(Instant, String)>>,
    attempted: Mutex<HashSet<String>>,
    failures: AtomicUsize,
}

impl Outcome {
    fn acked_count(&self) -> usize {
        self.acked.lock().expect("acked lock").len()
    }

    fn acked_since(&self, t: Instant) -> usize {
        let acked = self.acked.lock().expect("acked lock");
        acked.iter().filter(|(at, _)| *at >= t).count()
    }
}

#[derive(Clone, Default)]
struct Bodies(Arc<Mutex<HashSet<String>>>);

impl MessageListenerConcurrently for Bodies {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _context: &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus> {
        let mut seen = self.0.lock().expect("bodies lock");
        for m in msgs {
            if let Some(b) = m.body() {
                seen.insert(String::from_utf8_lossy(&b).into_owned());
            }
        }
        Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
    }
}

#[test]
fn acknowledged_sends_survive_a_master_crash() {
    let mut cluster = Cluster::start();
    let env = ClientEnv::new();
    let rt = Arc::clone(&env.runtime);
    let ns = cluster.namesrv_addr.clone();
    env.run(async move {
        let admin = common::admin(&rt, &ns, "failover-admin").await;
        common::wait_for_master(&admin, "TBW102", Duration::from_secs(60)).await;

        let mut producer = DefaultMQProducer::builder(Arc::clone(&rt))
            .client_config(common::client_config(&ns, "failover-producer"))
            .producer_group("compat_failover_producer")
            .send_msg_timeout(3_000)
            .build();
        producer.start().await.expect("producer start");
        producer
            .create_topic("TBW102", TOPIC, 8, HashMap::new())
            .await
            .expect("create topic");
        let old_master = common::wait_for_master(&admin, TOPIC, Duration::from_secs(30)).await;

        // Two senders keep sending until told to stop (or their attempt bound).
        let producer = Arc::new(producer);
        let outcome = Arc::new(Outcome::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut senders = Vec::new();
        for t in 0..2 {
            let (producer, outcome, stop) = (
                Arc::clone(&producer),
                Arc::clone(&outcome),
                Arc::clone(&stop),
            );
            senders.push(tokio::spawn(async move {
                for i in 0..MAX_ATTEMPTS {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    let body = format!("failover-{t}-{i:05}");
                    outcome
                        .attempted
                        .lock()
                        .expect("attempted lock")
                        .insert(body.clone());
                    let msg = Message::builder()
                        .topic(TOPIC)
                        .body(body.clone().into_bytes())
                        .build()
                        .expect("valid message");
                    match producer.send(msg).await {
                        Ok(Some(r)) if r.send_status == SendStatus::SendOk => {
                            outcome
                                .acked
                                .lock()
                                .expect("acked lock")
                                .push((Instant::now(), body));
                        }
                        _ => {
                            // Failing fast against the dead master until the client's
                            // route poll learns the new one: pace the retries.
                            outcome.failures.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            }));
        }

        common::wait_for(
            "acknowledged sends before the crash",
            Duration::from_secs(60),
            || {
                let n = outcome.acked_count();
                async move {
                    if n >= BATCH {
                        Ok(())
                    } else {
                        Err(format!("{n} acked"))
                    }
                }
            },
        )
        .await;

        // Crash the master mid-stream.
        let victim = cluster.node_of(&old_master);
        let acked_before = outcome.acked_count();
        let killed_at = Instant::now();
        cluster.kill_node(victim);

        // The NameServer shows another node as master.
        let new_master = common::wait_for(
            "a new master after the crash",
            Duration::from_secs(30),
            || {
                let (admin, old) = (&admin, old_master.clone());
                async move {
                    let m = common::route_master(admin, TOPIC).await?;
                    if m != old {
                        Ok(m)
                    } else {
                        Err(format!("master still {m}"))
                    }
                }
            },
        )
        .await;
        let failover = killed_at.elapsed();
        let elected_at = Instant::now();
        assert_ne!(cluster.node_of(&new_master), victim);
        cluster.assert_alive();

        // The producer carries on: BATCH more acknowledgements after the new master
        // appeared (the client learns it from its route poll, every 10 s at the shortest).
        common::wait_for(
            "acknowledged sends after the failover",
            Duration::from_secs(90),
            || {
                let n = outcome.acked_since(elected_at);
                async move {
                    if n >= BATCH {
                        Ok(())
                    } else {
                        Err(format!("{n} acked since the new master"))
                    }
                }
            },
        )
        .await;
        let resumed = {
            let acked = outcome.acked.lock().expect("acked lock");
            acked
                .iter()
                .map(|(at, _)| *at)
                .find(|at| *at >= elected_at)
                .map(|at| at - killed_at)
        };
        stop.store(true, Ordering::Release);
        for s in senders {
            s.await.expect("sender task");
        }
        let acked: HashSet<String> = outcome
            .acked
            .lock()
            .expect("acked lock")
            .iter()
            .map(|(_, b)| b.clone())
            .collect();
        let attempted = outcome.attempted.lock().expect("attempted lock").clone();
        eprintln!(
            "failover: master {old_master} (node {victim}) killed after {acked_before} acks; new \
             master {new_master} on the NameServer after {failover:?}; the producer's first ack \
             from the new master {resumed:?} after the kill; {} acked, {} failed sends in all",
            acked.len(),
            outcome.failures.load(Ordering::Relaxed)
        );

        // Every acknowledged message is consumed; nothing is consumed that was not sent.
        let bodies = Bodies::default();
        let mut consumer = DefaultMQPushConsumer::builder(Arc::clone(&rt))
            .client_config(common::client_config(&ns, "failover-consumer"))
            .consumer_group(GROUP)
            .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
            .build();
        consumer.subscribe(TOPIC, "*").await.expect("subscribe");
        consumer.register_message_listener_concurrently(bodies.clone());
        consumer.start().await.expect("consumer start");
        common::wait_for(
            "every acknowledged message consumed",
            Duration::from_secs(120),
            || {
                let got = bodies.0.lock().expect("bodies lock").clone();
                let missing: Vec<&String> = acked.difference(&got).take(5).collect();
                let n = acked.difference(&got).count();
                let r = if n == 0 {
                    Ok(())
                } else {
                    Err(format!("{n} acked not consumed, e.g. {missing:?}"))
                };
                async move { r }
            },
        )
        .await;
        let got = bodies.0.lock().expect("bodies lock").clone();
        let strangers: Vec<&String> = got.difference(&attempted).take(5).collect();
        assert!(
            strangers.is_empty(),
            "consumed messages never sent: {strangers:?}"
        );
        eprintln!(
            "consumed {} distinct messages ({} acked, the rest from failed sends that were stored)",
            got.len(),
            acked.len()
        );

        consumer.shutdown().await;
        let mut producer = Arc::into_inner(producer).expect("senders released the producer");
        producer.shutdown().await;
        let mut admin = admin;
        admin.shutdown().await;
        cluster.assert_alive();
    });
}
