//! RaftMQ's command-line tools: `mqadmin` (RocketMQ's admin subcommands plus
//! `playground`) and `mqbench` (RocketMQ's benchmark flags and report lines).
//! The binaries are thin; the logic lives in these modules so it can be tested.
//!
//! - [`admin`]: `mqadmin`'s RocketMQ subcommands (flags, output lines, `--json`);
//! - [`playground`]: `mqadmin playground`, a NameServer and one 3-node group on loopback;
//! - [`bench`]: `mqbench`, the benchmark producer and consumer.

pub mod admin;
pub mod bench;
pub mod playground;
