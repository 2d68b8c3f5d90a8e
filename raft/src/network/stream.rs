//! Socket plumbing shared by client and server: a frame reader and a batching writer task.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, watch};

use crate::network::wire::{decode_frame, Decoded, Frame, WireError};

/// Initial read buffer; grows to the size of the frame being received.
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// Write buffer; frames larger than this are written straight through.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// Why reading a frame failed; either way the connection is closed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// The socket failed, or closed in the middle of a frame.
    #[error("read: {0}")]
    Io(#[from] std::io::Error),
    /// The bytes are not a frame; the stream cannot be resynchronised.
    #[error("framing: {0}")]
    Wire(#[from] WireError),
}

/// Reads whole frames from a byte stream.
#[derive(Debug)]
pub(crate) struct FrameReader<R> {
    rd: R,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub(crate) fn new(rd: R) -> Self {
        Self {
            rd,
            buf: BytesMut::with_capacity(READ_BUFFER_BYTES),
        }
    }

    /// The next frame; `Ok(None)` on a clean end of stream between frames.
    /// Cancel-safe: bytes already read stay buffered.
    pub(crate) async fn next(&mut self) -> Result<Option<Frame>, ReadError> {
        loop {
            match decode_frame(&mut self.buf)? {
                Decoded::Frame(frame) => return Ok(Some(frame)),
                Decoded::Incomplete { frame_bytes } => {
                    // The prefix was checked against FRAME_BYTES_MAX, so this reserve is bounded.
                    if let Some(need) = frame_bytes {
                        self.buf.reserve(need.saturating_sub(self.buf.len()));
                    }
                }
            }
            if self.rd.read_buf(&mut self.buf).await? == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(ReadError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }
}

/// Writes queued frames until the queue closes, a write fails, or `closed` turns true.
/// Frames queued together are written with one flush (one syscall for a burst of small ones).
pub(crate) async fn write_frames<W: AsyncWrite + Unpin>(
    wr: W,
    mut rx: mpsc::Receiver<Vec<u8>>,
    mut closed: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut w = BufWriter::with_capacity(WRITE_BUFFER_BYTES, wr);
    loop {
        let first = tokio::select! {
            _ = closed.wait_for(|c| *c) => return Ok(()),
            f = rx.recv() => match f {
                Some(f) => f,
                None => return Ok(()),
            },
        };
        let batch = async {
            w.write_all(&first).await?;
            while let Ok(f) = rx.try_recv() {
                w.write_all(&f).await?;
            }
            w.flush().await
        };
        tokio::select! {
            _ = closed.wait_for(|c| *c) => return Ok(()),
            r = batch => r?,
        }
    }
}
