//! The configuration files the playground writes: the repository's samples
//! (`conf/namesrv.conf`, `conf/dledger/broker-n*.conf`) with the keys that depend on the
//! chosen ports and data directory replaced, so every other key and comment stays the
//! sample's.

use std::path::Path;

use raftmq_protocol::config_file::parse_properties;

/// Nodes in the playground's broker group.
pub const NODES: usize = 3;
/// The broker group (= raft group) name, as in `conf/dledger/`.
pub const GROUP: &str = "RaftNode00";

const NAMESRV_SAMPLE: &str = include_str!("../../../conf/namesrv.conf");
const BROKER_SAMPLES: [&str; NODES] = [
    include_str!("../../../conf/dledger/broker-n0.conf"),
    include_str!("../../../conf/dledger/broker-n1.conf"),
    include_str!("../../../conf/dledger/broker-n2.conf"),
];

/// Every port of one playground.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// The NameServer's port.
    pub namesrv: u16,
    /// Each node's client (remoting) port, `listenPort`.
    pub client: [u16; NODES],
    /// Each node's raft port, in `dLegerPeers`.
    pub raft: [u16; NODES],
}

/// The ports of `conf/namesrv.conf` and `conf/dledger/`.
pub const DEFAULT_PORTS: Ports = Ports {
    namesrv: 9876,
    client: [30911, 30921, 30931],
    raft: [40911, 40912, 40913],
};

impl Ports {
    /// The NameServer's address as clients and brokers use it.
    pub fn namesrv_addr(&self) -> String {
        format!("127.0.0.1:{}", self.namesrv)
    }

    /// Node `node`'s client address.
    pub fn client_addr(&self, node: usize) -> String {
        format!("127.0.0.1:{}", self.client[node])
    }
}

/// `namesrv.conf` for a NameServer on loopback port `port`.
pub fn namesrv_conf(port: u16) -> String {
    override_keys(
        "conf/namesrv.conf",
        NAMESRV_SAMPLE,
        &[
            ("listenPort", port.to_string()),
            ("bindAddress", "127.0.0.1".to_owned()),
        ],
    )
}

/// `broker-n<node>.conf` for node `node` storing under `store_dir` (a value checked by
/// [`path_value`]).
pub fn broker_conf(node: usize, ports: &Ports, store_dir: &str) -> String {
    let peers: Vec<String> = (0..NODES)
        .map(|i| format!("n{i}-127.0.0.1:{}", ports.raft[i]))
        .collect();
    override_keys(
        &format!("conf/dledger/broker-n{node}.conf"),
        BROKER_SAMPLES[node],
        &[
            ("brokerName", GROUP.to_owned()),
            ("listenPort", ports.client[node].to_string()),
            ("namesrvAddr", ports.namesrv_addr()),
            ("brokerIP1", "127.0.0.1".to_owned()),
            ("storePathRootDir", store_dir.to_owned()),
            ("enableDLegerCommitLog", "true".to_owned()),
            ("dLegerGroup", GROUP.to_owned()),
            ("dLegerPeers", peers.join(";")),
            ("dLegerSelfId", format!("n{node}")),
            (
                "serverWorkerThreads",
                worker_threads_per_node(cores()).to_string(),
            ),
        ],
    )
}

/// Cores of this machine (1 if unknown).
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// `serverWorkerThreads` for each of the [`NODES`] brokers sharing a machine of `cores`
/// cores: a share each, at least one. With one thread per core in every node, idle
/// threads are woken to steal work all the time (measured on 2 cores: 8-20 % fewer
/// messages per second; BENCHMARKS.md, issue 5 fifth pass).
pub fn worker_threads_per_node(cores: usize) -> usize {
    (cores / NODES).max(1)
}

/// `path` as a config value, or why it cannot be one (properties values are trimmed and a
/// trailing `\` continues the line).
pub fn path_value(path: &Path) -> Result<String, String> {
    let s = path
        .to_str()
        .ok_or_else(|| format!("{} is not valid UTF-8", path.display()))?;
    let round_trips = !s.contains(['\n', '\r'])
        && s.trim() == s
        && !s.ends_with('\\')
        && parse_properties(&format!("k={s}"))
            .ok()
            .is_some_and(|e| e.len() == 1 && e[0].value == s);
    if round_trips {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "the path {s:?} cannot be written into a config file (line breaks, surrounding \
             blanks or a trailing backslash)"
        ))
    }
}

/// `template` with the values of `overrides` in place of its own (keys it lacks are
/// appended), under a line saying where it came from.
fn override_keys(origin: &str, template: &str, overrides: &[(&str, String)]) -> String {
    let mut out = format!(
        "# Written by `mqadmin playground` from {origin} at every start: edits are lost.\n"
    );
    out.push_str(&replace_keys(template, overrides));
    out
}

/// `template` (a properties file) with the values of `overrides` in place of its own; keys
/// it lacks are appended, comments and every other line are kept.
pub fn replace_keys<K: AsRef<str>, V: AsRef<str>>(template: &str, overrides: &[(K, V)]) -> String {
    let mut out = String::new();
    let mut seen = vec![false; overrides.len()];
    for line in template.lines() {
        let trimmed = line.trim_start();
        let key = if trimmed.starts_with(['#', '!']) {
            None
        } else {
            trimmed.split(['=', ':']).next().map(str::trim)
        };
        match key.and_then(|k| overrides.iter().position(|(o, _)| o.as_ref() == k)) {
            Some(i) => {
                if !seen[i] {
                    let (k, v) = &overrides[i];
                    out.push_str(&format!("{}={}\n", k.as_ref(), v.as_ref()));
                }
                seen[i] = true;
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    for ((key, value), _) in overrides.iter().zip(&seen).filter(|(_, s)| !**s) {
        out.push_str(&format!("{}={}\n", key.as_ref(), value.as_ref()));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn entries(text: &str) -> BTreeMap<String, String> {
        let list = parse_properties(text).unwrap();
        let map: BTreeMap<_, _> = list
            .iter()
            .map(|e| (e.key.clone(), e.value.clone()))
            .collect();
        assert_eq!(map.len(), list.len(), "a key is written twice:\n{text}");
        map
    }

    const PORTS: Ports = Ports {
        namesrv: 19876,
        client: [1001, 1002, 1003],
        raft: [2001, 2002, 2003],
    };

    #[test]
    fn namesrv_conf_is_the_sample_on_loopback_with_the_chosen_port() {
        let text = namesrv_conf(19876);
        let mut want = entries(NAMESRV_SAMPLE);
        want.insert("listenPort".into(), "19876".into());
        want.insert("bindAddress".into(), "127.0.0.1".into());
        assert_eq!(entries(&text), want);
        assert!(text.starts_with("# Written by `mqadmin playground` from conf/namesrv.conf"));
    }

    #[test]
    fn broker_conf_keeps_the_sample_keys_and_sets_ports_peers_and_store() {
        for (node, sample) in BROKER_SAMPLES.iter().enumerate() {
            let text = broker_conf(node, &PORTS, "/data/pg/broker-n1");
            let got = entries(&text);
            let mut want = entries(sample);
            for (k, v) in [
                ("listenPort", PORTS.client[node].to_string()),
                ("namesrvAddr", "127.0.0.1:19876".to_owned()),
                ("storePathRootDir", "/data/pg/broker-n1".to_owned()),
                (
                    "dLegerPeers",
                    "n0-127.0.0.1:2001;n1-127.0.0.1:2002;n2-127.0.0.1:2003".to_owned(),
                ),
                (
                    "serverWorkerThreads",
                    worker_threads_per_node(cores()).to_string(),
                ),
            ] {
                assert_ne!(want.get(k), Some(&v), "{k} should differ from the sample");
                want.insert(k.to_owned(), v);
            }
            assert_eq!(got, want, "node {node}");
            assert_eq!(got["dLegerSelfId"], format!("n{node}"));
            assert_eq!(got["brokerName"], GROUP);
            assert_eq!(got["enableDLegerCommitLog"], "true");
        }
    }

    #[test]
    fn co_located_nodes_share_the_cores() {
        assert_eq!(worker_threads_per_node(1), 1);
        assert_eq!(worker_threads_per_node(2), 1);
        assert_eq!(worker_threads_per_node(8), 2);
        assert_eq!(worker_threads_per_node(64), 21);
    }

    #[test]
    fn default_ports_are_the_samples() {
        let ns = entries(NAMESRV_SAMPLE);
        assert_eq!(ns["listenPort"], DEFAULT_PORTS.namesrv.to_string());
        for (node, sample) in BROKER_SAMPLES.iter().enumerate() {
            let b = entries(sample);
            assert_eq!(b["listenPort"], DEFAULT_PORTS.client[node].to_string());
            let peers: Vec<String> = (0..NODES)
                .map(|i| format!("n{i}-127.0.0.1:{}", DEFAULT_PORTS.raft[i]))
                .collect();
            assert_eq!(b["dLegerPeers"], peers.join(";"));
            assert_eq!(b["namesrvAddr"], DEFAULT_PORTS.namesrv_addr());
        }
    }

    #[test]
    fn override_keys_replaces_each_key_once_and_appends_missing_ones() {
        let out = override_keys(
            "t",
            "# a=1 in a comment\na=1\n  b : 2\na=3\nc=4\n",
            &[("a", "x".into()), ("b", "y".into()), ("d", "z".into())],
        );
        assert_eq!(
            out,
            "# Written by `mqadmin playground` from t at every start: edits are lost.\n\
             # a=1 in a comment\na=x\nb=y\nc=4\nd=z\n"
        );
    }

    #[test]
    fn path_value_refuses_paths_a_properties_file_would_change() {
        assert_eq!(path_value(Path::new("/tmp/a b/c")).unwrap(), "/tmp/a b/c");
        for bad in ["/tmp/x\n", "/tmp/x ", " /tmp/x", "/tmp/x\\"] {
            let e = path_value(Path::new(bad)).unwrap_err();
            assert!(e.contains("cannot be written into a config file"), "{e}");
        }
    }
}
