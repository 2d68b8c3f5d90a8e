//! The node-to-node wire format. Pure: no sockets, so it is fuzzable and unit-testable.
//!
//! ```text
//! frame = [u32 len][u64 request_id][u8 kind][body: len - 9 bytes]      (integers big-endian)
//! ```
//! `len` counts the bytes after itself and is checked against [`FRAME_BYTES_MAX`] before any
//! buffer grows. The body is bincode (varint, little-endian, trailing bytes rejected, reads
//! limited to the body's own length) of the payload named by `kind`. A connection opens with a
//! [`Kind::Hello`] frame from the client; every request frame is answered by exactly one
//! response frame with the same `request_id`.

use bincode::Options;
use bytes::{Buf, Bytes, BytesMut};
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use crate::types::{NodeId, TypeConfig};

/// Largest frame accepted or sent, counting everything after the length prefix.
pub const FRAME_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Bytes before the body: length, request id, kind.
pub const FRAME_HEADER_BYTES: usize = 4 + 8 + 1;
/// Wire protocol version carried by [`Hello`]; a server closes connections of another version.
pub const PROTOCOL_VERSION: u32 = 2;

/// Largest body of a frame.
const BODY_BYTES_MAX: usize = FRAME_BYTES_MAX - (FRAME_HEADER_BYTES - 4);

/// What a frame's body is. Explicit discriminants: they are the wire codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// First frame of a connection, client to server: [`Hello`].
    Hello = 0x01,
    /// openraft AppendEntries request.
    AppendEntries = 0x02,
    /// openraft Vote request.
    Vote = 0x03,
    /// openraft InstallSnapshot (one chunk) request.
    InstallSnapshot = 0x04,
    /// The node layer's opaque request bytes.
    Custom = 0x05,
    /// Response to [`Kind::AppendEntries`].
    AppendEntriesResponse = 0x82,
    /// Response to [`Kind::Vote`].
    VoteResponse = 0x83,
    /// Response to [`Kind::InstallSnapshot`].
    InstallSnapshotResponse = 0x84,
    /// Response to [`Kind::Custom`].
    CustomResponse = 0x85,
    /// The server could not handle the request (unknown kind, undecodable body).
    ErrorResponse = 0xFF,
}

impl Kind {
    /// Checked conversion from the wire code; `None` for an unknown code.
    pub fn from_code(code: u8) -> Option<Kind> {
        Some(match code {
            0x01 => Kind::Hello,
            0x02 => Kind::AppendEntries,
            0x03 => Kind::Vote,
            0x04 => Kind::InstallSnapshot,
            0x05 => Kind::Custom,
            0x82 => Kind::AppendEntriesResponse,
            0x83 => Kind::VoteResponse,
            0x84 => Kind::InstallSnapshotResponse,
            0x85 => Kind::CustomResponse,
            0xFF => Kind::ErrorResponse,
            _ => return None,
        })
    }

    /// The wire code.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// Why bytes could not be framed or a body could not be encoded/decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The length prefix exceeds [`FRAME_BYTES_MAX`]; the stream cannot be trusted further.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The length prefix read.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The length prefix is too small to hold a request id and a kind.
    #[error("frame of {len} bytes is shorter than its header")]
    FrameTooShort {
        /// The length prefix read.
        len: u64,
    },
    /// A body that does not fit in one frame.
    #[error("body of {bytes} bytes exceeds the frame limit")]
    BodyTooLarge {
        /// Encoded size of the body.
        bytes: u64,
    },
    /// A frame whose kind is not the expected one (e.g. a response kind sent as a request).
    #[error("unexpected frame kind 0x{0:02x}")]
    UnexpectedKind(u8),
    /// The body is not a valid encoding of its kind's payload.
    #[error("bad {kind:?} body: {reason}")]
    Body {
        /// The frame's kind.
        kind: Kind,
        /// bincode's complaint.
        reason: String,
    },
    /// Encoding failed.
    #[error("encode {kind:?}: {reason}")]
    Encode {
        /// The frame's kind.
        kind: Kind,
        /// bincode's complaint.
        reason: String,
    },
}

/// One whole frame, body not yet decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Matches a response to its request; chosen by the client, unique per peer.
    pub request_id: u64,
    /// The raw kind code; may be unknown, so a server can answer it instead of hanging up.
    pub kind: u8,
    /// The bincode body.
    pub body: Bytes,
}

/// Result of [`decode_frame`]: a whole frame, or "read more bytes" (a normal condition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// Not a whole frame yet; `frame_bytes` is the full frame size once the prefix is known.
    Incomplete {
        /// Total size of the frame being received (prefix included), if known.
        frame_bytes: Option<usize>,
    },
    /// A frame, removed from the front of the buffer.
    Frame(Frame),
}

/// Takes one frame off the front of `buf`, checking the length prefix before trusting it.
pub fn decode_frame(buf: &mut BytesMut) -> Result<Decoded, WireError> {
    if buf.len() < 4 {
        return Ok(Decoded::Incomplete { frame_bytes: None });
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > FRAME_BYTES_MAX {
        return Err(WireError::FrameTooLarge {
            len: len as u64,
            max: FRAME_BYTES_MAX as u64,
        });
    }
    if len < FRAME_HEADER_BYTES - 4 {
        return Err(WireError::FrameTooShort { len: len as u64 });
    }
    if buf.len() < 4 + len {
        return Ok(Decoded::Incomplete {
            frame_bytes: Some(4 + len),
        });
    }
    let mut frame = buf.split_to(4 + len);
    frame.advance(4);
    let request_id = frame.get_u64();
    let kind = frame.get_u8();
    Ok(Decoded::Frame(Frame {
        request_id,
        kind,
        body: frame.freeze(),
    }))
}

/// The client's first frame: who is calling and which protocol it speaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the client.
    pub version: u32,
    /// The calling node.
    pub from: NodeId,
    /// The node the caller means to reach: a server that is someone else (a port reused by
    /// another node or group, a wrong `dLegerPeers` entry) closes the connection.
    pub to: NodeId,
    /// The caller's raft group: nodes of different groups never talk raft to each other.
    pub group: String,
}

impl Hello {
    /// Encodes the hello frame (request id 0).
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        encode_frame(0, Kind::Hello, self)
    }

    /// Decodes a hello frame; any other kind is an error.
    pub fn decode(frame: &Frame) -> Result<Hello, WireError> {
        match Kind::from_code(frame.kind) {
            Some(Kind::Hello) => decode_body(Kind::Hello, &frame.body),
            _ => Err(WireError::UnexpectedKind(frame.kind)),
        }
    }
}

/// A request from one node to another.
#[derive(Debug, Clone)]
pub enum RpcRequest {
    /// Replicate entries or heartbeat.
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    /// Ask for a vote.
    Vote(VoteRequest<NodeId>),
    /// One chunk of a snapshot.
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// The node layer's own RPC, opaque here.
    Custom(Bytes),
}

impl RpcRequest {
    /// The frame kind of this request.
    pub fn kind(&self) -> Kind {
        match self {
            RpcRequest::AppendEntries(_) => Kind::AppendEntries,
            RpcRequest::Vote(_) => Kind::Vote,
            RpcRequest::InstallSnapshot(_) => Kind::InstallSnapshot,
            RpcRequest::Custom(_) => Kind::Custom,
        }
    }

    /// Encodes the whole frame.
    pub fn encode(&self, request_id: u64) -> Result<Vec<u8>, WireError> {
        let kind = self.kind();
        match self {
            RpcRequest::AppendEntries(r) => encode_frame(request_id, kind, r),
            RpcRequest::Vote(r) => encode_frame(request_id, kind, r),
            RpcRequest::InstallSnapshot(r) => encode_frame(request_id, kind, r),
            RpcRequest::Custom(b) => encode_frame(request_id, kind, b),
        }
    }

    /// Decodes a request frame's body.
    pub fn decode(frame: &Frame) -> Result<RpcRequest, WireError> {
        let body = &frame.body;
        Ok(match Kind::from_code(frame.kind) {
            Some(k @ Kind::AppendEntries) => RpcRequest::AppendEntries(decode_body(k, body)?),
            Some(k @ Kind::Vote) => RpcRequest::Vote(decode_body(k, body)?),
            Some(k @ Kind::InstallSnapshot) => RpcRequest::InstallSnapshot(decode_body(k, body)?),
            Some(k @ Kind::Custom) => RpcRequest::Custom(decode_body(k, body)?),
            _ => return Err(WireError::UnexpectedKind(frame.kind)),
        })
    }
}

/// Result of an AppendEntries on the remote node.
pub type AppendEntriesResult = Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>;
/// Result of a Vote on the remote node.
pub type VoteResult = Result<VoteResponse<NodeId>, RaftError<NodeId>>;
/// Result of an InstallSnapshot chunk on the remote node.
pub type InstallSnapshotResult =
    Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>;

/// A response; openraft's carry the remote `Result` so remote errors become `RemoteError`.
#[derive(Debug)]
pub enum RpcResponse {
    /// Answer to [`RpcRequest::AppendEntries`].
    AppendEntries(AppendEntriesResult),
    /// Answer to [`RpcRequest::Vote`].
    Vote(VoteResult),
    /// Answer to [`RpcRequest::InstallSnapshot`].
    InstallSnapshot(InstallSnapshotResult),
    /// Answer to [`RpcRequest::Custom`]: the handler's bytes or its error message.
    Custom(Result<Bytes, String>),
    /// The server could not handle the request at all.
    Error(String),
}

impl RpcResponse {
    /// The frame kind of this response.
    pub fn kind(&self) -> Kind {
        match self {
            RpcResponse::AppendEntries(_) => Kind::AppendEntriesResponse,
            RpcResponse::Vote(_) => Kind::VoteResponse,
            RpcResponse::InstallSnapshot(_) => Kind::InstallSnapshotResponse,
            RpcResponse::Custom(_) => Kind::CustomResponse,
            RpcResponse::Error(_) => Kind::ErrorResponse,
        }
    }

    /// Encodes the whole frame.
    pub fn encode(&self, request_id: u64) -> Result<Vec<u8>, WireError> {
        let kind = self.kind();
        match self {
            RpcResponse::AppendEntries(r) => encode_frame(request_id, kind, r),
            RpcResponse::Vote(r) => encode_frame(request_id, kind, r),
            RpcResponse::InstallSnapshot(r) => encode_frame(request_id, kind, r),
            RpcResponse::Custom(r) => encode_frame(request_id, kind, r),
            RpcResponse::Error(m) => encode_frame(request_id, kind, m),
        }
    }

    /// Decodes a response frame's body.
    pub fn decode(frame: &Frame) -> Result<RpcResponse, WireError> {
        let body = &frame.body;
        Ok(match Kind::from_code(frame.kind) {
            Some(k @ Kind::AppendEntriesResponse) => {
                RpcResponse::AppendEntries(decode_body(k, body)?)
            }
            Some(k @ Kind::VoteResponse) => RpcResponse::Vote(decode_body(k, body)?),
            Some(k @ Kind::InstallSnapshotResponse) => {
                RpcResponse::InstallSnapshot(decode_body(k, body)?)
            }
            Some(k @ Kind::CustomResponse) => RpcResponse::Custom(decode_body(k, body)?),
            Some(k @ Kind::ErrorResponse) => RpcResponse::Error(decode_body(k, body)?),
            _ => return Err(WireError::UnexpectedKind(frame.kind)),
        })
    }
}

/// bincode settings for bodies; `limit` bounds both bytes read and any length it trusts.
fn codec(limit: usize) -> impl Options {
    bincode::DefaultOptions::new().with_limit(limit as u64)
}

/// Encodes `[len][request_id][kind][body]` into one exactly-sized buffer.
pub fn encode_frame<T: Serialize + ?Sized>(
    request_id: u64,
    kind: Kind,
    body: &T,
) -> Result<Vec<u8>, WireError> {
    let body_bytes = codec(BODY_BYTES_MAX)
        .serialized_size(body)
        .map_err(|e| match *e {
            bincode::ErrorKind::SizeLimit => WireError::BodyTooLarge {
                bytes: BODY_BYTES_MAX as u64 + 1,
            },
            other => WireError::Encode {
                kind,
                reason: other.to_string(),
            },
        })?;
    let body_len = usize::try_from(body_bytes).unwrap_or(usize::MAX);
    if body_len > BODY_BYTES_MAX {
        return Err(WireError::BodyTooLarge { bytes: body_bytes });
    }
    let len = FRAME_HEADER_BYTES - 4 + body_len;
    let mut buf = Vec::with_capacity(4 + len);
    buf.extend_from_slice(&(len as u32).to_be_bytes());
    buf.extend_from_slice(&request_id.to_be_bytes());
    buf.push(kind.code());
    codec(BODY_BYTES_MAX)
        .serialize_into(&mut buf, body)
        .map_err(|e| WireError::Encode {
            kind,
            reason: e.to_string(),
        })?;
    debug_assert_eq!(
        buf.len(),
        4 + len,
        "serialized_size disagrees with serialize_into"
    );
    Ok(buf)
}

/// Decodes a body, never reading (or pre-allocating for) more than the body holds.
fn decode_body<T: for<'de> Deserialize<'de>>(kind: Kind, body: &[u8]) -> Result<T, WireError> {
    codec(body.len())
        .deserialize(body)
        .map_err(|e| WireError::Body {
            kind,
            reason: e.to_string(),
        })
}
