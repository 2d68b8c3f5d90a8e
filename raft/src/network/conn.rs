//! One client-side TCP connection: a writer task fed by a bounded queue, a reader task that
//! completes waiting calls by request id, and the table of calls in flight.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{debug, Instrument};

use crate::network::client::SILENT_CONNECTION_MAX;
use crate::network::stream::{write_frames, FrameReader};
use crate::network::wire::{Frame, Hello, PROTOCOL_VERSION};
use crate::network::RpcError;
use crate::types::NodeId;

/// Frames queued for a connection's writer; a full queue makes callers wait (to their deadline).
const WRITE_QUEUE_FRAMES_MAX: usize = 256;
/// Calls awaiting a response on one connection.
const CALLS_INFLIGHT_MAX: usize = 4096;

/// One TCP connection: the writer queue, and the calls awaiting responses.
pub(crate) struct Conn {
    target: NodeId,
    tx: mpsc::Sender<Vec<u8>>,
    shared: Arc<ConnShared>,
}

/// State shared with the connection's reader and writer tasks.
struct ConnShared {
    calls: Mutex<Calls>,
    /// Turns true once; stops both tasks.
    closed: watch::Sender<bool>,
    /// Responses received; a connection that answered once is considered healthy.
    responses: AtomicU64,
}

struct Calls {
    /// Set under the same lock as `waiting` is drained, so no call can register after close.
    closed: Option<String>,
    waiting: HashMap<u64, oneshot::Sender<Frame>>,
    /// When the last response arrived (or the connection opened).
    last_heard: Instant,
}

impl Conn {
    /// Sends the hello and starts the reader and writer tasks.
    pub(crate) fn start(
        stream: TcpStream,
        self_id: NodeId,
        target: NodeId,
        group: &str,
    ) -> std::io::Result<Conn> {
        stream.set_nodelay(true)?;
        // Connecting to a free port of the ephemeral range can connect a socket to itself
        // (TCP simultaneous open): it then holds the port the peer wants to listen on.
        if stream.local_addr()? == stream.peer_addr()? {
            return Err(std::io::Error::other(
                "connected to itself (the peer's port is free and was picked as the local port)",
            ));
        }
        let hello = Hello {
            version: PROTOCOL_VERSION,
            from: self_id,
            to: target,
            group: group.to_owned(),
        }
        .encode()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        let (rd, wr) = stream.into_split();
        let (tx, rx) = mpsc::channel(WRITE_QUEUE_FRAMES_MAX);
        tx.try_send(hello)
            .map_err(|_| std::io::Error::other("fresh writer queue is full"))?;
        let shared = Arc::new(ConnShared {
            calls: Mutex::new(Calls {
                closed: None,
                waiting: HashMap::new(),
                last_heard: Instant::now(),
            }),
            closed: watch::Sender::new(false),
            responses: AtomicU64::new(0),
        });
        let span = tracing::debug_span!("raft_conn", from = self_id, target);

        let writer = shared.clone();
        let closed = shared.closed.subscribe();
        tokio::spawn(
            async move {
                let reason = match write_frames(wr, rx, closed).await {
                    Ok(()) => "closed".to_string(),
                    Err(e) => format!("write: {e}"),
                };
                writer.close(reason);
            }
            .instrument(span.clone()),
        );
        tokio::spawn(read_responses(FrameReader::new(rd), shared.clone()).instrument(span));
        Ok(Conn { target, tx, shared })
    }

    pub(crate) fn is_closed(&self) -> bool {
        *self.shared.closed.borrow()
    }

    pub(crate) fn answered(&self) -> bool {
        self.shared.responses.load(Ordering::Relaxed) > 0
    }

    /// Queues one request frame and waits for the response with the same id.
    /// Cancel-safe: dropping the future forgets the call; a late response is discarded.
    pub(crate) async fn call(&self, id: u64, frame: Vec<u8>) -> Result<Frame, RpcError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut calls = self.shared.lock_calls();
            if let Some(reason) = &calls.closed {
                return Err(self.lost(reason.clone()));
            }
            if calls.waiting.len() >= CALLS_INFLIGHT_MAX {
                return Err(self.lost(format!("{CALLS_INFLIGHT_MAX} calls already in flight")));
            }
            calls.waiting.insert(id, tx);
        }
        let _forget = Forget {
            shared: &self.shared,
            id,
        };
        if self.tx.send(frame).await.is_err() {
            return Err(self.lost("writer stopped".to_string()));
        }
        rx.await.map_err(|_| {
            let reason = self.shared.lock_calls().closed.clone();
            self.lost(reason.unwrap_or_else(|| "closed".to_string()))
        })
    }

    fn lost(&self, reason: String) -> RpcError {
        RpcError::ConnectionLost {
            target: self.target,
            reason,
        }
    }
}

impl ConnShared {
    fn lock_calls(&self) -> std::sync::MutexGuard<'_, Calls> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Closes the connection: fails every waiting call and stops both tasks.
    fn close(&self, reason: String) {
        let mut calls = self.lock_calls();
        if calls.closed.is_none() {
            debug!(%reason, "connection closed");
            calls.closed = Some(reason);
        }
        calls.waiting.clear();
        drop(calls);
        self.closed.send_replace(true);
    }
}

/// Removes a call's entry when the call finishes or is cancelled.
struct Forget<'a> {
    shared: &'a ConnShared,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        let silent = {
            let mut calls = self.shared.lock_calls();
            // Still waiting: the call was cancelled or timed out without an answer.
            let abandoned = calls.waiting.remove(&self.id).is_some();
            abandoned
                && calls.closed.is_none()
                && calls.last_heard.elapsed() > SILENT_CONNECTION_MAX
        };
        if silent {
            self.shared.close(format!(
                "no response for {SILENT_CONNECTION_MAX:?} while calls time out"
            ));
        }
    }
}

/// Reads response frames and completes the matching calls until the connection ends.
async fn read_responses(
    mut reader: FrameReader<tokio::net::tcp::OwnedReadHalf>,
    shared: Arc<ConnShared>,
) {
    let mut closed = shared.closed.subscribe();
    let reason = loop {
        let next = tokio::select! {
            _ = closed.wait_for(|c| *c) => break "closed".to_string(),
            next = reader.next() => next,
        };
        match next {
            Ok(Some(frame)) => {
                shared.responses.fetch_add(1, Ordering::Relaxed);
                let waiter = {
                    let mut calls = shared.lock_calls();
                    calls.last_heard = Instant::now();
                    calls.waiting.remove(&frame.request_id)
                };
                match waiter {
                    Some(tx) => {
                        let _ = tx.send(frame);
                    }
                    None => debug!(id = frame.request_id, "response to a forgotten call"),
                }
            }
            Ok(None) => break "closed by peer".to_string(),
            Err(e) => break e.to_string(),
        }
    };
    shared.close(reason);
}
