//! Every sample under `conf/dledger*/` parses without warnings and describes a runnable
//! set of groups on one machine: the same peers within a group, one node per id, no port
//! or directory used twice.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use raftmq_broker::BrokerConfig;

fn sample_dirs() -> Vec<PathBuf> {
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&conf)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("dledger"))
        })
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn every_sample_parses_and_the_groups_fit_on_one_machine() {
    let dirs = sample_dirs();
    assert_eq!(dirs.len(), 2, "conf/dledger and conf/dledger2: {dirs:?}");
    let mut ports = BTreeSet::new();
    let mut stores = BTreeSet::new();
    let mut groups = BTreeSet::new();
    for dir in dirs {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "conf"))
            .collect();
        files.sort();
        assert_eq!(files.len(), 3, "{dir:?}");
        let mut first: Option<BrokerConfig> = None;
        for (i, file) in files.iter().enumerate() {
            let text = std::fs::read_to_string(file).unwrap();
            let (cfg, warnings) = BrokerConfig::from_properties(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            assert!(warnings.is_empty(), "{}: {warnings:?}", file.display());
            let name = file.file_stem().unwrap().to_str().unwrap();
            assert_eq!(name, format!("broker-n{i}"));
            assert_eq!(cfg.self_index(), i as u64, "{name}");
            assert_eq!(cfg.dledger_peers.self_peer().id, format!("n{i}"));
            assert_eq!(cfg.follower_broker_id(), i as u64 + 1);
            assert_eq!(
                cfg.raft_peers().keys().copied().collect::<Vec<_>>(),
                vec![0, 1, 2]
            );
            assert_eq!(cfg.broker_cluster_name, "RaftCluster");
            assert_eq!(cfg.dledger_group, cfg.broker_name);
            assert_eq!(cfg.namesrv_addr, vec!["127.0.0.1:9876"]);
            // Client port, VIP port (listenPort - 2) and raft port are free on the machine.
            for port in [
                cfg.listen_port,
                cfg.listen_port - 2,
                cfg.raft_self_addr()
                    .rsplit_once(':')
                    .unwrap()
                    .1
                    .parse()
                    .unwrap(),
            ] {
                assert!(ports.insert(port), "{name}: port {port} used twice");
            }
            assert!(stores.insert(cfg.store_path_root_dir.clone()), "{name}");
            assert!(cfg.store_path_root_dir.starts_with("/tmp/raftmq"));
            let (back, _) = BrokerConfig::from_properties(&cfg.to_properties()).unwrap();
            assert_eq!(back, cfg);
            match &first {
                None => {
                    assert!(groups.insert(cfg.broker_name.clone()), "group name reused");
                    first = Some(cfg);
                }
                Some(f) => {
                    assert_eq!(cfg.broker_name, f.broker_name, "{name}");
                    assert_eq!(cfg.raft_peers(), f.raft_peers(), "{name}");
                }
            }
        }
    }
    assert_eq!(
        groups.into_iter().collect::<Vec<_>>(),
        vec!["RaftNode00", "RaftNode01"]
    );
}
