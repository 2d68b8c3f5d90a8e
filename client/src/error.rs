//! The client's one error type: a broker's answer keeps its code and remark.

use raftmq_protocol::codes::ResponseCode;

/// Why a client operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The server answered with a non-success code.
    #[error("{addr} answered {code} ({name}): {remark}")]
    Broker {
        /// Who answered.
        addr: String,
        /// The response code.
        code: i32,
        /// Its name, or `UNKNOWN`.
        name: &'static str,
        /// The remark, empty if none.
        remark: String,
    },
    /// No NameServer address is configured.
    #[error(
        "no NameServer address: set it on the builder, NAMESRV_ADDR or -Drocketmq.namesrv.addr"
    )]
    NoNamesrv,
    /// A NameServer address list does not parse.
    #[error("bad NameServer address {0:?}: expected host:port[;host:port...]")]
    BadNamesrv(String),
    /// No connection to the address.
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// Peer address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// No answer within the call's time limit (the outcome of a send is unknown).
    #[error("no answer from {addr} to request code {code} within {timeout:?}")]
    Timeout {
        /// Peer address.
        addr: String,
        /// Request code.
        code: i32,
        /// The limit.
        timeout: std::time::Duration,
    },
    /// The connection closed before the answer came (the outcome is unknown).
    #[error("connection to {addr} closed before the answer")]
    ConnectionClosed {
        /// Peer address.
        addr: String,
    },
    /// The request cannot be framed (e.g. larger than 16 MiB).
    #[error("cannot encode the request: {0}")]
    Encode(String),
    /// A server's answer cannot be understood (bad header or body).
    #[error("malformed answer: {0}")]
    BadAnswer(String),
    /// The caller asked for something invalid (message too large, bad topic, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The producer or consumer was shut down.
    #[error("the client is shut down")]
    Shutdown,
    /// The topic has no route, or no writable queue.
    #[error("no route to topic {0} (no broker group has a master with writable queues)")]
    NoRoute(String),
}

impl ClientError {
    /// The error for a server's answer.
    pub fn broker(addr: impl Into<String>, code: i32, remark: Option<&str>) -> Self {
        ClientError::Broker {
            addr: addr.into(),
            code,
            name: ResponseCode::from_code(code).map_or("UNKNOWN", ResponseCode::name),
            remark: remark.unwrap_or_default().to_owned(),
        }
    }

    /// True when a send may be retried, on another queue or after a route refresh (spec
    /// Appendix B: not the master, busy, system error, not available, flush timeouts).
    pub fn is_retryable(&self) -> bool {
        let ClientError::Broker { code, .. } = self else {
            return matches!(
                self,
                ClientError::NoRoute(_)
                    | ClientError::Connect { .. }
                    | ClientError::Timeout { .. }
                    | ClientError::ConnectionClosed { .. }
            );
        };
        [
            ResponseCode::SystemError,
            ResponseCode::SystemBusy,
            ResponseCode::ServiceNotAvailable,
            ResponseCode::FlushDiskTimeout,
            ResponseCode::SlaveNotAvailable,
            ResponseCode::FlushSlaveTimeout,
            ResponseCode::TopicNotExist,
        ]
        .iter()
        .any(|c| c.code() == *code)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn broker_errors_keep_code_and_remark_and_know_what_is_retryable() {
        let e = ClientError::broker(
            "127.0.0.1:10911",
            ResponseCode::SystemBusy.code(),
            Some("busy"),
        );
        assert!(e.is_retryable());
        assert_eq!(
            e.to_string(),
            "127.0.0.1:10911 answered 2 (SYSTEM_BUSY): busy"
        );
        let e = ClientError::broker("a:1", ResponseCode::MessageIllegal.code(), None);
        assert!(!e.is_retryable());
        let e = ClientError::broker("a:1", 12_345, None);
        assert!(e.to_string().contains("UNKNOWN"));
        assert!(!e.is_retryable());
        assert!(ClientError::NoRoute("T".into()).is_retryable());
        assert!(!ClientError::Encode("too large".into()).is_retryable());
    }
}
