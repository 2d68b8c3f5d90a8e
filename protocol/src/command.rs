//! `RemotingCommand`: one request or response, independent of its serialization.

use bytes::Bytes;

use crate::codes::{version, LanguageCode, ResponseCode};
use crate::error::Result;
use crate::headers::CommandHeader;
use crate::strmap::StrMap;

/// Flag bit 0: the frame is a response.
pub const FLAG_RESPONSE: i32 = 1;
/// Flag bit 1: a oneway request; the receiver sends no response, even on error.
pub const FLAG_ONEWAY: i32 = 2;

/// How a header is serialized (top byte of the header mark).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SerializeType {
    /// JSON header: the default of every client.
    #[default]
    Json = 0,
    /// RocketMQ's compact binary header.
    RocketMq = 1,
}

impl SerializeType {
    /// Checked conversion from the header mark's top byte.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(SerializeType::Json),
            1 => Some(SerializeType::RocketMq),
            _ => None,
        }
    }
}

/// One remoting command (spec §1): a request or a response, header and body.
#[derive(Debug, Clone, PartialEq)]
pub struct RemotingCommand {
    /// Request code in a request, response code in a response.
    pub code: i32,
    /// Sender's language; servers answer `JAVA`.
    pub language: LanguageCode,
    /// Sender's RocketMQ version ordinal.
    pub version: i32,
    /// Request id chosen by the requester; echoed by the response.
    pub opaque: i32,
    /// Bit 0 response, bit 1 oneway.
    pub flag: i32,
    /// Human-readable text, mostly error messages.
    pub remark: Option<String>,
    /// Header fields (`extFields`), in the order they were added or read.
    pub ext_fields: StrMap,
    /// Body bytes, opaque to the framing layer.
    pub body: Bytes,
    /// Serialization of the header on the wire; responses reuse the request's.
    pub serialize_type: SerializeType,
}

impl RemotingCommand {
    /// A two-way request with `code` and the given header fields.
    pub fn request(code: i32, ext_fields: StrMap) -> Self {
        RemotingCommand {
            code,
            language: LanguageCode::Rust,
            version: version::CURRENT,
            opaque: 0,
            flag: 0,
            remark: None,
            ext_fields,
            body: Bytes::new(),
            serialize_type: SerializeType::Json,
        }
    }

    /// A request carrying a typed header.
    pub fn request_with(code: i32, header: &impl CommandHeader) -> Self {
        Self::request(code, header.to_ext())
    }

    /// A response to `req` with `code`: same opaque and serialization, `JAVA`, version 479.
    pub fn response_to(req: &RemotingCommand, code: ResponseCode) -> Self {
        RemotingCommand {
            code: code.code(),
            language: LanguageCode::Java,
            version: version::CURRENT,
            opaque: req.opaque,
            flag: FLAG_RESPONSE,
            remark: None,
            ext_fields: StrMap::new(),
            body: Bytes::new(),
            serialize_type: req.serialize_type,
        }
    }

    /// An error response to `req` with a remark naming the problem.
    pub fn error_to(req: &RemotingCommand, code: ResponseCode, remark: impl Into<String>) -> Self {
        Self::response_to(req, code).with_remark(remark)
    }

    /// Sets the remark.
    pub fn with_remark(mut self, remark: impl Into<String>) -> Self {
        self.remark = Some(remark.into());
        self
    }

    /// Sets the body.
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Replaces the header fields with a typed header's.
    pub fn with_header(mut self, header: &impl CommandHeader) -> Self {
        self.ext_fields = header.to_ext();
        self
    }

    /// Sets the opaque.
    pub fn with_opaque(mut self, opaque: i32) -> Self {
        self.opaque = opaque;
        self
    }

    /// Marks a request oneway.
    pub fn oneway(mut self) -> Self {
        self.flag |= FLAG_ONEWAY;
        self
    }

    /// True for a response frame.
    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    /// True for a oneway request.
    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }

    /// Decodes the typed header `H` from the header fields.
    pub fn header<H: CommandHeader>(&self) -> Result<H> {
        H::from_ext(&self.ext_fields)
    }
}
