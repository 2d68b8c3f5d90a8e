//! Value parsers and checks for single broker.conf values.
//!
//! Two kinds: `parse_*` turn the text of one entry into a typed value (syntax; the error
//! names the entry's key and line), `check_*` judge a typed value (ranges, allowed
//! characters) and return a reason the caller wraps with the key and line, so
//! [`super::BrokerConfig::validate`] can re-run them on a config built in code.

use std::collections::HashMap;
use std::fmt::Display;
use std::net::{IpAddr, Ipv6Addr};
use std::ops::RangeInclusive;
use std::path::Path;

use raftmq_protocol::config_file::ConfigEntry;
use raftmq_protocol::ProtocolError;
use raftmq_raft::log_store::FlushPolicy;

/// Longest cluster, broker or group name accepted (RocketMQ's topic-name limit).
pub const NAME_BYTES_MAX: usize = 127;

/// Longest host name accepted in a `host:port` address (DNS limit).
const HOST_BYTES_MAX: usize = 253;

/// A config error naming key and line (line 0: not from a line of the file).
pub(crate) fn config_err(line: usize, key: &str, reason: impl Into<String>) -> ProtocolError {
    ProtocolError::Config {
        line,
        key: key.to_owned(),
        reason: reason.into(),
    }
}

/// A config error for one entry of the file.
pub(crate) fn entry_err(e: &ConfigEntry, reason: impl Into<String>) -> ProtocolError {
    config_err(e.line, &e.key, reason)
}

/// Where each key was set, so errors found after parsing can still name the line.
#[derive(Debug, Default)]
pub(crate) struct KeyLines(HashMap<&'static str, usize>);

impl KeyLines {
    /// Records that `key` was set on `line`.
    pub(crate) fn set(&mut self, key: &'static str, line: usize) {
        self.0.insert(key, line);
    }

    /// The line `key` was set on, if the file set it.
    pub(crate) fn line(&self, key: &str) -> Option<usize> {
        self.0.get(key).copied()
    }

    /// An error naming `key` and its line (0 when the file did not set it).
    pub(crate) fn err(&self, key: &str, reason: impl Into<String>) -> ProtocolError {
        config_err(self.line(key).unwrap_or(0), key, reason)
    }

    /// [`KeyLines::err`] for `key`, as a closure for `map_err`.
    pub(crate) fn at<'a>(&'a self, key: &'a str) -> impl Fn(String) -> ProtocolError + 'a {
        move |reason| self.err(key, reason)
    }
}

/// `Err(reason)` unless `value` lies in `range`; `unit` is appended to the numbers.
pub(crate) fn check_range<T: PartialOrd + Display>(
    value: T,
    range: RangeInclusive<T>,
    unit: &str,
) -> Result<(), String> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "{value}{unit} is outside {}{unit}..={}{unit}",
            range.start(),
            range.end()
        ))
    }
}

/// Checks a cluster, broker or raft group name: 1..=127 bytes of letters, digits and
/// `-_.%|` (what RocketMQ accepts in topic names; no spaces, no separators).
pub(crate) fn check_name(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    if value.len() > NAME_BYTES_MAX {
        return Err(format!("is {} bytes, limit {NAME_BYTES_MAX}", value.len()));
    }
    match value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.%|".contains(*c)))
    {
        Some(c) => Err(format!(
            "character {c:?} in {value:?} is not allowed: use letters, digits and - _ . % |"
        )),
        None => Ok(()),
    }
}

/// Checks `storePathRootDir`: not empty, and no `~` (nothing expands it; Java neither).
pub(crate) fn check_store_path(path: &Path) -> Result<(), String> {
    let text = path.to_string_lossy();
    if text.is_empty() {
        return Err("must not be empty".into());
    }
    if text.starts_with('~') {
        return Err(format!(
            "{text:?} starts with `~`, which is not expanded: write the full path"
        ));
    }
    Ok(())
}

/// Parses and normalizes one `host:port` address: a host name, an IPv4 address or a
/// bracketed IPv6 address (`[::1]:9876`), and a port in 1..=65535. The unspecified
/// addresses (`0.0.0.0`, `[::]`) are refused: these addresses are dialed by others.
pub fn parse_host_port(text: &str) -> Result<String, String> {
    let text = text.trim();
    let (host, port) = match text.strip_prefix('[') {
        Some(rest) => {
            let (host, port) = rest
                .split_once("]:")
                .ok_or_else(|| format!("{text:?} is not [ipv6]:port"))?;
            let ip: Ipv6Addr = host
                .parse()
                .map_err(|_| format!("{host:?} in {text:?} is not an IPv6 address"))?;
            (IpHost::Ip(IpAddr::V6(ip)), port)
        }
        None => {
            let (host, port) = text
                .rsplit_once(':')
                .ok_or_else(|| format!("{text:?} is not host:port"))?;
            if host.contains(':') {
                return Err(format!(
                    "{text:?}: an IPv6 address needs brackets, as in [::1]:9876"
                ));
            }
            match host.parse::<IpAddr>() {
                Ok(ip) => (IpHost::Ip(ip), port),
                Err(_) => {
                    check_host_name(host).map_err(|r| format!("{text:?}: {r}"))?;
                    (IpHost::Name(host), port)
                }
            }
        }
    };
    let port: u16 = port
        .parse()
        .map_err(|_| format!("port {port:?} in {text:?} is not a number in 1..=65535"))?;
    if port == 0 {
        return Err(format!(
            "port 0 in {text:?}: a dialed address needs a real port"
        ));
    }
    match host {
        IpHost::Ip(ip) if ip.is_unspecified() => Err(format!(
            "{text:?}: the unspecified address {ip} cannot be dialed"
        )),
        IpHost::Ip(IpAddr::V6(ip)) => Ok(format!("[{ip}]:{port}")),
        IpHost::Ip(IpAddr::V4(ip)) => Ok(format!("{ip}:{port}")),
        IpHost::Name(name) => Ok(format!("{name}:{port}")),
    }
}

enum IpHost<'a> {
    Ip(IpAddr),
    Name(&'a str),
}

fn check_host_name(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("empty host".into());
    }
    if host.len() > HOST_BYTES_MAX {
        return Err(format!(
            "host is {} bytes, limit {HOST_BYTES_MAX}",
            host.len()
        ));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && !l.starts_with('-')
            && l.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if host.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(format!("{host:?} is not a host name or IP address"))
    }
}

/// Splits a `;`-separated list, trimming each item. One trailing `;` is tolerated (Java's
/// `split` drops it); any other empty item is an error.
pub(crate) fn split_list(value: &str) -> Result<Vec<&str>, String> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(Vec::new());
    }
    let value = value.strip_suffix(';').unwrap_or(value);
    value
        .split(';')
        .map(str::trim)
        .map(|item| {
            if item.is_empty() {
                Err(format!("empty item in {value:?}"))
            } else {
                Ok(item)
            }
        })
        .collect()
}

/// Parses an address list (`namesrvAddr`, `-n`): `host:port;host:port`, each checked
/// with [`parse_host_port`], none twice. An empty value is an empty list.
pub(crate) fn parse_addr_list(value: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for item in split_list(value)? {
        let addr = parse_host_port(item)?;
        if out.iter().any(|a| a.eq_ignore_ascii_case(&addr)) {
            return Err(format!("{addr} is listed twice"));
        }
        out.push(addr);
    }
    Ok(out)
}

/// Parses `deleteWhen`: hours of the day as `04` or `04;16` (syntax only; see
/// [`check_delete_when`]).
pub(crate) fn parse_delete_when(e: &ConfigEntry) -> Result<Vec<u8>, ProtocolError> {
    let items = split_list(&e.value).map_err(|r| entry_err(e, r))?;
    items
        .into_iter()
        .map(|item| {
            if item.len() > 2 || !item.bytes().all(|b| b.is_ascii_digit()) {
                return Err(entry_err(
                    e,
                    format!("{item:?} is not an hour of the day (00..23)"),
                ));
            }
            item.parse::<u8>()
                .map_err(|err| entry_err(e, format!("{item:?}: {err}")))
        })
        .collect()
}

/// Checks `deleteWhen` hours: at least one, each in 0..=23 and listed once.
pub(crate) fn check_delete_when(hours: &[u8]) -> Result<(), String> {
    if hours.is_empty() {
        return Err("needs at least one hour of the day, as in 04 or 04;16".into());
    }
    for (i, h) in hours.iter().enumerate() {
        if *h > 23 {
            return Err(format!("hour {h} is outside 00..23"));
        }
        if hours[..i].contains(h) {
            return Err(format!("hour {h:02} is listed twice"));
        }
    }
    Ok(())
}

/// Formats `deleteWhen` hours as RocketMQ writes them (`04;16`).
pub(crate) fn format_delete_when(hours: &[u8]) -> String {
    hours
        .iter()
        .map(|h| format!("{h:02}"))
        .collect::<Vec<_>>()
        .join(";")
}

/// Parses `flushDiskType` (`SYNC_FLUSH` or `ASYNC_FLUSH`, any case).
pub(crate) fn parse_flush(e: &ConfigEntry) -> Result<FlushPolicy, ProtocolError> {
    match e.value.to_ascii_uppercase().as_str() {
        "SYNC_FLUSH" => Ok(FlushPolicy::Sync),
        "ASYNC_FLUSH" => Ok(FlushPolicy::Async),
        _ => Err(entry_err(
            e,
            format!(
                "invalid value {:?}: expected SYNC_FLUSH or ASYNC_FLUSH",
                e.value
            ),
        )),
    }
}

/// The `flushDiskType` spelling of a flush policy.
pub(crate) fn flush_name(policy: FlushPolicy) -> &'static str {
    match policy {
        FlushPolicy::Sync => "SYNC_FLUSH",
        FlushPolicy::Async => "ASYNC_FLUSH",
    }
}

/// Checks `brokerRole` (accepted for compatibility, then ignored).
pub(crate) fn parse_broker_role(e: &ConfigEntry) -> Result<(), ProtocolError> {
    match e.value.to_ascii_uppercase().as_str() {
        "ASYNC_MASTER" | "SYNC_MASTER" | "SLAVE" => Ok(()),
        _ => Err(entry_err(
            e,
            format!(
                "invalid value {:?}: expected ASYNC_MASTER, SYNC_MASTER or SLAVE",
                e.value
            ),
        )),
    }
}

/// Checks `brokerPermission`: a combination of 2 (write), 4 (read) and 8 (priority).
pub(crate) fn check_permission(perm: u8) -> Result<(), String> {
    if perm & !0b1110 == 0 {
        Ok(())
    } else {
        Err(format!(
            "{perm} is not a sum of 2 (write), 4 (read) and 8 (priority); 6 = read and write"
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn host_port_forms() {
        assert_eq!(parse_host_port("127.0.0.1:9876").unwrap(), "127.0.0.1:9876");
        assert_eq!(
            parse_host_port(" ns-1.svc:09876 ").unwrap(),
            "ns-1.svc:9876"
        );
        assert_eq!(parse_host_port("[::1]:9876").unwrap(), "[::1]:9876");
        for bad in [
            "9876",
            "host:",
            ":9876",
            "host:0",
            "host:65536",
            "::1:9876",
            "[::1]9876",
            "[nope]:1",
            "0.0.0.0:9876",
            "[::]:9876",
            "bad host:1",
            "a..b:1",
            "-a:1",
        ] {
            assert!(parse_host_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lists() {
        assert_eq!(split_list("").unwrap(), Vec::<&str>::new());
        assert_eq!(split_list("a; b;").unwrap(), vec!["a", "b"]);
        assert!(split_list("a;;b").is_err());
        assert!(split_list(";").is_err());
        assert!(parse_addr_list("a:1;A:1").is_err());
        assert_eq!(parse_addr_list("a:1;b:2").unwrap(), vec!["a:1", "b:2"]);
    }

    #[test]
    fn names_and_hours() {
        assert!(check_name("RaftNode00").is_ok());
        assert!(check_name("broker-a_1.x%|y").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name("a;b").is_err());
        assert!(check_name(&"x".repeat(NAME_BYTES_MAX + 1)).is_err());
        assert!(check_delete_when(&[4, 16]).is_ok());
        assert!(check_delete_when(&[]).is_err());
        assert!(check_delete_when(&[24]).is_err());
        assert!(check_delete_when(&[4, 4]).is_err());
        assert_eq!(format_delete_when(&[4, 16]), "04;16");
        assert!(check_permission(6).is_ok());
        assert!(check_permission(1).is_err());
        assert!(check_range(5u32, 1..=4, " ms")
            .unwrap_err()
            .contains("1 ms..=4 ms"));
    }
}
