//! The protocol crate's one error type. Every decoder returns it; none panics.

use thiserror::Error;

/// Result alias used throughout the protocol crate.
pub type Result<T, E = ProtocolError> = std::result::Result<T, E>;

/// Everything that can be wrong with bytes or fields handed to this crate.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProtocolError {
    /// The 4-byte length prefix is negative or too small to hold a header mark.
    #[error("invalid frame length {0}")]
    InvalidFrameLength(i64),
    /// The frame (length prefix included) exceeds the frame limit.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { len: u64, max: u64 },
    /// The header mark claims more header bytes than the frame holds.
    #[error("header length {header_len} exceeds frame payload of {available} bytes")]
    HeaderTooLong { header_len: usize, available: usize },
    /// The top byte of the header mark is neither 0 (JSON) nor 1 (ROCKETMQ).
    #[error("unknown serialize type {0}")]
    UnknownSerializeType(u8),
    /// A JSON header or body failed to parse.
    #[error("invalid JSON in {what}: {detail}")]
    InvalidJson { what: &'static str, detail: String },
    /// Bytes that must be UTF-8 are not.
    #[error("invalid UTF-8 in {0}")]
    InvalidUtf8(&'static str),
    /// A structure ends before a field it declares.
    #[error("truncated {what}: need {needed} bytes, have {available}")]
    Truncated {
        what: &'static str,
        needed: usize,
        available: usize,
    },
    /// A declared length is negative or otherwise impossible.
    #[error("invalid length {len} for {what}")]
    InvalidLength { what: &'static str, len: i64 },
    /// A required header field is absent.
    #[error("missing required header field `{0}`")]
    MissingField(&'static str),
    /// A header field is present but its value does not parse.
    #[error("invalid value {value:?} for header field `{key}`: {reason}")]
    InvalidField {
        key: String,
        value: String,
        reason: String,
    },
    /// A stored message record has an unknown magic code.
    #[error("invalid message magic code {0:#x}")]
    InvalidMagic(i32),
    /// A checksum does not match the data it covers.
    #[error("CRC mismatch in {what}: stored {stored:#x}, computed {computed:#x}")]
    CrcMismatch {
        what: &'static str,
        stored: u32,
        computed: u32,
    },
    /// A field is longer than the format allows.
    #[error("{what} is {len} bytes, limit {max}")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    /// zlib (de)compression failed.
    #[error("compression error: {0}")]
    Compression(String),
    /// The sysFlag names a compression type this build does not support.
    #[error("unsupported compression type {0}")]
    UnsupportedCompression(i32),
    /// A message id (UNIQ_KEY or offset id) is malformed.
    #[error("invalid message id {id:?}: {reason}")]
    InvalidMessageId { id: String, reason: &'static str },
    /// A line of a properties config file is wrong.
    #[error("line {line}: key `{key}`: {reason}")]
    Config {
        line: usize,
        key: String,
        reason: String,
    },
}
