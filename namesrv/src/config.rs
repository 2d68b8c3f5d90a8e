//! `mqnamesrv -c <file>`: NameServer configuration with RocketMQ's key names.
//!
//! Parse, validate, type — loud on mistakes: an unknown key is a warning (returned to
//! the caller to log), a bad value is an error naming key and line.

use std::net::IpAddr;
use std::path::PathBuf;

use raftmq_protocol::config_file::{parse_properties, ConfigEntry};
use raftmq_protocol::ProtocolError;

/// Effective NameServer configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamesrvConfig {
    /// `listenPort`: TCP port for clients and brokers (default 9876; 0 = any free port).
    pub listen_port: u16,
    /// `bindAddress`: interface to listen on (default 0.0.0.0).
    pub bind_address: IpAddr,
    /// `scanNotActiveBrokerInterval`: how often expired brokers are dropped, ms (default 5000).
    pub scan_not_active_broker_interval_ms: u64,
    /// `kvConfigPath`: where PUT_KV_CONFIG values persist; empty = memory only.
    pub kv_config_path: Option<PathBuf>,
    /// `orderMessageEnable`: add `orderTopicConf` from the KV store to routes.
    pub order_message_enable: bool,
    /// `enableTopicList`: answer GET_ALL_TOPIC_LIST_FROM_NAMESERVER (default true).
    pub enable_topic_list: bool,
}

impl Default for NamesrvConfig {
    fn default() -> Self {
        NamesrvConfig {
            listen_port: 9876,
            bind_address: IpAddr::from([0, 0, 0, 0]),
            scan_not_active_broker_interval_ms: 5000,
            kv_config_path: None,
            order_message_enable: false,
            enable_topic_list: true,
        }
    }
}

/// A key the file set that this NameServer does not know (to be logged as a warning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKey {
    /// Line number.
    pub line: usize,
    /// The key.
    pub key: String,
}

impl NamesrvConfig {
    /// Parses properties text; returns the config and the unknown keys it ignored.
    pub fn from_properties(text: &str) -> Result<(Self, Vec<UnknownKey>), ProtocolError> {
        let mut cfg = NamesrvConfig::default();
        let mut unknown = Vec::new();
        for e in parse_properties(text)? {
            cfg.apply(&e, &mut unknown)?;
        }
        if cfg.scan_not_active_broker_interval_ms == 0 {
            return Err(ProtocolError::Config {
                line: 0,
                key: "scanNotActiveBrokerInterval".into(),
                reason: "must be at least 1 ms".into(),
            });
        }
        Ok((cfg, unknown))
    }

    fn apply(
        &mut self,
        e: &ConfigEntry,
        unknown: &mut Vec<UnknownKey>,
    ) -> Result<(), ProtocolError> {
        match e.key.as_str() {
            "listenPort" => self.listen_port = e.parse()?,
            "bindAddress" => self.bind_address = e.parse()?,
            "scanNotActiveBrokerInterval" => self.scan_not_active_broker_interval_ms = e.parse()?,
            "kvConfigPath" => {
                self.kv_config_path = (!e.value.is_empty()).then(|| PathBuf::from(&e.value));
            }
            "orderMessageEnable" => self.order_message_enable = e.parse_bool()?,
            "enableTopicList" => self.enable_topic_list = e.parse_bool()?,
            _ => unknown.push(UnknownKey {
                line: e.line,
                key: e.key.clone(),
            }),
        }
        Ok(())
    }

    /// The effective configuration as `key=value` lines (what `-p` prints).
    pub fn to_properties(&self) -> String {
        let kv = self
            .kv_config_path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        format!(
            "listenPort={}\nbindAddress={}\nscanNotActiveBrokerInterval={}\nkvConfigPath={}\norderMessageEnable={}\nenableTopicList={}\n",
            self.listen_port,
            self.bind_address,
            self.scan_not_active_broker_interval_ms,
            kv,
            self.order_message_enable,
            self.enable_topic_list
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let (cfg, unknown) = NamesrvConfig::from_properties(
            "listenPort=19876\nscanNotActiveBrokerInterval=1000\norderMessageEnable=true\nrocketmqHome=/x\n",
        )
        .unwrap();
        assert_eq!(cfg.listen_port, 19876);
        assert_eq!(cfg.scan_not_active_broker_interval_ms, 1000);
        assert!(cfg.order_message_enable);
        assert_eq!(
            unknown,
            vec![UnknownKey {
                line: 4,
                key: "rocketmqHome".into()
            }]
        );
        let (back, _) = NamesrvConfig::from_properties(&cfg.to_properties()).unwrap();
        assert_eq!(back, cfg);
    }

    #[test]
    fn bad_values_name_key_and_line() {
        let err = NamesrvConfig::from_properties("# c\nlistenPort=70000\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 2") && err.contains("listenPort"),
            "{err}"
        );
        let err = NamesrvConfig::from_properties("enableTopicList=yes")
            .unwrap_err()
            .to_string();
        assert!(err.contains("enableTopicList"), "{err}");
        assert!(NamesrvConfig::from_properties("scanNotActiveBrokerInterval=0").is_err());
        assert!(NamesrvConfig::from_properties("bindAddress=nowhere").is_err());
    }
}
