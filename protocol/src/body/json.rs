//! JSON body codec: standard JSON out, fastjson's unquoted integer keys accepted in.
//!
//! Java NameServers write `Map<Long, _>` keys without quotes
//! (`"brokerAddrs":{0:"10.0.0.1:10911"}`, remoting.md §2.3.3) to old clients.
//! [`decode_json`] quotes such keys before parsing; [`encode_json`] always writes
//! standard compact JSON with quoted keys.

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{ProtocolError, Result};

/// Parses a JSON body into `T`, after quoting bare integer object keys.
///
/// `what` names the body in the error (`InvalidJson { what, .. }`). Unknown members are
/// ignored by the body types of this module; invalid UTF-8 or JSON is an error, never a panic.
pub fn decode_json<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T> {
    let fixed = quote_bare_int_keys(bytes);
    serde_json::from_slice(&fixed).map_err(|e| ProtocolError::InvalidJson {
        what,
        detail: e.to_string(),
    })
}

/// Serializes `value` as compact JSON, failing only if `T`'s `Serialize` impl fails
/// (for example a map with non-string, non-integer keys).
pub fn try_encode_json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| ProtocolError::InvalidJson {
        what: "encoded body",
        detail: e.to_string(),
    })
}

/// Serializes a body as compact JSON with members in declaration order.
///
/// The body types of this module cannot fail to serialize (their map keys are strings or
/// integers); for a type that does fail this returns an empty body (and asserts in debug).
pub fn encode_json<T: Serialize>(value: &T) -> Vec<u8> {
    match try_encode_json(value) {
        Ok(bytes) => bytes,
        Err(e) => {
            debug_assert!(false, "body serialization failed: {e}");
            Vec::new()
        }
    }
}

/// Container kinds on the scanner's stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Object,
    Array,
}

/// Quotes every bare `-?[0-9]+` that stands where an object key is expected.
///
/// Scans once, tracking string/escape state and the container stack; text inside strings
/// is never touched. Returns the input unchanged (borrowed) when nothing needs quoting.
/// Malformed JSON is passed through as is for the parser to reject.
pub fn quote_bare_int_keys(input: &[u8]) -> Cow<'_, [u8]> {
    let mut out: Option<Vec<u8>> = None;
    let mut copied_upto = 0usize;
    let mut stack: Vec<Container> = Vec::new();
    let mut in_string = false;
    let mut escaped = false;
    // True right after `{` or after `,` inside an object: the next token is a key.
    let mut expect_key = false;
    let mut i = 0usize;
    while i < input.len() {
        let b = input[i];
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'-' | b'0'..=b'9' if expect_key => {
                let start = i;
                let mut end = i + usize::from(b == b'-');
                while end < input.len() && input[end].is_ascii_digit() {
                    end += 1;
                }
                if end > start + usize::from(b == b'-') {
                    let buf = out.get_or_insert_with(|| Vec::with_capacity(input.len() + 16));
                    buf.extend_from_slice(&input[copied_upto..start]);
                    buf.push(b'"');
                    buf.extend_from_slice(&input[start..end]);
                    buf.push(b'"');
                    copied_upto = end;
                }
                expect_key = false;
                i = end.max(i + 1);
                continue;
            }
            b'"' => in_string = true,
            b'{' => stack.push(Container::Object),
            b'[' => stack.push(Container::Array),
            b'}' | b']' => {
                stack.pop();
            }
            _ => {}
        }
        expect_key = match b {
            b'{' => true,
            b',' => stack.last() == Some(&Container::Object),
            _ => false,
        };
        i += 1;
    }
    match out {
        Some(mut buf) => {
            buf.extend_from_slice(&input[copied_upto..]);
            Cow::Owned(buf)
        }
        None => Cow::Borrowed(input),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn q(s: &str) -> String {
        String::from_utf8(quote_bare_int_keys(s.as_bytes()).into_owned()).unwrap()
    }

    #[test]
    fn quotes_bare_keys() {
        assert_eq!(q(r#"{0:"a",-1:"b"}"#), r#"{"0":"a","-1":"b"}"#);
        assert_eq!(q(r#"{ 0 : "a" , 12 :"b"}"#), r#"{ "0" : "a" , "12" :"b"}"#);
    }

    #[test]
    fn leaves_standard_json_borrowed() {
        let s = br#"{"0":"a","x":[1,2,{"y":-3}],"z":-4}"#;
        assert!(matches!(quote_bare_int_keys(s), Cow::Borrowed(_)));
    }

    #[test]
    fn never_touches_values_or_array_elements() {
        assert_eq!(
            q(r#"{"a":1,"b":[1,-2,3],"c":{5:6}}"#),
            r#"{"a":1,"b":[1,-2,3],"c":{"5":6}}"#
        );
        assert_eq!(q("[1,2,{3:4},5]"), r#"[1,2,{"3":4},5]"#);
    }

    #[test]
    fn ignores_digits_inside_strings() {
        assert_eq!(q(r#"{"k":"{0:1,2:3}"}"#), r#"{"k":"{0:1,2:3}"}"#);
        assert_eq!(q(r#"{"{1:":"x",2:"y"}"#), r#"{"{1:":"x","2":"y"}"#);
    }

    #[test]
    fn handles_escapes() {
        // An escaped quote does not end the string; an escaped backslash does not escape.
        assert_eq!(q(r#"{"a\",{1:":"v",3:"w"}"#), r#"{"a\",{1:":"v","3":"w"}"#);
        assert_eq!(q(r#"{"a\\",4:"v"}"#), r#"{"a\\","4":"v"}"#);
        assert_eq!(q(r#"{"a\\":{7:"\"{8:"}}"#), r#"{"a\\":{"7":"\"{8:"}}"#);
    }

    #[test]
    fn nested_objects() {
        assert_eq!(
            q(r#"{"t":{"b":{"brokerAddrs":{0:"x",1:"y"}},"c":{9:{10:"z"}}}}"#),
            r#"{"t":{"b":{"brokerAddrs":{"0":"x","1":"y"}},"c":{"9":{"10":"z"}}}}"#
        );
    }

    #[test]
    fn lone_minus_and_garbage_pass_through() {
        assert_eq!(q("{-:1}"), "{-:1}");
        assert_eq!(q("{"), "{");
        assert_eq!(q("{1"), r#"{"1""#);
        assert_eq!(q(r#""unterminated {1:2"#), r#""unterminated {1:2"#);
    }

    #[test]
    fn decode_json_accepts_unquoted_integer_keys() {
        let m: BTreeMap<i64, String> = decode_json("map", br#"{0:"a",-1:"b"}"#).unwrap();
        assert_eq!(m.get(&0).map(String::as_str), Some("a"));
        assert_eq!(m.get(&-1).map(String::as_str), Some("b"));
    }

    #[test]
    fn decode_json_reports_what() {
        let err = decode_json::<BTreeMap<String, String>>("KVTable", b"{\"a\":").unwrap_err();
        assert!(matches!(
            err,
            ProtocolError::InvalidJson {
                what: "KVTable",
                ..
            }
        ));
        let err = decode_json::<BTreeMap<String, String>>("KVTable", b"\xff\xfe").unwrap_err();
        assert!(matches!(err, ProtocolError::InvalidJson { .. }));
    }

    #[test]
    fn encode_json_is_compact() {
        let mut m = BTreeMap::new();
        m.insert(0i64, "a".to_owned());
        assert_eq!(encode_json(&m), br#"{"0":"a"}"#);
    }

    proptest! {
        #[test]
        fn decode_json_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_json::<serde_json::Value>("fuzz", &bytes);
        }

        #[test]
        fn rewriter_never_panics_on_json_like_text(text in "[{}\\[\\]:,\"\\\\0-9a -]{0,64}") {
            let fixed = quote_bare_int_keys(text.as_bytes());
            prop_assert!(fixed.len() >= text.len());
            let _ = decode_json::<serde_json::Value>("fuzz", text.as_bytes());
        }

        #[test]
        fn rewriting_is_identity_on_standard_json(
            m in proptest::collection::btree_map(any::<i64>(), ".{0,8}", 0..6)
        ) {
            let bytes = encode_json(&m);
            let fixed = quote_bare_int_keys(&bytes);
            prop_assert_eq!(fixed.as_ref(), bytes.as_slice());
            let back: BTreeMap<i64, String> = decode_json("map", &bytes).unwrap();
            prop_assert_eq!(back, m);
        }
    }
}
