//! `jepsen-tests run ...` and `jepsen-tests check <dir>`.

fn main() {
    println!("jepsen-tests: not built yet");
}
