//! The external client's "consume later": a push consumer that answers RECONSUME_LATER
//! to the first two deliveries of each message gets every one of them a third time.
//!
//! RaftMQ has no CONSUMER_SEND_MSG_BACK yet, so the client falls back to sending the message
//! to `%RETRY%<group>` itself (same UNIQ_KEY, RECONSUME_TIME + 1); RaftMQ has no delay
//! levels yet either, so the retry arrives at once instead of after 10 s, 30 s, ...

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{ClientEnv, Cluster};
use rocketmq_client_rust::{
    ClientResult, ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, DefaultMQProducer,
    DefaultMQPushConsumer, MQPushConsumer, MessageListenerConcurrently, SendStatus,
};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message;

const TOPIC: &str = "CompatRetryTopic";
const GROUP: &str = "compat_retry_group";
const MESSAGES: usize = 20;

/// Failed deliveries before a message is acknowledged.
const LATER: u32 = 2;

/// Deliveries per body, and the bodies acknowledged (after [`LATER`] failed deliveries).
#[derive(Clone, Default)]
struct LaterOnce {
    deliveries: Arc<Mutex<HashMap<String, u32>>>,
    done: Arc<Mutex<HashSet<String>>>,
}

impl MessageListenerConcurrently for LaterOnce {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _context: &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus> {
        let mut later = false;
        for m in msgs {
            let body = m
                .body()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let mut deliveries = self.deliveries.lock().expect("deliveries lock");
            let n = deliveries.entry(body.clone()).or_insert(0);
            *n += 1;
            if *n <= LATER {
                later = true;
            } else {
                self.done.lock().expect("done lock").insert(body);
            }
        }
        Ok(if later {
            ConsumeConcurrentlyStatus::ReconsumeLater
        } else {
            ConsumeConcurrentlyStatus::ConsumeSuccess
        })
    }
}

#[test]
fn reconsume_later_redelivers() {
    let cluster = Cluster::start();
    let env = ClientEnv::new();
    let rt = Arc::clone(&env.runtime);
    let ns = cluster.namesrv_addr.clone();
    env.run(async move {
        let admin = common::admin(&rt, &ns, "retry-admin").await;
        common::wait_for_master(&admin, "TBW102", Duration::from_secs(60)).await;
        let mut producer = DefaultMQProducer::builder(Arc::clone(&rt))
            .client_config(common::client_config(&ns, "retry-producer"))
            .producer_group("compat_retry_producer")
            .build();
        producer.start().await.expect("producer start");
        producer
            .create_topic("TBW102", TOPIC, 4, HashMap::new())
            .await
            .expect("create topic");
        common::wait_for_master(&admin, TOPIC, Duration::from_secs(30)).await;
        let mut sent = HashSet::new();
        for i in 0..MESSAGES {
            let body = format!("retry-{i:03}");
            let msg = Message::builder()
                .topic(TOPIC)
                .body(body.clone().into_bytes())
                .build()
                .expect("valid message");
            let r = producer
                .send(msg)
                .await
                .expect("send")
                .expect("send result");
            assert_eq!(r.send_status, SendStatus::SendOk);
            sent.insert(body);
        }

        let listener = LaterOnce::default();
        let mut consumer = DefaultMQPushConsumer::builder(Arc::clone(&rt))
            .client_config(common::client_config(&ns, "retry-consumer"))
            .consumer_group(GROUP)
            .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
            .build();
        consumer.subscribe(TOPIC, "*").await.expect("subscribe");
        consumer.register_message_listener_concurrently(listener.clone());
        consumer.start().await.expect("consumer start");
        common::wait_for(
            "every message consumed on its third delivery",
            Duration::from_secs(120),
            || {
                let done = listener.done.lock().expect("done lock").clone();
                let first = listener.deliveries.lock().expect("deliveries lock").len();
                let missing = sent.difference(&done).count();
                async move {
                    if missing == 0 {
                        Ok(())
                    } else {
                        Err(format!("{first} delivered, {missing} not yet acknowledged"))
                    }
                }
            },
        )
        .await;
        consumer.shutdown().await;
        producer.shutdown().await;
        let mut admin = admin;
        admin.shutdown().await;
    });
}
