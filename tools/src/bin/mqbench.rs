//! `mqbench`: RocketMQ's benchmark producer and consumer.

fn main() {
    eprintln!("mqbench: not implemented yet");
    std::process::exit(2);
}
