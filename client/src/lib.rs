//! RaftMQ's client library: what a RocketMQ client does, in Rust, over the remoting
//! protocol of `raftmq-protocol`. No CLI dependencies; works against any broker that speaks
//! RocketMQ's remoting protocol.
//!
//! ```no_run
//! # async fn demo() -> Result<(), raftmq_client::ClientError> {
//! use raftmq_client::{Message, Producer, ProducerConfig};
//! let producer = Producer::start(ProducerConfig::new("my-group", "127.0.0.1:9876"))?;
//! let result = producer.send(Message::new("TopicTest", "hello").with_tags("TagA")).await?;
//! println!("{} at {:?} offset {}", result.msg_id, result.queue, result.queue_offset);
//! # Ok(()) }
//! ```
//!
//! - [`producer`]: sync, async, one-way, batch and ordered sends, retries that follow a
//!   failover to the group's new master;
//! - [`consumer::push`]: clustering/broadcasting push consumers with concurrent or orderly
//!   listeners; [`consumer::pull`]: explicit queues and offsets;
//! - [`instance`]: what a process's clients share (NameServers, connections, routes);
//! - [`namesrv`]: where the NameServers are (builder, `NAMESRV_ADDR`,
//!   `rocketmq.namesrv.addr`);
//! - [`route`]: a topic's route turned into the queues a producer may write to, picked
//!   round robin, skipping masters that failed lately;
//! - [`message`]: messages sent and received, send results;
//! - [`error`]: one error type carrying the broker's code and remark;
//! - [`remoting`]: pipelined connections (one per address) matched by `opaque`;
//! - [`admin`]: what `mqadmin` asks of a cluster ([`admin::AdminClient`]).

pub mod admin;
pub mod consumer;
pub mod error;
pub mod instance;
pub mod message;
pub mod namesrv;
pub mod producer;
pub mod remoting;
pub mod route;
#[cfg(test)]
pub(crate) mod test_support;

pub use consumer::pull::PullConsumer;
pub use consumer::push::{
    ConsumeResult, Listener, OrderlyResult, PushConsumer, PushConsumerConfig,
};
pub use consumer::{ConsumeFromWhere, MessageModel};
pub use error::ClientError;
pub use message::{Message, ReceivedMessage, SendResult, SendStatus};
pub use producer::{Producer, ProducerConfig, QueueSelector, SelectByKey};
