//! Times loading a checkpoint directory: `load_checkpoint <dir>` (profiling aid).
#![allow(clippy::unwrap_used, clippy::expect_used)]
fn main() {
    let dir = std::env::args().nth(1).expect("dir");
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let l = raftmq_broker::checkpoint::load(std::path::Path::new(&dir)).unwrap();
        println!(
            "found={} applied={:?} {} ms",
            l.found,
            l.state.applied_index(),
            t.elapsed().as_millis()
        );
    }
}
