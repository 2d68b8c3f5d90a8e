//! The server side: accept node connections, dispatch their requests, write responses.
//!
//! Per connection: a reader loop (this task), one writer task fed by a bounded queue, one
//! AppendEntries lane that runs appends one at a time in arrival order, and a task per Vote,
//! InstallSnapshot or Custom request (at most [`REQUESTS_INFLIGHT_MAX`] at once; beyond that
//! the reader stops reading, which pushes back on the client through TCP).
//!
//! A body that does not decode, or an unknown kind, is answered with an error response and
//! the connection stays open (the frame boundary is intact). A bad length prefix or a missing
//! hello closes the connection: the stream can no longer be trusted.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use openraft::raft::AppendEntriesRequest;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, info, warn, Instrument};

use crate::network::handler::{CustomRpcHandler, RaftRpcHandler};
use crate::network::stream::{write_frames, FrameReader};
use crate::network::wire::{Hello, RpcRequest, RpcResponse, PROTOCOL_VERSION};
use crate::types::{NodeId, TypeConfig};

/// A connection must say hello within this long.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// Vote / InstallSnapshot / Custom requests running at once per connection.
pub const REQUESTS_INFLIGHT_MAX: usize = 64;
/// AppendEntries requests queued for a connection's lane.
const APPEND_QUEUE_MAX: usize = 64;
/// Response frames queued for a connection's writer.
const WRITE_QUEUE_FRAMES_MAX: usize = 256;
/// Node connections served at once; a group has a handful of peers, so more means a leak
/// or a misbehaving client, and new connections are refused (closed at once).
pub const CONNECTIONS_MAX: usize = 256;
/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Who a server is: connections whose hello names another group or another node are
/// closed, so a stray peer (a reused port, a wrong `dLegerPeers` entry, a node of another
/// group) can never feed this node its entries or votes.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The raft group (`dLegerGroup`).
    pub group: String,
    /// This node; `None` accepts hellos addressed to any node (tests of the transport).
    pub id: Option<NodeId>,
}

impl Identity {
    /// Node `id` of `group`.
    pub fn node(group: &str, id: NodeId) -> Self {
        Identity {
            group: group.to_owned(),
            id: Some(id),
        }
    }

    /// Why `hello` is not for this server, if it is not.
    pub fn refuses(&self, hello: &Hello) -> Option<String> {
        if hello.group != self.group {
            return Some(format!(
                "caller is in raft group {:?}, this node in {:?}",
                hello.group, self.group
            ));
        }
        match self.id {
            Some(id) if id != hello.to => {
                Some(format!("caller wants node {}, this is node {id}", hello.to))
            }
            _ => None,
        }
    }
}

/// Serves node RPCs on `listener` until `shutdown` completes, then closes every connection.
///
/// `raft` handles openraft's RPCs (pass the [`crate::types::Raft`]); `custom` the node layer's.
pub async fn serve<H, F>(
    identity: Identity,
    listener: TcpListener,
    raft: H,
    custom: Arc<dyn CustomRpcHandler>,
    shutdown: F,
) -> std::io::Result<()>
where
    H: RaftRpcHandler,
    F: Future<Output = ()>,
{
    let local = listener.local_addr()?;
    info!(%local, "raft rpc server listening");
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) if conns.len() >= CONNECTIONS_MAX => {
                    warn!(%addr, "{CONNECTIONS_MAX} connections open; refusing");
                    drop(stream);
                }
                Ok((stream, addr)) => {
                    let span = tracing::debug_span!(
                        "raft_peer", %addr, peer = tracing::field::Empty
                    );
                    let conn =
                        serve_connection(stream, identity.clone(), raft.clone(), custom.clone());
                    conns.spawn(conn.instrument(span));
                }
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    conns.shutdown().await;
    info!(%local, "raft rpc server stopped");
    Ok(())
}

/// Reads the hello, then serves the connection's requests until it closes.
async fn serve_connection<H: RaftRpcHandler>(
    stream: TcpStream,
    identity: Identity,
    raft: H,
    custom: Arc<dyn CustomRpcHandler>,
) {
    if let Err(e) = stream.set_nodelay(true) {
        debug!(error = %e, "set_nodelay failed");
    }
    let (rd, wr) = stream.into_split();
    let mut reader = FrameReader::new(rd);
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, reader.next()).await {
        Ok(Ok(Some(frame))) => match Hello::decode(&frame) {
            Ok(hello) => hello,
            Err(e) => return warn!(error = %e, "first frame is not a hello; closing"),
        },
        Ok(Ok(None)) => return debug!("closed before hello"),
        Ok(Err(e)) => return warn!(error = %e, "bad hello; closing"),
        Err(_) => return warn!("no hello within {HELLO_TIMEOUT:?}; closing"),
    };
    if hello.version != PROTOCOL_VERSION {
        return warn!(
            version = hello.version,
            "unsupported protocol version; closing"
        );
    }
    if let Some(why) = identity.refuses(&hello) {
        return warn!(
            from = hello.from,
            "raft connection not for this node ({why}); closing"
        );
    }
    tracing::Span::current().record("peer", hello.from);
    debug!("peer connected");

    let (resp_tx, resp_rx) = mpsc::channel(WRITE_QUEUE_FRAMES_MAX);
    let (closed_tx, closed_rx) = watch::channel(false);
    let (append_tx, append_rx) = mpsc::channel(APPEND_QUEUE_MAX);
    // Dropping the set at the end aborts whatever is still running for this connection.
    let mut tasks = JoinSet::new();
    tasks.spawn(
        async move {
            if let Err(e) = write_frames(wr, resp_rx, closed_rx).await {
                debug!(error = %e, "write failed");
            }
        }
        .in_current_span(),
    );
    tasks.spawn(append_lane(raft.clone(), append_rx, resp_tx.clone()).in_current_span());
    let ctx = Dispatch {
        raft,
        custom,
        from: hello.from,
        resp_tx,
    };
    read_requests(&mut reader, &ctx, &append_tx, &mut tasks).await;
    let _ = closed_tx.send(true);
    debug!("peer disconnected");
}

/// What a request task needs.
struct Dispatch<H> {
    raft: H,
    custom: Arc<dyn CustomRpcHandler>,
    from: NodeId,
    resp_tx: mpsc::Sender<Vec<u8>>,
}

type AppendItem = (u64, AppendEntriesRequest<TypeConfig>);

/// The reader loop: decodes each frame and hands it to the lane or a new task.
async fn read_requests<H: RaftRpcHandler>(
    reader: &mut FrameReader<OwnedReadHalf>,
    ctx: &Dispatch<H>,
    append_tx: &mpsc::Sender<AppendItem>,
    tasks: &mut JoinSet<()>,
) {
    let permits = Arc::new(Semaphore::new(REQUESTS_INFLIGHT_MAX));
    loop {
        let frame = match reader.next().await {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(e) => return warn!(error = %e, "unreadable frame; closing"),
        };
        while tasks.try_join_next().is_some() {}
        let id = frame.request_id;
        let req = match RpcRequest::decode(&frame) {
            Ok(req) => req,
            Err(e) => {
                warn!(id, kind = frame.kind, error = %e, "bad request");
                reply(&ctx.resp_tx, id, RpcResponse::Error(e.to_string())).await;
                continue;
            }
        };
        let req = match req {
            RpcRequest::AppendEntries(req) => {
                if append_tx.send((id, req)).await.is_err() {
                    return;
                }
                continue;
            }
            other => other,
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let span = tracing::debug_span!("rpc", id, kind = ?req.kind());
        let (raft, custom, from, resp_tx) = (
            ctx.raft.clone(),
            ctx.custom.clone(),
            ctx.from,
            ctx.resp_tx.clone(),
        );
        tasks.spawn(
            async move {
                let resp = handle(&raft, custom.as_ref(), from, req).await;
                reply(&resp_tx, id, resp).await;
                drop(permit);
            }
            .instrument(span),
        );
    }
}

/// Runs a connection's AppendEntries one at a time, in the order they arrived.
async fn append_lane<H: RaftRpcHandler>(
    raft: H,
    mut rx: mpsc::Receiver<AppendItem>,
    resp_tx: mpsc::Sender<Vec<u8>>,
) {
    while let Some((id, req)) = rx.recv().await {
        let span = tracing::debug_span!("rpc", id, kind = "AppendEntries");
        let run = async { RpcResponse::AppendEntries(raft.append_entries(req).await) };
        let resp = guarded(run).instrument(span).await;
        reply(&resp_tx, id, resp).await;
    }
}

/// Runs one request other than AppendEntries (those go through the lane).
async fn handle<H: RaftRpcHandler>(
    raft: &H,
    custom: &dyn CustomRpcHandler,
    from: NodeId,
    req: RpcRequest,
) -> RpcResponse {
    guarded(async {
        match req {
            RpcRequest::AppendEntries(r) => {
                RpcResponse::AppendEntries(raft.append_entries(r).await)
            }
            RpcRequest::Vote(r) => RpcResponse::Vote(raft.vote(r).await),
            RpcRequest::InstallSnapshot(r) => {
                RpcResponse::InstallSnapshot(raft.install_snapshot(r).await)
            }
            RpcRequest::Custom(body) => RpcResponse::Custom(custom.handle_from(from, body).await),
        }
    })
    .await
}

/// A panicking handler becomes an error response instead of a call that never returns.
async fn guarded(run: impl Future<Output = RpcResponse>) -> RpcResponse {
    match AssertUnwindSafe(run).catch_unwind().await {
        Ok(resp) => resp,
        Err(_) => {
            warn!("rpc handler panicked");
            RpcResponse::Error("handler panicked".to_string())
        }
    }
}

/// Encodes and queues a response; an unencodable one becomes an error response.
async fn reply(resp_tx: &mpsc::Sender<Vec<u8>>, id: u64, resp: RpcResponse) {
    let frame = match resp.encode(id) {
        Ok(frame) => frame,
        Err(e) => {
            warn!(id, error = %e, "cannot encode response");
            match RpcResponse::Error(format!("cannot encode response: {e}")).encode(id) {
                Ok(frame) => frame,
                Err(_) => return,
            }
        }
    };
    debug!(id, bytes = frame.len(), "response queued");
    // Fails only when the connection is closing; the caller then sees the connection drop.
    let _ = resp_tx.send(frame).await;
}
