//! RaftMQ's client library (issue 5, in progress): what a RocketMQ client does, in Rust,
//! over the remoting protocol of `raftmq-protocol`. No CLI dependencies.
//!
//! Here so far, the pure parts every producer and consumer builds on:
//! - [`namesrv`]: where the NameServers are (builder, `NAMESRV_ADDR`,
//!   `rocketmq.namesrv.addr`);
//! - [`route`]: a topic's route turned into the queues a producer may write to
//!   ([`route::TopicPublishInfo`]), picked round robin, skipping groups that failed lately
//!   ([`route::FaultTracker`]);
//! - [`error`]: one error type carrying the broker's code and remark;
//! - [`remoting`]: pipelined connections (one per address) matched by `opaque`.

pub mod consumer;
pub mod error;
pub mod instance;
pub mod message;
pub mod namesrv;
pub mod producer;
pub mod remoting;
pub mod route;

pub use consumer::pull::PullConsumer;
pub use consumer::push::{
    ConsumeResult, Listener, OrderlyResult, PushConsumer, PushConsumerConfig,
};
pub use consumer::{ConsumeFromWhere, MessageModel};
pub use error::ClientError;
pub use message::{Message, ReceivedMessage, SendResult, SendStatus};
pub use producer::{Producer, ProducerConfig, QueueSelector, SelectByKey};
