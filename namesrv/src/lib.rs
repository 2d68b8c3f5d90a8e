//! `mqnamesrv`: RaftMQ's route registry, wire-compatible with RocketMQ's NameServer.
//!
//! Layout:
//! - [`route_table`]: the pure registry (register, fencing by Raft term, expiry, routes).
//! - [`kv`]: KV configuration (ORDER_TOPIC_CONFIG).
//! - [`processor`]: one command in, one response out; no I/O.
//! - [`server`]: TCP accept/frame/write loop and the expiry scanner.
//! - [`config`]: `-c` properties file with RocketMQ's key names.
//!
//! Request flow:
//! ```text
//! TcpStream --decode_frame--> RemotingCommand --NamesrvState::process--> RouteTable
//!           <--encode_frame-- response       <-----------------------
//! ```

pub mod config;
pub mod kv;
pub mod processor;
pub mod route_table;
pub mod server;

pub use config::NamesrvConfig;
pub use server::serve;
