//! The NameServer's KV configuration (PUT/GET/DELETE_KV_CONFIG), e.g. the
//! `ORDER_TOPIC_CONFIG` namespace. Pure: the server persists [`KvConfig::to_json`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Namespace of ordered-topic overrides (`brokerName:queueCount;...`).
pub const ORDER_TOPIC_CONFIG: &str = "ORDER_TOPIC_CONFIG";

/// namespace → key → value, in Java's `kvConfig.json` shape.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KvConfig {
    /// namespace → key → value.
    #[serde(default)]
    pub config_table: BTreeMap<String, BTreeMap<String, String>>,
}

impl KvConfig {
    /// Parses a persisted file.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The persisted form.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// The value of `key` in `namespace`.
    pub fn get(&self, namespace: &str, key: &str) -> Option<&str> {
        self.config_table
            .get(namespace)?
            .get(key)
            .map(String::as_str)
    }

    /// Sets a value; returns true when it changed.
    pub fn put(&mut self, namespace: &str, key: &str, value: &str) -> bool {
        let ns = self.config_table.entry(namespace.to_owned()).or_default();
        ns.insert(key.to_owned(), value.to_owned()).as_deref() != Some(value)
    }

    /// Removes a value; returns true when it existed.
    pub fn delete(&mut self, namespace: &str, key: &str) -> bool {
        let Some(ns) = self.config_table.get_mut(namespace) else {
            return false;
        };
        let existed = ns.remove(key).is_some();
        if ns.is_empty() {
            self.config_table.remove(namespace);
        }
        existed
    }

    /// A whole namespace (for the REGISTER_BROKER reply's KVTable).
    pub fn namespace(&self, namespace: &str) -> BTreeMap<String, String> {
        self.config_table
            .get(namespace)
            .cloned()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn put_get_delete_persist() {
        let mut kv = KvConfig::default();
        assert!(kv.put(ORDER_TOPIC_CONFIG, "T", "broker-a:4"));
        assert!(!kv.put(ORDER_TOPIC_CONFIG, "T", "broker-a:4"));
        assert_eq!(kv.get(ORDER_TOPIC_CONFIG, "T"), Some("broker-a:4"));
        let back = KvConfig::from_json(&kv.to_json()).unwrap();
        assert_eq!(back, kv);
        assert!(kv.delete(ORDER_TOPIC_CONFIG, "T"));
        assert!(!kv.delete(ORDER_TOPIC_CONFIG, "T"));
        assert!(kv.config_table.is_empty());
    }
}
