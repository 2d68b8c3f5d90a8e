//! Messages as stored and sent (spec §3, §2.4.2, §2.4.3).
//!
//! - [`record`]: the stored record, one commit-log entry / PULL body element.
//! - [`batch`]: the SEND_BATCH_MESSAGE body.
//! - [`properties`]: the `name\u{1}value\u{2}` properties string and its keys.
//! - [`sysflag`]: sysFlag bits.
//! - [`codec`]: body CRC and zlib (de)compression.
//! - [`tag`]: the Java tag hash used by consume queues and subscriptions.

pub mod batch;
pub mod codec;
pub mod properties;
mod reader;
pub mod record;
pub mod sysflag;
pub mod tag;
#[cfg(test)]
pub(crate) mod test_support;

pub use batch::{decode_batch, encode_batch, BatchItem};
pub use codec::{body_crc, compress_zlib, decompress_body, COMPRESS_BODY_OVER_BYTES};
pub use properties::{
    decode_properties, decode_properties_bytes, encode_properties, keys, NAME_VALUE_SEPARATOR,
    PROPERTIES_BYTES_MAX, PROPERTY_SEPARATOR,
};
pub use record::{
    peek_total_size, set_physical_offset, set_queue_offset, MessageRecord, RecordView, BLANK_MAGIC,
    MAGIC_V1, MAGIC_V2, PHYSICAL_OFFSET_POS, QUEUE_OFFSET_POS,
};
pub use tag::{java_string_hash, tag_code};
