//! `jepsen-tests run ...` (one seeded fault schedule against real processes),
//! `jepsen-tests suite ci|long` (fixed lists of schedules) and `jepsen-tests check <dir>`
//! (re-check a recorded history offline).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use jepsen_tests::checker::CheckOptions;
use jepsen_tests::report::{check_dir, final_line};
use jepsen_tests::run::{run, suite, RunOptions, SUITES};

#[derive(Debug, Parser)]
#[command(
    name = "jepsen-tests",
    about = "Fault injection against a NameServer and a 3-node RaftMQ group, with a history checker"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run one fault schedule and check its history.
    Run(RunArgs),
    /// Run a named list of schedules one after another (`ci` or `long`).
    Suite {
        /// Suite name.
        name: String,
        /// Output root (default `./jepsen-results/<timestamp>-<suite>`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Directory holding mqnamesrv and mqbroker (default: next to this executable).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// Run on 127.0.0.x loopback even as root (partition faults are then skipped).
        #[arg(long)]
        no_netns: bool,
    },
    /// Re-check a recorded run directory (reads history.jsonl, rewrites the report).
    Check {
        /// The run's output directory.
        dir: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Faults, `,`-separated, taken in turn; `a+b` injects a and b together.
    #[arg(long, default_value = "kill-leader")]
    nemesis: String,
    /// Seconds of the fault phase.
    #[arg(long, default_value_t = 60)]
    time_limit: u64,
    /// Target sends per second over all producers.
    #[arg(long, default_value_t = 300.0)]
    rate: f64,
    /// Seed of every random choice (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Output directory (default `./jepsen-results/<timestamp>`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Directory holding mqnamesrv and mqbroker (default: next to this executable).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// NameServers to run (1 or 2).
    #[arg(long, default_value_t = 1)]
    namesrvs: usize,
    /// Run on 127.0.0.x loopback even as root (partition faults are then skipped).
    #[arg(long)]
    no_netns: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("jepsen-tests: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = runtime.block_on(async move {
        match cli.cmd {
            Cmd::Run(a) => {
                let opts = RunOptions {
                    nemesis: a.nemesis,
                    time_limit: std::time::Duration::from_secs(a.time_limit),
                    rate: a.rate,
                    seed: a.seed,
                    out: a.out,
                    bin_dir: a.bin_dir,
                    namesrvs: a.namesrvs,
                    no_netns: a.no_netns,
                };
                run(&opts).await.map(|r| vec![r])
            }
            Cmd::Suite {
                name,
                out,
                bin_dir,
                no_netns,
            } => {
                if !SUITES.iter().any(|(n, _)| *n == name) {
                    let names: Vec<&str> = SUITES.iter().map(|(n, _)| *n).collect();
                    Err(anyhow::anyhow!(
                        "unknown suite {name:?}; suites: {}",
                        names.join(", ")
                    ))
                } else {
                    suite(&name, out, bin_dir, no_netns).await
                }
            }
            Cmd::Check { dir } => {
                let results = check_dir(&dir, &CheckOptions::default());
                results.map(|r| {
                    println!("{}", final_line(&r));
                    vec![r]
                })
            }
        }
    });
    match outcome {
        Ok(all) if all.iter().all(|r| r.valid) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("jepsen-tests: {e:#}");
            ExitCode::from(2)
        }
    }
}
