//! Leader-side batching: concurrent proposals become one raft entry.
//!
//! openraft 0.9 waits for the local flush of every `client_write` entry before it takes
//! the next one, so one entry per proposal costs one fsync each. The [`Proposer`] drains
//! every proposal waiting at that moment into one envelope entry; the state-machine
//! adapter splits it again, so the application still sees one command at a time, each
//! with its own byte position in the log.
//!
//! Envelope (big-endian): `u8 version | u32 count | count × (u32 len | len bytes)`.
//! Replies travel back in the same layout.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::node::ProposeError;
use crate::types::{NodeId, Raft};

/// Envelope format version.
pub const ENVELOPE_VERSION: u8 = 1;
/// Bytes before the first command: version and count.
pub const ENVELOPE_HEADER_BYTES: usize = 5;
/// Bytes before each command's data: its length.
pub const COMMAND_HEADER_BYTES: usize = 4;
/// Most commands in one entry.
pub const BATCH_COMMANDS_MAX: usize = 4096;
/// Most command bytes in one entry (a batch stops growing past this).
pub const BATCH_BYTES_MAX: usize = 4 << 20;
/// Most envelope entries handed to raft and not yet answered. openraft 0.9's core waits
/// for each entry's local flush before it replicates it, so more envelopes in flight make
/// each one smaller (more fsyncs and RPCs per message). Measured through the broker
/// (`mqbench -w 256`, interleaved runs; BENCHMARKS.md, issue 5 fourth and fifth passes):
/// 2 sends 15-20 % more than 4. With 2, the followers' logs differ more often when the
/// leader dies, which made failover slow (worst 3.2 s) until a follower refusing a shorter
/// log learned to stand at once (`voter.rs`): 9 kills since, worst gap 1.7 s.
pub const BATCHES_INFLIGHT_MAX: usize = 2;
/// Most proposals queued in front of the batcher (backpressure on callers).
pub const PROPOSALS_QUEUED_MAX: usize = 65_536;

/// A malformed envelope (only possible with a corrupted or foreign log).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad batch envelope: {0}")]
pub struct EnvelopeError(pub String);

/// Encodes commands (or replies) as one envelope.
pub fn encode_envelope(items: &[Bytes]) -> Bytes {
    encode_envelope_of(items.iter().map(|b| &b[..]))
}

/// [`encode_envelope`] over borrowed items (the proposer's batch needs no clones).
fn encode_envelope_of<'a>(items: impl Iterator<Item = &'a [u8]> + Clone) -> Bytes {
    let (count, data) = items
        .clone()
        .fold((0usize, 0usize), |(n, b), c| (n + 1, b + c.len()));
    let mut out =
        BytesMut::with_capacity(ENVELOPE_HEADER_BYTES + count * COMMAND_HEADER_BYTES + data);
    out.put_u8(ENVELOPE_VERSION);
    out.put_u32(count as u32);
    for c in items {
        out.put_u32(c.len() as u32);
        out.put_slice(c);
    }
    out.freeze()
}

/// Splits an envelope into `(offset of the data within the envelope, data)` without copying.
pub fn decode_envelope(env: &Bytes) -> Result<Vec<(usize, Bytes)>, EnvelopeError> {
    let header = env
        .get(..ENVELOPE_HEADER_BYTES)
        .ok_or_else(|| EnvelopeError("shorter than its header".into()))?;
    if header[0] != ENVELOPE_VERSION {
        return Err(EnvelopeError(format!("unknown version {}", header[0])));
    }
    let count = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if count > env.len() / COMMAND_HEADER_BYTES {
        return Err(EnvelopeError(format!(
            "count {count} larger than the envelope allows"
        )));
    }
    let mut items = Vec::with_capacity(count);
    let mut pos = ENVELOPE_HEADER_BYTES;
    for i in 0..count {
        let lb = env
            .get(pos..pos + COMMAND_HEADER_BYTES)
            .ok_or_else(|| EnvelopeError(format!("item {i}: length truncated at byte {pos}")))?;
        let len = u32::from_be_bytes([lb[0], lb[1], lb[2], lb[3]]) as usize;
        let start = pos + COMMAND_HEADER_BYTES;
        let end = start.checked_add(len).filter(|e| *e <= env.len());
        let end =
            end.ok_or_else(|| EnvelopeError(format!("item {i}: {len} bytes past the end")))?;
        items.push((start, env.slice(start..end)));
        pos = end;
    }
    if pos != env.len() {
        return Err(EnvelopeError(format!("{} trailing bytes", env.len() - pos)));
    }
    Ok(items)
}

struct Pending {
    command: Bytes,
    reply: oneshot::Sender<Result<Bytes, ProposeError>>,
}

/// Feeds proposals into raft in batches (one task per node).
#[derive(Debug, Clone)]
pub struct Proposer {
    tx: mpsc::Sender<Pending>,
}

impl Proposer {
    /// Starts the batching task over `raft`.
    pub fn start(raft: Raft, peers: BTreeMap<NodeId, String>, timeout: Duration) -> Self {
        let (tx, rx) = mpsc::channel(PROPOSALS_QUEUED_MAX);
        tokio::spawn(run(raft, Arc::new(peers), timeout, rx));
        Proposer { tx }
    }

    /// Proposes one command and waits for its reply.
    pub async fn propose(&self, command: Bytes) -> Result<Bytes, ProposeError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending { command, reply })
            .await
            .map_err(|_| ProposeError::Fatal("proposer stopped".into()))?;
        rx.await
            .map_err(|_| ProposeError::Fatal("proposer stopped".into()))?
    }
}

async fn run(
    raft: Raft,
    peers: Arc<BTreeMap<NodeId, String>>,
    timeout: Duration,
    mut rx: mpsc::Receiver<Pending>,
) {
    let inflight = Arc::new(Semaphore::new(BATCHES_INFLIGHT_MAX));
    while let Some(first) = rx.recv().await {
        // Waiting for a slot lets more proposals queue up: the batch grows under load.
        let Ok(permit) = inflight.clone().acquire_owned().await else {
            return;
        };
        let mut bytes = first.command.len();
        let mut batch = vec![first];
        while batch.len() < BATCH_COMMANDS_MAX && bytes < BATCH_BYTES_MAX {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += p.command.len();
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        let peers = peers.clone();
        tokio::spawn(async move {
            let envelope = encode_envelope_of(batch.iter().map(|p| &p.command[..]));
            // The commands are in the envelope now: free them while raft works.
            let batch: Vec<_> = batch.into_iter().map(|p| p.reply).collect();
            let outcome = tokio::time::timeout(timeout, raft.client_write(envelope)).await;
            drop(permit);
            let replies = match outcome {
                Ok(Ok(resp)) => decode_envelope(&resp.data)
                    .map_err(|e| ProposeError::Fatal(e.to_string()))
                    .and_then(|r| {
                        if r.len() == batch.len() {
                            Ok(r)
                        } else {
                            Err(ProposeError::Fatal(format!(
                                "{} replies for {} commands",
                                r.len(),
                                batch.len()
                            )))
                        }
                    }),
                Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                    Err(ProposeError::NotLeader {
                        leader_hint: f
                            .leader_id
                            .and_then(|id| peers.get(&id).map(|a| (id, a.clone()))),
                    })
                }
                Ok(Err(RaftError::APIError(e))) => Err(ProposeError::Unknown(e.to_string())),
                Ok(Err(RaftError::Fatal(e))) => Err(ProposeError::Fatal(e.to_string())),
                Err(_) => Err(ProposeError::Unknown(format!(
                    "not applied within {timeout:?}"
                ))),
            };
            match replies {
                Ok(replies) => {
                    for (reply, (_, r)) in batch.into_iter().zip(replies) {
                        let _ = reply.send(Ok(r));
                    }
                }
                Err(e) => {
                    for reply in batch {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn offsets_point_at_the_data() {
        let cmds = vec![
            Bytes::from_static(b"a"),
            Bytes::new(),
            Bytes::from_static(b"xyz"),
        ];
        let env = encode_envelope(&cmds);
        let items = decode_envelope(&env).unwrap();
        for ((off, data), cmd) in items.iter().zip(&cmds) {
            assert_eq!(data, cmd);
            assert_eq!(&env[*off..*off + cmd.len()], &cmd[..]);
        }
        assert_eq!(items[0].0, ENVELOPE_HEADER_BYTES + COMMAND_HEADER_BYTES);
    }

    #[test]
    fn malformed_envelopes_are_errors() {
        assert!(decode_envelope(&Bytes::new()).is_err());
        assert!(decode_envelope(&Bytes::from_static(&[9, 0, 0, 0, 0])).is_err());
        assert!(decode_envelope(&Bytes::from_static(&[1, 255, 255, 255, 255])).is_err());
        assert!(decode_envelope(&Bytes::from_static(&[1, 0, 0, 0, 1, 0, 0, 0, 9, 1])).is_err());
        assert!(decode_envelope(&Bytes::from_static(&[1, 0, 0, 0, 0, 7])).is_err());
    }

    proptest! {
        #[test]
        fn round_trip(cmds in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..20)) {
            let cmds: Vec<Bytes> = cmds.into_iter().map(Bytes::from).collect();
            let items = decode_envelope(&encode_envelope(&cmds)).unwrap();
            prop_assert_eq!(items.into_iter().map(|(_, b)| b).collect::<Vec<_>>(), cmds);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = decode_envelope(&Bytes::from(bytes));
        }
    }
}
