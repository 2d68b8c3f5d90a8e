//! RaftMQ's command-line tools: `mqadmin` (RocketMQ's admin subcommands plus
//! `playground`) and `mqbench` (RocketMQ's benchmark flags and report lines).
//! The binaries are thin; the logic lives in these modules so it can be tested.

pub mod bench;
pub mod playground;
