//! `mqbench`: RocketMQ's benchmark producer and consumer (`mqbench producer -n ... -w 256
//! -s 1024 --duration 15`), with HDR latency summaries and CPU use per process.

use clap::{Parser, Subcommand};
use raftmq_tools::bench;

#[derive(Debug, Parser)]
#[command(
    name = "mqbench",
    version,
    about = "RaftMQ benchmark: RocketMQ's producer/consumer benchmark flags and report lines"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Send messages as fast as the in-flight limit allows and report throughput/latency.
    Producer(bench::ProducerArgs),
    /// Consume a topic with a push consumer and report throughput/latency.
    Consumer(bench::ConsumerArgs),
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Producer(a) => bench::run_producer(a).await.map(|_| ()),
        Cmd::Consumer(a) => bench::run_consumer(a).await.map(|_| ()),
    };
    if let Err(e) = r {
        eprintln!("mqbench: {e:#}");
        std::process::exit(1);
    }
}
