//! Java `.properties` text as RocketMQ's `-c` config files are written.
//!
//! Pure parsing: the caller reads the file. Each entry keeps its line number so a
//! bad value can be refused naming key and line (STYLE habit 13).

use crate::error::{ProtocolError, Result};

/// One `key=value` entry of a properties file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// 1-based line number where the entry starts.
    pub line: usize,
    /// The key, trimmed.
    pub key: String,
    /// The value, trimmed of surrounding whitespace.
    pub value: String,
}

/// Parses properties text: `key=value` or `key: value` or `key value`, `#`/`!` comments,
/// blank lines, and `\` line continuations. A line with a key but no separator and no
/// value is an error (almost always a typo in a hand-written file).
pub fn parse_properties(text: &str) -> Result<Vec<ConfigEntry>> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((idx, raw)) = lines.next() {
        let start_line = idx + 1;
        let mut logical = raw.trim_start().to_owned();
        if logical.is_empty() || logical.starts_with('#') || logical.starts_with('!') {
            continue;
        }
        while ends_with_continuation(&logical) {
            logical.pop();
            match lines.next() {
                Some((_, next)) => logical.push_str(next.trim_start()),
                None => break,
            }
        }
        let sep = logical.find(['=', ':']);
        let (key, value) = match sep {
            Some(pos) => (&logical[..pos], &logical[pos + 1..]),
            None => match logical.find(char::is_whitespace) {
                Some(pos) => (&logical[..pos], &logical[pos..]),
                None => {
                    return Err(ProtocolError::Config {
                        line: start_line,
                        key: logical.trim().to_owned(),
                        reason: "no value: expected `key=value`".into(),
                    })
                }
            },
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(ProtocolError::Config {
                line: start_line,
                key: String::new(),
                reason: "empty key".into(),
            });
        }
        out.push(ConfigEntry {
            line: start_line,
            key: key.to_owned(),
            value: value.trim().to_owned(),
        });
    }
    Ok(out)
}

fn ends_with_continuation(s: &str) -> bool {
    let trailing = s.bytes().rev().take_while(|b| *b == b'\\').count();
    trailing % 2 == 1
}

impl ConfigEntry {
    /// Parses the value as `T`, or an error naming key, line and value.
    pub fn parse<T: std::str::FromStr>(&self) -> Result<T>
    where
        T::Err: std::fmt::Display,
    {
        self.value.parse::<T>().map_err(|e| ProtocolError::Config {
            line: self.line,
            key: self.key.clone(),
            reason: format!("invalid value {:?}: {e}", self.value),
        })
    }

    /// Parses a Java boolean strictly (`true`/`false`, any case).
    pub fn parse_bool(&self) -> Result<bool> {
        match self.value.to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(ProtocolError::Config {
                line: self.line,
                key: self.key.clone(),
                reason: format!("invalid value {:?}: expected true or false", self.value),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_common_forms() {
        let text = "# comment\n! other\n\nlistenPort=9876\nbrokerName : broker-a\nkey value with spaces\nmulti=a;\\\n   b\nempty=\n";
        let e = parse_properties(text).unwrap();
        let kv: Vec<_> = e
            .iter()
            .map(|e| (e.line, e.key.as_str(), e.value.as_str()))
            .collect();
        assert_eq!(
            kv,
            vec![
                (4, "listenPort", "9876"),
                (5, "brokerName", "broker-a"),
                (6, "key", "value with spaces"),
                (7, "multi", "a;b"),
                (9, "empty", ""),
            ]
        );
        assert_eq!(e[0].parse::<u16>().unwrap(), 9876);
    }

    #[test]
    fn bad_value_names_key_and_line() {
        let e = parse_properties("\nlistenPort=98x76\n").unwrap();
        let err = e[0].parse::<u16>().unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        assert!(err.to_string().contains("listenPort"), "{err}");
        let bad = parse_properties("a=1\nlonelykey\n").unwrap_err();
        assert!(bad.to_string().contains("line 2"));
        assert!(parse_properties("x=maybe").unwrap()[0]
            .parse_bool()
            .is_err());
    }
}
