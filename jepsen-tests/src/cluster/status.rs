//! What the nodes' RAFTMQ_GROUP_STATUS answers say: who leads, whether the group is
//! healthy and caught up, and one line per node for messages.

use std::collections::BTreeMap;

use raftmq_protocol::body::RaftGroupStatus;

/// The node saying it leads at the highest term any node reports.
pub fn leader_of(statuses: &[Result<RaftGroupStatus, String>]) -> Option<usize> {
    let top = statuses.iter().flatten().map(|s| s.term).max()?;
    let mut leaders = statuses
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.as_ref().ok().map(|s| (i, s)))
        .filter(|(_, s)| s.role == "leader" && s.term == top);
    let first = leaders.next().map(|(i, _)| i);
    // Two leaders at one term would be a raft bug; report none rather than guess.
    if leaders.next().is_some() {
        return None;
    }
    first
}

/// Whether `statuses` show a healthy group: every node answers, one leader at the top
/// term, every node applied what `target` says (captured when the leader was first seen).
pub(super) fn healthy(
    statuses: &[Result<RaftGroupStatus, String>],
    target: &mut Option<(usize, u64, u64)>,
) -> Result<(), String> {
    if let Some((i, Err(e))) = statuses.iter().enumerate().find(|(_, s)| s.is_err()) {
        return Err(format!("n{i} does not answer ({e})"));
    }
    let Some(l) = leader_of(statuses) else {
        return Err("no leader".into());
    };
    let leader = statuses[l].as_ref().map_err(Clone::clone)?;
    let committed = leader.committed_index.unwrap_or(0);
    match target {
        Some((tl, tt, _)) if *tl == l && *tt == leader.term => {}
        _ => *target = Some((l, leader.term, committed)),
    }
    let want = target.map_or(committed, |t| t.2);
    let behind: BTreeMap<usize, u64> = statuses
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let applied = s.as_ref().ok()?.applied_index.unwrap_or(0);
            (applied < want).then_some((i, applied))
        })
        .collect();
    if behind.is_empty() {
        Ok(())
    } else {
        let list: Vec<String> = behind
            .iter()
            .map(|(i, a)| format!("n{i} applied {a}"))
            .collect();
        Err(format!("not caught up to {want}: {}", list.join(", ")))
    }
}

/// One line per node: role, term, indexes, or why it did not answer.
pub fn status_lines(statuses: &[Result<RaftGroupStatus, String>]) -> String {
    statuses
        .iter()
        .enumerate()
        .map(|(i, s)| match s {
            Ok(s) => format!(
                "n{i} {} term={} committed={} applied={}",
                s.role,
                s.term,
                s.committed_index.map_or("-".into(), |v| v.to_string()),
                s.applied_index.map_or("-".into(), |v| v.to_string()),
            ),
            Err(e) => format!("n{i} unreachable ({e})"),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn st(role: &str, term: u64, committed: u64, applied: u64) -> Result<RaftGroupStatus, String> {
        Ok(RaftGroupStatus {
            role: role.into(),
            term,
            committed_index: Some(committed),
            applied_index: Some(applied),
            ..RaftGroupStatus::default()
        })
    }

    #[test]
    fn the_leader_is_the_one_at_the_top_term() {
        let s = vec![
            st("leader", 2, 5, 5),
            st("leader", 3, 6, 6),
            Err("down".into()),
        ];
        assert_eq!(leader_of(&s), Some(1));
        let s = vec![
            st("leader", 2, 5, 5),
            st("candidate", 3, 6, 6),
            st("follower", 3, 6, 6),
        ];
        assert_eq!(leader_of(&s), None, "a stale leader is not the leader");
        let s: Vec<Result<RaftGroupStatus, String>> = vec![Err("x".into()); 3];
        assert_eq!(leader_of(&s), None);
    }

    #[test]
    fn healthy_needs_everyone_caught_up_to_the_first_seen_commit() {
        let mut target = None;
        let s = vec![
            st("leader", 2, 10, 10),
            st("follower", 2, 10, 7),
            st("follower", 2, 9, 10),
        ];
        let e = healthy(&s, &mut target).unwrap_err();
        assert!(e.contains("n1 applied 7"), "{e}");
        // The leader moved on, but the target stays what it was when first seen.
        let s = vec![
            st("leader", 2, 20, 20),
            st("follower", 2, 15, 10),
            st("follower", 2, 15, 12),
        ];
        healthy(&s, &mut target).unwrap();
        // A new leader resets the target.
        let s = vec![
            st("follower", 3, 20, 20),
            st("leader", 3, 30, 30),
            st("follower", 3, 25, 25),
        ];
        assert!(healthy(&s, &mut target).is_err());
        assert_eq!(target, Some((1, 3, 30)));
        let s = vec![
            st("leader", 3, 1, 1),
            Err("down".into()),
            st("follower", 3, 1, 1),
        ];
        assert!(healthy(&s, &mut None)
            .unwrap_err()
            .contains("n1 does not answer"));
    }
}
