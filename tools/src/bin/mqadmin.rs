//! `mqadmin`: RocketMQ's admin subcommands against a RaftMQ cluster. No arguments print
//! the command list; `mqadmin help <command>` a command's options; every failure exits
//! non-zero with a one-line error. `mqadmin playground` runs a local cluster.

use std::process::ExitCode;

use clap::Parser;
use raftmq_tools::admin::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        None => {
            print!("{}", admin::cli::command_list());
            ExitCode::SUCCESS
        }
        Some(cmd) => admin::execute(&cli.global, cmd),
    }
}
