//! RocketMQ "remoting" wire formats for RaftMQ (spec: `shared/protocol/remoting.md`).
//!
//! Pure: no tokio, no sockets. Every decoder takes bytes and returns a value or a
//! [`ProtocolError`]; none panics on any input, and each has a fuzz target in `fuzz/`.
//!
//! Layout:
//! - [`frame`]: length-prefixed frames, JSON and ROCKETMQ binary headers → [`command::RemotingCommand`].
//! - [`codes`]: request, response and language codes with checked conversions.
//! - [`headers`]: typed request/response headers ↔ `extFields`.
//! - [`message`]: stored message records, properties, sysFlag, compression, CRC, tag hash, batches.
//! - [`msgid`]: UNIQ_KEY and offset message ids.
//! - [`body`]: JSON bodies (routes, cluster info, registrations, heartbeats, ...).
//! - [`config_file`]: Java `.properties` text, as RocketMQ's `-c` files are written.
//!
//! Request flow on a server:
//! ```text
//! bytes --frame::decode_frame--> RemotingCommand --headers::X::from_ext--> typed header
//!       <--frame::encode_frame-- RemotingCommand <--headers::X::to_ext---- typed response
//! ```

pub mod body;
pub mod codes;
pub mod command;
pub mod config_file;
pub mod error;
pub mod frame;
pub mod headers;
pub mod message;
pub mod msgid;
pub mod strmap;

pub use command::{RemotingCommand, SerializeType};
/// The string type of [`StrMap`] keys and values (inline up to 24 bytes).
pub use compact_str::CompactString;
pub use error::{ProtocolError, Result};
pub use frame::{decode_frame, encode_frame, Decoded, FRAME_BYTES_MAX};
pub use strmap::StrMap;
