//! Tag hash used as the consume-queue tag code and in subscription `codeSet`s (spec §3.5).

/// Java `String.hashCode()`: `h = 31*h + c` over UTF-16 code units, wrapping.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// Consume-queue tag code: the tag's Java hash sign-extended to 64 bits; 0 without a tag.
pub fn tag_code(tags: Option<&str>) -> i64 {
    match tags {
        Some(t) if !t.is_empty() => i64::from(java_string_hash(t)),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_java() {
        assert_eq!(java_string_hash("TagA"), 2598919);
        assert_eq!(tag_code(Some("TagA")), 0x27a807);
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(tag_code(None), 0);
        assert_eq!(tag_code(Some("")), 0);
        // Values checked against Java: overflow wraps, results may be negative.
        assert_eq!(java_string_hash("hello world"), 1794106052);
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(tag_code(Some("polygenelubricants")), i64::from(i32::MIN));
        // A non-BMP char hashes as its two UTF-16 surrogates: 0xD83D, 0xDE00.
        assert_eq!(java_string_hash("\u{1F600}"), 0xD83D * 31 + 0xDE00);
    }
}
