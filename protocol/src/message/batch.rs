//! SEND_BATCH_MESSAGE body (spec §2.4.3): items back to back, each
//! `TOTALSIZE, MAGIC 0, CRC 0, FLAG, BODYLEN+BODY, i16 PROPLEN+PROPERTIES`.
//!
//! The broker turns each item into its own stored record; MAGIC and CRC are
//! ignored on read (the broker computes the CRC) and written as 0.

use bytes::Bytes;

use super::properties::{decode_properties_bytes, encode_properties, PROPERTIES_BYTES_MAX};
use super::reader::{non_negative, Reader};
use crate::error::{ProtocolError, Result};
use crate::strmap::StrMap;

/// Smallest possible item: the five `i32` fields and `PROPLEN`, empty body and properties.
pub const BATCH_ITEM_BYTES_MIN: usize = 5 * 4 + 2;

/// One message of a batch body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchItem {
    /// The message's user flag.
    pub flag: i32,
    /// Body bytes (batches are never compressed).
    pub body: Bytes,
    /// The item's own properties; each carries its own UNIQ_KEY.
    pub properties: StrMap,
}

/// Encodes a batch body; `TooLong` for properties over 32767 bytes or an item over `i32::MAX`.
pub fn encode_batch(items: &[BatchItem]) -> Result<Vec<u8>> {
    let encoded: Vec<String> = items
        .iter()
        .map(|i| encode_properties(&i.properties))
        .collect();
    let mut out = Vec::new();
    for (item, props) in items.iter().zip(&encoded) {
        if props.len() > PROPERTIES_BYTES_MAX {
            return Err(ProtocolError::TooLong {
                what: "batch item properties",
                len: props.len(),
                max: PROPERTIES_BYTES_MAX,
            });
        }
        let size = BATCH_ITEM_BYTES_MIN + item.body.len() + props.len();
        let size_i32 = i32::try_from(size).map_err(|_| ProtocolError::TooLong {
            what: "batch item",
            len: size,
            max: i32::MAX as usize,
        })?;
        out.reserve(size);
        out.extend_from_slice(&size_i32.to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes()); // MAGICCODE
        out.extend_from_slice(&0i32.to_be_bytes()); // BODYCRC
        out.extend_from_slice(&item.flag.to_be_bytes());
        // body.len() < size, which fits in i32; props.len() ≤ 32767: checked above.
        out.extend_from_slice(&(item.body.len() as i32).to_be_bytes());
        out.extend_from_slice(&item.body);
        out.extend_from_slice(&(props.len() as i16).to_be_bytes());
        out.extend_from_slice(props.as_bytes());
    }
    Ok(out)
}

/// Decodes a batch body; every length is checked and an item must end exactly at its TOTALSIZE.
pub fn decode_batch(buf: &[u8]) -> Result<Vec<BatchItem>> {
    let mut items = Vec::new();
    let mut rest = buf;
    while !rest.is_empty() {
        let mut head = Reader::new(rest);
        let declared = head.i32("batch item TOTALSIZE")?;
        let size = non_negative(declared.into(), "batch item TOTALSIZE")
            .ok()
            .filter(|&s| s >= BATCH_ITEM_BYTES_MIN)
            .ok_or(ProtocolError::InvalidLength {
                what: "batch item TOTALSIZE",
                len: declared.into(),
            })?;
        let item = rest.get(..size).ok_or(ProtocolError::Truncated {
            what: "batch item",
            needed: size,
            available: rest.len(),
        })?;
        items.push(decode_item(item)?);
        rest = rest.get(size..).unwrap_or_default();
    }
    Ok(items)
}

/// Decodes one item whose slice is exactly its declared TOTALSIZE.
fn decode_item(item: &[u8]) -> Result<BatchItem> {
    let mut r = Reader::new(item);
    r.take(12, "batch item header")?; // TOTALSIZE, MAGICCODE, BODYCRC
    let flag = r.i32("batch item FLAG")?;
    let body_len = non_negative(r.i32("batch item BODYLEN")?.into(), "batch item body")?;
    let body = Bytes::copy_from_slice(r.take(body_len, "batch item BODY")?);
    let props_len = non_negative(r.i16("batch item PROPLEN")?.into(), "batch item properties")?;
    let properties = decode_properties_bytes(r.take(props_len, "batch item PROPERTIES")?)?;
    if r.remaining() != 0 {
        return Err(ProtocolError::InvalidLength {
            what: "batch item TOTALSIZE (content ends earlier)",
            len: item.len() as i64,
        });
    }
    Ok(BatchItem {
        flag,
        body,
        properties,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::message::test_support::{prop_map, unhex};
    use proptest::prelude::*;

    const V9_HEX: &str = concat!(
        "00000056000000000000000000000000000000026d31003e5441475301546167",
        "410257414954017472756502554e49515f4b4559014330413830313041333033",
        "3931423644333538363035323635433030303030320200000056000000000000",
        "000000000000000000026d32003e544147530154616742025741495401747275",
        "6502554e49515f4b455901433041383031304133303339314236443335383630",
        "353236354330303030303302",
    );

    fn v9_items() -> Vec<BatchItem> {
        let item = |body: &'static [u8], tag: &str, counter: u32| BatchItem {
            flag: 0,
            body: Bytes::from_static(body),
            properties: [
                ("TAGS", tag.to_owned()),
                ("WAIT", "true".to_owned()),
                (
                    "UNIQ_KEY",
                    format!("C0A8010A30391B6D358605265C00000{counter}"),
                ),
            ]
            .into_iter()
            .collect(),
        };
        vec![item(b"m1", "TagA", 2), item(b"m2", "TagB", 3)]
    }

    #[test]
    fn vector_v9_both_directions() {
        let v9 = unhex(V9_HEX);
        assert_eq!(v9.len(), 172);
        assert_eq!(encode_batch(&v9_items()).unwrap(), v9);
        assert_eq!(decode_batch(&v9).unwrap(), v9_items());
    }

    #[test]
    fn empty_body_is_an_empty_batch() {
        assert_eq!(decode_batch(&[]).unwrap(), vec![]);
        assert_eq!(encode_batch(&[]).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn malformed_items_are_errors() {
        let v9 = unhex(V9_HEX);
        // Truncated anywhere inside the second item.
        for cut in 87..v9.len() {
            assert!(decode_batch(&v9[..cut]).is_err(), "cut at {cut}");
        }
        // TOTALSIZE larger than the content (padding inside the item).
        let mut padded = v9[..86].to_vec();
        padded[3] = 87;
        padded.push(0);
        assert!(matches!(
            decode_batch(&padded),
            Err(ProtocolError::InvalidLength { .. })
        ));
        // TOTALSIZE smaller than the content.
        let mut short = v9[..86].to_vec();
        short[3] = 85;
        assert!(matches!(
            decode_batch(&short),
            Err(ProtocolError::Truncated { .. })
        ));
        // Negative, tiny and huge TOTALSIZE.
        for size in [-1i32, 0, 21, i32::MAX] {
            let mut b = v9.clone();
            b[..4].copy_from_slice(&size.to_be_bytes());
            assert!(decode_batch(&b).is_err(), "size {size}");
        }
        // Negative body and properties lengths.
        let mut b = v9.clone();
        b[16..20].copy_from_slice(&(-2i32).to_be_bytes());
        assert!(matches!(
            decode_batch(&b),
            Err(ProtocolError::InvalidLength { .. })
        ));
        let mut b = v9.clone();
        b[22..24].copy_from_slice(&(-62i16).to_be_bytes());
        assert!(matches!(
            decode_batch(&b),
            Err(ProtocolError::InvalidLength { .. })
        ));
        // Properties that are not UTF-8.
        let mut b = v9.clone();
        b[30] = 0xFF;
        assert_eq!(
            decode_batch(&b),
            Err(ProtocolError::InvalidUtf8("message properties"))
        );
        // Fewer than 4 bytes left for the next TOTALSIZE.
        let mut b = v9.clone();
        b.extend_from_slice(&[0, 0]);
        assert!(matches!(
            decode_batch(&b),
            Err(ProtocolError::Truncated { .. })
        ));
    }

    #[test]
    fn oversized_properties_are_refused() {
        let mut item = v9_items().remove(0);
        item.properties
            .insert("BIG", "x".repeat(PROPERTIES_BYTES_MAX));
        assert!(matches!(
            encode_batch(&[item]),
            Err(ProtocolError::TooLong { .. })
        ));
    }

    fn batch_item() -> impl Strategy<Value = BatchItem> {
        (
            any::<i32>(),
            proptest::collection::vec(any::<u8>(), 0..300),
            prop_map(),
        )
            .prop_map(|(flag, body, properties)| BatchItem {
                flag,
                body: body.into(),
                properties,
            })
    }

    proptest! {
        #[test]
        fn round_trip(items in proptest::collection::vec(batch_item(), 0..6)) {
            let encoded = encode_batch(&items).unwrap();
            prop_assert_eq!(decode_batch(&encoded).unwrap(), items);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_batch(&bytes);
        }

        #[test]
        fn damaged_vector_never_panics(cut in 0usize..=172, flips in proptest::collection::vec((0usize..172, any::<u8>()), 0..4)) {
            let mut b = unhex(V9_HEX);
            for (at, x) in flips {
                b[at] ^= x;
            }
            b.truncate(cut);
            let _ = decode_batch(&b);
        }
    }
}
