//! Where the NameServers are, in the order RocketMQ clients look: the builder's value,
//! then the `NAMESRV_ADDR` environment variable, then the `rocketmq.namesrv.addr` system
//! property (passed here as a value, since Rust has no `-D` properties).

use std::net::SocketAddr;

use crate::ClientError;

/// Environment variable RocketMQ clients read.
pub const NAMESRV_ADDR_ENV: &str = "NAMESRV_ADDR";
/// Java system property RocketMQ clients read (`-Drocketmq.namesrv.addr=...`).
pub const NAMESRV_ADDR_PROPERTY: &str = "rocketmq.namesrv.addr";

/// Parses `host:port[;host:port...]` (spaces and empty items ignored; names resolve later,
/// so only the `host:port` shape is checked here).
pub fn parse_list(list: &str) -> Result<Vec<String>, ClientError> {
    let addrs: Vec<String> = list
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let well_formed = |a: &String| {
        a.parse::<SocketAddr>().is_ok()
            || a.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && !host.contains(':') && port.parse::<u16>().is_ok()
            })
    };
    if addrs.is_empty() || !addrs.iter().all(well_formed) {
        return Err(ClientError::BadNamesrv(list.to_owned()));
    }
    Ok(addrs)
}

/// The NameServer list from the first source that has one: `builder`, then the
/// environment value, then the property value.
pub fn resolve(
    builder: Option<&str>,
    env: Option<&str>,
    property: Option<&str>,
) -> Result<Vec<String>, ClientError> {
    match [builder, env, property]
        .into_iter()
        .flatten()
        .find(|s| !s.trim().is_empty())
    {
        Some(list) => parse_list(list),
        None => Err(ClientError::NoNamesrv),
    }
}

/// [`resolve`] with the process environment (`NAMESRV_ADDR`).
pub fn resolve_from_env(
    builder: Option<&str>,
    property: Option<&str>,
) -> Result<Vec<String>, ClientError> {
    let env = std::env::var(NAMESRV_ADDR_ENV).ok();
    resolve(builder, env.as_deref(), property)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn lists_parse_and_bad_ones_are_named() {
        assert_eq!(
            parse_list("127.0.0.1:9876; ns2.example:9876 ;").unwrap(),
            vec!["127.0.0.1:9876", "ns2.example:9876"]
        );
        assert_eq!(parse_list("[::1]:9876").unwrap(), vec!["[::1]:9876"]);
        for bad in ["", ";", "127.0.0.1", "host:port", ":9876", "a:99999"] {
            assert_eq!(
                parse_list(bad),
                Err(ClientError::BadNamesrv(bad.to_owned())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_builder_wins_then_the_environment_then_the_property() {
        let b = Some("b:1");
        let e = Some("e:1");
        let p = Some("p:1");
        assert_eq!(resolve(b, e, p).unwrap(), vec!["b:1"]);
        assert_eq!(resolve(None, e, p).unwrap(), vec!["e:1"]);
        assert_eq!(resolve(Some("  "), None, p).unwrap(), vec!["p:1"]);
        assert_eq!(resolve(None, None, None), Err(ClientError::NoNamesrv));
    }
}
