//! The broker's client-facing remoting server: accept, frame, dispatch, write.
//!
//! Per connection a reader decodes frames and runs each request in its own task (a slow
//! proposal does not hold up the connection); responses go out through a writer task in
//! completion order, matched by `opaque` on the client side. A malformed frame closes that
//! connection only; oneway requests get no response.
//! ```text
//! reader --frame--> task per request --Broker::handle--> mpsc --> writer --> socket
//! Broker (NOTIFY_CONSUMER_IDS_CHANGED) --Channel::push--> same mpsc --> writer --> socket
//! ```
//! Every connection is a [`Channel`]: the broker keeps it in its client table to push
//! requests to the client, and hears of its closing ([`Broker::connection_closed`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use raftmq_protocol::codes::ResponseCode;
use raftmq_protocol::frame::{decode_frame_buf, encode_frame_into};
use raftmq_protocol::{RemotingCommand, FRAME_BYTES_MAX};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::broker::Broker;

/// A connection with no frame in either direction for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Requests of one connection in flight at once; the reader waits beyond this.
pub const IN_FLIGHT_MAX: usize = 1024;
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// Below this much free room the read buffer grows by [`READ_BUFFER_BYTES`] before a read.
const READ_SPARE_MIN: usize = 4 * 1024;

/// Interval of the scan that expires clients without heartbeats.
pub const CLIENT_SCAN_INTERVAL: Duration = Duration::from_secs(10);

/// Opaques of broker-initiated requests (clients do not answer oneway ones).
static PUSH_OPAQUE: AtomicI32 = AtomicI32::new(1);

/// One client connection as the broker sees it: an id, the peer and a handle to push
/// frames out on it (through the connection's writer, after queued responses).
#[derive(Debug, Clone)]
pub struct Channel {
    id: u64,
    peer: SocketAddr,
    tx: mpsc::Sender<RemotingCommand>,
}

impl Channel {
    /// A channel whose frames go to `tx` (the server's writer; tests use their own).
    pub fn new(id: u64, peer: SocketAddr, tx: mpsc::Sender<RemotingCommand>) -> Self {
        Channel { id, peer, tx }
    }

    /// The connection id, unique within this server.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Queues a broker-initiated request (a fresh opaque is assigned); false when the
    /// connection is gone or its queue is full (the push is dropped, never awaited).
    pub fn push(&self, mut request: RemotingCommand) -> bool {
        request.opaque = PUSH_OPAQUE.fetch_add(1, Ordering::Relaxed);
        self.tx.try_send(request).is_ok()
    }
}

/// Serves client requests on `listener` until `shutdown` completes.
pub async fn serve(listener: TcpListener, broker: Arc<Broker>, shutdown: impl Future<Output = ()>) {
    let next_conn = AtomicU64::new(1);
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    let mut scan = tokio::time::interval(CLIENT_SCAN_INTERVAL);
    scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = scan.tick() => broker.expire_clients(),
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let conn = next_conn.fetch_add(1, Ordering::Relaxed);
                    conns.spawn(connection(broker.clone(), stream, peer, conn)
                        .instrument(info_span!("conn", %peer, conn)));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    info!(
        "client server shutting down: closing {} connections",
        conns.len()
    );
    conns.shutdown().await;
}

async fn connection(broker: Arc<Broker>, stream: TcpStream, peer: SocketAddr, conn: u64) {
    debug!("connected");
    let (mut rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::channel::<RemotingCommand>(IN_FLIGHT_MAX);
    let channel = Channel::new(conn, peer, tx.clone());
    let writer = tokio::spawn(write_loop(wr, rx).in_current_span());
    let permits = Arc::new(Semaphore::new(IN_FLIGHT_MAX));
    let mut requests = JoinSet::new();
    let mut buf = BytesMut::with_capacity(READ_BUFFER_BYTES);
    let mut malformed = false;
    'conn: loop {
        loop {
            match decode_frame_buf(&mut buf, FRAME_BYTES_MAX) {
                Ok(Some(command)) => {
                    if command.is_response() {
                        debug!(opaque = command.opaque, "ignoring a response frame");
                        continue;
                    }
                    let Ok(permit) = permits.clone().acquire_owned().await else {
                        break 'conn;
                    };
                    let span = tracing::debug_span!(
                        "request",
                        code = command.code,
                        opaque = command.opaque
                    );
                    let (broker, tx, channel) = (broker.clone(), tx.clone(), channel.clone());
                    requests.spawn(
                        async move {
                            if let Some(resp) = broker.handle(command, &channel).await {
                                let _ = tx.send(resp).await;
                            }
                            drop(permit);
                        }
                        .instrument(span),
                    );
                }
                Ok(None) => break,
                Err(e) => {
                    warn!(%peer, error = %e, "closing connection: malformed frame");
                    malformed = true;
                    break 'conn;
                }
            }
        }
        while requests.try_join_next().is_some() {}
        // Bodies of decoded frames still point into the buffer: this reuses it once they
        // are all gone and starts a fresh one otherwise.
        if buf.capacity() - buf.len() < READ_SPARE_MIN {
            buf.reserve(READ_BUFFER_BYTES);
        }
        match tokio::time::timeout(IDLE_TIMEOUT, rd.read_buf(&mut buf)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                debug!(error = %e, "read failed");
                break;
            }
            Err(_) => {
                info!(%peer, "closing idle connection");
                malformed = true;
                break;
            }
        }
    }
    // Its clients are gone at once (their groups are told); pushes to it fail from now.
    broker.connection_closed(conn);
    drop(channel);
    if malformed {
        requests.abort_all();
    }
    // Peer closed its side: let requests in flight answer (the socket may still be open).
    while requests.join_next().await.is_some() {}
    // A heartbeat that finished after the first removal may have registered it again.
    broker.connection_closed(conn);
    drop(tx);
    let _ = writer.await;
    debug!("disconnected");
}

async fn write_loop(mut wr: OwnedWriteHalf, mut rx: mpsc::Receiver<RemotingCommand>) {
    let mut out = Vec::new();
    while let Some(resp) = rx.recv().await {
        encode(&resp, &mut out);
        // The requests of one raft batch are answered together: their tasks are woken at
        // once, and the first one's send wakes this writer ahead of the rest (tokio runs
        // a just-woken task next). Yielding lets them queue up behind it so they share
        // one write syscall instead of one each.
        tokio::task::yield_now().await;
        while let Ok(more) = rx.try_recv() {
            encode(&more, &mut out);
        }
        if let Err(e) = wr.write_all(&out).await {
            debug!(error = %e, "write failed");
            return;
        }
        out.clear();
    }
    let _ = wr.shutdown().await;
}

fn encode(resp: &RemotingCommand, out: &mut Vec<u8>) {
    if let Err(e) = encode_frame_into(resp, out) {
        warn!(error = %e, opaque = resp.opaque, "cannot encode response");
        let fallback = RemotingCommand::error_to(resp, ResponseCode::SystemError, e.to_string());
        let mut fallback = fallback;
        fallback.opaque = resp.opaque;
        let _ = encode_frame_into(&fallback, out);
    }
}
