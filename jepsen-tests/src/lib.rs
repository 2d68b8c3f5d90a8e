//! jepsen-tests: runs a NameServer and a 3-node broker group as real processes, injects
//! faults (kills, pauses, partitions), records every client operation, and checks from
//! the history alone that no acknowledged message was lost.

pub mod checker;
pub mod cluster;
pub mod history;
pub mod nemesis;
pub mod net;
pub mod recorder;
pub mod report;
pub mod run;
pub mod workload;
