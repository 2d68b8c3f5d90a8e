//! `mqadmin`: RocketMQ's admin subcommands against a RaftMQ cluster.

use clap::Parser;

/// RaftMQ admin tool.
#[derive(Debug, Parser)]
#[command(name = "mqadmin", version)]
enum Cli {
    /// Run a NameServer and one 3-node broker group on loopback until Ctrl-C.
    Playground(raftmq_tools::playground::PlaygroundArgs),
}

fn main() -> std::process::ExitCode {
    let Cli::Playground(args) = Cli::parse();
    let result = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(raftmq_tools::playground::run(args)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mqadmin playground: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
