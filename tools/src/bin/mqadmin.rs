//! `mqadmin`: RocketMQ's admin subcommands against a RaftMQ cluster.

fn main() {
    eprintln!("mqadmin: not implemented yet");
    std::process::exit(2);
}
