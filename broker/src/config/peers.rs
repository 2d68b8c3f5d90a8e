//! `dLegerPeers` and `dLegerSelfId`: the voters of this node's raft group.
//!
//! RocketMQ's syntax, unchanged: `n0-127.0.0.1:40911;n1-127.0.0.1:40912;n2-127.0.0.1:40913`,
//! each item `<id>-<host>:<port>` split at the first `-` (so host names may contain `-`).
//! Ids are `n<digits>` as DLedger requires. The raft node id of a peer is the number in its
//! id (`n0` → 0), not its position in the list: that is how DLedger derives broker ids
//! (follower brokerId = number + 1), it makes the order of the list irrelevant (each node's
//! file may list the peers differently), and it keeps every node's identity stable when a
//! peer is removed from or added to the list. For the usual `n0;n1;n2` list the number and
//! the position agree.

use std::collections::BTreeMap;
use std::fmt;

use raftmq_protocol::ProtocolError;

use super::values::{config_err, parse_host_port, split_list};

/// Most voters one group may list (raft groups are 3, sometimes 5; more only slows commits).
pub const DLEDGER_PEERS_MAX: usize = 9;

/// One voter of the group, from one item of `dLegerPeers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DLedgerPeer {
    /// The id as written, `n<digits>` (e.g. `n0`); `dLegerSelfId` names one of these.
    pub id: String,
    /// The raft node id: the number in `id` (`n0` → 0). Also the follower brokerId - 1.
    pub index: u64,
    /// The raft RPC address, normalized `host:port` (IPv6 as `[addr]:port`).
    pub addr: String,
}

/// The validated voter list and which of them this node is: ids are `n<digits>` with
/// distinct numbers, addresses are distinct, and the self id is one of the ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DLedgerPeers {
    /// In the order written.
    peers: Vec<DLedgerPeer>,
    /// Position of this node in `peers`.
    self_pos: usize,
}

impl DLedgerPeers {
    /// Parses a `dLegerPeers` value and a `dLegerSelfId` value (errors carry line 0; the
    /// config parser reports the lines of the two keys instead).
    pub fn parse(peers: &str, self_id: &str) -> Result<Self, ProtocolError> {
        let list = parse_peer_list(peers, 0)?;
        Self::with_self(list, self_id, 0)
    }

    /// Picks this node out of a parsed list; `line` is where `dLegerSelfId` was set.
    pub(crate) fn with_self(
        peers: Vec<DLedgerPeer>,
        self_id: &str,
        line: usize,
    ) -> Result<Self, ProtocolError> {
        let self_id = self_id.trim();
        parse_id(self_id).map_err(|r| config_err(line, "dLegerSelfId", r))?;
        let self_pos = peers.iter().position(|p| p.id == self_id).ok_or_else(|| {
            let ids: Vec<&str> = peers.iter().map(|p| p.id.as_str()).collect();
            config_err(
                line,
                "dLegerSelfId",
                format!(
                    "{self_id:?} is not one of the ids in dLegerPeers ({})",
                    ids.join(", ")
                ),
            )
        })?;
        Ok(DLedgerPeers { peers, self_pos })
    }

    /// Every voter, this node included, in the order written.
    pub fn peers(&self) -> &[DLedgerPeer] {
        &self.peers
    }

    /// This node's entry.
    pub fn self_peer(&self) -> &DLedgerPeer {
        // `self_pos` was found in `peers` at construction and neither changes afterwards.
        &self.peers[self.self_pos]
    }

    /// The other voters.
    pub fn others(&self) -> impl Iterator<Item = &DLedgerPeer> {
        let me = self.self_pos;
        self.peers
            .iter()
            .enumerate()
            .filter(move |(i, _)| *i != me)
            .map(|(_, p)| p)
    }

    /// Raft node id → raft RPC address, for every voter (what `raftmq_raft` takes).
    pub fn raft_peers(&self) -> BTreeMap<u64, String> {
        self.peers
            .iter()
            .map(|p| (p.index, p.addr.clone()))
            .collect()
    }
}

impl fmt::Display for DLedgerPeers {
    /// The `dLegerPeers` value (`n0-host:port;n1-host:port;...`), in the order written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.peers.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            write!(f, "{}-{}", p.id, p.addr)?;
        }
        Ok(())
    }
}

/// Parses a `dLegerPeers` value; errors name `dLegerPeers` and `line`.
pub(crate) fn parse_peer_list(value: &str, line: usize) -> Result<Vec<DLedgerPeer>, ProtocolError> {
    let err = |reason: String| config_err(line, "dLegerPeers", reason);
    let items = split_list(value).map_err(err)?;
    if items.is_empty() {
        return Err(err(
            "must list the group's voters, as in n0-127.0.0.1:40911;n1-127.0.0.1:40912;n2-127.0.0.1:40913"
                .into(),
        ));
    }
    if items.len() > DLEDGER_PEERS_MAX {
        return Err(err(format!(
            "lists {} peers, limit {DLEDGER_PEERS_MAX}",
            items.len()
        )));
    }
    let mut peers: Vec<DLedgerPeer> = Vec::with_capacity(items.len());
    for item in items {
        let (id, addr) = item.split_once('-').ok_or_else(|| {
            err(format!(
                "{item:?} is not <id>-<host>:<port>, as in n0-127.0.0.1:40911"
            ))
        })?;
        let id = id.trim();
        let index = parse_id(id).map_err(|r| err(format!("in {item:?}: {r}")))?;
        let addr = parse_host_port(addr).map_err(|r| err(format!("in {item:?}: {r}")))?;
        if let Some(dup) = peers.iter().find(|p| p.index == index) {
            return Err(err(format!(
                "ids {} and {id} both mean raft node {index}: each id once",
                dup.id
            )));
        }
        if let Some(dup) = peers.iter().find(|p| p.addr.eq_ignore_ascii_case(&addr)) {
            return Err(err(format!(
                "{} and {id} share the address {addr}: each node needs its own",
                dup.id
            )));
        }
        peers.push(DLedgerPeer {
            id: id.to_owned(),
            index,
            addr,
        });
    }
    Ok(peers)
}

/// The number in an `n<digits>` id.
fn parse_id(id: &str) -> Result<u64, String> {
    let digits = id
        .strip_prefix('n')
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| format!("id {id:?} is not n<digits> (n0, n1, ...), as DLedger requires"))?;
    digits
        .parse::<u32>()
        .map(u64::from)
        .map_err(|_| format!("id {id:?}: the number is too large"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const SAMPLE: &str = "n0-127.0.0.1:40911;n1-127.0.0.1:40912;n2-127.0.0.1:40913";

    #[test]
    fn parses_the_rocketmq_sample() {
        let p = DLedgerPeers::parse(SAMPLE, "n1").unwrap();
        assert_eq!(p.peers().len(), 3);
        assert_eq!(p.self_peer().id, "n1");
        assert_eq!(p.self_peer().index, 1);
        assert_eq!(p.self_peer().addr, "127.0.0.1:40912");
        let others: Vec<_> = p.others().map(|o| o.index).collect();
        assert_eq!(others, vec![0, 2]);
        assert_eq!(p.raft_peers().get(&2).unwrap(), "127.0.0.1:40913");
        assert_eq!(p.to_string(), SAMPLE);
    }

    #[test]
    fn index_is_the_id_number_not_the_position() {
        let p = DLedgerPeers::parse("n2-h-2:1;n0-h-0:1;n1-h-1:1", "n0").unwrap();
        assert_eq!(p.self_peer().index, 0);
        assert_eq!(p.self_peer().addr, "h-0:1");
        let ids: Vec<_> = p.raft_peers().into_iter().collect();
        assert_eq!(ids[0], (0, "h-0:1".to_owned()));
        assert_eq!(ids[2], (2, "h-2:1".to_owned()));
    }

    #[test]
    fn refuses_bad_lists() {
        for (peers, needle) in [
            ("", "must list"),
            ("n0", "not <id>-<host>:<port>"),
            ("x0-a:1", "n<digits>"),
            ("n-a:1", "n<digits>"),
            ("n0-a:1;n00-b:1", "both mean raft node 0"),
            ("n0-a:1;n1-a:1", "share the address"),
            ("n0-a:0", "port 0"),
            ("n99999999999-a:1", "too large"),
        ] {
            let err = DLedgerPeers::parse(peers, "n0").unwrap_err().to_string();
            assert!(
                err.contains("dLegerPeers") && err.contains(needle),
                "{peers}: {err}"
            );
        }
        let many: Vec<String> = (0..10).map(|i| format!("n{i}-h:{}", 1000 + i)).collect();
        assert!(DLedgerPeers::parse(&many.join(";"), "n0").is_err());
        let err = DLedgerPeers::parse(SAMPLE, "n3").unwrap_err().to_string();
        assert!(
            err.contains("dLegerSelfId") && err.contains("n0, n1, n2"),
            "{err}"
        );
        assert!(DLedgerPeers::parse(SAMPLE, "0").is_err());
    }
}
