//! A small async remoting client for the broker's outgoing calls (NameServers today).
//!
//! One TCP connection per peer address, opened on first use and reused by every call;
//! calls are pipelined and matched to responses by `opaque`:
//! ```text
//! call --register opaque--> pending map      reader task --decode_frame--> pending.remove(opaque) --> oneshot
//!      --frame--> mpsc --> writer task --write_all--> socket
//! ```
//! Every call has a deadline covering connect, write and response. A connection that
//! failed (EOF, I/O error, malformed frame) fails its pending calls at once and is
//! replaced on the next call. A call that times out does not close the connection (a
//! late response is dropped). Network data is never unwrapped.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use raftmq_protocol::command::FLAG_ONEWAY;
use raftmq_protocol::{decode_frame, encode_frame, Decoded, ProtocolError, RemotingCommand};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{timeout_at, Instant};
use tracing::{debug, debug_span, warn, Instrument};

#[cfg(test)]
mod tests;

/// Default limit on opening a connection.
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(3);
/// Frames queued for one connection's writer before callers wait.
const WRITE_QUEUE_FRAMES: usize = 1024;
const READ_BUFFER_BYTES: usize = 16 * 1024;

/// Why an outgoing call failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// No connection within the connect timeout (or the call's deadline, if sooner).
    #[error("connecting to {addr} timed out after {timeout:?}")]
    ConnectTimeout {
        /// Peer address.
        addr: String,
        /// The limit that expired.
        timeout: Duration,
    },
    /// The connection was refused or the address does not resolve.
    #[error("connecting to {addr} failed: {source}")]
    Connect {
        /// Peer address.
        addr: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// No response before the call's deadline.
    #[error("no response from {addr} to request code {code} (opaque {opaque}) within {timeout:?}")]
    Timeout {
        /// Peer address.
        addr: String,
        /// Request code.
        code: i32,
        /// Request opaque.
        opaque: i32,
        /// The call's time limit.
        timeout: Duration,
    },
    /// The connection closed (or failed) before the response arrived.
    #[error("connection to {addr} closed before the response")]
    ConnectionClosed {
        /// Peer address.
        addr: String,
    },
    /// The request cannot be framed (e.g. too large).
    #[error("cannot encode request code {code}: {source}")]
    Encode {
        /// Request code.
        code: i32,
        /// The protocol error.
        #[source]
        source: ProtocolError,
    },
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; if it did, the data is still consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Default)]
struct Pending {
    closed: bool,
    waiters: HashMap<i32, oneshot::Sender<RemotingCommand>>,
}

/// State shared by a connection's handle and its reader and writer tasks.
struct ConnShared {
    addr: String,
    pending: Mutex<Pending>,
    closed: watch::Sender<bool>,
}

impl ConnShared {
    /// Marks the connection closed: pending calls fail at once, both tasks stop.
    fn close(&self, why: &str) {
        let waiters = {
            let mut p = lock(&self.pending);
            if p.closed {
                return;
            }
            p.closed = true;
            std::mem::take(&mut p.waiters)
        };
        drop(waiters);
        self.closed.send_replace(true);
        debug!(peer = %self.addr, why, "connection closed");
    }

    fn is_closed(&self) -> bool {
        lock(&self.pending).closed
    }

    fn add_waiter(&self, opaque: i32, tx: oneshot::Sender<RemotingCommand>) -> bool {
        let mut p = lock(&self.pending);
        if p.closed {
            return false;
        }
        p.waiters.insert(opaque, tx);
        true
    }

    fn remove_waiter(&self, opaque: i32) {
        lock(&self.pending).waiters.remove(&opaque);
    }

    fn complete(&self, cmd: RemotingCommand) {
        if !cmd.is_response() {
            debug!(peer = %self.addr, code = cmd.code, "ignoring a request from the peer");
            return;
        }
        let waiter = lock(&self.pending).waiters.remove(&cmd.opaque);
        match waiter {
            // The caller may have given up in the meantime; nothing to do then.
            Some(tx) => drop(tx.send(cmd)),
            None => {
                debug!(peer = %self.addr, opaque = cmd.opaque, "late or unknown response dropped")
            }
        }
    }
}

/// A live connection: the write queue and the shared state. Dropping it closes it.
struct Conn {
    shared: Arc<ConnShared>,
    frames: mpsc::Sender<Vec<u8>>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.shared.close("client dropped the connection");
    }
}

impl Conn {
    fn spawn(addr: &str, stream: TcpStream) -> Arc<Conn> {
        // Small request/response frames: don't wait for Nagle.
        let _ = stream.set_nodelay(true);
        let (rd, wr) = stream.into_split();
        let shared = Arc::new(ConnShared {
            addr: addr.to_owned(),
            pending: Mutex::new(Pending::default()),
            closed: watch::channel(false).0,
        });
        let (frames, queue) = mpsc::channel(WRITE_QUEUE_FRAMES);
        tokio::spawn(read_loop(shared.clone(), rd));
        tokio::spawn(write_loop(shared.clone(), wr, queue));
        Arc::new(Conn { shared, frames })
    }
}

/// Removes a call's waiter however the call ends (response, timeout, cancellation).
struct WaiterGuard<'a> {
    shared: &'a ConnShared,
    opaque: i32,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.shared.remove_waiter(self.opaque);
    }
}

async fn read_loop(shared: Arc<ConnShared>, mut rd: OwnedReadHalf) {
    let mut closed = shared.closed.subscribe();
    let mut buf = BytesMut::with_capacity(READ_BUFFER_BYTES);
    loop {
        loop {
            match decode_frame(&buf) {
                Ok(Decoded::Frame { command, consumed }) => {
                    buf.advance(consumed);
                    shared.complete(command);
                }
                Ok(Decoded::Incomplete) => break,
                Err(e) => {
                    warn!(peer = %shared.addr, error = %e, "malformed frame from peer; closing the connection");
                    shared.close("malformed frame");
                    return;
                }
            }
        }
        tokio::select! {
            _ = closed.wait_for(|c| *c) => return,
            read = rd.read_buf(&mut buf) => match read {
                Ok(0) => {
                    shared.close("peer closed the connection");
                    return;
                }
                Err(e) => {
                    debug!(peer = %shared.addr, error = %e, "read failed");
                    shared.close("read error");
                    return;
                }
                Ok(_) => {}
            },
        }
    }
}

async fn write_loop(
    shared: Arc<ConnShared>,
    mut wr: OwnedWriteHalf,
    mut queue: mpsc::Receiver<Vec<u8>>,
) {
    let mut closed = shared.closed.subscribe();
    loop {
        let frame = tokio::select! {
            _ = closed.wait_for(|c| *c) => return,
            frame = queue.recv() => match frame {
                Some(f) => f,
                None => return,
            },
        };
        tokio::select! {
            _ = closed.wait_for(|c| *c) => return,
            written = wr.write_all(&frame) => if let Err(e) = written {
                debug!(peer = %shared.addr, error = %e, "write failed");
                shared.close("write error");
                return;
            },
        }
    }
}

type Slot = Arc<tokio::sync::Mutex<Option<Arc<Conn>>>>;

struct Inner {
    connect_timeout: Duration,
    /// Peer address → its connection slot; a slot's lock is held while connecting, so a
    /// slow peer never delays calls to the others.
    slots: Mutex<HashMap<String, Slot>>,
    next_opaque: AtomicI32,
}

/// The outgoing remoting client. Cheap to clone; clones share the connections, which
/// close when the last clone is dropped.
#[derive(Clone)]
pub struct RemotingClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RemotingClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let peers: Vec<String> = lock(&self.inner.slots).keys().cloned().collect();
        f.debug_struct("RemotingClient")
            .field("connect_timeout", &self.inner.connect_timeout)
            .field("peers", &peers)
            .finish()
    }
}

impl Default for RemotingClient {
    fn default() -> Self {
        Self::new(CONNECT_TIMEOUT_DEFAULT)
    }
}

impl RemotingClient {
    /// A client whose connection attempts give up after `connect_timeout`.
    pub fn new(connect_timeout: Duration) -> Self {
        RemotingClient {
            inner: Arc::new(Inner {
                connect_timeout,
                slots: Mutex::new(HashMap::new()),
                next_opaque: AtomicI32::new(1),
            }),
        }
    }

    fn next_opaque(&self) -> i32 {
        // fetch_add wraps on overflow; uniqueness only matters among in-flight calls.
        self.inner.next_opaque.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends `request` to `addr` and waits for its response, all within `timeout`.
    /// The opaque is assigned here; a oneway flag on `request` is cleared.
    pub async fn call(
        &self,
        addr: &str,
        mut request: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, ClientError> {
        let deadline = Instant::now() + timeout;
        request.opaque = self.next_opaque();
        request.flag &= !FLAG_ONEWAY;
        let (code, opaque) = (request.code, request.opaque);
        let span = debug_span!("remoting_call", peer = %addr, code, opaque);
        async move {
            let result = self.call_inner(addr, &request, deadline, timeout).await;
            match &result {
                Ok(resp) => debug!(response_code = resp.code, "response"),
                Err(e) => debug!(error = %e, "call failed"),
            }
            result
        }
        .instrument(span)
        .await
    }

    async fn call_inner(
        &self,
        addr: &str,
        request: &RemotingCommand,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<RemotingCommand, ClientError> {
        let (code, opaque) = (request.code, request.opaque);
        let frame = encode_frame(request).map_err(|source| ClientError::Encode { code, source })?;
        let conn = self.connection(addr, deadline).await?;
        let closed = || ClientError::ConnectionClosed {
            addr: addr.to_owned(),
        };
        let timed_out = || ClientError::Timeout {
            addr: addr.to_owned(),
            code,
            opaque,
            timeout,
        };
        let (tx, rx) = oneshot::channel();
        if !conn.shared.add_waiter(opaque, tx) {
            return Err(closed());
        }
        let _guard = WaiterGuard {
            shared: &conn.shared,
            opaque,
        };
        match timeout_at(deadline, conn.frames.send(frame)).await {
            Err(_) => return Err(timed_out()),
            Ok(Err(_)) => return Err(closed()),
            Ok(Ok(())) => {}
        }
        match timeout_at(deadline, rx).await {
            Err(_) => Err(timed_out()),
            Ok(Err(_)) => Err(closed()),
            Ok(Ok(resp)) => Ok(resp),
        }
    }

    /// Sends `request` as a oneway request (no response expected) within `timeout`:
    /// done once the frame is queued for writing on a live connection.
    pub async fn send_oneway(
        &self,
        addr: &str,
        mut request: RemotingCommand,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let deadline = Instant::now() + timeout;
        request.opaque = self.next_opaque();
        request.flag |= FLAG_ONEWAY;
        let (code, opaque) = (request.code, request.opaque);
        let span = debug_span!("remoting_oneway", peer = %addr, code, opaque);
        async move {
            let frame =
                encode_frame(&request).map_err(|source| ClientError::Encode { code, source })?;
            let conn = self.connection(addr, deadline).await?;
            match timeout_at(deadline, conn.frames.send(frame)).await {
                Err(_) => Err(ClientError::Timeout {
                    addr: addr.to_owned(),
                    code,
                    opaque,
                    timeout,
                }),
                Ok(Err(_)) => Err(ClientError::ConnectionClosed {
                    addr: addr.to_owned(),
                }),
                Ok(Ok(())) => Ok(()),
            }
        }
        .instrument(span)
        .await
    }

    /// True when a live connection to `addr` is open.
    pub fn is_connected(&self, addr: &str) -> bool {
        let slot = lock(&self.inner.slots).get(addr).cloned();
        slot.and_then(|s| {
            s.try_lock()
                .ok()
                .and_then(|c| c.as_ref().map(|c| !c.shared.is_closed()))
        })
        .unwrap_or(false)
    }

    /// Closes the connection to `addr`, if any; the next call opens a new one.
    pub async fn disconnect(&self, addr: &str) {
        let slot = lock(&self.inner.slots).get(addr).cloned();
        if let Some(slot) = slot {
            slot.lock().await.take();
        }
    }

    /// The live connection to `addr`, connecting (or reconnecting) when there is none.
    async fn connection(&self, addr: &str, deadline: Instant) -> Result<Arc<Conn>, ClientError> {
        let slot = lock(&self.inner.slots)
            .entry(addr.to_owned())
            .or_default()
            .clone();
        let connect_timeout = self.inner.connect_timeout;
        let connect_timed_out = |timeout| ClientError::ConnectTimeout {
            addr: addr.to_owned(),
            timeout,
        };
        // Another call may be connecting to the same peer: wait for it within our deadline.
        let mut guard = timeout_at(deadline, slot.lock())
            .await
            .map_err(|_| connect_timed_out(connect_timeout))?;
        if let Some(conn) = guard.as_ref() {
            if !conn.shared.is_closed() {
                return Ok(conn.clone());
            }
        }
        *guard = None;
        let limit = connect_timeout.min(deadline.saturating_duration_since(Instant::now()));
        let stream = match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
            Err(_) => return Err(connect_timed_out(limit)),
            Ok(Err(source)) => {
                return Err(ClientError::Connect {
                    addr: addr.to_owned(),
                    source,
                })
            }
            Ok(Ok(stream)) => stream,
        };
        debug!(peer = %addr, "connected");
        let conn = Conn::spawn(addr, stream);
        *guard = Some(conn.clone());
        Ok(conn)
    }
}
