//! Shared helpers and proptest strategies for this module's tests.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, SocketAddr};

use proptest::prelude::*;

use crate::strmap::StrMap;

/// Hex text (no separators) to bytes.
pub(crate) fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Property names and values as clients may send them: any text but the separators.
pub(crate) fn prop_text() -> impl Strategy<Value = String> {
    "[^\u{1}\u{2}]{1,12}"
}

/// A random properties map that survives an encode/decode round trip.
pub(crate) fn prop_map() -> impl Strategy<Value = StrMap> {
    proptest::collection::vec((prop_text(), prop_text()), 0..8)
        .prop_map(|v| v.into_iter().collect::<StrMap>())
}

/// An IPv4 or IPv6 socket address (no flow info or scope id: the wire has none).
pub(crate) fn socket_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(a, p)| SocketAddr::new(IpAddr::from(a), p)),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(a, p)| SocketAddr::new(IpAddr::from(a), p)),
    ]
}
