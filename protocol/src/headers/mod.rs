//! Typed request/response headers ↔ `extFields` (spec §1.6, §2.3–§2.6).
//!
//! Each header is a plain struct declared with [`ext_header!`]: a field of a plain
//! type is required (absent → [`ProtocolError::MissingField`]), an `Option` field is
//! optional. Fields are emitted in declaration order, which is Java's fast-encode
//! order, so ROCKETMQ-serialized frames match the reference byte for byte.

use compact_str::{CompactString, ToCompactString};

use crate::error::{ProtocolError, Result};
use crate::strmap::StrMap;

mod namesrv;
mod offset;
mod other;
mod pull;
mod raftmq;
mod send;

pub use namesrv::*;
pub use offset::*;
pub use other::*;
pub use pull::*;
pub use raftmq::*;
pub use send::*;

/// A typed header convertible to and from `extFields`.
pub trait CommandHeader: Sized {
    /// The header fields, in declaration order, absent optionals skipped.
    fn to_ext(&self) -> StrMap;
    /// Parses the fields; unknown keys are ignored.
    fn from_ext(ext: &StrMap) -> Result<Self>;
}

/// One `extFields` value type: how it is written and read.
pub trait ExtValue: Sized {
    /// Writes the value under `key`, which `ext` does not hold yet (nothing for `None`).
    fn put(&self, ext: &mut StrMap, key: &'static str);
    /// Reads the value of `key`.
    fn take(ext: &StrMap, key: &'static str) -> Result<Self>;
}

fn invalid(key: &str, value: &str, reason: &str) -> ProtocolError {
    ProtocolError::InvalidField {
        key: key.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

/// Parses one text value the way the Java receiver does.
pub trait ExtScalar: Sized {
    /// The wire text.
    fn to_text(&self) -> CompactString;
    /// Parses the wire text of `key`.
    fn from_text(key: &str, text: &str) -> Result<Self>;
}

impl ExtScalar for String {
    fn to_text(&self) -> CompactString {
        CompactString::from(self.as_str())
    }
    fn from_text(_: &str, text: &str) -> Result<Self> {
        Ok(text.to_owned())
    }
}

impl ExtScalar for bool {
    fn to_text(&self) -> CompactString {
        CompactString::const_new(if *self { "true" } else { "false" })
    }
    /// Java's `Boolean.parseBoolean`: "true" in any case is true, anything else false.
    fn from_text(_: &str, text: &str) -> Result<Self> {
        Ok(text.trim().eq_ignore_ascii_case("true"))
    }
}

macro_rules! int_scalar {
    ($($t:ty),*) => {$(
        impl ExtScalar for $t {
            fn to_text(&self) -> CompactString {
                self.to_compact_string()
            }
            fn from_text(key: &str, text: &str) -> Result<Self> {
                text.trim().parse::<$t>().map_err(|e| invalid(key, text, &e.to_string()))
            }
        }
    )*};
}
int_scalar!(i32, i64);

macro_rules! ext_value {
    ($($t:ty),*) => {$(
        impl ExtValue for $t {
            fn put(&self, ext: &mut StrMap, key: &'static str) {
                ext.push_new(CompactString::const_new(key), self.to_text());
            }
            fn take(ext: &StrMap, key: &'static str) -> Result<Self> {
                let text = ext.get(key).ok_or(ProtocolError::MissingField(key))?;
                <$t>::from_text(key, text)
            }
        }
        impl ExtValue for Option<$t> {
            fn put(&self, ext: &mut StrMap, key: &'static str) {
                if let Some(v) = self {
                    ext.push_new(CompactString::const_new(key), v.to_text());
                }
            }
            fn take(ext: &StrMap, key: &'static str) -> Result<Self> {
                ext.get(key).map(|text| <$t>::from_text(key, text)).transpose()
            }
        }
    )*};
}
ext_value!(String, bool, i32, i64);

/// Declares a header struct and its [`CommandHeader`] impl.
///
/// ```ignore
/// ext_header! {
///     /// doc
///     pub struct GetKvConfigRequestHeader {
///         /// doc
///         namespace: String => "namespace",
///     }
/// }
/// ```
#[macro_export]
macro_rules! ext_header {
    ($(#[$m:meta])* pub struct $name:ident {
        $($(#[$fm:meta])* $field:ident : $ty:ty => $key:literal),* $(,)?
    }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct $name {
            $($(#[$fm])* pub $field: $ty),*
        }

        impl $crate::headers::CommandHeader for $name {
            fn to_ext(&self) -> $crate::strmap::StrMap {
                #[allow(unused_mut)]
                let mut ext = $crate::strmap::StrMap::with_capacity(
                    <[&str]>::len(&[$($key),*]),
                );
                $($crate::headers::ExtValue::put(&self.$field, &mut ext, $key);)*
                ext
            }
            #[allow(unused_variables)]
            fn from_ext(ext: &$crate::strmap::StrMap) -> $crate::error::Result<Self> {
                Ok(Self {
                    $($field: <$ty as $crate::headers::ExtValue>::take(ext, $key)?),*
                })
            }
        }
    };
}
pub use ext_header;

#[cfg(test)]
mod tests;
