//! The NameServer's TCP edge: accept, frame, dispatch, write; expiry scan.
//!
//! [`serve`] takes a bound listener and a shutdown future (mini-redis style), so tests
//! bind `127.0.0.1:0` and the binary passes SIGTERM/SIGINT.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BytesMut};
use raftmq_protocol::codes::ResponseCode;
use raftmq_protocol::frame::encode_frame_into;
use raftmq_protocol::{decode_frame, Decoded, RemotingCommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tracing::{debug, error, info, info_span, warn, Instrument};

use crate::config::NamesrvConfig;
use crate::kv::KvConfig;
use crate::processor::NamesrvState;
use crate::route_table::ConnId;

/// A connection with no frame in either direction for this long is closed (as Java does).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
const READ_BUFFER_BYTES: usize = 16 * 1024;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

struct Shared {
    state: Mutex<NamesrvState>,
    next_conn: AtomicU64,
    kv_path: Option<PathBuf>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, NamesrvState> {
        // A panic while holding the lock would be a bug; keep serving with the state as is.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn process(&self, req: &RemotingCommand, conn: ConnId) -> Option<RemotingCommand> {
        let (processed, kv_json) = {
            let mut state = self.lock();
            let processed = state.process(req, conn, now_ms());
            let kv_json = processed.kv_changed.then(|| state.kv.to_json());
            (processed, kv_json)
        };
        if let (Some(json), Some(path)) = (kv_json, &self.kv_path) {
            if let Err(e) = persist(path, &json) {
                error!(path = %path.display(), error = %e, "failed to persist kv config");
            }
        }
        processed.response
    }
}

fn persist(path: &std::path::Path, json: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, json)?;
    std::fs::rename(tmp, path)
}

/// Loads the KV file named by the config; a missing file is an empty store.
pub fn load_kv(config: &NamesrvConfig) -> anyhow::Result<KvConfig> {
    let Some(path) = &config.kv_config_path else {
        return Ok(KvConfig::default());
    };
    match std::fs::read(path) {
        Ok(bytes) => KvConfig::from_json(&bytes).map_err(|e| {
            anyhow::anyhow!("kv config file {} is not valid JSON: {e}", path.display())
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(KvConfig::default()),
        Err(e) => Err(anyhow::anyhow!(
            "cannot read kv config file {}: {e}",
            path.display()
        )),
    }
}

/// Serves NameServer requests on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    config: NamesrvConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let kv = load_kv(&config)?;
    let scan_every = Duration::from_millis(config.scan_not_active_broker_interval_ms);
    let shared = Arc::new(Shared {
        kv_path: config.kv_config_path.clone(),
        state: Mutex::new(NamesrvState::new(config, kv)),
        next_conn: AtomicU64::new(1),
    });

    let scanner = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(scan_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let dropped = shared.lock().table.scan_expired(now_ms());
                for addr in dropped {
                    warn!(%addr, "broker node expired: no registration within its timeout");
                }
            }
        })
    };

    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let conn = shared.next_conn.fetch_add(1, Ordering::Relaxed);
                    let shared = shared.clone();
                    conns.spawn(connection(shared, stream, peer, conn)
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
    info!("shutting down: closing {} connections", conns.len());
    scanner.abort();
    conns.shutdown().await;
    Ok(())
}

async fn connection(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr, conn: ConnId) {
    debug!("connected");
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = BytesMut::with_capacity(READ_BUFFER_BYTES);
    let mut out = Vec::new();
    'conn: loop {
        loop {
            match decode_frame(&buf) {
                Ok(Decoded::Frame { command, consumed }) => {
                    buf.advance(consumed);
                    let span = tracing::debug_span!(
                        "request",
                        code = command.code,
                        opaque = command.opaque
                    );
                    let response = span.in_scope(|| shared.process(&command, conn));
                    if let Some(resp) = response {
                        if let Err(e) = encode_frame_into(&resp, &mut out) {
                            error!(error = %e, "cannot encode response");
                            let fallback = RemotingCommand::error_to(
                                &command,
                                ResponseCode::SystemError,
                                e.to_string(),
                            );
                            let _ = encode_frame_into(&fallback, &mut out);
                        }
                    }
                }
                Ok(Decoded::Incomplete) => break,
                Err(e) => {
                    warn!(%peer, error = %e, "closing connection: malformed frame");
                    break 'conn;
                }
            }
        }
        if !out.is_empty() {
            if let Err(e) = wr.write_all(&out).await {
                debug!(error = %e, "write failed");
                break;
            }
            out.clear();
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
                break;
            }
        }
    }
    let dropped = shared.lock().table.connection_closed(conn);
    for addr in dropped {
        info!(%addr, "broker node dropped: its connection closed");
    }
    debug!("disconnected");
}
