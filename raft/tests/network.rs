//! The node-to-node network over real TCP on 127.0.0.1, against a fake Raft: framing and
//! its limits, pipelining, ordering, deadlines, dead peers, reconnects, the test filter and
//! custom RPCs. No sleeps for synchronisation: every wait is on a condition with a deadline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

// Integration-test roots resolve `mod` paths beside themselves; keep the parts in network/.
#[path = "network/support.rs"]
mod support;
#[path = "network/tcp.rs"]
mod tcp;
#[path = "network/wire.rs"]
mod wire;
