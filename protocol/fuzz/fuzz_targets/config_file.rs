//! `config_file::parse_properties` (Java `.properties` text) and the entry value parsers.
//!
//! Round trip: entries written back as `key=value` lines parse to the same keys and values
//! (skipped when a value ends in a backslash, which would read as a continuation, or a key
//! starts with `#`/`!`, which a continuation from an otherwise empty line can produce and
//! which would read as a comment at the start of a line).
#![no_main]

use libfuzzer_sys::fuzz_target;
use raftmq_protocol::config_file::parse_properties;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(entries) = parse_properties(text) else {
        return;
    };
    let lines = text.lines().count();
    let mut last = 0;
    for e in &entries {
        assert!(
            e.line > last && e.line <= lines,
            "line {} after {last}",
            e.line
        );
        last = e.line;
        assert!(!e.key.is_empty());
        assert_eq!(e.key.trim(), e.key);
        assert_eq!(e.value.trim(), e.value);
        let _ = e.parse::<i64>();
        let _ = e.parse::<u16>();
        let _ = e.parse_bool();
    }
    if entries
        .iter()
        .any(|e| e.value.ends_with('\\') || e.key.starts_with(['#', '!']))
    {
        return;
    }
    let written: String = entries
        .iter()
        .map(|e| format!("{}={}\n", e.key, e.value))
        .collect();
    let back = parse_properties(&written).expect("written entries parse");
    let pairs = |v: &[raftmq_protocol::config_file::ConfigEntry]| {
        v.iter()
            .map(|e| (e.key.clone(), e.value.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        pairs(&back),
        pairs(&entries),
        "config round trip\n{written}"
    );
});
