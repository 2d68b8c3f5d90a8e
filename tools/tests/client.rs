//! The client library against real processes: a NameServer and a 3-node group started
//! from the release (or debug) binaries. One cluster, scenarios in sequence (the machine
//! has two cores), the master's kill last.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{wait_for, Cluster, DEADLINE};
use raftmq_client::consumer::pull::PullConsumer;
use raftmq_client::consumer::{readable_queues, PullStatus};
use raftmq_client::route::MessageQueue;
use raftmq_client::{
    ConsumeFromWhere, ConsumeResult, Listener, Message, MessageModel, OrderlyResult, Producer,
    ProducerConfig, PushConsumer, PushConsumerConfig, ReceivedMessage, SelectByKey, SendStatus,
};

fn producer(c: &Cluster, group: &str) -> Arc<Producer> {
    Producer::start(ProducerConfig::new(group, c.namesrv())).unwrap()
}

fn body_str(m: &ReceivedMessage) -> String {
    String::from_utf8(m.body().to_vec()).unwrap()
}

/// A clustering push consumer that records every body it receives.
fn recording_consumer(
    c: &Cluster,
    group: &str,
    instance: &str,
    topic: &str,
    expr: &str,
) -> (PushConsumer, Arc<Mutex<Vec<ReceivedMessage>>>) {
    let seen: Arc<Mutex<Vec<ReceivedMessage>>> = Arc::default();
    let s = seen.clone();
    let cfg = PushConsumerConfig {
        consume_from_where: ConsumeFromWhere::FirstOffset,
        instance_name: instance.into(),
        persist_interval: Duration::from_millis(500),
        ..PushConsumerConfig::new(group, c.namesrv())
    };
    let consumer = PushConsumer::new(
        cfg,
        Listener::Concurrent(Arc::new(move |msgs: &[ReceivedMessage]| {
            s.lock().unwrap().extend(msgs.iter().cloned());
            ConsumeResult::Success
        })),
    )
    .unwrap();
    consumer.subscribe(topic, expr).unwrap();
    (consumer, seen)
}

fn bodies(seen: &Mutex<Vec<ReceivedMessage>>) -> BTreeSet<String> {
    seen.lock().unwrap().iter().map(body_str).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_against_a_real_group() {
    let mut c = Cluster::start().await;
    println!(
        "cluster up: namesrv {} master {}",
        c.namesrv(),
        c.master().await
    );
    sends_of_every_kind_reach_clustering_consumers(&c).await;
    ordered_sends_keep_per_key_order_for_an_orderly_consumer(&c).await;
    broadcasting_gives_everyone_everything_and_keeps_offsets_locally(&c).await;
    pull_consumer_reads_explicit_offsets_and_long_polls(&c).await;
    failed_messages_come_back_through_the_retry_topic(&c).await;
    a_reset_by_time_moves_a_running_consumer_back(&c).await;
    producer_follows_a_failover_without_losing_acknowledged_messages(&mut c).await;
}

async fn sends_of_every_kind_reach_clustering_consumers(c: &Cluster) {
    let topic = "ClientAllKinds";
    let p = producer(c, "pg-all");
    let mut expected = BTreeSet::new();
    // Synchronous sends (the first one auto-creates the topic through TBW102).
    for i in 0..100 {
        let b = format!("sync-{i}");
        let r = p
            .send(
                Message::new(topic, b.clone())
                    .with_tags(if i % 2 == 0 { "TagA" } else { "TagB" })
                    .with_keys([format!("key-{i}")]),
            )
            .await
            .unwrap();
        assert_eq!(r.status, SendStatus::SendOk);
        assert!(!r.msg_id.is_empty() && !r.offset_msg_id.is_empty());
        expected.insert(b);
    }
    // Asynchronous sends.
    let handles: Vec<_> = (0..100)
        .map(|i| {
            let b = format!("async-{i}");
            expected.insert(b.clone());
            p.send_async(Message::new(topic, b).with_tags("TagA"))
        })
        .collect();
    for h in handles {
        assert_eq!(h.await.unwrap().unwrap().status, SendStatus::SendOk);
    }
    // One-way sends: no answer, but on loopback they arrive.
    for i in 0..20 {
        let b = format!("oneway-{i}");
        p.send_oneway(Message::new(topic, b.clone()).with_tags("TagA"))
            .await
            .unwrap();
        expected.insert(b);
    }
    // A batch: one request, consecutive offsets.
    let batch: Vec<Message> = (0..10)
        .map(|i| {
            let b = format!("batch-{i}");
            expected.insert(b.clone());
            Message::new(topic, b).with_tags("TagA")
        })
        .collect();
    let r = p.send_batch(batch).await.unwrap();
    assert_eq!(
        r.msg_id.split(',').count(),
        10,
        "one id per batched message"
    );
    // A large body is compressed on the wire and arrives whole.
    let big = format!("big-{}", "z".repeat(64 * 1024));
    p.send(Message::new(topic, big.clone()).with_tags("TagA"))
        .await
        .unwrap();
    expected.insert(big.clone());
    // Bad input is refused before anything is sent, naming the problem.
    let e = p.send(Message::new("bad topic", "x")).await.unwrap_err();
    assert!(e.to_string().contains("topic"), "{e}");
    let e = p
        .send(Message::new(topic, vec![0u8; 5 * 1024 * 1024]))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("limit"), "{e}");

    // Two members of one group split the queues and together see everything.
    let (c1, seen1) = recording_consumer(c, "cg-all", "m1", topic, "*");
    let (c2, seen2) = recording_consumer(c, "cg-all", "m2", topic, "*");
    c1.start().await.unwrap();
    c2.start().await.unwrap();
    let all = wait_for(
        "both consumers together to see every message",
        DEADLINE,
        || async {
            let mut s = bodies(&seen1);
            s.extend(bodies(&seen2));
            (s == expected).then_some(s)
        },
    )
    .await;
    assert!(all.contains(&big));
    let a1: BTreeSet<_> = c1
        .assigned()
        .into_iter()
        .filter(|q| q.topic == topic)
        .collect();
    let a2: BTreeSet<_> = c2
        .assigned()
        .into_iter()
        .filter(|q| q.topic == topic)
        .collect();
    assert!(a1.is_disjoint(&a2), "a queue has one owner: {a1:?} {a2:?}");
    assert_eq!(a1.len() + a2.len(), 4, "auto-created topics have 4 queues");

    // A tag subscription gets only its tag.
    let (c3, seen3) = recording_consumer(c, "cg-tag", "m3", topic, "TagB");
    c3.start().await.unwrap();
    let tagged = wait_for(
        "the TagB consumer to see the 50 TagB messages",
        DEADLINE,
        || async {
            let s = bodies(&seen3);
            (s.len() >= 50).then_some(s)
        },
    )
    .await;
    assert_eq!(tagged.len(), 50);
    assert!(tagged.iter().all(|b| b.starts_with("sync-")));
    assert!(seen3
        .lock()
        .unwrap()
        .iter()
        .all(|m| m.tags() == Some("TagB")));

    // Offsets are committed: after a persist the group's offsets equal the queue ends.
    c1.persist_offsets().await;
    c2.persist_offsets().await;
    let pull = PullConsumer::new("cg-all", Some(&c.namesrv())).unwrap();
    for q in pull.fetch_queues(topic).await.unwrap() {
        let max = pull.max_offset(&q).await.unwrap();
        let committed = pull.committed_offset(&q).await.unwrap();
        assert_eq!(committed, Some(max), "queue {q:?}");
    }
    c1.shutdown().await;
    c2.shutdown().await;
    c3.shutdown().await;
    p.shutdown();
}

async fn ordered_sends_keep_per_key_order_for_an_orderly_consumer(c: &Cluster) {
    let topic = "ClientOrdered";
    let p = producer(c, "pg-order");
    let keys = ["order-a", "order-b", "order-c", "order-d", "order-e"];
    for seq in 0..40 {
        for k in keys {
            let m = Message::new(topic, format!("{k}:{seq}")).with_keys([k]);
            p.send_ordered(m, &SelectByKey(k.into())).await.unwrap();
        }
    }
    let seen: Arc<Mutex<Vec<(MessageQueue, String)>>> = Arc::default();
    let s = seen.clone();
    let cfg = PushConsumerConfig {
        consume_from_where: ConsumeFromWhere::FirstOffset,
        consume_batch_max: 4,
        ..PushConsumerConfig::new("cg-order", c.namesrv())
    };
    let consumer = PushConsumer::new(
        cfg,
        Listener::Orderly(Arc::new(move |msgs: &[ReceivedMessage]| {
            let mut s = s.lock().unwrap();
            for m in msgs {
                s.push((m.queue(), body_str(m)));
            }
            OrderlyResult::Success
        })),
    )
    .unwrap();
    consumer.subscribe(topic, "*").unwrap();
    consumer.start().await.unwrap();
    wait_for("the orderly consumer to see all 200", DEADLINE, || async {
        (seen.lock().unwrap().len() >= 200).then_some(())
    })
    .await;
    let mut last: HashMap<String, (MessageQueue, i64)> = HashMap::new();
    for (q, b) in seen.lock().unwrap().iter() {
        let (k, seq) = b.split_once(':').unwrap();
        let seq: i64 = seq.parse().unwrap();
        if let Some((q0, prev)) = last.get(k) {
            assert_eq!(q0, q, "one key, one queue");
            assert_eq!(seq, prev + 1, "{k}: {seq} after {prev}");
        } else {
            assert_eq!(seq, 0, "{k} starts at 0");
        }
        last.insert(k.to_owned(), (q.clone(), seq));
    }
    assert_eq!(last.len(), keys.len());
    consumer.shutdown().await;
    p.shutdown();
}

async fn broadcasting_gives_everyone_everything_and_keeps_offsets_locally(c: &Cluster) {
    let topic = "ClientBroadcast";
    let p = producer(c, "pg-bc");
    for i in 0..30 {
        p.send(Message::new(topic, format!("bc-{i}")))
            .await
            .unwrap();
    }
    let offsets_dir = c.dir.path().join("offsets");
    let start = |instance: &str| {
        let seen: Arc<Mutex<Vec<ReceivedMessage>>> = Arc::default();
        let s = seen.clone();
        let cfg = PushConsumerConfig {
            model: MessageModel::Broadcasting,
            consume_from_where: ConsumeFromWhere::FirstOffset,
            instance_name: instance.into(),
            offset_store_dir: offsets_dir.join(instance),
            ..PushConsumerConfig::new("cg-bc", c.namesrv())
        };
        let consumer = PushConsumer::new(
            cfg,
            Listener::Concurrent(Arc::new(move |msgs: &[ReceivedMessage]| {
                s.lock().unwrap().extend(msgs.iter().cloned());
                ConsumeResult::Success
            })),
        )
        .unwrap();
        consumer.subscribe(topic, "*").unwrap();
        (consumer, seen)
    };
    let (b1, seen1) = start("b1");
    let (b2, seen2) = start("b2");
    b1.start().await.unwrap();
    b2.start().await.unwrap();
    for seen in [&seen1, &seen2] {
        wait_for("every broadcast member to see all 30", DEADLINE, || async {
            (bodies(seen).len() == 30).then_some(())
        })
        .await;
    }
    b1.shutdown().await;
    let file = offsets_dir.join("b1").join("cg-bc").join("offsets.json");
    assert!(
        file.exists(),
        "broadcast offsets are kept in {}",
        file.display()
    );
    // A restarted member resumes from its file: it sees only the new message.
    p.send(Message::new(topic, "bc-after")).await.unwrap();
    let (b1, seen1) = start("b1");
    b1.start().await.unwrap();
    wait_for(
        "the restarted member to see the new message",
        DEADLINE,
        || async { bodies(&seen1).contains("bc-after").then_some(()) },
    )
    .await;
    assert_eq!(
        bodies(&seen1).len(),
        1,
        "nothing consumed before the restart comes again"
    );
    b1.shutdown().await;
    b2.shutdown().await;
    p.shutdown();
}

async fn pull_consumer_reads_explicit_offsets_and_long_polls(c: &Cluster) {
    let topic = "ClientPull";
    let p = producer(c, "pg-pull");
    let first = p.send(Message::new(topic, "pull-0")).await.unwrap();
    let mq = first.queue.clone();
    for i in 1..5 {
        p.send_to_queue(Message::new(topic, format!("pull-{i}")), &mq)
            .await
            .unwrap();
    }
    let pull = PullConsumer::new("cg-pull", Some(&c.namesrv())).unwrap();
    let r = pull.pull(&mq, "*", first.queue_offset, 32).await.unwrap();
    assert_eq!(r.status, PullStatus::Found);
    let got: Vec<String> = r.messages.iter().map(body_str).collect();
    assert_eq!(got, (0..5).map(|i| format!("pull-{i}")).collect::<Vec<_>>());
    assert_eq!(r.next_begin_offset, first.queue_offset + 5);
    // At the end: a long poll is answered as soon as a message arrives.
    let end = r.next_begin_offset;
    let waiter = {
        let mq = mq.clone();
        let ns = c.namesrv();
        tokio::spawn(async move {
            let pull = PullConsumer::new("cg-pull", Some(&ns)).unwrap();
            let t0 = Instant::now();
            let r = pull
                .pull_blocking(&mq, "*", end, 32, Duration::from_secs(20))
                .await
                .unwrap();
            (r, t0.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await; // let the poll park (not a sync point)
    p.send_to_queue(Message::new(topic, "pull-late"), &mq)
        .await
        .unwrap();
    let (r, waited) = waiter.await.unwrap();
    assert_eq!(r.status, PullStatus::Found);
    assert_eq!(body_str(&r.messages[0]), "pull-late");
    assert!(
        waited < Duration::from_secs(15),
        "woken by the message, not the timeout"
    );
    // Offsets: commit and read back.
    pull.commit(&mq, end).await.unwrap();
    assert_eq!(pull.committed_offset(&mq).await.unwrap(), Some(end));
    assert!(pull.min_offset(&mq).await.unwrap() <= first.queue_offset);
    assert_eq!(pull.max_offset(&mq).await.unwrap(), end + 1);
    p.shutdown();
}

async fn failed_messages_come_back_through_the_retry_topic(c: &Cluster) {
    let topic = "ClientRetry";
    let p = producer(c, "pg-retry");
    p.send(Message::new(topic, "fail-once")).await.unwrap();
    let deliveries: Arc<Mutex<Vec<(String, i32)>>> = Arc::default();
    let d = deliveries.clone();
    let cfg = PushConsumerConfig {
        consume_from_where: ConsumeFromWhere::FirstOffset,
        ..PushConsumerConfig::new("cg-retry", c.namesrv())
    };
    let consumer = PushConsumer::new(
        cfg,
        Listener::Concurrent(Arc::new(move |msgs: &[ReceivedMessage]| {
            let mut d = d.lock().unwrap();
            for m in msgs {
                d.push((m.topic().to_owned(), m.reconsume_times()));
            }
            if msgs.iter().all(|m| m.reconsume_times() == 0) {
                ConsumeResult::ReconsumeLater
            } else {
                ConsumeResult::Success
            }
        })),
    )
    .unwrap();
    consumer.subscribe(topic, "*").unwrap();
    consumer.start().await.unwrap();
    let got = wait_for("the failed message to be redelivered", DEADLINE, || async {
        let d = deliveries.lock().unwrap();
        (d.len() >= 2).then(|| d.clone())
    })
    .await;
    assert_eq!(got[0], (topic.to_owned(), 0));
    assert_eq!(
        got[1],
        (topic.to_owned(), 1),
        "redelivered with the original topic restored"
    );
    consumer.shutdown().await;
    p.shutdown();
}

/// `resetOffsetByTime` on a live group: the master commits the new offsets and tells the
/// running consumer (RESET_CONSUMER_CLIENT_OFFSET), which drops its queues and consumes
/// everything again instead of committing its old offsets over the reset.
async fn a_reset_by_time_moves_a_running_consumer_back(c: &Cluster) {
    let topic = "ClientReset";
    let group = "cg-reset";
    let p = producer(c, "pg-reset");
    for i in 0..40 {
        p.send(Message::new(topic, format!("r-{i}"))).await.unwrap();
    }
    let (consumer, seen) = recording_consumer(c, group, "reset-1", topic, "*");
    consumer.start().await.unwrap();
    wait_for("the consumer to see all 40", DEADLINE, || async {
        (seen.lock().unwrap().len() >= 40).then_some(())
    })
    .await;
    let admin = raftmq_client::admin::AdminClient::new(vec![c.namesrv()]).unwrap();
    wait_for("the consumer to commit its offsets", DEADLINE, || async {
        let p = admin.consumer_progress(group, Some(topic)).await.ok()?;
        (p.diff_total() == 0).then_some(())
    })
    .await;
    let before = seen.lock().unwrap().len();
    let entries = admin
        .reset_offset_by_time(group, topic, 0, None, None, true)
        .await
        .unwrap();
    assert!(entries.iter().all(|e| e.offset == 0), "{entries:?}");
    wait_for(
        "every message consumed again after the reset",
        DEADLINE,
        || async {
            let s = seen.lock().unwrap();
            let again: BTreeSet<String> = s[before..].iter().map(body_str).collect();
            (again.len() == 40).then_some(())
        },
    )
    .await;
    // GET_CONSUME_STATS: the master counted the group's pulls (80 messages this minute)
    // and reports its offsets once the second pass is committed.
    let progress = wait_for("the second pass to be committed", DEADLINE, || async {
        let p = admin.consumer_progress(group, Some(topic)).await.ok()?;
        (p.diff_total() == 0).then_some(p)
    })
    .await;
    let tps = progress
        .consume_tps
        .expect("masters answer GET_CONSUME_STATS");
    assert!(tps > 0.0, "{tps}");
    let master = c.master().await;
    let stats = admin
        .consume_stats(&master, group, Some(topic))
        .await
        .unwrap();
    let (consumed, stored): (i64, i64) = stats.offset_table.values().fold((0, 0), |(c, b), w| {
        (c + w.consumer_offset, b + w.broker_offset)
    });
    assert_eq!((consumed, stored), (40, 40), "{stats:?}");
    consumer.shutdown().await;
    p.shutdown();
}

async fn producer_follows_a_failover_without_losing_acknowledged_messages(c: &mut Cluster) {
    let topic = "ClientFailover";
    let p = producer(c, "pg-fail");
    p.send(Message::new(topic, "warm")).await.unwrap();
    let acked: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let last_ack = Arc::new(Mutex::new(Instant::now()));
    let longest_gap = Arc::new(Mutex::new(Duration::ZERO));
    let mut tasks = Vec::new();
    for t in 0..8 {
        let (p, acked, stop, failed, last_ack, longest_gap) = (
            p.clone(),
            acked.clone(),
            stop.clone(),
            failed.clone(),
            last_ack.clone(),
            longest_gap.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let b = format!("f-{t}-{i}");
                i += 1;
                match p.send(Message::new(topic, b.clone())).await {
                    Ok(_) => {
                        acked.lock().unwrap().insert(b);
                        let now = Instant::now();
                        let mut last = last_ack.lock().unwrap();
                        let mut g = longest_gap.lock().unwrap();
                        *g = (*g).max(now - *last);
                        *last = now;
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    wait_for("some acknowledged sends", DEADLINE, || async {
        (acked.lock().unwrap().len() > 200).then_some(())
    })
    .await;
    let old = c.master().await;
    let killed_at = Instant::now();
    let before = acked.lock().unwrap().len();
    c.kill(c.node_of(&old));
    let new = c.new_master(&old).await;
    println!(
        "failover: {old} -> {new} shown after {:?}",
        killed_at.elapsed()
    );
    wait_for("sends acknowledged by the new master", DEADLINE, || async {
        (acked.lock().unwrap().len() > before + 200).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let gap = *longest_gap.lock().unwrap();
    println!(
        "failover: {} acknowledged, {} failed sends, longest gap between acks {gap:?}",
        acked.lock().unwrap().len(),
        failed.load(Ordering::Relaxed)
    );
    // Every acknowledged message is on the surviving group.
    let pull = PullConsumer::new("cg-fail-check", Some(&c.namesrv())).unwrap();
    let route = p.core().refresh_route(topic).await.unwrap();
    let mut stored: BTreeMap<String, usize> = BTreeMap::new();
    for q in readable_queues(topic, &route) {
        let mut off = pull.min_offset(&q).await.unwrap();
        loop {
            let r = pull.pull(&q, "*", off, 32).await.unwrap();
            if r.messages.is_empty() {
                break;
            }
            for m in &r.messages {
                *stored.entry(body_str(m)).or_default() += 1;
            }
            off = r.next_begin_offset;
        }
    }
    let lost: Vec<_> = acked
        .lock()
        .unwrap()
        .iter()
        .filter(|b| !stored.contains_key(*b))
        .cloned()
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged messages lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    p.shutdown();
}
