//! Message sysFlag bits (spec §3.2), in records and in the send header `f`.

/// BODY is compressed (type in [`COMPRESSION_TYPE_MASK`]).
pub const COMPRESSED: i32 = 0x1;
/// Set by the broker for MULTI_TAG topics; unused otherwise.
pub const MULTI_TAGS: i32 = 0x2;
/// Bits 2–3: the transaction type.
pub const TRANSACTION_MASK: i32 = 0xC;
/// Transaction type: an ordinary message.
pub const TRANSACTION_NOT_TYPE: i32 = 0x0;
/// Transaction type: a half message awaiting commit or rollback.
pub const TRANSACTION_PREPARED: i32 = 0x4;
/// Transaction type: the committed copy of a half message.
pub const TRANSACTION_COMMIT: i32 = 0x8;
/// Transaction type: a rolled-back half message.
pub const TRANSACTION_ROLLBACK: i32 = 0xC;
/// BORNHOST is a 16-byte IPv6 address; set by the broker from the socket.
pub const BORNHOST_V6: i32 = 0x10;
/// STOREHOST is a 16-byte IPv6 address; set by the broker from its own address.
pub const STOREHOST_V6: i32 = 0x20;
/// 5.x inner batch that must be unwrapped by the consumer.
pub const NEED_UNWRAP: i32 = 0x40;
/// 5.x inner batch record.
pub const INNER_BATCH: i32 = 0x80;
/// Bits 8–10: compression type (0 legacy zlib, 1 LZ4, 2 ZSTD, 3 ZLIB).
pub const COMPRESSION_TYPE_MASK: i32 = 0x700;
/// Shift of the compression type within the sysFlag.
pub const COMPRESSION_TYPE_SHIFT: u32 = 8;
/// Compression type: zlib as written by 4.x clients (type bits zero).
pub const COMPRESSION_LEGACY_ZLIB: i32 = 0;
/// Compression type: LZ4 frame (opt-in in 5.x; unsupported here).
pub const COMPRESSION_LZ4: i32 = 1;
/// Compression type: Zstandard frame (opt-in in 5.x; unsupported here).
pub const COMPRESSION_ZSTD: i32 = 2;
/// Compression type: zlib as written by 5.x clients.
pub const COMPRESSION_ZLIB: i32 = 3;

/// The transaction type bits of `flag` (one of the `TRANSACTION_*` values).
pub fn transaction_type(flag: i32) -> i32 {
    flag & TRANSACTION_MASK
}

/// `flag` with its transaction type replaced by `tx` (a `TRANSACTION_*` value).
pub fn with_transaction_type(flag: i32, tx: i32) -> i32 {
    (flag & !TRANSACTION_MASK) | (tx & TRANSACTION_MASK)
}

/// The compression type in bits 8–10 of `flag` (0…7; see `COMPRESSION_*`).
pub fn compression_type(flag: i32) -> i32 {
    (flag & COMPRESSION_TYPE_MASK) >> COMPRESSION_TYPE_SHIFT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(
            transaction_type(0x301 | TRANSACTION_COMMIT),
            TRANSACTION_COMMIT
        );
        assert_eq!(transaction_type(0x301), TRANSACTION_NOT_TYPE);
        assert_eq!(compression_type(0x301), COMPRESSION_ZLIB);
        assert_eq!(compression_type(COMPRESSED), COMPRESSION_LEGACY_ZLIB);
        assert_eq!(compression_type(-1), 7);
        assert_eq!(with_transaction_type(0x305, TRANSACTION_COMMIT), 0x309);
    }
}
